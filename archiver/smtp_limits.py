"""How much the SMTP edge takes on at once: sessions per listener and per client, bytes in flight."""

from __future__ import annotations

from collections import Counter

from archiver.smtp_replies import TooManyConnectionsError, TooMuchInFlightError


class ConnectionGate:
    """Counts open sessions, in total and per client address; both limits are hard.

    Used from the listener's event loop only, so it needs no lock.
    """

    def __init__(self, *, total: int, per_client: int) -> None:
        self._total = total
        self._per_client = per_client
        self._open: Counter[str] = Counter()

    @property
    def open_sessions(self) -> int:
        return self._open.total()

    def admit(self, client: str) -> None:
        """Count one more session for ``client``, or raise ``TooManyConnectionsError``."""
        if self._open.total() >= self._total:
            raise TooManyConnectionsError(f"{self._total} sessions open")
        if self._open[client] >= self._per_client:
            raise TooManyConnectionsError(f"{self._per_client} sessions open from {client}")
        self._open[client] += 1

    def release(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


class InFlightBytes:
    """The bytes of messages being received or journaled, held under one budget.

    Each message holds a ``Reservation`` that grows as its DATA arrives and is released
    once the message is journaled or refused. A message is always let in while it is
    the only one in flight, so a budget smaller than the largest allowed message cannot
    refuse that message forever. Used from the listener's event loop only.
    """

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self.used = 0

    def reservation(self) -> Reservation:
        return Reservation(self)

    def _take(self, size: int, held: int) -> None:
        others = self.used - held
        if others and self.used + size > self._budget:
            raise TooMuchInFlightError(f"{self.used} of {self._budget} bytes in flight")
        self.used += size


class Reservation:
    """One message's share of an ``InFlightBytes`` budget."""

    def __init__(self, budget: InFlightBytes) -> None:
        self._budget = budget
        self.held = 0

    def take(self, size: int) -> None:
        """Hold ``size`` more bytes, or raise ``TooMuchInFlightError`` (and hold nothing more)."""
        self._budget._take(size, self.held)
        self.held += size

    def release(self) -> None:
        self._budget.used -= self.held
        self.held = 0


__all__ = ["ConnectionGate", "InFlightBytes", "Reservation"]
