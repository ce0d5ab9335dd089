"""The periodic jobs of both profiles in one table, and the in-process scheduler that runs it on the embedded profile.

Celery beat runs the same table on the scale-out profile (``postvault.background.celery_app``
builds its schedule from ``PERIODIC_JOBS``), so a job is written once and has one
interval, whichever profile runs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from postvault.wiring import Archive

log = logging.getLogger(__name__)


class JobContext(Protocol):
    """What a periodic job may use: the wired archive, and a way to ask for indexing.

    Each profile implements it once: in-process it wakes the indexer thread of
    ``postvault serve``; on Celery it tops the broker's queue up with ``index_batch`` tasks.
    """

    @property
    def archive(self) -> Archive: ...

    def request_indexing(self) -> int:
        """Make sure the outbox's free rows will be indexed soon; returns the units of work requested."""
        ...


@dataclass(frozen=True)
class PeriodicJob:
    """One periodic job: a name (a verb phrase; its Celery task is ``postvault.<name>``), how often, and what it does."""

    name: str
    interval: timedelta
    run: Callable[[JobContext], object]

    @property
    def task_name(self) -> str:
        return f"postvault.{self.name}"


def sweep_outbox(context: JobContext) -> int:
    """Re-request work whose notice was lost (broker restarted, worker killed, Redis down at ingest)."""
    return context.request_indexing()


SWEEP_INTERVAL = timedelta(seconds=30)

PERIODIC_JOBS: tuple[PeriodicJob, ...] = (
    PeriodicJob("sweep_outbox", SWEEP_INTERVAL, sweep_outbox),
)


def with_interval(jobs: Iterable[PeriodicJob], name: str, interval: timedelta) -> tuple[PeriodicJob, ...]:
    """``jobs`` with job ``name`` run every ``interval`` instead (refuses a name not in the table)."""
    jobs = tuple(jobs)
    if name not in {job.name for job in jobs}:
        raise KeyError(f"no periodic job named {name!r}; known: {', '.join(job.name for job in jobs)}")
    if interval <= timedelta(0):
        raise ValueError(f"the interval of {name} must be positive, not {interval}")
    return tuple(replace(job, interval=interval) if job.name == name else job for job in jobs)


class Scheduler:
    """Runs periodic jobs on a thread of the embedded profile's ``postvault serve``.

    A job first runs one interval after the start, then every interval after it began,
    skipping (not queueing) runs it missed while it was busy: the same rule beat applies.
    A job that raises is logged and runs again at its next time; it never stops the
    scheduler or the other jobs.
    """

    def __init__(self, jobs: Sequence[PeriodicJob], context: JobContext, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.jobs = tuple(jobs)
        self._context = context
        self._clock = clock
        self.runs: dict[str, int] = {job.name: 0 for job in self.jobs}
        self.failures: dict[str, int] = {job.name: 0 for job in self.jobs}

    def run(self, stop: threading.Event) -> None:
        """Run jobs when due until ``stop`` is set."""
        start = self._clock()
        due = {job.name: start + job.interval.total_seconds() for job in self.jobs}
        while not stop.is_set():
            if not self.jobs:
                stop.wait()
                return
            now = self._clock()
            for job in self.jobs:
                if due[job.name] <= now and not stop.is_set():
                    self._run_one(job)
                    period = job.interval.total_seconds()
                    missed = int((self._clock() - due[job.name]) // period)
                    due[job.name] += period * (missed + 1)
            stop.wait(max(0.0, min(due.values()) - self._clock()))

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="scheduler", daemon=True)
        thread.start()
        return thread

    def _run_one(self, job: PeriodicJob) -> None:
        try:
            job.run(self._context)
        except Exception:  # one failing job must not stop the others, nor the next run of itself
            self.failures[job.name] += 1
            log.exception("periodic job %s failed; it runs again in %s", job.name, job.interval)
        finally:
            self.runs[job.name] += 1


@dataclass(frozen=True)
class InProcessJobs:
    """The embedded profile's JobContext: indexing requests wake the indexer thread."""

    archive: Archive
    wake: threading.Event

    def request_indexing(self) -> int:
        self.wake.set()
        return 1


__all__ = ["PERIODIC_JOBS", "SWEEP_INTERVAL", "InProcessJobs", "JobContext", "PeriodicJob", "Scheduler",
           "sweep_outbox", "with_interval"]
