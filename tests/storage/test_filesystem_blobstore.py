"""FilesystemBlobStore keeps exact bytes, once, durably, and notices corruption."""

import os
from pathlib import Path

import pytest
import zstandard

from storage.blobstore import BlobCorruptError, BlobNotFoundError, BlobStoreError, sha256_hex
from storage.filesystem import FilesystemBlobStore


def test_round_trip_is_byte_exact_and_addressed_by_sha256(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    data = b"From: a@b\r\nSubject: \xff\xfe broken\r\n\r\nbody\x00with nul\r\n"
    digest = store.put(data)
    assert digest == sha256_hex(data)
    assert store.get(digest) == data
    path = store.path_for(digest)
    assert path.relative_to(tmp_path).parts[:2] == (digest[:2], digest[2:4])
    # stored compressed, not as the raw bytes
    assert zstandard.ZstdDecompressor().decompress(path.read_bytes()) == data


def test_identical_bytes_are_stored_once_and_never_rewritten(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    digest = store.put(b"same")
    first_inode = store.path_for(digest).stat().st_ino
    assert store.put_many([b"same", b"same", b"other"])[:2] == [digest, digest]
    assert store.path_for(digest).stat().st_ino == first_inode
    assert sorted(store.iter_digests()) == sorted([digest, sha256_hex(b"other")])


def test_no_temp_files_are_left_behind(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    store.put_many([f"m{i}".encode() for i in range(50)])
    leftovers = [p for p in tmp_path.rglob(".tmp-*")]
    assert leftovers == []


def test_a_flipped_byte_is_detected_on_read(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path, level=0)
    digest = store.put(b"A" * 1000)
    path = store.path_for(digest)
    # Recompress different bytes under the same name: decompresses fine, hashes wrong.
    path.write_bytes(zstandard.ZstdCompressor().compress(b"B" + b"A" * 999))
    with pytest.raises(BlobCorruptError):
        store.get(digest)
    # Raw damage to the compressed frame is reported as corruption too, not a crash.
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobCorruptError):
        store.get(digest)


def test_missing_blob_and_unusable_root_raise_store_errors(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs")
    with pytest.raises(BlobNotFoundError):
        store.get("0" * 64)
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    with pytest.raises(BlobStoreError):
        FilesystemBlobStore(blocker / "blobs")
    # A root replaced by a file after start: writes fail with a store error (-> SMTP 451).
    store2 = FilesystemBlobStore(tmp_path / "later")
    os.rmdir(tmp_path / "later")
    (tmp_path / "later").write_text("not a folder")
    with pytest.raises(BlobStoreError):
        store2.put(b"message")
