"""The audit trail is hash-chained: any edit or deletion inside it is detected."""

from sqlalchemy import text

from retention.audit import GENESIS, audit, verify_chain
from storage.models import AuditEvent



def test_chain_links_and_detects_tampering(archive) -> None:
    for n in range(5):
        audit(archive.sessions, actor="cli:alice", action="search", detail={"query": f"q{n}"})
    with archive.sessions() as session:
        events = session.query(AuditEvent).order_by(AuditEvent.id).all()
    assert events[0].previous_hash == GENESIS
    assert all(later.previous_hash == earlier.hash for earlier, later in zip(events, events[1:]))
    assert list(verify_chain(archive.sessions)) == []

    with archive.sessions.begin() as session:
        session.execute(text("UPDATE audit_events SET detail = '{\"query\": \"innocent\"}' WHERE id = 3"))
    assert [b.event_id for b in verify_chain(archive.sessions)] == [3]

    with archive.sessions.begin() as session:
        session.execute(text("DELETE FROM audit_events WHERE id = 2"))
    broken = {b.event_id for b in verify_chain(archive.sessions)}
    assert 3 in broken  # its predecessor vanished
