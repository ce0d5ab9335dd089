"""Run a `postvault` command with timers around the phases of ingest and indexing (bench only).

    python bench/_scale_out_probe.py OUT_DIR import <maildir> --no-index
    python bench/_scale_out_probe.py OUT_DIR worker --concurrency 2

Exactly ``postvault.cli:app`` (what the ``postvault`` executable runs), after wrapping a
few functions with a timer that adds (calls, seconds, items) per phase. Nothing else
changes: the wrappers call the original and return its result. Every process (the
import, the worker parent and each prefork child, which inherit the wrappers through
fork) writes its totals to ``OUT_DIR/probe-<role>-<pid>.json`` at most every 2 s and when
it exits, so bench/scale_out.py can say where the time went inside postvault.

Timers nest (``journal_many`` contains ``s3_put_many``); bench/scale_out.py subtracts
the inner ones to get exclusive times. The overhead is two ``perf_counter`` calls per
wrapped call: microseconds per batch or per message.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import sys
import threading
import time
from pathlib import Path

_OUT: Path | None = None
_ROLE = "?"
_LOCK = threading.Lock()
_TOTALS: dict[str, list[float]] = {}
_LAST_FLUSH = [0.0]
_PID = [0]


def _flush(force: bool = False) -> None:
    now = time.monotonic()
    if _OUT is None or (not force and now - _LAST_FLUSH[0] < 2.0):
        return
    _LAST_FLUSH[0] = now
    with _LOCK:
        data = {"pid": os.getpid(), "role": _ROLE, "totals": {k: list(v) for k, v in _TOTALS.items()},
                "cpu": list(os.times())[:2]}
    path = _OUT / f"probe-{_ROLE}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _timed(name: str, fn, items=None):  # type: ignore[no-untyped-def]
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            count = 0
            if items is not None:
                try:
                    count = items(args, kwargs)
                except Exception:  # noqa: BLE001 - a probe never breaks the call
                    count = 0
            with _LOCK:
                entry = _TOTALS.setdefault(name, [0, 0.0, 0])
                entry[0] += 1
                entry[1] += elapsed
                entry[2] += count
            if _PID[0] != os.getpid():  # a forked child: start its own totals file
                _PID[0] = os.getpid()
            _flush()

    wrapper.__wrapped_by_probe__ = True  # type: ignore[attr-defined]
    return wrapper


def _patch(owner, attr: str, name: str, items=None) -> None:  # type: ignore[no-untyped-def]
    original = getattr(owner, attr)
    if getattr(original, "__wrapped_by_probe__", False):
        return
    setattr(owner, attr, _timed(name, original, items))


def _arg_len(position: int):  # type: ignore[no-untyped-def]
    return lambda args, kwargs: len(args[position])


def install(role: str) -> None:
    """Wrap the ingest and index phases. Imports are the ones postvault does anyway."""
    import archiver.journal as journal
    import indexer.backends.opensearch_backend as osb
    import indexer.backends.opensearch_mapping as mapping
    import indexer.outbox as outbox
    import indexer.parsing as parsing
    import postvault.background.tasks as tasks
    import postvault.indexing as indexing
    import storage.s3 as s3

    # --- import side: Journal.journal_many = header facts + locks (PG read) + S3 put + PG write
    _patch(journal.Journal, "journal_many", "journal_many", _arg_len(1))
    _patch(journal.Journal, "known_digests", "pg_known_digests", _arg_len(1))
    _patch(journal.Journal, "_locks", "pg_policy_read")
    _patch(journal.Journal, "_record", "pg_record")
    _patch(journal, "read_header_facts", "header_facts")
    _patch(s3.S3BlobStore, "put_many", "s3_put_many", _arg_len(1))
    # --- worker side: index_batch = lease + index_leased(load facts, parse, build, backend.index, finish)
    _patch(tasks, "lease_batch", "pg_lease_batch")
    _patch(tasks, "index_leased", "index_leased", _arg_len(2))
    _patch(outbox, "load_facts", "pg_load_facts", _arg_len(1))
    _patch(outbox, "_finish", "pg_finish")
    _patch(outbox, "build_document", "build_document")
    _patch(indexing, "parse_fetched", "parse_blob")  # every parse, prefetched or not
    _patch(s3.S3BlobStore, "get", "s3_get")
    _patch(parsing, "parse_message", "parse_message")
    _patch(osb.OpenSearchBackend, "index", "os_index", _arg_len(1))
    _patch(osb.OpenSearchBackend, "_write_targets", "os_alias_lookup")
    _patch(osb.OpenSearchBackend, "_bulk", "os_bulk", lambda a, k: a[3])
    _patch(osb.OpenSearchBackend, "_refresh", "os_refresh")
    _patch(mapping, "to_source", "to_source")

    if role == "worker":
        from celery.signals import worker_process_shutdown, worker_shutdown

        def _final(**_kwargs) -> None:  # type: ignore[no-untyped-def]
            _flush(force=True)

        worker_process_shutdown.connect(_final, weak=False)
        worker_shutdown.connect(_final, weak=False)
    atexit.register(_flush, True)


def main() -> None:
    global _OUT, _ROLE
    _OUT = Path(sys.argv[1])
    _OUT.mkdir(parents=True, exist_ok=True)
    _ROLE = sys.argv[2]
    _PID[0] = os.getpid()
    install(_ROLE)
    from postvault.cli import app

    sys.argv = ["postvault", *sys.argv[2:]]
    try:
        app()
    finally:
        _flush(force=True)


if __name__ == "__main__":
    main()
