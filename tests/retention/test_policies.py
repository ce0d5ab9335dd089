"""Domain policies are stored, validated and audited; the journal turns them into each message's Object Lock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from archiver.envelope import Envelope
from archiver.journal import Arrival, Journal
from retention import policies
from retention.policies import Policy, PolicyError
from storage.blobstore import BlobStore, LockMode, LockRequest
from storage.tables import audit_events
from tests.archive_factory import make_message

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def test_set_then_get_normalises_the_domain_and_audits_the_change(archive) -> None:
    with archive.sessions.begin() as session:
        policies.set(session=session, domain=" Bank.Example. ", retention_days=2555, object_lock_mode="COMPLIANCE", actor="admin")
        policies.set(session=session, domain="bank.example", retention_days=3650, object_lock_mode=LockMode.COMPLIANCE, actor="admin")
    with archive.sessions() as session:
        assert policies.get(session=session, domain="BANK.example") == Policy("bank.example", 3650, LockMode.COMPLIANCE)
        assert policies.get(session=session, domain="other.example") is None
        events = session.execute(select(audit_events).order_by(audit_events.c.id)).all()
    assert [event.action for event in events] == ["policy.set", "policy.set"]
    assert events[0].detail == {"domain": "bank.example", "before": None,
                                "after": {"retention_days": 2555, "object_lock_mode": "COMPLIANCE"}}
    assert events[1].detail["before"] == {"retention_days": 2555, "object_lock_mode": "COMPLIANCE"}


@pytest.mark.parametrize(
    ("domain", "days", "mode", "complaint"),
    [
        ("a.example", None, "GOVERNANCE", "needs retention_days"),
        ("a.example", 0, None, "positive"),
        ("a.example", 30, "WORM", "GOVERNANCE, COMPLIANCE or None"),
        ("alice@a.example", 30, None, "not a domain"),
        ("  ", 30, None, "not a domain"),
    ],
)
def test_set_refuses_what_cannot_be_enforced(archive, domain, days, mode, complaint) -> None:
    with pytest.raises(PolicyError, match=complaint), archive.sessions.begin() as session:
        policies.set(session=session, domain=domain, retention_days=days, object_lock_mode=mode, actor="admin")


def test_the_longest_retention_and_the_strictest_mode_win() -> None:
    received = NOW - timedelta(days=1)
    compliance_short = Policy("a.example", 30, LockMode.COMPLIANCE)
    governance_long = Policy("b.example", 365, LockMode.GOVERNANCE)
    unlocked_forever = Policy("c.example", None, None)
    lock = policies.object_lock_for([compliance_short, governance_long, unlocked_forever], received_at=received, now=NOW)
    assert lock == LockRequest(LockMode.COMPLIANCE, received + timedelta(days=365))
    assert policies.object_lock_for([unlocked_forever], received_at=received, now=NOW) is None
    assert policies.object_lock_for([], received_at=received, now=NOW) is None


def test_a_retention_that_already_ran_out_asks_for_no_lock() -> None:
    """Imported old mail: S3 refuses a retain-until date in the past."""
    old = NOW - timedelta(days=31)
    assert policies.object_lock_for([Policy("a.example", 30, LockMode.COMPLIANCE)], received_at=old, now=NOW) is None


class RecordingStore:
    """The real embedded store, noting the locks the journal asks for."""

    def __init__(self, real: BlobStore) -> None:
        self.real = real
        self.locks: list[LockRequest | None] = []

    def put_many(self, blobs: Sequence[bytes], *, locks: Sequence[LockRequest | None] | None = None) -> list[str]:
        self.locks.extend(locks if locks is not None else [None] * len(blobs))
        return self.real.put_many(blobs, locks=locks)


def test_journal_asks_for_each_messages_lock_before_writing_it(archive) -> None:
    with archive.sessions.begin() as session:
        policies.set(session=session, domain="bank.example", retention_days=10, object_lock_mode="COMPLIANCE", actor="admin")
    store = RecordingStore(archive.blobs)
    received = datetime.now(timezone.utc).replace(microsecond=0)
    arrivals = [
        Arrival(make_message(to="desk@bank.example"), Envelope(received_at=received), "smtp"),
        Arrival(make_message(to="bob@example.org"), Envelope(received_at=received), "smtp"),
        Arrival(make_message(subject="old"), Envelope(rcpt_to=("desk@Bank.Example",), received_at=received - timedelta(days=11)), "import"),
    ]
    receipts = Journal(store, archive.sessions).journal_many(arrivals)  # type: ignore[arg-type]
    assert store.locks == [LockRequest(LockMode.COMPLIANCE, received + timedelta(days=10)), None, None]
    assert archive.blobs.get(receipts[0].sha256) == arrivals[0].raw  # the folder store took it, unlocked


def test_journal_without_locking_policies_calls_the_plain_port(archive) -> None:
    store = RecordingStore(archive.blobs)
    Journal(store, archive.sessions).journal(Arrival(make_message(), Envelope(), "smtp"))  # type: ignore[arg-type]
    assert store.locks == [None]
