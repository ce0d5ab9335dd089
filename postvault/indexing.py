"""Run the outbox drain in-process: parse in this process or a pool, index, repeat."""

from __future__ import annotations

import ctypes
import functools
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from collections import deque
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from concurrent.futures.process import BrokenProcessPool

from sqlalchemy.orm import Session, sessionmaker

from indexer.outbox import (
    DrainReport,
    ParseOutcome,
    PreparedBatch,
    complete_batch,
    give_up_on_hung_parse,
    lease_batch,
    parse_now,
    prepare_batch,
    unlease,
)
from postvault.memory import release_free_memory
from postvault.settings import Settings
from postvault.wiring import Archive, blobstore_from_url
from storage.blobstore import BlobCorruptError, BlobNotFoundError, BlobStore, BlobStoreError

log = logging.getLogger(__name__)

# Below this many messages a pool costs more (pickling, wake-ups) than it saves.
_POOL_THRESHOLD = 64
# Messages sent to a pool process at a time: fewer round trips than one by one.
_CHUNK = 8
# The exit status of a process that stopped itself because a parse would not stop (EX_TEMPFAIL).
EXIT_PARSE_HUNG = 75


class ParseTimeoutError(Exception):
    """A message took longer to parse than ``parse_timeout_seconds``."""


def _timed_out(digest: str, seconds: float, *, how: str) -> ParseOutcome:
    return ParseOutcome(sha256=digest, parsed=None, error=f"parsing took longer than {seconds:g} s; {how}")


def _limits(settings: Settings):  # type: ignore[no-untyped-def]
    from indexer.extraction import ExtractionLimits

    return ExtractionLimits.from_settings(settings)


def parse_blob(blobs: BlobStore, digest: str, limits) -> ParseOutcome:  # type: ignore[no-untyped-def]
    return parse_fetched(digest, lambda: blobs.get(digest), limits)


def parse_fetched(digest: str, fetch: Callable[[], bytes], limits, *, watchdog: _Watchdog | None = None) -> ParseOutcome:  # type: ignore[no-untyped-def]
    """Parse the blob ``fetch`` returns; a blob that cannot be read, or a parse that fails or
    overruns ``watchdog``'s deadline, becomes an outcome, not an exception."""
    try:
        raw = fetch()
    except (BlobNotFoundError, BlobCorruptError) as error:
        return ParseOutcome(sha256=digest, parsed=None, error=str(error))
    except BlobStoreError as error:  # the store is down or refusing: retried, not counted against the message
        return ParseOutcome(sha256=digest, parsed=None, error=str(error), store_unavailable=True)
    except Exception as error:  # outside the store's contract: this message's failure, not the batch's
        return ParseOutcome(sha256=digest, parsed=None, error=f"reading the blob failed: {type(error).__name__}: {error}")
    if watchdog is None:
        return _parse_raw(digest, raw, limits)
    return watchdog.bound(digest, lambda: _parse_raw(digest, raw, limits))


def _parse_raw(digest: str, raw: bytes, limits) -> ParseOutcome:  # type: ignore[no-untyped-def]
    from indexer.parsing import parse_message

    try:
        return ParseOutcome(sha256=digest, parsed=parse_message(raw, limits))
    except ParseTimeoutError:
        raise
    except Exception as error:  # parse_message means never to raise; if it does, it is this message's failure
        return ParseOutcome(sha256=digest, parsed=None, error=f"parsing failed: {type(error).__name__}: {error}")


class _Watchdog:
    """Bounds each parse of an in-process parser, as a pool bounds it by killing the worker.

    At the deadline it raises ``ParseTimeoutError`` in the parsing thread, which stops any
    parse that is running Python code. Native code (an extractor's C library) cannot be
    interrupted in its own process: if the parse is still running after a grace period,
    ``on_hang`` records it and the process exits with ``EXIT_PARSE_HUNG``. A Celery
    worker's pool replaces the process; any other process is restarted by its supervisor.
    """

    def __init__(self, timeout: float, on_hang: Callable[[str], None] | None) -> None:
        self.timeout = timeout
        self._grace = min(max(timeout, 1.0), 10.0)
        self._on_hang = on_hang
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._current: tuple[str, int, float] | None = None  # digest, thread, deadline
        self._interrupted = False
        self._closed = False
        threading.Thread(target=self._watch, name="parse-watchdog", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._changed.notify()

    def bound(self, digest: str, parse: Callable[[], ParseOutcome]) -> ParseOutcome:
        """``parse()``, or the outcome of a parse that overran and was interrupted."""
        self.start(digest)
        try:
            outcome = parse()
            self.stop()
        except ParseTimeoutError:  # wherever it landed, even just after the parse: it took that long
            self.stop()
            outcome = _timed_out(digest, self.timeout, how="it was interrupted")
        return outcome

    def start(self, digest: str) -> None:
        with self._lock:
            self._current = (digest, threading.get_ident(), time.monotonic() + self.timeout)
            self._interrupted = False
            # No notify: the watcher wakes within one timeout anyway, before this deadline.
            # Waking it per message cost a thread switch each (measured: a third more CPU
            # on small messages).

    def stop(self) -> None:
        """Idempotent; takes back an interruption raised too late to land inside the parse."""
        with self._lock:
            if self._current is not None and self._interrupted:
                _raise_in_thread(self._current[1], None)
            self._current = None
            self._interrupted = False

    def _watch(self) -> None:
        with self._lock:
            while True:
                if self._current is None:
                    if self._closed:
                        return
                    self._changed.wait(self.timeout)
                    continue
                digest, thread, deadline = self._current
                now = time.monotonic()
                if now < deadline:
                    self._changed.wait(deadline - now)
                elif not self._interrupted:
                    self._interrupted = True
                    _raise_in_thread(thread, ParseTimeoutError)
                    self._current = (digest, thread, now + self._grace)
                else:
                    break
        log.critical("parsing message %s has not stopped %g s after its deadline of %g s; stopping this process",
                     digest, self._grace, self.timeout)
        try:
            if self._on_hang is not None:
                self._on_hang(digest)
        finally:
            logging.shutdown()
            os._exit(EXIT_PARSE_HUNG)


def _raise_in_thread(thread: int, error: type[BaseException] | None) -> None:
    """Raise ``error`` in ``thread`` at its next bytecode (None takes a pending one back)."""
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    set_async_exc.argtypes = [ctypes.c_ulong, ctypes.py_object if error is not None else ctypes.c_void_p]
    set_async_exc(thread, error)


class InProcessParser:
    """Parses in the calling process: for small batches, the embedded trickle and Celery tasks.

    Each parse is bounded by ``parse_timeout_seconds`` (see ``_Watchdog``); a parse that
    will not stop is recorded in the outbox of ``sessions``, when given, before the
    process stops.

    With ``prefetch`` > 0 it reads up to that many blobs ahead on threads while it parses:
    from S3 a GET is a network round trip (a third of a Celery worker's time when read one
    at a time), and threads overlap those waits with the parsing. The window bounds the
    memory held by blobs fetched but not yet parsed.
    """

    def __init__(
        self,
        blobs: BlobStore,
        settings: Settings,
        *,
        prefetch: int = 0,
        sessions: sessionmaker[Session] | None = None,
    ) -> None:
        self._blobs = blobs
        self._limits = _limits(settings)
        self._prefetch = prefetch
        self._sessions = sessions  # where a parse that will not stop is recorded (see _Watchdog)
        self._timeout = settings.parse_timeout_seconds
        self._watchdog: _Watchdog | None = None
        self._batch: Sequence[str] = ()

    def __call__(self, digests: Sequence[str]) -> list[ParseOutcome]:
        self._batch = digests
        if self._timeout > 0:
            self._watchdog = _Watchdog(self._timeout, self._record_hang)
        try:
            return self._parse_all(digests)
        finally:
            if self._watchdog is not None:
                self._watchdog.close()
            self._watchdog, self._batch = None, ()

    def _parse_all(self, digests: Sequence[str]) -> list[ParseOutcome]:
        if self._prefetch <= 0 or len(digests) <= 1:
            return [self._parse_bounded(digest, functools.partial(self._blobs.get, digest)) for digest in digests]
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
                outcomes.append(self._parse_bounded(digest, fetched.result))
        return outcomes

    def _parse_bounded(self, digest: str, fetch: Callable[[], bytes]) -> ParseOutcome:
        # Reading the blob is bounded by the store's own timeouts; the watchdog times the parse.
        return parse_fetched(digest, fetch, self._limits, watchdog=self._watchdog)

    def _record_hang(self, digest: str) -> None:
        if self._sessions is not None:
            give_up_on_hung_parse(
                self._sessions, digest, [d for d in self._batch if d != digest],
                error=_timed_out(digest, self._timeout, how="its worker process was stopped").error,
            )


# What the fork server imports before forking workers ("__main__" is multiprocessing's default).
_WORKER_PRELOAD = ["__main__", "postvault.indexing", "indexer.parsing"]

# Per-process state of pool workers, set once by the initializer (each worker opens its own store).
_worker_blobs: BlobStore | None = None
_worker_limits = None
_worker_watchdog: _Watchdog | None = None
_worker_parsed = 0
# A parser process gives its free heap back this often (see postvault.memory): often
# enough that one huge attachment does not leave it big, rarely enough to cost nothing
# measurable (a trim with little to free takes microseconds).
_TRIM_EVERY = 16


def _init_worker(blobstore_url: str, settings_json: str) -> None:
    global _worker_blobs, _worker_limits, _worker_watchdog
    # Ctrl-C reaches the whole process group. Stopping is the parent's job (it shuts the
    # pool down after the batch in hand); a worker interrupted mid-parse would only print
    # a KeyboardInterrupt traceback and look like a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = Settings.model_validate_json(settings_json)
    _worker_blobs = blobstore_from_url(blobstore_url)
    _worker_limits = _limits(settings)
    # In the worker, a parse stuck in native code ends the process, which the pool sees at
    # once; the parent's own deadline (a chunk's allowance) is the backstop.
    _worker_watchdog = _Watchdog(settings.parse_timeout_seconds, None) if settings.parse_timeout_seconds > 0 else None


def _ready(_: int) -> int:
    """A task that only proves a parser process has started (see ``PooledParser.warm_up``)."""
    time.sleep(0.05)  # long enough that each of the pool's processes takes one
    return os.getpid()


def _succeeded(future: Future[list[ParseOutcome]]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _parse_chunk(parse_in_worker: Callable[[str], ParseOutcome], digests: list[str]) -> list[ParseOutcome]:
    """Runs in a pool process: parse each message within the time limit."""
    watchdog = _worker_watchdog
    if watchdog is None:
        return [parse_in_worker(digest) for digest in digests]
    return [watchdog.bound(digest, functools.partial(parse_in_worker, digest)) for digest in digests]


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
        self._inline = InProcessParser(archive.blobs, archive.settings, sessions=archive.sessions)
        self._timeout = archive.settings.parse_timeout_seconds
        # A module-level function (pickled by name); tests pass one that crashes on purpose.
        self._parse_in_worker = parse_in_worker or _parse_in_worker
        self._inline_below = inline_below
        self._workers = workers
        self._initargs = (archive.settings.resolved_blobstore_url(), archive.settings.model_dump_json())
        self._executor = self._new_executor()
        self._generation = 0  # counts restarts: a future from an earlier pool failed with it, not for itself

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

    def warm_up(self) -> None:
        """Start the fork server and every parser process now, not at the first message.

        Until its imports are done the fork server does not ignore SIGINT: a Ctrl-C (sent
        to the whole process group) in that window killed it with a traceback and left
        the pool broken. Started here, that window lies inside the server's own start-up.
        """
        list(self._executor.map(_ready, range(self._workers)))

    def __call__(self, digests: Sequence[str]) -> list[ParseOutcome]:
        return self.start(digests)()

    def start(self, digests: Sequence[str]) -> Callable[[], list[ParseOutcome]]:
        """Begin parsing in the pool now; the returned thunk waits for the outcomes."""
        if len(digests) < self._inline_below:
            outcomes = self._inline(digests)
            return lambda: outcomes
        chunks = [list(digests[at : at + _CHUNK]) for at in range(0, len(digests), _CHUNK)]
        try:
            pending = [self._submit(chunk) for chunk in chunks]
        except BrokenProcessPool:
            self._restart()
            pending = [self._submit(chunk) for chunk in chunks]
        return functools.partial(self._wait, chunks, pending, self._generation)

    def _submit(self, chunk: list[str]) -> Future[list[ParseOutcome]]:
        return self._executor.submit(_parse_chunk, self._parse_in_worker, chunk)

    def _wait(self, chunks: list[list[str]], pending: list[Future[list[ParseOutcome]]], generation: int) -> list[ParseOutcome]:
        """The outcomes in order, each chunk given ``timeout`` per message from when it must have started.

        The pool takes chunks in order, so a chunk has started at the latest when every
        chunk before it has finished (this thunk is called after the previous batch's, whose
        chunks were queued first). Past that allowance a message is hung: the workers are
        killed and whatever did not finish is parsed one message at a time to find it.
        (Each worker also stops a parse at the time limit itself; this is the backstop.)
        """
        outcomes: list[ParseOutcome] = []
        started_by = time.monotonic()
        number = 0
        while number < len(chunks):
            chunk, future = chunks[number], pending[number]
            allowance = len(chunk) * self._timeout if self._timeout > 0 else None
            try:
                wait = None if allowance is None else max(0.0, started_by + allowance - time.monotonic())
                outcomes.extend(future.result(timeout=wait))
            except FutureTimeoutError:
                log.error("a parser process has spent more than %g s per message on a chunk; stopping the pool's "
                          "processes and parsing the rest one message at a time to find the cause", self._timeout)
                self._kill_workers()
                return outcomes + self._rest_isolated(chunks[number:], pending[number:])
            except (BrokenProcessPool, CancelledError):
                if generation != self._generation:
                    # The pool was restarted for another batch's crash or hang after these
                    # were queued: not their fault. Queue what did not finish on the new pool.
                    generation = self._generation
                    pending[number:] = [f if _succeeded(f) else self._submit(c) for c, f in zip(chunks[number:], pending[number:])]
                    started_by = time.monotonic()
                    continue
                log.error("a parser process died; parsing the rest of this batch one message at a time to find the cause")
                self._restart()
                return outcomes + self._rest_isolated(chunks[number:], pending[number:])
            except Exception:  # a worker that raised (say, an outcome it could not pickle): find the message
                log.exception("parsing a chunk failed; parsing it one message at a time")
                outcomes.extend(self._parse_isolated(digest) for digest in chunk)
            number += 1
            started_by = time.monotonic()
        return outcomes

    def _rest_isolated(self, chunks: list[list[str]], pending: list[Future[list[ParseOutcome]]]) -> list[ParseOutcome]:
        outcomes: list[ParseOutcome] = []
        for chunk, future in zip(chunks, pending):
            if _succeeded(future):
                outcomes.extend(future.result())  # finished before the pool was stopped
            else:
                outcomes.extend(self._parse_isolated(digest) for digest in chunk)
        return outcomes

    def _parse_isolated(self, digest: str) -> ParseOutcome:
        timeout = self._timeout if self._timeout > 0 else None
        try:
            return self._executor.submit(_parse_chunk, self._parse_in_worker, [digest]).result(timeout=timeout)[0]
        except BrokenProcessPool:
            self._restart()
            return ParseOutcome(sha256=digest, parsed=None, error="the parser process crashed on this message")
        except FutureTimeoutError:
            self._kill_workers()
            return _timed_out(digest, self._timeout, how="its parser process was killed")
        except Exception as error:
            return ParseOutcome(sha256=digest, parsed=None, error=f"parsing failed: {type(error).__name__}: {error}")

    def _kill_workers(self) -> None:
        """Kill every pool process (the executor cannot say which one runs which message), then start anew."""
        # ProcessPoolExecutor.kill_workers arrived in Python 3.14; before it, only the
        # executor's own table names its processes.
        for process in list(getattr(self._executor, "_processes", {}).values()):
            process.kill()
        self._restart()

    def _restart(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = self._new_executor()
        self._generation += 1

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def parser_for(archive: Archive, *, expected: int) -> Callable[[Sequence[str]], list[ParseOutcome]]:
    workers = archive.settings.index_workers or (os.cpu_count() or 1)
    if workers <= 1 or expected < _POOL_THRESHOLD * 2:
        return InProcessParser(archive.blobs, archive.settings, sessions=archive.sessions)
    return PooledParser(archive, workers)


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
    start = getattr(parse_many, "start", None) or parse_now(parse_many)
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
                total.deferred += report.deferred
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


def run_indexer(archive: Archive, stop: threading.Event, wake: threading.Event | None = None,
                ready: threading.Event | None = None) -> None:
    """The embedded profile's background worker: drain, sleep, repeat until stopped.

    ``wake`` (set by ``InProcessNotifier`` after each journal commit) ends the sleep early;
    ``ready`` is set once the parser processes are up.

    It always parses in a process pool, even for one message: the server also runs the
    SMTP listener, which a native crash in an extractor must not take down.
    """
    workers = archive.settings.index_workers or (os.cpu_count() or 1)
    parser = PooledParser(archive, workers, inline_below=0)
    try:
        parser.warm_up()
        if ready is not None:
            ready.set()
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
