"""The broker side of the scale-out profile: task names, the queue, and the Celery configuration publishers and workers share.

It knows nothing of the archive or the periodic jobs, so that whatever only publishes
tasks (the notifier of the SMTP process and the importer) depends on nothing above it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery

from indexer.outbox import LEASE
from postvault.settings import Settings

# Task names: publishers (the SMTP process, the importer) send tasks by name and never
# import the tasks, so they need neither the worker's app nor the archive it wires.
INDEX_BATCH = "postvault.index_batch"
REINDEX = "postvault.reindex"
FINISH_REINDEX = "postvault.finish_reindex"

QUEUE = "postvault"

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


def celery_config(settings: Settings) -> dict[str, Any]:
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
    }


def require_broker(settings: Settings) -> None:
    if not settings.broker_url:
        raise ValueError("no broker configured: set POSTVAULT_BROKER_URL (redis://host:port/db) for the scale-out profile")


def make_publisher(settings: Settings) -> Celery:
    """A Celery app that only sends tasks by name: what the SMTP process and the importer need."""
    require_broker(settings)
    app = Celery("postvault", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


__all__ = [
    "BATCH_SOFT_TIME_LIMIT",
    "BATCH_TIME_LIMIT",
    "FINISH_REINDEX",
    "INDEX_BATCH",
    "QUEUE",
    "REINDEX",
    "VISIBILITY_TIMEOUT",
    "celery_config",
    "make_publisher",
    "require_broker",
]
