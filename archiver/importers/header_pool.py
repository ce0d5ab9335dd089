"""Read the header facts of import batches in a helper process, while the importer reads and journals."""

from __future__ import annotations

import functools
import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from archiver.headers import HeaderFacts, read_header_facts

log = logging.getLogger(__name__)

# Smaller batches are read in the caller: handing them over costs more than it saves.
_MIN_BATCH = 16
_CHUNK = 50

# (raw messages) -> a thunk that returns their facts, in order.
StartFacts = Callable[[Sequence[bytes]], Callable[[], list[HeaderFacts]]]


def _read_chunk(raws: list[bytes]) -> list[HeaderFacts]:
    return [read_header_facts(raw) for raw in raws]


def _read_here(raws: Sequence[bytes]) -> list[HeaderFacts]:
    return [read_header_facts(raw) for raw in raws]


class HeaderFactsPool:
    """One helper process that parses header blocks for the journal.

    An import's own process reads files, journals them and (with indexing on) feeds the
    search engine, all under one interpreter lock; parsing each header block with the
    stdlib parser was the largest share of that on small mail. Here it runs beside them,
    a batch ahead. ``read_header_facts`` never raises, so the only failure is the process
    itself dying: then that batch, and every later one, is read in the caller.
    """

    def __init__(self) -> None:
        self._executor: ProcessPoolExecutor | None = None
        self._broken = False

    def start(self, raws: Sequence[bytes]) -> Callable[[], list[HeaderFacts]]:
        """Begin reading the facts of ``raws`` now; the returned thunk waits for them."""
        if self._broken or len(raws) < _MIN_BATCH:
            return functools.partial(_read_here, raws)
        chunks = [list(raws[at : at + _CHUNK]) for at in range(0, len(raws), _CHUNK)]
        try:
            executor = self._executor or self._start_executor()
            pending = [executor.submit(_read_chunk, chunk) for chunk in chunks]
        except (BrokenProcessPool, OSError, RuntimeError) as error:
            self._give_up(error)
            return functools.partial(_read_here, raws)
        return functools.partial(self._wait, raws, pending)

    def _wait(self, raws: Sequence[bytes], pending: list[Future[list[HeaderFacts]]]) -> list[HeaderFacts]:
        try:
            return [facts for future in pending for facts in future.result()]
        except (BrokenProcessPool, OSError, RuntimeError) as error:
            self._give_up(error)
            return _read_here(raws)

    def _start_executor(self) -> ProcessPoolExecutor:
        # forkserver, as the parser pool: the importer runs threads (tantivy's among them)
        # that a plain fork would copy in whatever state they are in.
        self._executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("forkserver"))
        return self._executor

    def _give_up(self, error: BaseException) -> None:
        if not self._broken:
            log.warning("the header reader process failed (%s); reading headers in the importer instead", error)
        self._broken = True

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


__all__ = ["HeaderFactsPool", "StartFacts"]
