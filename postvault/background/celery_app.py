"""The one Celery app of the scale-out profile, configured from Settings (broker: Redis)."""

from __future__ import annotations

import os
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown

from indexer.outbox import LEASE
from postvault.settings import Settings
from postvault.wiring import Archive

# Task names: the notifier in the SMTP process sends tasks by name and never imports them.
INDEX_BATCH = "postvault.index_batch"
KICK_INDEXING = "postvault.kick_indexing"
SWEEP_OUTBOX = "postvault.sweep_outbox"
REINDEX = "postvault.reindex"

QUEUE = "postvault"
SWEEP_INTERVAL = timedelta(seconds=30)

# A batch must end (or be killed) before its lease runs out: otherwise a second worker
# takes the rows over while the first is still indexing them. That would be harmless
# (the index upserts by id, and a row is deleted only for the generation indexed) but
# wasted work. The soft limit leaves the task time to unwind before the hard kill.
BATCH_TIME_LIMIT = LEASE - timedelta(seconds=60)
BATCH_SOFT_TIME_LIMIT = BATCH_TIME_LIMIT - timedelta(seconds=30)
# Redis hands an unacknowledged message to another worker after this long. With
# acks_late a running task's message is unacknowledged, so this must exceed the time
# limit, or Redis would start a second copy of every long batch. A lost task needs no
# redelivery at all: the outbox sweep enqueues work for whatever is still waiting.
VISIBILITY_TIMEOUT = 2 * LEASE


class PostvaultCelery(Celery):
    """The Celery app, carrying the settings it was built from and, in each worker process, one Archive.

    The Archive opens its engines on first use, i.e. in the prefork child that runs a
    task, never in the parent before the fork (a forked database connection or tantivy
    writer would be shared by two processes).
    """

    def __init__(self, settings: Settings, *, sweep_interval: timedelta = SWEEP_INTERVAL) -> None:
        super().__init__("postvault", set_as_current=False, include=["postvault.background.tasks"])
        self.settings = settings
        self.conf.update(celery_config(settings, sweep_interval=sweep_interval))

    @cached_property
    def archive(self) -> Archive:
        return Archive(self.settings)

    def close_archive(self) -> None:
        archive = self.__dict__.pop("archive", None)
        if archive is not None:
            archive.close()


def celery_config(settings: Settings, *, sweep_interval: timedelta = SWEEP_INTERVAL) -> dict[str, Any]:
    seconds = sweep_interval.total_seconds()
    return {
        "broker_url": settings.broker_url,
        # A worker or beat started before Redis waits for it instead of exiting.
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": int(VISIBILITY_TIMEOUT.total_seconds()),
            # An unreachable (not refusing) Redis must not hang a publisher for minutes.
            "socket_connect_timeout": 5,
        },
        "broker_connection_timeout": 5,
        # Plain values only: ids and numbers, never pickled objects.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_default_queue": QUEUE,
        # Acknowledge after the task ran, so a worker that dies mid-task does not lose it...
        "task_acks_late": True,
        # ...but do not requeue a task whose process died: a message that crashes the
        # parser would crash every worker in turn. Its rows keep their lease and are
        # retried when it expires; the sweep enqueues the work again.
        "task_reject_on_worker_lost": False,
        # One task at a time per process: a batch is long, and a prefetched task would
        # wait behind it while another worker sits idle.
        "worker_prefetch_multiplier": 1,
        "task_time_limit": int(BATCH_TIME_LIMIT.total_seconds()),
        "task_soft_time_limit": int(BATCH_SOFT_TIME_LIMIT.total_seconds()),
        # Keep indexing through a Redis restart; an acknowledgement that cannot be sent
        # only means the task may run again, which leases make harmless.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {
            "sweep-outbox": {
                "task": SWEEP_OUTBOX,
                "schedule": seconds,
                # A sweep nobody ran before the next one is due is worthless: drop it
                # rather than let a stopped worker come back to a pile of them.
                "options": {"expires": seconds},
            },
        },
    }


def make_celery(settings: Settings, *, sweep_interval: timedelta = SWEEP_INTERVAL) -> PostvaultCelery:
    """The app for ``settings``; refuses settings without a broker (the embedded profile has none)."""
    if not settings.broker_url:
        raise ValueError("no broker configured: set POSTVAULT_BROKER_URL (redis://host:port/db) for the scale-out profile")
    return PostvaultCelery(settings, sweep_interval=sweep_interval)


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
    """Run Celery beat (the outbox sweep) until stopped. Exactly one should run per archive."""
    schedule_file.parent.mkdir(parents=True, exist_ok=True)
    app.Beat(schedule=str(schedule_file), loglevel=loglevel, max_interval=5).run()


__all__ = [
    "INDEX_BATCH",
    "KICK_INDEXING",
    "QUEUE",
    "REINDEX",
    "SWEEP_INTERVAL",
    "SWEEP_OUTBOX",
    "PostvaultCelery",
    "celery_config",
    "make_celery",
    "run_beat",
    "run_worker",
]
