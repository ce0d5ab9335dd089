"""The worker side of the scale-out profile: the Celery app that runs tasks, each worker process with one Archive."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown

from postvault.background.broker import INDEX_BATCH, QUEUE, REINDEX, celery_config, require_broker
from postvault.schedule import PERIODIC_JOBS, PeriodicJob
from postvault.settings import Settings
from postvault.wiring import Archive

SWEEP_OUTBOX = next(job.task_name for job in PERIODIC_JOBS if job.name == "sweep_outbox")


class PostvaultCelery(Celery):
    """The Celery app, carrying the settings it was built from and, in each worker process, one Archive.

    The Archive opens its engines on first use, i.e. in the prefork child that runs a
    task, never in the parent before the fork (a forked database connection or tantivy
    writer would be shared by two processes).
    """

    def __init__(self, settings: Settings, *, jobs: Sequence[PeriodicJob] = PERIODIC_JOBS) -> None:
        super().__init__("postvault", set_as_current=False, include=["postvault.background.tasks"])
        self.settings = settings
        self.conf.update(celery_config(settings), beat_schedule=beat_schedule(jobs))

    @cached_property
    def archive(self) -> Archive:
        return Archive(self.settings)

    def close_archive(self) -> None:
        archive = self.__dict__.pop("archive", None)
        if archive is not None:
            archive.close()


def beat_schedule(jobs: Sequence[PeriodicJob] = PERIODIC_JOBS) -> dict[str, dict[str, Any]]:
    """Celery beat's schedule: one entry per row of the periodic-job table, sending the job's task."""
    schedule = {}
    for job in jobs:
        seconds = job.interval.total_seconds()
        schedule[job.name] = {
            "task": job.task_name,
            "schedule": seconds,
            # A run nobody took before the next one is due is worthless: drop it rather
            # than let a stopped worker come back to a pile of them.
            "options": {"expires": seconds},
        }
    return schedule


def make_celery(settings: Settings, *, jobs: Sequence[PeriodicJob] = PERIODIC_JOBS) -> PostvaultCelery:
    """The app for ``settings``; refuses settings without a broker (the embedded profile has none)."""
    require_broker(settings)
    return PostvaultCelery(settings, jobs=jobs)


def run_worker(app: PostvaultCelery, *, concurrency: int, pool: str = "prefork", loglevel: str = "INFO") -> None:
    """Run a worker for ``app`` in this process until it is stopped (TERM: warm shutdown)."""

    def _close_archive(**_kwargs: object) -> None:
        app.close_archive()  # releases the tantivy writer lock and database connections

    worker_process_shutdown.connect(_close_archive, weak=False)
    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        f"--loglevel={loglevel}",
        f"--hostname=postvault.{os.getpid()}@%h",  # unique per process: several may share a host
        f"--queues={QUEUE}",
        # No worker-to-worker chatter: tasks coordinate through outbox leases, not Celery.
        "--without-mingle",
        "--without-gossip",
    ]
    app.worker_main(argv)


def run_beat(app: PostvaultCelery, *, schedule_file: Path, loglevel: str = "INFO") -> None:
    """Run Celery beat (the periodic jobs of postvault.schedule) until stopped. Exactly one should run per archive."""
    schedule_file.parent.mkdir(parents=True, exist_ok=True)
    app.Beat(schedule=str(schedule_file), loglevel=loglevel, max_interval=5).run()


__all__ = [
    "INDEX_BATCH",
    "QUEUE",
    "REINDEX",
    "SWEEP_OUTBOX",
    "PostvaultCelery",
    "beat_schedule",
    "make_celery",
    "run_beat",
    "run_worker",
]
