"""The header reader process gives the journal the same facts as reading in the importer, and its death loses nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from archiver.headers import read_header_facts
from archiver.importers.header_pool import HeaderFactsPool
from tests.archive_factory import make_message


def messages(count: int) -> list[bytes]:
    return [make_message(subject=f"Grüße {n}", sender=f"Sender {n} <s{n}@example.com>", to=f"r{n}@example.org",
                         body=f"body {n}") for n in range(count)]


def test_facts_from_the_helper_process_are_those_read_in_place() -> None:
    raws = messages(120) + [b"not: a\r\nproper\r\n\r\nmessage", b"\xff\xfe\x00 binary"]
    pool = HeaderFactsPool()
    try:
        facts = pool.start(raws)()
        assert pool._executor is not None  # noqa: SLF001 - it did go to the helper process
        assert facts == [read_header_facts(raw) for raw in raws]
    finally:
        pool.close()


def test_a_helper_process_that_dies_leaves_the_batch_to_the_importer() -> None:
    raws = messages(60)
    pool = HeaderFactsPool()
    try:
        pool.start(raws)()  # the helper process is up
        (pid,) = pool._executor._processes  # noqa: SLF001
        os.kill(pid, signal.SIGKILL)
        facts = pool.start(raws)()
        assert facts == [read_header_facts(raw) for raw in raws]
        assert pool.start(raws[:20])() == [read_header_facts(raw) for raw in raws[:20]]  # and every later batch
    finally:
        pool.close()


def test_an_import_with_the_helper_process_archives_the_same_catalogue_rows(tmp_path: Path) -> None:
    """The journal takes facts read elsewhere exactly as if it had read them itself."""
    from sqlalchemy import select

    from archiver.importers import import_paths
    from postvault.settings import Settings
    from postvault.wiring import Archive
    from storage.tables import messages as messages_table

    mail = tmp_path / "mail"
    mail.mkdir()
    for number, raw in enumerate(messages(70)):
        (mail / f"{number}.eml").write_bytes(raw)
    rows = []
    for name, pooled in (("in-place", False), ("pooled", True)):
        archive = Archive(Settings(data_dir=tmp_path / name, index_workers=1))
        pool = HeaderFactsPool()
        try:
            summary = import_paths([mail], journal=archive.journal, sessions=archive.sessions, max_message_bytes=1 << 20,
                                   batch_messages=25, read_facts=pool.start if pooled else None)
            assert summary.archived == 70 and not summary.refused
            columns = [c for c in messages_table.c if c.name not in ("id", "first_received_at")]
            with archive.sessions() as session:
                rows.append(sorted(tuple(row) for row in session.execute(select(*columns))))
        finally:
            pool.close()
            archive.close()
    assert rows[0] == rows[1] and len(rows[0]) == 70
