"""Filesystem BlobStore: zstd-compressed blobs appended to pack files, found through a SQLite index."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import sqlite3
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import zstandard

from storage.blobstore import (
    BlobCorruptError,
    BlobNotFoundError,
    BlobStoreError,
    LockRequest,
    is_digest,
    sha256_hex,
    verify_digest,
)

# A record: magic, the SHA-256 of the raw bytes, the length of the zstd frame, the frame.
_RECORD = struct.Struct("<4s32sQ")
_LIVE = b"PVB1"
# A purged record keeps its length, so a pack can still be read front to back, and
# nothing else: digest and bytes are zeroed (see ``delete``).
_PURGED = b"PVB0"
# A writer moves on to a new pack once its pack has grown past this.
PACK_LIMIT_BYTES = 1 << 30
_PACKS = "packs"
_INDEX = "index.sqlite3"
# Blobs written by earlier versions, one file each at ``root/ab/cd/<sha256>.eml.zst``:
# still read, listed and deleted, never written.
_LOOSE_SUFFIX = ".eml.zst"
_FOLDER_MODE = 0o700
_FILE_MODE = 0o600
_BUSY_TIMEOUT_SECONDS = 60.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    digest BLOB PRIMARY KEY,   -- SHA-256 of the raw bytes, 32 bytes
    pack INTEGER NOT NULL,
    offset INTEGER NOT NULL,   -- where the record (header + frame) starts
    length INTEGER NOT NULL    -- of the zstd frame
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packs (
    pack INTEGER PRIMARY KEY,
    end INTEGER NOT NULL       -- bytes of the pack that hold committed records
);
"""


def _load_punch_hole():  # type: ignore[no-untyped-def]
    """Linux fallocate(2) through libc, to give a purged record's disk blocks back; None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fallocate = libc.fallocate
    except (OSError, AttributeError):
        return None
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    return fallocate


_fallocate = _load_punch_hole()
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


@dataclass
class _Writer:
    """The pack this process appends to, held under an exclusive ``flock`` while it does."""

    pack: int
    fd: int
    end: int


class FilesystemBlobStore:
    """Blobs live in append-only pack files ``root/packs/<n>.pack``; ``root/packs/index.sqlite3``
    says which pack holds a digest, and where.

    One file per message cost a file creation, a rename and a directory entry each (the
    largest fixed cost of importing small mail) and an inode each (a hundred million
    messages, a hundred million inodes). A pack holds up to ``PACK_LIMIT_BYTES`` of records.

    Durability (invariant 1): ``put_many`` appends the new records to its pack, fdatasyncs
    the pack, then commits their index rows (SQLite, synchronous=FULL); only then does it
    return, and only then does the journal commit the catalogue row that acknowledges the
    message. A crash before the index commit leaves at worst unindexed bytes at the end of
    a pack, which the next writer to take that pack cuts off (the store's own bookkeeping
    of each pack's committed end says where): they were never acknowledged.

    Concurrency: each writing process appends to a pack nobody else holds (``flock``), so
    two importers, or ``serve`` and an import, never interleave bytes in one file. The index
    transaction that decides which digests are new is taken before the append and held to
    its commit, so the same bytes written by two processes at once are stored once.

    Purge (``delete``): the record's bytes and digest are overwritten with zeros and
    fdatasynced, then its disk blocks are given back (a hole is punched where the filesystem
    can), and only then is its index row removed. Nothing of a purged message can be read
    back from the pack, through the store or around it, and the space is reclaimed without
    rewriting the pack.

    No WORM: ``put``/``put_many`` accept Object Lock requests and record nothing, because
    a folder cannot refuse its owner a delete. Archives that must be tamper-proof for a
    regulator keep their blobs on S3 with Object Lock (``S3BlobStore``).
    """

    def __init__(self, root: Path, *, level: int = 3, pack_limit: int = PACK_LIMIT_BYTES) -> None:
        self.root = Path(root)
        self._level = level
        self._pack_limit = pack_limit
        self._packs = self.root / _PACKS
        # zstd contexts are costly to set up and not thread-safe; SQLite connections may not
        # be shared between threads: one of each per thread.
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._writer: _Writer | None = None
        self._writer_conn: sqlite3.Connection | None = None
        self._read_fds: dict[int, int] = {}
        self._read_fds_lock = threading.Lock()
        self._writer_pid = self._reader_pid = os.getpid()
        self._index_inode = 0
        try:
            self._make_layout()
            # Only a folder written by an earlier version has loose blob files to look at.
            self._has_loose = any(path.is_dir() for path in self.root.glob("[0-9a-f][0-9a-f]"))
        except (OSError, sqlite3.Error) as error:
            raise BlobStoreError(f"cannot create blob folder {self.root}: {error}") from error

    def _make_layout(self) -> None:
        """The pack folder and its index, made if missing (a new store, or one emptied behind our back)."""
        for folder in (self.root, self._packs):
            if not folder.is_dir():
                folder.mkdir(mode=_FOLDER_MODE, parents=True, exist_ok=True)
        index = self._packs / _INDEX
        if not index.exists():
            # SQLite gives its -wal and -shm files the mode of the database file.
            os.close(os.open(index, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE))
            _fsync_dir(self._packs)
            _fsync_dir(self.root)
        connection = self._connect()
        try:
            connection.executescript(_SCHEMA)
        finally:
            connection.close()

    # ------------------------------------------------------------------ writing

    def put(self, data: bytes, *, lock: LockRequest | None = None) -> str:
        return self.put_many([data])[0]

    def put_many(self, blobs: Sequence[bytes], *, locks: Sequence[LockRequest | None] | None = None) -> list[str]:
        """Store each blob once; ``locks`` are accepted and ignored (see the class docstring)."""
        digests = [sha256_hex(data) for data in blobs]
        if not blobs:
            return digests
        try:
            with self._write_lock:
                self._forget_if_forked()
                self._put_locked(digests, blobs)
        except (OSError, sqlite3.Error) as error:
            raise BlobStoreError(f"cannot write to blob folder {self.root}: {error}") from error
        return digests

    def _put_locked(self, digests: list[str], blobs: Sequence[bytes]) -> None:
        connection = self._writer_connection()
        # BEGIN IMMEDIATE: the question "is this digest new?" and the rows that answer it
        # for the next writer are one transaction, so concurrent writers store bytes once.
        connection.execute("BEGIN IMMEDIATE")
        committed = False
        try:
            wanted = {bytes.fromhex(d): data for d, data in zip(digests, blobs)}
            stored = _existing(connection, list(wanted))
            fresh = [(key, data) for key, data in wanted.items() if key not in stored and not self._is_loose(key.hex())]
            if not fresh:
                connection.execute("COMMIT")
                return
            writer = self._writer or self._take_pack(connection)
            compressor = self._compressor()
            chunks, rows, position = [], [], writer.end
            for key, data in fresh:
                frame = compressor.compress(data)
                chunks.append(_RECORD.pack(_LIVE, key, len(frame)))
                chunks.append(frame)
                rows.append((key, writer.pack, position, len(frame)))
                position += _RECORD.size + len(frame)
            try:
                _pwrite_all(writer.fd, b"".join(chunks), writer.end)
                os.fdatasync(writer.fd)
            except BaseException:
                os.ftruncate(writer.fd, writer.end)  # nothing half-written stays behind
                raise
            connection.executemany("INSERT INTO blobs (digest, pack, offset, length) VALUES (?, ?, ?, ?)", rows)
            connection.execute("INSERT OR REPLACE INTO packs (pack, end) VALUES (?, ?)", (writer.pack, position))
            connection.execute("COMMIT")
            committed = True
        except BaseException:
            if not committed:  # records the index does not point to are cut off again
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                if self._writer is not None:
                    _truncate_quietly(self._writer.fd, self._writer.end)
            raise
        writer.end = position
        if writer.end >= self._pack_limit:
            self._release_writer()

    def _take_pack(self, connection: sqlite3.Connection) -> _Writer:
        """Lock a pack with room left (or a new one) for this process, cutting off any torn tail."""
        ends = dict(connection.execute("SELECT pack, end FROM packs"))
        numbers = sorted(set(ends) | set(self._pack_numbers()))
        chosen: _Writer | None = None
        for number in numbers:
            fd = os.open(self._pack_path(number), os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # another process is writing this one
                continue
            committed = ends.get(number, 0)
            if os.fstat(fd).st_size > committed:
                # Bytes past the last committed record: an append that never reached its
                # index commit (a crash, a kill). Never acknowledged; cut off.
                os.ftruncate(fd, committed)
                os.fsync(fd)
            if chosen is None and committed < self._pack_limit:
                chosen = _Writer(pack=number, fd=fd, end=committed)
            else:
                os.close(fd)  # closing releases the lock
        if chosen is not None:
            self._writer = chosen
            return chosen
        number = (numbers[-1] if numbers else 0) + 1
        while True:
            try:
                fd = os.open(self._pack_path(number), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
            except FileExistsError:
                number += 1  # another process made that one a moment ago
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # taken by a writer looking for room before we could lock it
                number += 1
                continue
            _fsync_dir(self._packs)
            self._writer = _Writer(pack=number, fd=fd, end=0)
            return self._writer

    def _release_writer(self) -> None:
        if self._writer is not None:
            os.close(self._writer.fd)
            self._writer = None

    def close(self) -> None:
        """Let go of this process's pack and connections (another writer may take the pack)."""
        with self._write_lock:
            if self._writer_pid == os.getpid():
                self._release_writer()
                if self._writer_conn is not None:
                    self._writer_conn.close()
            self._writer, self._writer_conn = None, None
        with self._read_fds_lock:
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()

    # ------------------------------------------------------------------ reading

    def get(self, digest: str) -> bytes:
        try:
            location = self._locate(digest)
            if location is None:
                if not self._has_loose:
                    raise BlobNotFoundError(digest)
                return self._get_loose(digest)
            pack, offset, length = location
            record = os.pread(self._read_fd(pack), _RECORD.size + length, offset)
        except FileNotFoundError:
            raise BlobNotFoundError(digest) from None
        except (OSError, sqlite3.Error) as error:
            raise BlobStoreError(f"cannot read blob {digest}: {error}") from error
        if len(record) < _RECORD.size:
            raise BlobCorruptError(f"blob {digest} is corrupt: its pack ends inside the record")
        magic, key, stored_length = _RECORD.unpack_from(record)
        if magic == _PURGED:
            raise BlobNotFoundError(digest)
        if magic != _LIVE or key.hex() != digest or stored_length != length:
            raise BlobCorruptError(f"blob {digest} is corrupt: its record header is damaged")
        return verify_digest(digest, self._decompress(digest, record[_RECORD.size:]))

    def _get_loose(self, digest: str) -> bytes:
        compressed = self._loose_path(digest).read_bytes()
        return verify_digest(digest, self._decompress(digest, compressed))

    def _decompress(self, digest: str, frame: bytes) -> bytes:
        try:
            return self._decompressor().decompress(frame, max_output_size=1 << 34)
        except zstandard.ZstdError as error:
            raise BlobCorruptError(f"blob {digest} is corrupt: cannot decompress ({error})") from error

    def exists(self, digest: str) -> bool:
        try:
            return self._locate(digest) is not None or self._is_loose(digest)
        except (OSError, sqlite3.Error) as error:
            raise BlobStoreError(f"cannot read blob folder {self.root}: {error}") from error

    def iter_digests(self) -> Iterator[str]:
        connection = self._reader()
        for (key,) in connection.execute("SELECT digest FROM blobs ORDER BY digest"):
            yield key.hex()
        for path in self.root.glob(f"??/??/*{_LOOSE_SUFFIX}"):
            name = path.name[: -len(_LOOSE_SUFFIX)]
            if is_digest(name):
                yield name

    def _locate(self, digest: str) -> tuple[int, int, int] | None:
        if not is_digest(digest):
            return None
        row = self._reader().execute("SELECT pack, offset, length FROM blobs WHERE digest = ?", (bytes.fromhex(digest),)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def _read_fd(self, pack: int) -> int:
        with self._read_fds_lock:
            if self._reader_pid != os.getpid():
                self._read_fds.clear()  # a forked child opens its own
                self._reader_pid = os.getpid()
            fd = self._read_fds.get(pack)
            if fd is None:
                fd = self._read_fds[pack] = os.open(self._pack_path(pack), os.O_RDONLY | os.O_CLOEXEC)
            return fd

    # ------------------------------------------------------------------ purge

    def delete(self, digest: str) -> None:
        """Make the blob unreadable for good: zero its record, give its blocks back, drop its row."""
        try:
            location = self._locate(digest)
            if self._is_loose(digest):
                self._loose_path(digest).unlink()
            elif location is None:
                raise BlobNotFoundError(digest)
            if location is None:
                return
            pack, offset, length = location
            fd = os.open(self._pack_path(pack), os.O_RDWR | os.O_CLOEXEC)
            try:
                # A purge must leave nothing of the message readable on disk (a retention
                # period's end or an erasure request): zeros first, durable, then the row.
                _pwrite_all(fd, _RECORD.pack(_PURGED, bytes(32), length) + bytes(length), offset)
                os.fdatasync(fd)
                _punch_hole(fd, offset + _RECORD.size, length)
            finally:
                os.close(fd)
            with self._write_lock:
                self._forget_if_forked()
                connection = self._writer_connection()
                with connection:
                    connection.execute("DELETE FROM blobs WHERE digest = ?", (bytes.fromhex(digest),))
        except FileNotFoundError:
            raise BlobNotFoundError(digest) from None
        except (OSError, sqlite3.Error) as error:
            raise BlobStoreError(f"cannot delete blob {digest}: {error}") from error

    # ------------------------------------------------------------------ plumbing

    def check(self) -> None:
        if not self.root.is_dir():
            raise BlobStoreError(f"blob folder {self.root} does not exist")
        if not os.access(self.root, os.W_OK) or not os.access(self._packs, os.W_OK):
            raise BlobStoreError(f"blob folder {self.root} is not writable")

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._packs / _INDEX, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None,
                                     check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is fsynced before it returns; the catalogue row that acknowledges
        # a message is committed only after the index rows that find its bytes.
        connection.execute("PRAGMA synchronous=FULL")
        # A purged blob's row is overwritten in the file, not left in a free page.
        connection.execute("PRAGMA secure_delete=ON")
        return connection

    def _writer_connection(self) -> sqlite3.Connection:
        if self._writer_conn is not None and not self._still_there():
            # The folder was removed or replaced behind the store's back: appending to the
            # unlinked pack and index would "succeed" into files nobody can open again.
            self._writer_conn.close()
            self._release_writer()
            self._writer_conn = None
        if self._writer_conn is None:
            self._make_layout()
            self._writer_conn = self._connect()
            self._index_inode = os.stat(self._packs / _INDEX).st_ino
        return self._writer_conn

    def _still_there(self) -> bool:
        try:
            if os.stat(self._packs / _INDEX).st_ino != self._index_inode:
                return False
            return self._writer is None or os.fstat(self._writer.fd).st_nlink > 0
        except OSError:
            return False

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None or getattr(self._local, "pid", None) != os.getpid():
            connection = self._local.connection = self._connect()
            self._local.pid = os.getpid()
        return connection

    def _forget_if_forked(self) -> None:
        # A forked child shares the parent's pack descriptor and with it the flock: it must
        # neither append to that pack nor close it; it takes a pack of its own when it writes.
        if self._writer_pid != os.getpid():
            self._writer, self._writer_conn = None, None
            self._writer_pid = os.getpid()

    def _pack_path(self, number: int) -> Path:
        return self._packs / f"{number:08d}.pack"

    def _pack_numbers(self) -> list[int]:
        return [int(path.stem) for path in self._packs.glob("*.pack") if path.stem.isdigit()]

    def _is_loose(self, digest: str) -> bool:
        return self._has_loose and self._loose_path(digest).exists()

    def _loose_path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / f"{digest}{_LOOSE_SUFFIX}"

    def _compressor(self) -> zstandard.ZstdCompressor:
        compressor = getattr(self._local, "compressor", None)
        if compressor is None:
            compressor = self._local.compressor = zstandard.ZstdCompressor(level=self._level)
        return compressor

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        decompressor = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = self._local.decompressor = zstandard.ZstdDecompressor()
        return decompressor


def _existing(connection: sqlite3.Connection, keys: list[bytes]) -> set[bytes]:
    found: set[bytes] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(row[0] for row in connection.execute(f"SELECT digest FROM blobs WHERE digest IN ({marks})", chunk))
    return found


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _punch_hole(fd: int, offset: int, length: int) -> None:
    """Free the blocks of a zeroed range; where the filesystem cannot, the zeros stay written."""
    if _fallocate is None or length <= 0:
        return
    if _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise OSError(code, os.strerror(code))


def _truncate_quietly(fd: int, end: int) -> None:
    try:
        os.ftruncate(fd, end)
    except OSError:
        pass  # the next writer of this pack cuts the tail off (see ``_take_pack``)


def _fsync_dir(folder: Path) -> None:
    # A new file's name is durable only once its directory is fsynced.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
