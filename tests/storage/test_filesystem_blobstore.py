"""FilesystemBlobStore keeps exact bytes, once, durably in pack files, notices corruption, and purges for good."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import zstandard

from storage.blobstore import BlobCorruptError, BlobNotFoundError, BlobStoreError, sha256_hex
from storage.filesystem import FilesystemBlobStore


def packs(root: Path) -> list[Path]:
    return sorted((root / "packs").glob("*.pack"))


def record_offsets(root: Path) -> dict[str, tuple[int, int, int]]:
    """digest -> (pack, offset, frame length), read from the store's index directly."""
    with sqlite3.connect(root / "packs" / "index.sqlite3") as connection:
        return {key.hex(): (pack, offset, length) for key, pack, offset, length in connection.execute("SELECT * FROM blobs")}


def test_round_trip_is_byte_exact_and_addressed_by_sha256(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    data = b"From: a@b\r\nSubject: \xff\xfe broken\r\n\r\nbody\x00with nul\r\n"
    digest = store.put(data)
    assert digest == sha256_hex(data)
    assert store.get(digest) == data
    assert store.exists(digest) and not store.exists(sha256_hex(b"never stored"))
    # stored as a zstd frame inside a pack, not one file per message
    _pack, offset, length = record_offsets(tmp_path)[digest]
    frame = packs(tmp_path)[0].read_bytes()[offset + 44 : offset + 44 + length]
    assert zstandard.ZstdDecompressor().decompress(frame) == data
    assert not list(tmp_path.glob("??/??/*"))


def test_identical_bytes_are_stored_once_and_never_rewritten(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    digest = store.put(b"same")
    size = packs(tmp_path)[0].stat().st_size
    assert store.put_many([b"same", b"same", b"other"])[:2] == [digest, digest]
    assert sorted(store.iter_digests()) == sorted([digest, sha256_hex(b"other")])
    # "other" was appended; "same" was not written again
    assert packs(tmp_path)[0].read_bytes().count(zstandard.ZstdCompressor(level=3).compress(b"same")) == 1
    assert packs(tmp_path)[0].stat().st_size > size


def test_many_messages_share_one_pack_and_a_full_pack_starts_the_next(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path, pack_limit=4096)
    blobs = [os.urandom(700) for _ in range(20)]  # incompressible: about 750 bytes a record
    for start in range(0, 20, 4):
        assert store.put_many(blobs[start : start + 4]) == [sha256_hex(b) for b in blobs[start : start + 4]]
    assert 2 <= len(packs(tmp_path)) <= 8
    assert all(store.get(sha256_hex(b)) == b for b in blobs)


def test_a_flipped_bit_inside_a_pack_is_detected_on_read(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path, level=0)
    digest, neighbour = store.put_many([b"A" * 1000, b"B" * 1000])
    pack, offset, length = record_offsets(tmp_path)[digest]
    raw = bytearray(packs(tmp_path)[0].read_bytes())
    raw[offset + 44 + length // 2] ^= 0x01  # one bit inside the compressed frame
    packs(tmp_path)[0].write_bytes(bytes(raw))
    with pytest.raises(BlobCorruptError):
        store.get(digest)
    assert store.get(neighbour) == b"B" * 1000  # its neighbour in the pack is untouched
    # A damaged record header (its length) is corruption too, not a crash.
    raw[offset + 40] ^= 0x04
    packs(tmp_path)[0].write_bytes(bytes(raw))
    with pytest.raises(BlobCorruptError):
        FilesystemBlobStore(tmp_path).get(digest)


def test_a_purged_blob_cannot_be_read_back_from_the_store_or_the_disk(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path, level=0)
    secret = b"Subject: salary review\r\n\r\n" + b"confidential figures " * 200
    keep = b"Subject: lunch\r\n\r\n" + b"tacos " * 200
    digest, kept = store.put_many([secret, keep])
    store.delete(digest)
    with pytest.raises(BlobNotFoundError):
        store.get(digest)
    assert not store.exists(digest)
    assert digest not in set(store.iter_digests())
    on_disk = b"".join(path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())
    assert b"confidential figures" not in on_disk
    assert bytes.fromhex(digest) not in b"".join(path.read_bytes() for path in packs(tmp_path))
    assert store.get(kept) == keep
    with pytest.raises(BlobNotFoundError):
        store.delete(digest)
    # the same bytes may be archived again later, and read back
    assert store.put(secret) == digest and store.get(digest) == secret


def test_blobs_of_an_earlier_version_one_file_each_are_still_read_listed_and_deleted(tmp_path: Path) -> None:
    old = b"Subject: from before packs\r\n\r\nhello\r\n"
    digest = sha256_hex(old)
    path = tmp_path / digest[:2] / digest[2:4] / f"{digest}.eml.zst"
    path.parent.mkdir(parents=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(old))
    store = FilesystemBlobStore(tmp_path)
    assert store.get(digest) == old and store.exists(digest)
    assert store.put(old) == digest and not packs(tmp_path)  # already stored: not written twice
    assert list(store.iter_digests()) == [digest]
    store.delete(digest)
    assert not path.exists()


def test_missing_blob_and_unusable_root_raise_store_errors(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs")
    with pytest.raises(BlobNotFoundError):
        store.get("0" * 64)
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    with pytest.raises(BlobStoreError):
        FilesystemBlobStore(blocker / "blobs")
    # The pack folder replaced by a file after start: writes fail with a store error (-> SMTP 451).
    store2 = FilesystemBlobStore(tmp_path / "later")
    shutil.rmtree(tmp_path / "later" / "packs")
    (tmp_path / "later" / "packs").write_text("not a folder")
    with pytest.raises(BlobStoreError):
        store2.put(b"message")


def test_two_stores_on_one_folder_append_to_packs_of_their_own(tmp_path: Path) -> None:
    """flock is per open file, so two stores in one process exclude each other as two processes do."""
    first, second = FilesystemBlobStore(tmp_path), FilesystemBlobStore(tmp_path)
    a = first.put_many([b"first %d" % n for n in range(10)])
    b = second.put_many([b"second %d" % n for n in range(10)])
    a += first.put_many([b"first again"])
    assert len(packs(tmp_path)) == 2
    assert {record_offsets(tmp_path)[d][0] for d in a} != {record_offsets(tmp_path)[d][0] for d in b}
    reader = FilesystemBlobStore(tmp_path)
    assert [reader.get(d) for d in b] == [b"second %d" % n for n in range(10)]
    assert reader.get(a[-1]) == b"first again"
    first.close()
    # A closed store lets go of its pack: the next writer appends to it instead of a third.
    second.close()
    reader.put(b"third writer")
    assert len(packs(tmp_path)) == 2


_WRITER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    import storage.filesystem as fs
    store = fs.FilesystemBlobStore({root!r})
    store.put(b"acknowledged before the kill")
    real_fdatasync = os.fdatasync
    def stall(fd):  # the next append is written but the process dies before its index commit
        real_fdatasync(fd)
        print("appended", flush=True)
        time.sleep(60)
    fs.os.fdatasync = stall
    store.put_many([b"torn %d" % n + b"x" * 5000 for n in range(50)])
""")


def test_a_writer_killed_mid_append_leaves_earlier_blobs_intact_and_its_batch_unacknowledged(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    repo = str(Path(__file__).resolve().parents[2])
    writer = subprocess.Popen([sys.executable, "-c", _WRITER.format(repo=repo, root=str(root))], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "appended"
        grown = packs(root)[0].stat().st_size
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait(timeout=30)
    store = FilesystemBlobStore(root)
    # Before the kill's batch committed, put_many had not returned: nothing of it is stored.
    assert list(store.iter_digests()) == [sha256_hex(b"acknowledged before the kill")]
    with pytest.raises(BlobNotFoundError):
        store.get(sha256_hex(b"torn 0" + b"x" * 5000))
    # The next writer takes the pack, cuts the unacknowledged tail off, and appends after it.
    store.put(b"after the crash")
    assert packs(root)[0].stat().st_size < grown
    assert store.get(sha256_hex(b"acknowledged before the kill")) == b"acknowledged before the kill"
    assert store.get(sha256_hex(b"after the crash")) == b"after the crash"


_CONCURRENT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from storage.filesystem import FilesystemBlobStore
    store = FilesystemBlobStore({root!r})
    which = int(sys.argv[1])
    for batch in range(40):
        # both writers store the shared messages, each its own ones too
        store.put_many([b"shared %d" % n for n in range(batch * 5, batch * 5 + 5)]
                       + [b"only %d-%d" % (which, batch * 5 + n) for n in range(5)])
    print("done", flush=True)
""")


def test_two_processes_writing_at_once_get_a_pack_each_and_store_shared_bytes_once(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    FilesystemBlobStore(root)
    repo = str(Path(__file__).resolve().parents[2])
    writers = [subprocess.Popen([sys.executable, "-c", _CONCURRENT.format(repo=repo, root=str(root)), str(which)],
                                stdout=subprocess.PIPE, text=True) for which in (1, 2)]
    assert [w.communicate(timeout=120)[0].strip() for w in writers] == ["done", "done"]
    assert [w.returncode for w in writers] == [0, 0]
    store = FilesystemBlobStore(root)
    expected = {b"shared %d" % n for n in range(200)} | {b"only %d-%d" % (w, n) for w in (1, 2) for n in range(200)}
    assert sorted(store.iter_digests()) == sorted(sha256_hex(b) for b in expected)
    assert all(store.get(sha256_hex(b)) == b for b in expected)
    # Each shared message is in exactly one pack, once: the index transaction decided.
    contents = b"".join(path.read_bytes() for path in packs(root))
    frames = zstandard.ZstdCompressor(level=3)
    assert all(contents.count(frames.compress(b"shared %d" % n)) == 1 for n in range(200))


def test_a_folder_emptied_behind_a_running_store_is_written_afresh_not_into_unlinked_files(tmp_path: Path) -> None:
    """Appending to the open pack of a deleted folder would report success for bytes nobody can read."""
    store = FilesystemBlobStore(tmp_path / "blobs")
    store.put(b"before")
    shutil.rmtree(tmp_path / "blobs")
    (tmp_path / "blobs").mkdir()
    digest = store.put(b"after the folder was replaced")
    assert FilesystemBlobStore(tmp_path / "blobs").get(digest) == b"after the folder was replaced"


def test_an_index_commit_that_fails_leaves_no_unindexed_bytes_in_the_pack(tmp_path: Path) -> None:
    """put_many raises (so nothing is acknowledged) and the appended records are cut off again."""
    store = FilesystemBlobStore(tmp_path)
    kept = store.put(b"stored before")
    size = packs(tmp_path)[0].stat().st_size
    with sqlite3.connect(tmp_path / "packs" / "index.sqlite3") as connection:  # a real failure inside SQLite
        connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON blobs BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    with pytest.raises(BlobStoreError, match="disk says no"):
        store.put_many([b"never acknowledged %d" % n for n in range(10)])
    assert packs(tmp_path)[0].stat().st_size == size
    with sqlite3.connect(tmp_path / "packs" / "index.sqlite3") as connection:
        connection.execute("DROP TRIGGER refuse")
    digest = store.put(b"after the failure")
    assert store.get(digest) == b"after the failure" and store.get(kept) == b"stored before"
    assert sorted(store.iter_digests()) == sorted([kept, digest])


_IMPORTER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    import storage.filesystem as fs
    from archiver.envelope import Envelope
    from archiver.journal import Arrival
    from postvault.settings import Settings
    from postvault.wiring import Archive
    archive = Archive(Settings(data_dir=Path({data!r}), index_workers=1))
    archive.journal.journal_many([Arrival(b"Subject: kept %d\\r\\n\\r\\nbody\\r\\n" % n, Envelope(), "import")
                                  for n in range(5)])
    real_fdatasync = os.fdatasync
    def stall(fd):  # the next batch is appended to the pack, and the process dies before any commit
        real_fdatasync(fd)
        print("appended", flush=True)
        time.sleep(60)
    fs.os.fdatasync = stall
    archive.journal.journal_many([Arrival(b"Subject: torn %d\\r\\n\\r\\nbody\\r\\n" % n, Envelope(), "import")
                                  for n in range(50)])
""")


def test_a_journal_killed_mid_append_acknowledges_nothing_of_its_batch_and_verify_stays_clean(tmp_path: Path) -> None:
    from sqlalchemy import func, select

    from archiver.envelope import Envelope
    from archiver.journal import Arrival
    from indexer.verify import verify_archive
    from postvault.indexing import drain_outbox
    from postvault.settings import Settings
    from postvault.wiring import Archive
    from storage.tables import messages

    repo = str(Path(__file__).resolve().parents[2])
    journal = subprocess.Popen([sys.executable, "-c", _IMPORTER.format(repo=repo, data=str(tmp_path / "var"))],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert journal.stdout is not None and journal.stdout.readline().strip() == "appended"
        journal.send_signal(signal.SIGKILL)
    finally:
        journal.wait(timeout=30)
    archive = Archive(Settings(data_dir=tmp_path / "var", index_workers=1))
    try:
        with archive.sessions() as session:
            assert session.scalar(select(func.count()).select_from(messages)) == 5  # only the batch that returned
        assert drain_outbox(archive).indexed == 5
        report = verify_archive(archive.sessions, archive.blobs, archive.search)
        assert report.discrepancies == 0 and not report.orphan_blobs and report.blobs_checked == 5
        # The next write takes the pack and cuts the torn batch off; everything still checks out.
        archive.journal.journal_many([Arrival(b"Subject: after\r\n\r\nbody\r\n", Envelope(), "import")])
        assert drain_outbox(archive).indexed == 1
        report = verify_archive(archive.sessions, archive.blobs, archive.search)
        assert report.discrepancies == 0 and not report.orphan_blobs and report.blobs_checked == 6
    finally:
        archive.close()
