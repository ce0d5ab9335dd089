"""Celery tasks: index the outbox a batch at a time, sweep it for lost work, rebuild the index.

The outbox and its leases are the source of truth, not the broker. A task says only
"there may be work": ``index_batch`` leases whatever rows no live worker holds (FOR
UPDATE SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE on SQLite), so copies running at once
take disjoint rows, a copy that finds nothing returns at once, and a row leaves the
outbox only for the generation that was indexed. Duplicate tasks therefore cost a query,
never a double or a lost index entry; lost tasks cost latency until the next sweep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from celery import shared_task
from celery.signals import worker_init

from indexer.outbox import backlog, index_leased, leasable, lease_batch, utc_age
from indexer.search_backend import IndexLockedError
from postvault.background.broker import FINISH_REINDEX, INDEX_BATCH, QUEUE, REINDEX
from postvault.indexing import InProcessParser
from postvault.memory import release_free_memory
from postvault.schedule import PERIODIC_JOBS, PeriodicJob

if TYPE_CHECKING:
    from celery import Task

    from postvault.background.celery_app import PostvaultCelery
    from postvault.wiring import Archive

log = logging.getLogger(__name__)

# The most index_batch tasks one sweep keeps waiting in the queue. More only sit in
# Redis: each task that runs a full batch queues its own successor.
SWEEP_MAX_TASKS = 16
# Blobs read ahead while a task parses (see InProcessParser): enough to hide S3 round trips
# behind parsing, few enough that a batch of large messages stays a few hundred MB at most.
BLOB_PREFETCH = 8


@shared_task(bind=True, name=INDEX_BATCH)
def index_batch(self: Task) -> dict[str, int]:
    """Lease one outbox batch and index it, with the functions the in-process drain uses.

    Parsing runs in this process: in a Celery worker, parallelism is the worker's
    concurrency. A full batch suggests more is waiting, so the task queues its successor
    and a backlog drains without waiting for the sweep.
    """
    app: PostvaultCelery = self.app
    archive = app.archive
    size = archive.settings.index_batch_size
    # Sorted: transactions that lock the same outbox rows lock them in one order, so
    # PostgreSQL never has to break a deadlock between two of them.
    leases = sorted(lease_batch(archive.sessions, size), key=lambda lease: lease.message_id)
    if not leases:
        return {"leased": 0, "indexed": 0, "failed": 0}
    try:
        parser = InProcessParser(archive.blobs, archive.settings, prefetch=BLOB_PREFETCH, sessions=archive.sessions)
        report = index_leased(archive.sessions, archive.search, leases, parser)
    except IndexLockedError as error:
        # The rows were handed back at once; whoever holds the index indexes them.
        log.warning("index_batch: %s", error)
        return {"leased": len(leases), "indexed": 0, "failed": 0}
    release_free_memory()  # the batch's parsed text is garbage now: keep the worker process small
    if report.errors:
        log.warning("index_batch: %d of %d failed; first error: %s", report.failed, len(leases), report.errors[0])
    if len(leases) == size and report.indexed:
        app.send_task(INDEX_BATCH)
    return {"leased": len(leases), "indexed": report.indexed, "failed": report.failed}


@worker_init.connect
def preload_for_index_batch(sender: object = None, **_kwargs: object) -> None:
    """In the worker's main process, before the pool forks: import what ``index_batch`` runs
    and build the OpenSearch word patterns, so that every prefork child starts with both
    instead of paying for them in its first batch (and again in each child that replaces one)."""
    import indexer.parsing  # noqa: F401  (MIME, text and attachment extraction)

    settings = getattr(getattr(sender, "app", None), "settings", None)
    if settings is not None and settings.resolved_search_url().startswith("opensearch"):
        from indexer.backends import opensearch_backend, opensearch_mapping  # noqa: F401

        opensearch_mapping.prepare()
    if settings is not None and settings.resolved_blobstore_url().startswith("s3:"):
        import storage.s3  # noqa: F401


@dataclass(frozen=True)
class CeleryJobs:
    """The scale-out profile's JobContext: indexing requests top the broker's queue up with index_batch tasks."""

    app: PostvaultCelery

    @property
    def archive(self) -> Archive:
        return self.app.archive

    def request_indexing(self) -> int:
        queued = queue_for_backlog(self.app, max_tasks=SWEEP_MAX_TASKS)
        if queued:
            waiting, oldest = backlog(self.archive.read_sessions)
            age = utc_age(oldest)
            log.info("outbox sweep: %d message(s) waiting, the oldest for %.0f s; queued %d index_batch task(s)",
                     waiting, age.total_seconds() if age else 0, queued)
        return queued


def _periodic_task(job: PeriodicJob) -> Task:
    """The Celery task that beat sends for ``job`` (see postvault.background.celery_app.beat_schedule)."""

    @shared_task(bind=True, name=job.task_name)
    def run(self: Task) -> object:
        return job.run(CeleryJobs(self.app))

    run.__doc__ = job.run.__doc__
    return run


# One task per row of the periodic-job table, registered under the job's task name.
PERIODIC_TASKS: dict[str, Task] = {job.name: _periodic_task(job) for job in PERIODIC_JOBS}


# Reindexing a large archive takes longer than a batch; acks_late stays off because
# Redis would hand a long-running unacknowledged task to a second worker.
@shared_task(bind=True, name=REINDEX, acks_late=False, time_limit=3600, soft_time_limit=3540)
def reindex(self: Task) -> int:
    """Empty the index and put every catalogued message on the outbox; the workers rebuild it."""
    from indexer.reindex import start_reindex

    from indexer.search_backend import SupportsRebuild

    app: PostvaultCelery = self.app
    queued = start_reindex(app.archive.sessions, app.archive.search)
    queue_for_backlog(app, max_tasks=SWEEP_MAX_TASKS)
    if isinstance(app.archive.search, SupportsRebuild):
        # The rebuild fills beside the live index; something must swap it in once the
        # workers have drained the outbox, or it would take every write forever.
        app.send_task(FINISH_REINDEX, args=[queued], countdown=REINDEX_CHECK_SECONDS)
    return queued


# How often a Celery reindex looks whether the workers have drained what it queued.
REINDEX_CHECK_SECONDS = 10.0
# Engine errors while swapping are retried this many checks before the rebuild is dropped.
REINDEX_SWAP_TRIES = 30


@shared_task(bind=True, name=FINISH_REINDEX)
def finish_reindex_when_drained(self: Task, queued: int, tries: int = 0) -> str:
    """Swap a side-by-side rebuild in once every message it queued is indexed or has failed for itself.

    Until then (messages waiting, being indexed, or handed back by an outage) it checks
    again later: swapping earlier would hide those messages from search. A rebuild that
    holds fewer documents than expected, or that the engine keeps refusing to swap, is
    dropped; the live index was never touched and keeps serving.
    """
    from indexer.outbox import unindexed
    from indexer.reindex import abort_reindex, finish_reindex
    from indexer.search_backend import SearchBackendError

    app: PostvaultCelery = self.app
    archive = app.archive
    left = unindexed(archive.read_sessions)
    if left.waiting or left.in_progress or left.retrying:
        app.send_task(FINISH_REINDEX, args=[queued, tries], countdown=REINDEX_CHECK_SECONDS)
        return ""
    try:
        swapped = finish_reindex(archive.search, expected=queued - left.failed)
    except SearchBackendError as error:
        if tries + 1 < REINDEX_SWAP_TRIES and "fewer than" not in str(error):
            log.warning("reindex: the rebuilt index could not be swapped in yet (%s); trying again", error)
            app.send_task(FINISH_REINDEX, args=[queued, tries + 1], countdown=REINDEX_CHECK_SECONDS)
            return ""
        log.error("reindex: the rebuilt index was not swapped in: %s; dropping it, the live index stays", error)
        try:
            abort_reindex(archive.search)
        except SearchBackendError as abort_error:
            log.error("reindex: the unfinished rebuild could not be dropped either: %s", abort_error)
        return ""
    log.info("reindex: the rebuilt index %s is now live (%d message(s) queued, %d failed for themselves)",
             swapped, queued, left.failed)
    return swapped


def queue_for_backlog(app: PostvaultCelery, *, max_tasks: int) -> int:
    """Top the queue up to one index_batch per leasable batch of the outbox (at most ``max_tasks``).

    Counting what already waits in the queue makes this idempotent: a second sweep right
    after the first queues nothing, and a stopped worker does not come back to a pile.
    """
    batches = -(-leasable(app.archive.read_sessions) // app.settings.index_batch_size)
    missing = min(batches, max_tasks) - queued_tasks(app)
    for _ in range(max(0, missing)):
        app.send_task(INDEX_BATCH)
    return max(0, missing)


def queued_tasks(app: PostvaultCelery) -> int:
    """Messages waiting in the broker's queue (not those a worker has already taken)."""
    with app.connection_for_read() as connection:
        return int(connection.default_channel.queue_declare(queue=QUEUE).message_count)


__all__ = ["PERIODIC_TASKS", "SWEEP_MAX_TASKS", "CeleryJobs", "finish_reindex_when_drained", "index_batch", "queue_for_backlog", "queued_tasks", "reindex"]
