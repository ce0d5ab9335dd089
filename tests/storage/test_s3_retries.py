"""S3BlobStore retries throttling and server errors with a bounded backoff, and never retries a refusal.

A small local HTTP server plays an S3 endpoint in trouble (answers SlowDown, 503, 403,
or nothing at all) in ways a healthy real server cannot be made to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from storage.blobstore import BlobStoreError, sha256_hex
from storage.s3 import S3BlobStore, S3Location

SLOW_DOWN = b"<?xml version='1.0'?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
PRECONDITION_FAILED = b"<?xml version='1.0'?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>"
ACCESS_DENIED = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"


class TroubledS3:
    """Answers the first ``failures`` requests with ``failure`` ("slowdown", "503", "403", "hang"), then like S3 would."""

    def __init__(self, failure: str, failures: int) -> None:
        self.failure, self.failures = failure, failures
        self.requests: list[str] = []
        self.stored: dict[str, bytes] = {}
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in {"Content-Type": "application/xml", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _serve(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append(self.command)
                if len(fake.requests) <= fake.failures:
                    if fake.failure == "hang":
                        fake.release.wait(5)
                        return
                    status, body = {"slowdown": (503, SLOW_DOWN), "503": (503, b""), "403": (403, ACCESS_DENIED)}[fake.failure]
                    self._answer(status, body)
                elif self.command == "PUT" and self.headers.get("If-None-Match") == "*" and self.path in fake.stored:
                    self._answer(412, PRECONDITION_FAILED)
                elif self.command == "PUT":
                    fake.stored[self.path] = data
                    self._answer(200, headers={"ETag": '"0"'})
                elif self.path.split("?")[0] in fake.stored:
                    self._answer(200, fake.stored[self.path.split("?")[0]])
                else:
                    self._answer(404)

            do_GET = do_HEAD = do_PUT = _serve

        return Handler

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def troubled() -> Iterator[Callable[[str, int], TroubledS3]]:
    servers: list[TroubledS3] = []

    def start(failure: str, failures: int) -> TroubledS3:
        servers.append(TroubledS3(failure, failures))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def store_at(server: TroubledS3, **options: object) -> S3BlobStore:
    location = S3Location(bucket="archive", endpoint=server.endpoint, secure=False, region="us-east-1",
                          access_key="key", secret_key="secret")
    return S3BlobStore(location, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("failure", ["slowdown", "503"])
def test_throttling_and_server_errors_are_retried_until_the_write_lands(troubled, failure: str) -> None:
    server = troubled(failure, 2)
    assert store_at(server).put(b"message") == sha256_hex(b"message")
    assert server.requests == ["PUT", "PUT", "PUT"]
    assert list(server.stored.values()) == [b"message"]


def test_retries_stop_after_the_attempts_and_say_why(troubled) -> None:
    server = troubled("slowdown", 100)
    started = time.monotonic()
    with pytest.raises(BlobStoreError, match="after 4 attempts: SlowDown"):
        store_at(server).put(b"message")
    assert len(server.requests) == 4 and time.monotonic() - started < 3


def test_a_refusal_is_not_retried(troubled) -> None:
    server = troubled("403", 100)
    with pytest.raises(BlobStoreError, match="AccessDenied"):
        store_at(server).put(b"message")
    assert server.requests == ["PUT"]


def test_a_server_that_never_answers_fails_within_the_retry_budget(troubled) -> None:
    """Read timeouts are retried too, but no attempt starts once the budget is spent."""
    server = troubled("hang", 100)
    started = time.monotonic()
    with pytest.raises(BlobStoreError, match="ReadTimeoutError"):
        store_at(server, read_timeout=0.5, retry_seconds=1.0).put(b"message")
    assert time.monotonic() - started < 2.5
    assert 2 <= len(server.requests) <= 3


def test_a_new_blob_costs_one_conditional_put_and_existing_bytes_are_not_written_again(troubled) -> None:
    """If-None-Match: * does the write-once check in the PUT itself: no HEAD round trip first."""
    server = troubled("503", 0)
    store = store_at(server)
    digest = store.put(b"message")
    assert server.requests == ["PUT"]
    (path,) = server.stored
    server.stored[path] = b"what the server holds"
    assert store.put(b"message") == digest
    assert server.requests == ["PUT", "PUT"]  # answered 412: the stored object was left alone
    assert server.stored[path] == b"what the server holds"
