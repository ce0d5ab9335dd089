"""Run the outbox drain in-process: parse in this process or a pool, index, repeat."""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from indexer.outbox import DrainReport, ParseOutcome, PreparedBatch, complete_batch, lease_batch, prepare_batch, unlease
from postvault.memory import release_free_memory
from postvault.settings import Settings
from postvault.wiring import Archive, blobstore_from_url
from storage.blobstore import BlobCorruptError, BlobNotFoundError, BlobStore, BlobStoreError

log = logging.getLogger(__name__)

# Below this many messages a pool costs more (pickling, wake-ups) than it saves.
_POOL_THRESHOLD = 64


def _limits(settings: Settings):  # type: ignore[no-untyped-def]
    from indexer.extraction import ExtractionLimits

    return ExtractionLimits.from_settings(settings)


def parse_blob(blobs: BlobStore, digest: str, limits) -> ParseOutcome:  # type: ignore[no-untyped-def]
    return parse_fetched(digest, lambda: blobs.get(digest), limits)


def parse_fetched(digest: str, fetch: Callable[[], bytes], limits) -> ParseOutcome:  # type: ignore[no-untyped-def]
    """Parse the blob ``fetch`` returns; a blob that cannot be read becomes an outcome, not an exception."""
    from indexer.parsing import parse_message

    try:
        raw = fetch()
    except (BlobNotFoundError, BlobCorruptError) as error:
        return ParseOutcome(sha256=digest, parsed=None, error=str(error))
    except BlobStoreError as error:  # the store is down or refusing: retried, not counted against the message
        return ParseOutcome(sha256=digest, parsed=None, error=str(error), store_unavailable=True)
    return ParseOutcome(sha256=digest, parsed=parse_message(raw, limits))


class InProcessParser:
    """Parses in the calling process: for small batches, the embedded trickle and Celery tasks.

    With ``prefetch`` > 0 it reads up to that many blobs ahead on threads while it parses:
    from S3 a GET is a network round trip (a third of a Celery worker's time when read one
    at a time), and threads overlap those waits with the parsing. The window bounds the
    memory held by blobs fetched but not yet parsed.
    """

    def __init__(self, blobs: BlobStore, settings: Settings, *, prefetch: int = 0) -> None:
        self._blobs = blobs
        self._limits = _limits(settings)
        self._prefetch = prefetch

    def __call__(self, digests: Sequence[str]) -> list[ParseOutcome]:
        if self._prefetch <= 0 or len(digests) <= 1:
            return [parse_blob(self._blobs, digest, self._limits) for digest in digests]
        outcomes: list[ParseOutcome] = []
        with ThreadPoolExecutor(max_workers=min(self._prefetch, len(digests)), thread_name_prefix="blob-prefetch") as pool:
            waiting: deque[Future[bytes]] = deque()
            upcoming = iter(digests)
            for digest in itertools.islice(upcoming, self._prefetch):
                waiting.append(pool.submit(self._blobs.get, digest))
            for digest in digests:
                fetched = waiting.popleft()
                following = next(upcoming, None)
                if following is not None:
                    waiting.append(pool.submit(self._blobs.get, following))
                outcomes.append(parse_fetched(digest, fetched.result, self._limits))
        return outcomes


# What the fork server imports before forking workers ("__main__" is multiprocessing's default).
_WORKER_PRELOAD = ["__main__", "postvault.indexing", "indexer.parsing"]

# Per-process state of pool workers, set once by the initializer (each worker opens its own store).
_worker_blobs: BlobStore | None = None
_worker_limits = None
_worker_parsed = 0
# A parser process gives its free heap back this often (see postvault.memory): often
# enough that one huge attachment does not leave it big, rarely enough to cost nothing
# measurable (a trim with little to free takes microseconds).
_TRIM_EVERY = 16


def _init_worker(blobstore_url: str, settings_json: str) -> None:
    global _worker_blobs, _worker_limits
    _worker_blobs = blobstore_from_url(blobstore_url)
    _worker_limits = _limits(Settings.model_validate_json(settings_json))


def _parse_in_worker(digest: str) -> ParseOutcome:
    global _worker_parsed
    assert _worker_blobs is not None
    outcome = parse_blob(_worker_blobs, digest, _worker_limits)
    _worker_parsed += 1
    if _worker_parsed % _TRIM_EVERY == 0:
        release_free_memory()
    return outcome


class PooledParser:
    """Parses across processes: parsing is CPU-bound Python, and native extractors (PDFium,
    calamine) run there too, so a crash on a hostile file kills a worker, not the server."""

    def __init__(
        self,
        archive: Archive,
        workers: int,
        *,
        inline_below: int = _POOL_THRESHOLD,
        parse_in_worker: Callable[[str], ParseOutcome] | None = None,
    ) -> None:
        self._inline = InProcessParser(archive.blobs, archive.settings)
        # A module-level function (pickled by name); tests pass one that crashes on purpose.
        self._parse_in_worker = parse_in_worker or _parse_in_worker
        self._inline_below = inline_below
        self._workers = workers
        self._initargs = (archive.settings.resolved_blobstore_url(), archive.settings.model_dump_json())
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        # forkserver: forking a process that runs tantivy's threads is not safe.
        context = multiprocessing.get_context("forkserver")
        # The fork server imports the parsing stack once and every worker is forked from it
        # with those modules loaded: otherwise each worker spent about half a second of CPU
        # importing them (SQLAlchemy through the outbox, PDFium, lxml) before its first
        # message, and again after every restart. Takes effect when the server starts.
        context.set_forkserver_preload(_WORKER_PRELOAD)
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=self._initargs,
        )

    def __call__(self, digests: Sequence[str]) -> list[ParseOutcome]:
        return self.start(digests)()

    def start(self, digests: Sequence[str]) -> Callable[[], list[ParseOutcome]]:
        """Begin parsing in the pool now; the returned thunk waits for the outcomes."""
        if len(digests) < self._inline_below:
            outcomes = self._inline(digests)
            return lambda: outcomes
        try:
            pending = self._executor.map(self._parse_in_worker, digests, chunksize=8)
        except BrokenProcessPool:
            self._restart()
            pending = self._executor.map(self._parse_in_worker, digests, chunksize=8)

        def wait() -> list[ParseOutcome]:
            try:
                return list(pending)
            except BrokenProcessPool:
                log.error("a parser process died; parsing this batch one message at a time to find the cause")
                self._restart()
                return [self._parse_isolated(digest) for digest in digests]

        return wait

    def _parse_isolated(self, digest: str) -> ParseOutcome:
        try:
            return self._executor.submit(self._parse_in_worker, digest).result()
        except BrokenProcessPool:
            self._restart()
            return ParseOutcome(sha256=digest, parsed=None, error="the parser process crashed on this message")

    def _restart(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = self._new_executor()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def parser_for(archive: Archive, *, expected: int) -> Callable[[Sequence[str]], list[ParseOutcome]]:
    workers = archive.settings.index_workers or (os.cpu_count() or 1)
    if workers <= 1 or expected < _POOL_THRESHOLD * 2:
        return InProcessParser(archive.blobs, archive.settings)
    return PooledParser(archive, workers)


def _parse_now(parse_many: Callable[[Sequence[str]], list[ParseOutcome]]):  # type: ignore[no-untyped-def]
    def start(digests: Sequence[str]) -> Callable[[], list[ParseOutcome]]:
        outcomes = parse_many(digests)
        return lambda: outcomes

    return start


def drain_outbox(
    archive: Archive,
    *,
    parse_many: Callable[[Sequence[str]], list[ParseOutcome]] | None = None,
    on_batch: Callable[[DrainReport], None] | None = None,
    stop: threading.Event | None = None,
) -> DrainReport:
    """Index until the outbox has nothing leasable left (or ``stop`` is set)."""
    from indexer.outbox import backlog

    total = DrainReport(batches=0)
    own_parser = parse_many is None
    if parse_many is None:
        parse_many = parser_for(archive, expected=backlog(archive.read_sessions)[0])
    # With a pool, the next batch is parsed in other processes while this one is indexed.
    start = getattr(parse_many, "start", None) or _parse_now(parse_many)
    sessions, size = archive.sessions, archive.settings.index_batch_size
    pending: PreparedBatch | None = None
    try:
        while True:
            leases = [] if (stop and stop.is_set()) else lease_batch(sessions, size)
            upcoming = prepare_batch(sessions, leases, start) if leases else None
            if pending is not None:
                try:
                    report = complete_batch(sessions, archive.search, pending)
                except BaseException:
                    if upcoming is not None:
                        unlease(sessions, upcoming.leases)
                    raise
                total.indexed += report.indexed
                total.failed += report.failed
                total.batches += 1
                total.errors.extend(report.errors)
                if on_batch:
                    on_batch(report)
                if report.indexed == 0 and report.failed and upcoming is not None:
                    # Everything failed (engine down?): give the next batch back, let the caller back off.
                    unlease(sessions, upcoming.leases)
                    break
            finished, pending = pending, upcoming
            if finished is not None:
                del finished  # its parsed text is garbage now: hand the heap it used back
                release_free_memory()
            if pending is None:
                break
    finally:
        if own_parser and isinstance(parse_many, PooledParser):
            parse_many.close()
    return total


def run_indexer(archive: Archive, stop: threading.Event, wake: threading.Event | None = None) -> None:
    """The embedded profile's background worker: drain, sleep, repeat until stopped.

    ``wake`` (set by ``InProcessNotifier`` after each journal commit) ends the sleep early.

    It always parses in a process pool, even for one message: the server also runs the
    SMTP listener, which a native crash in an extractor must not take down.
    """
    workers = archive.settings.index_workers or (os.cpu_count() or 1)
    parser = PooledParser(archive, workers, inline_below=0)
    try:
        _index_until_stopped(archive, stop, parser, wake)
    finally:
        parser.close()


def _index_until_stopped(archive: Archive, stop: threading.Event, parser: PooledParser, wake: threading.Event | None = None) -> None:
    while not stop.is_set():
        try:
            report = drain_outbox(archive, parse_many=parser, stop=stop)
            if report.errors:
                log.warning("indexing: %d failed; first error: %s", report.failed, report.errors[0])
        except Exception:  # the worker must outlive any one bad batch
            log.exception("indexing batch crashed; retrying after a pause")
            stop.wait(5)
        if wake is None:
            stop.wait(archive.settings.index_poll_seconds)
        else:
            # Cleared after waking and before the next drain, so a commit notified at
            # any point is seen by that drain; the poll still finds other work (leases
            # that expired, retries that came due).
            wake.wait(archive.settings.index_poll_seconds)
            wake.clear()
