#!/usr/bin/env python3
"""Health probes and one-off setup steps for scripts/services (standard library only).

It runs with whatever python3 the machine has, before postvault's .venv exists:

    probe.py wait-http URL SECONDS          poll until URL answers 2xx
    probe.py opensearch-health BASE         print "<version> <status>"; exit 1 when red or down
    probe.py opensearch-smoke BASE          pattern-tokenizer analyzer, bulk, phrase/span query
    probe.py s3-ensure-bucket ENDPOINT B    create bucket B with Object Lock unless it exists
    probe.py s3-bucket-status ENDPOINT B    print the bucket's versioning and object-lock state

S3 calls are signed (AWS Signature V4) with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
from the environment, region us-east-1.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

TIMEOUT = 10.0


# --------------------------------------------------------------------------- HTTP


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = TIMEOUT) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def http_json(method: str, url: str, document: object | None = None, *, ndjson: str | None = None,
              timeout: float = TIMEOUT) -> tuple[int, dict]:
    if ndjson is not None:
        body, ctype = ndjson.encode(), "application/x-ndjson"
    elif document is not None:
        body, ctype = json.dumps(document).encode(), "application/json"
    else:
        body, ctype = None, "application/json"
    status, raw = http(method, url, body, {"Content-Type": ctype}, timeout)
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"raw": raw.decode("utf-8", "replace")}


def wait_http(url: str, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while True:
        try:
            status, _ = http("GET", url, timeout=min(TIMEOUT, max(1.0, deadline - time.monotonic())))
            if 200 <= status < 300:
                return 0
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() >= deadline:
            return 1
        time.sleep(0.5)


# --------------------------------------------------------------------------- scripts/services itself
# The tests (tests/services.py) and the benchmark (bench/scale_out.py) find the services
# through these two, so both read `scripts/services env` and probe a port the same way.

SERVICES_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "services"


def services_env(script: Path = SERVICES_SCRIPT, timeout: float = 60.0) -> dict[str, str]:
    """What ``scripts/services env`` exports (addresses and credentials of the local services), or {}."""
    try:
        printed = subprocess.run([str(script), "env"], capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    values: dict[str, str] = {}
    for line in printed.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export":
            key, _, value = words[1].partition("=")
            values[key] = value
    return values


def tcp_problem(host: str, port: int, timeout: float = 2.0) -> str:
    """Why nothing accepts connections at host:port, or "" if something does."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except OSError as error:
        return error.strerror or str(error)


# --------------------------------------------------------------------------- OpenSearch


def opensearch_health(base: str) -> int:
    try:
        _, info = http_json("GET", base + "/")
        _, health = http_json("GET", base + "/_cluster/health")
    except (OSError, urllib.error.URLError) as error:
        print(f"unreachable: {error}")
        return 1
    version = info.get("version", {}).get("number", "?")
    status = health.get("status", "?")
    print(f"{version} {status}")
    return 0 if status in {"green", "yellow"} else 1


def opensearch_smoke(base: str) -> int:
    """Creates, uses and deletes a small index with the analysis postvault relies on."""
    index = f"postvault-smoke-{os.getpid()}"
    failures: list[str] = []

    def check(label: str, ok: bool, detail: object = "") -> None:
        if not ok:
            failures.append(f"{label}: {detail}")

    try:
        status, body = http_json("PUT", f"{base}/{index}", {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": 0,
                "analysis": {
                    "tokenizer": {"words": {"type": "pattern", "pattern": "[^\\p{L}\\p{N}]+"}},
                    "analyzer": {"folded": {"type": "custom", "tokenizer": "words",
                                            "filter": ["lowercase", "asciifolding"]}},
                },
            },
            "mappings": {"properties": {"body": {"type": "text", "analyzer": "folded"}}},
            "aliases": {f"{index}-alias": {}},
        })
        check("create index", status == 200, body)
        if status == 200:
            _, body = http_json("POST", f"{base}/{index}/_analyze", {"analyzer": "folded", "text": "Héllo-WÖRLD café"})
            tokens = [t.get("token") for t in body.get("tokens", [])]
            check("pattern tokenizer + lowercase + asciifolding", tokens == ["hello", "world", "cafe"], tokens)
            lines = [
                json.dumps({"index": {"_index": index, "_id": "1"}}), json.dumps({"body": "Résumé of the café meeting"}),
                json.dumps({"index": {"_index": index, "_id": "2"}}), json.dumps({"body": "meeting cafe, resume later"}),
            ]
            status, body = http_json("POST", f"{base}/_bulk?refresh=true", ndjson="\n".join(lines) + "\n")
            check("_bulk", status == 200 and body.get("errors") is False, body)
            _, body = http_json("POST", f"{base}/{index}-alias/_search",
                                {"query": {"match_phrase": {"body": "resume of the cafe"}}})
            hits = [h["_id"] for h in body.get("hits", {}).get("hits", [])]
            check("match_phrase through an alias", hits == ["1"], body if not hits else hits)
            _, body = http_json("POST", f"{base}/{index}/_search", {"query": {"span_near": {
                "clauses": [{"span_term": {"body": "cafe"}}, {"span_term": {"body": "resume"}}],
                "slop": 0, "in_order": True}}})
            hits = [h["_id"] for h in body.get("hits", {}).get("hits", [])]
            check("span_near", hits == ["2"], body if not hits else hits)
    except (OSError, urllib.error.URLError) as error:
        failures.append(f"unreachable: {error}")
    finally:
        try:
            http("DELETE", f"{base}/{index}")
        except (OSError, urllib.error.URLError):
            pass
    if failures:
        print("smoke FAILED: " + "; ".join(str(f)[:300] for f in failures))
        return 1
    print("smoke ok")
    return 0


# --------------------------------------------------------------------------- S3 (SigV4)


def _sign(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def s3_request(method: str, endpoint: str, path: str, query: str = "", headers: dict[str, str] | None = None,
               body: bytes = b"") -> tuple[int, bytes]:
    access = os.environ.get("AWS_ACCESS_KEY_ID", "")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    region = "us-east-1"
    now = dt.datetime.now(dt.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(body).hexdigest()
    all_headers = {"host": endpoint, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    names = sorted(all_headers)
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(urllib.parse.parse_qsl(query, keep_blank_values=True)))
    canonical = "\n".join([
        method, urllib.parse.quote(path, safe="/-_.~"), canonical_query,
        "".join(f"{n}:{all_headers[n].strip()}\n" for n in names), ";".join(names), payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(_sign(_sign(_sign(("AWS4" + secret).encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    all_headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")
    del all_headers["host"]
    url = f"http://{endpoint}{path}" + (f"?{query}" if query else "")
    return http(method, url, body if body or method in {"PUT", "POST"} else None, all_headers)


def s3_ensure_bucket(endpoint: str, bucket: str) -> int:
    try:
        status, body = s3_request("HEAD", endpoint, f"/{bucket}")
        if status == 200:
            print(f"bucket {bucket} exists")
            return 0
        if status != 404:
            print(f"HEAD bucket {bucket}: HTTP {status} {body[:200]!r}")
            return 1
        status, body = s3_request("PUT", endpoint, f"/{bucket}",
                                  headers={"x-amz-bucket-object-lock-enabled": "true"})
    except (OSError, urllib.error.URLError) as error:
        print(f"unreachable: {error}")
        return 1
    if status != 200:
        print(f"create bucket {bucket}: HTTP {status} {body[:300]!r}")
        return 1
    print(f"bucket {bucket} created with object lock")
    return 0


def s3_bucket_status(endpoint: str, bucket: str) -> int:
    try:
        status, body = s3_request("GET", endpoint, f"/{bucket}", query="versioning=")
        if status != 200:
            print(f"bucket {bucket}: HTTP {status}")
            return 1
        versioning = "Enabled" if b"<Status>Enabled</Status>" in body else "off"
        status, body = s3_request("GET", endpoint, f"/{bucket}", query="object-lock=")
        lock = "on" if status == 200 and b"<ObjectLockEnabled>Enabled</ObjectLockEnabled>" in body else "off"
    except (OSError, urllib.error.URLError) as error:
        print(f"unreachable: {error}")
        return 1
    print(f"bucket {bucket}: versioning {versioning}, object lock {lock}")
    return 0 if lock == "on" else 1


def main(argv: list[str]) -> int:
    commands = {
        "wait-http": lambda url, seconds: wait_http(url, float(seconds)),
        "opensearch-health": opensearch_health,
        "opensearch-smoke": opensearch_smoke,
        "s3-ensure-bucket": s3_ensure_bucket,
        "s3-bucket-status": s3_bucket_status,
    }
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
