"""In-process search timing, run as a child of bench/ingest.py (stdlib only at import time).

    python bench/_search_worker.py postvault  < request.json  > result.json
    /usr/bin/python3 bench/_search_worker.py notmuch < request.json > result.json

Request: {"queries": [[name, query], ...], "repeat": 20, "warmup": 1, "limit": 20,
          "config": "<NOTMUCH_CONFIG path, notmuch only>"}
Result:  {"modes": {mode: {name: {"samples_ms": [...], "hits": n, "total": n|null,
                                  "error": str|null}}}, "open_ms": float}

postvault is timed two ways: ``api`` is ``search_ui.search.search_archive`` (parse, scope,
TantivyBackend.search, catalogue join for the 20 summaries, audit row), ``backend`` is
``parse_query`` + ``TantivyBackend.search`` alone. notmuch (``notmuch2`` bindings) is timed as
messages sorted newest first, the first ``limit`` of them with their From/Subject/Date
read, which is what a postvault hit carries.
"""

from __future__ import annotations

import json
import sys
import time
from itertools import islice


def _time(fn, repeat: int, warmup: int) -> dict:
    out: dict = {"samples_ms": [], "hits": None, "total": None, "error": None}
    try:
        for _ in range(warmup):
            fn()
        for _ in range(repeat):
            started = time.perf_counter()
            hits, total = fn()
            out["samples_ms"].append((time.perf_counter() - started) * 1000.0)
            out["hits"], out["total"] = hits, total
    except Exception as error:  # report, keep going with the other queries
        out["error"] = f"{type(error).__name__}: {error}"
    return out


def run_postvault(request: dict) -> dict:
    started = time.perf_counter()
    from indexer.query.parser import parse_query
    from indexer.scope import Scope
    from postvault.settings import Settings
    from postvault.wiring import Archive
    from search_ui.principals import Principal, Role
    from search_ui.search import search_archive

    archive = Archive(Settings())
    principal = Principal(name="bench", role=Role.ADMIN)
    everything = Scope.everything()
    backend = archive.search
    archive.sessions  # noqa: B018 - open the catalogue before timing
    open_ms = (time.perf_counter() - started) * 1000.0
    limit = request.get("limit", 20)
    modes: dict = {"api": {}, "backend": {}}
    try:
        for name, query in request["queries"]:
            def api(q=query):
                results = search_archive(archive, principal, q, requested=everything, limit=limit)
                return len(results.hits), results.total

            def direct(q=query):
                page = backend.search(parse_query(q), everything, limit=limit)
                return len(page.hits), page.total

            modes["api"][name] = _time(api, request["repeat"], request.get("warmup", 1))
            modes["backend"][name] = _time(direct, request["repeat"], request.get("warmup", 1))
    finally:
        archive.close()
    return {"modes": modes, "open_ms": open_ms}


def run_notmuch(request: dict) -> dict:
    started = time.perf_counter()
    import notmuch2

    db = notmuch2.Database(mode=notmuch2.Database.MODE.READ_ONLY, config=request["config"])
    open_ms = (time.perf_counter() - started) * 1000.0
    limit = request.get("limit", 20)
    modes: dict = {"bindings": {}}
    try:
        for name, query in request["queries"]:
            def search(q=query):
                messages = db.messages(q, sort=notmuch2.Database.SORT.NEWEST_FIRST)
                hits = 0
                for message in islice(messages, limit):
                    message.header("from")
                    message.header("subject")
                    message.date  # noqa: B018
                    hits += 1
                return hits, None

            modes["bindings"][name] = _time(search, request["repeat"], request.get("warmup", 1))
    finally:
        db.close()
    return {"modes": modes, "open_ms": open_ms}


def main() -> int:
    which = sys.argv[1]
    request = json.load(sys.stdin)
    result = run_postvault(request) if which == "postvault" else run_notmuch(request)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
