"""The audit trail is hash-chained: any edit or deletion inside it is detected."""

from sqlalchemy import select, text

from retention.audit import GENESIS, audit, verify_chain
from storage.tables import audit_events



def test_chain_links_and_detects_tampering(archive) -> None:
    for n in range(5):
        audit(archive.sessions, actor="cli:alice", action="search", detail={"query": f"q{n}"})
    with archive.sessions() as session:
        events = session.execute(select(audit_events).order_by(audit_events.c.id)).all()
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


def test_the_cli_audits_the_real_uids_account_whatever_user_says(tmp_path, monkeypatch) -> None:
    """USER and LOGNAME are the caller's to set; the audited actor comes from the uid."""
    import os
    import pwd

    from sqlalchemy import select
    from typer.testing import CliRunner

    from postvault.cli import app
    from postvault.settings import Settings
    from postvault.wiring import Archive
    from storage.tables import audit_events

    monkeypatch.setenv("POSTVAULT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    monkeypatch.setenv("LNAME", "mallory")
    monkeypatch.setenv("USERNAME", "mallory")
    result = CliRunner().invoke(app, ["search", "budget", "--all", "--json"])
    assert result.exit_code == 0, result.output

    archive = Archive(Settings())
    try:
        with archive.catalogue.connect() as connection:
            actors = connection.scalars(select(audit_events.c.actor)).all()
    finally:
        archive.close()
    assert actors == [f"cli:{pwd.getpwuid(os.getuid()).pw_name}"]
