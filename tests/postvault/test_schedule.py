"""Periodic jobs: one table, run by an in-process scheduler (embedded) and by Celery beat (scale-out)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from postvault.schedule import PERIODIC_JOBS, InProcessJobs, JobContext, PeriodicJob, Scheduler, sweep_outbox, with_interval
from postvault.settings import Settings
from postvault.wiring import Archive


class Recorder:
    """A JobContext that records when jobs ran and what they asked for."""

    def __init__(self) -> None:
        self.archive = None  # type: ignore[assignment]
        self.requests = 0

    def request_indexing(self) -> int:
        self.requests += 1
        return 1


def running(scheduler: Scheduler, seconds: float) -> None:
    stop = threading.Event()
    thread = scheduler.start(stop)
    time.sleep(seconds)
    stop.set()
    thread.join(5)
    assert not thread.is_alive(), "the scheduler must stop when asked"


def test_a_registered_job_runs_every_interval_and_not_at_start() -> None:
    moments: list[float] = []
    job = PeriodicJob("tick", timedelta(seconds=0.1), lambda context: moments.append(time.monotonic()))
    started = time.monotonic()
    running(Scheduler([job], Recorder()), 1.05)
    assert 8 <= len(moments) <= 11, moments
    assert moments[0] - started >= 0.09, "the first run waits one interval"
    gaps = [later - earlier for earlier, later in zip(moments, moments[1:])]
    assert all(0.05 < gap < 0.3 for gap in gaps), gaps


def test_a_job_that_raises_is_logged_and_neither_it_nor_the_others_stop(caplog: pytest.LogCaptureFixture) -> None:
    def broken(context: JobContext) -> None:
        raise RuntimeError("the purge found a locked row")

    steady: list[int] = []
    scheduler = Scheduler([PeriodicJob("purge_expired", timedelta(seconds=0.05), broken),
                           PeriodicJob("tick", timedelta(seconds=0.05), lambda context: steady.append(1))], Recorder())
    running(scheduler, 0.6)
    assert scheduler.failures["purge_expired"] == scheduler.runs["purge_expired"] >= 5
    assert scheduler.failures["tick"] == 0 and len(steady) >= 5
    assert "periodic job purge_expired failed" in caplog.text and "the purge found a locked row" in caplog.text


def test_a_slow_job_skips_the_runs_it_missed_instead_of_queueing_them() -> None:
    runs: list[float] = []

    def slow(context: JobContext) -> None:
        runs.append(time.monotonic())
        time.sleep(0.35)

    running(Scheduler([PeriodicJob("slow", timedelta(seconds=0.1), slow)], Recorder()), 1.0)
    # Runs start at 0.1, ~0.5, ~0.9: never two back to back to catch up.
    assert 2 <= len(runs) <= 3, runs
    assert all(later - earlier >= 0.35 for earlier, later in zip(runs, runs[1:]))


def test_the_outbox_sweep_of_the_embedded_profile_wakes_the_indexer(make_settings: Callable[..., Settings]) -> None:
    wake = threading.Event()
    archive = Archive(make_settings())
    try:
        assert sweep_outbox(InProcessJobs(archive, wake)) == 1
        assert wake.is_set()
    finally:
        archive.close()


def test_beat_schedule_is_built_from_the_same_table_and_every_job_has_its_task() -> None:
    import postvault.background.tasks  # noqa: F401  (registers the tasks, as the worker's include does)
    from postvault.background.celery_app import SWEEP_OUTBOX, make_celery

    app = make_celery(Settings(broker_url="redis://127.0.0.1:1/0"))
    try:
        schedule = app.conf.beat_schedule
        assert {name: (entry["task"], entry["schedule"]) for name, entry in schedule.items()} == {
            job.name: (job.task_name, job.interval.total_seconds()) for job in PERIODIC_JOBS
        }
        assert SWEEP_OUTBOX == "postvault.sweep_outbox" and "sweep_outbox" in schedule
        for job in PERIODIC_JOBS:
            assert job.task_name in app.tasks, f"beat would send {job.task_name}, which no worker runs"
    finally:
        app.close()


def test_beat_interval_option_changes_only_the_job_it_names() -> None:
    from postvault.background.celery_app import make_celery

    jobs = with_interval(PERIODIC_JOBS, "sweep_outbox", timedelta(seconds=2))
    app = make_celery(Settings(broker_url="redis://127.0.0.1:1/0"), jobs=jobs)
    try:
        assert app.conf.beat_schedule["sweep_outbox"]["schedule"] == 2.0
    finally:
        app.close()
    with pytest.raises(KeyError, match="no periodic job named 'sweep'"):
        with_interval(PERIODIC_JOBS, "sweep", timedelta(seconds=2))
    with pytest.raises(ValueError, match="must be positive"):
        with_interval(PERIODIC_JOBS, "sweep_outbox", timedelta(0))
