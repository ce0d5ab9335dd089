"""Tell the indexer that a journal commit put work on the outbox: one hook, one implementation per profile."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

from postvault.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)


class IndexNotifier(Protocol):
    """Told, after a journal commit, how many messages it put on the index outbox.

    Best effort by contract: ``notify`` never raises and never waits on the network. The
    outbox rows are committed before it is called, so a lost notice costs latency only
    (the in-process indexer's poll, or the beat sweep, finds the rows). A notifier must
    never turn into a reason to refuse mail: the SMTP edge has already made it durable.
    """

    def notify(self, messages: int = 1) -> None: ...

    def close(self) -> None: ...


class InProcessNotifier:
    """Embedded profile: wakes the indexer thread of ``postvault serve`` at once instead of at its next poll."""

    def __init__(self) -> None:
        self.wake = threading.Event()

    def notify(self, messages: int = 1) -> None:
        self.wake.set()

    def close(self) -> None:
        self.wake.set()  # a waiting indexer thread looks at its stop flag


class CeleryNotifier:
    """Scale-out profile: queues ``index_batch`` tasks on the broker from a thread of its own.

    Notices that arrive while a send is under way are merged into the next one (one task
    per batch of messages, at most ``max_tasks``), so a burst of mail costs a few
    publishes, and a slow or dead broker delays no SMTP reply. If Redis is down the
    notice is dropped and logged (once, then a summary a minute); the sweep catches up.
    """

    # Merged notices never ask for more tasks than this: the tasks queue their successors.
    max_tasks = 16
    _log_every = 60.0

    def __init__(self, settings: Settings, *, app: Celery | None = None) -> None:
        from postvault.background.broker import make_publisher

        self._app = app or make_publisher(settings)
        self._batch_size = max(1, settings.index_batch_size)
        self._changed = threading.Condition()
        self._pending = 0
        self._closed = False
        self._failures = 0
        self._last_report = 0.0
        self._thread = threading.Thread(target=self._run, name="index-notifier", daemon=True)
        self._thread.start()

    def notify(self, messages: int = 1) -> None:
        with self._changed:
            self._pending += max(1, messages)
            self._changed.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Send what is pending (one attempt), then stop the thread."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join(timeout)
        self._app.close()  # the broker connections it pooled

    def _run(self) -> None:
        from postvault.background.broker import INDEX_BATCH

        while True:
            with self._changed:
                while not self._pending and not self._closed:
                    self._changed.wait()
                if not self._pending:
                    return
                messages, self._pending = self._pending, 0
            tasks = min(self.max_tasks, -(-messages // self._batch_size))
            try:
                for _ in range(tasks):
                    # One quick reconnect (a connection left stale by a Redis restart),
                    # then give up: the message is durable and the sweep will find it.
                    self._app.send_task(INDEX_BATCH, retry=True,
                                        retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_step": 0, "interval_max": 0.1})
            except Exception as error:  # whatever the broker client raises, mail keeps flowing
                self._failed(messages, error)
            else:
                self._recovered()

    def _failed(self, messages: int, error: Exception) -> None:
        self._failures += messages
        now = time.monotonic()
        if self._failures == messages or now - self._last_report >= self._log_every:
            self._last_report = now
            log.warning("could not queue indexing on the broker (%s); %d message(s) wait in the outbox "
                        "for the sweep (postvault beat)", error, self._failures)

    def _recovered(self) -> None:
        if self._failures:
            log.info("broker reachable again; the sweep indexes the %d message(s) whose notice was lost", self._failures)
            self._failures = 0


def notifier_for(settings: Settings) -> IndexNotifier:
    """Celery when a broker is configured, else a wake-up for the in-process indexer."""
    if settings.broker_url:
        return CeleryNotifier(settings)
    return InProcessNotifier()


__all__ = ["CeleryNotifier", "InProcessNotifier", "IndexNotifier", "notifier_for"]
