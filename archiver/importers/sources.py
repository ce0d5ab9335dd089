"""Turn import paths (files, folders, maildirs, mbox, zip) into a stream of found messages and refusals."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Union

from archiver.importers.checkpoint import Checkpoint, mbox_key
from archiver.importers.detect import HEAD_BYTES, MAILDIR_BOOKKEEPING_DIRS, Kind, is_maildir, sniff, sniff_file
from archiver.importers.mbox import MboxMessage, NotAtFromLineError, read_mbox


@dataclass(frozen=True)
class FoundMessage:
    raw: bytes
    location: str  # path, path:offset (mbox), zip!member or zip!member:offset
    received_at: datetime | None = None  # best evidence of delivery: maildir mtime, mbox From_ date


@dataclass(frozen=True)
class Refusal:
    location: str
    reason: str


@dataclass(frozen=True)
class Skipped:
    """A file that belongs to a mail store's format but is not mail (maildir bookkeeping)."""

    location: str
    reason: str


@dataclass(frozen=True)
class Resumed:
    location: str
    position: int


Item = Union[FoundMessage, Refusal, Skipped, Resumed, Checkpoint]
ResumePoint = Callable[[str], Union[Checkpoint, None]]


DEFAULT_CHECKPOINT_MIN_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class SourceOptions:
    max_message_bytes: int
    custodian: str = ""
    resume_point: ResumePoint = lambda _key: None
    # Smaller mbox files are simply read again after an interruption (the journal skips
    # what it has); a checkpoint row per small file would only clutter the catalogue.
    checkpoint_min_bytes: int = DEFAULT_CHECKPOINT_MIN_BYTES


def iter_items(paths: list[Path], options: SourceOptions) -> Iterator[Item]:
    """Everything found under ``paths``, in a stable order (sorted names, file order in mbox and zip)."""
    for path in paths:
        if path.is_dir():
            yield from _folder(path, options)
        elif path.exists():
            yield from _file(path, options)
        else:
            yield Refusal(str(path), "no such file or folder")


def _folder(root: Path, options: SourceOptions) -> Iterator[Item]:
    unreadable: list[OSError] = []
    for folder, subfolders, files in os.walk(root, followlinks=False, onerror=unreadable.append):
        yield from (Refusal(str(error.filename), f"cannot read folder: {error.strerror or error}") for error in unreadable)
        unreadable.clear()
        here = Path(folder)
        subfolders.sort()
        files.sort()
        for name in [s for s in subfolders if (here / s).is_symlink()]:
            # Not followed: a link back up the tree would import everything twice over.
            yield Refusal(str(here / name), "symbolic link to a folder is not followed; name its target instead")
        if is_maildir(here):
            # A maildir's own files (dovecot-uidlist, maildirfolder, ...) are bookkeeping;
            # tmp/ holds deliveries still being written (maildir(5)): neither is mail.
            for name in files:
                yield Skipped(str(here / name), "maildir bookkeeping file")
            for name in [s for s in subfolders if s in MAILDIR_BOOKKEEPING_DIRS]:
                for inner, _dirs, inner_files in os.walk(here / name):
                    for inner_name in sorted(inner_files):
                        yield Skipped(str(Path(inner) / inner_name), f"maildir {name}/ (not delivered mail)")
            subfolders[:] = [s for s in subfolders if s not in MAILDIR_BOOKKEEPING_DIRS]
            continue
        in_maildir = here.name in ("cur", "new") and is_maildir(here.parent)
        for name in files:
            if in_maildir:
                yield from _maildir_message(here / name, options)
            else:
                yield from _file(here / name, options)
    yield from (Refusal(str(error.filename), f"cannot read folder: {error.strerror or error}") for error in unreadable)


def _maildir_message(path: Path, options: SourceOptions) -> Iterator[Item]:
    try:
        # Maildir delivery sets the file's mtime; Dovecot and Courier use it as the
        # IMAP INTERNALDATE, the mailbox's own record of when the message arrived.
        delivered: datetime | None = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    except OSError:
        delivered = None
    for item in _file(path, options, expect=Kind.EML):
        if isinstance(item, FoundMessage) and delivered is not None:
            item = replace(item, received_at=delivered)
        yield item


def _file(path: Path, options: SourceOptions, expect: Kind | None = None) -> Iterator[Item]:
    if not path.is_file():  # a FIFO or device would block or never end; a dangling link has nothing
        reason = "broken symbolic link" if path.is_symlink() and not path.exists() else "not a regular file"
        yield Refusal(str(path), reason)
        return
    verdict = sniff_file(path)
    if verdict.kind is None:
        yield Refusal(str(path), verdict.reason)
    elif verdict.kind is Kind.ZIP and expect is None:
        yield from _zip(path, options)
    elif verdict.kind is Kind.MBOX:
        yield from _mbox_file(path, options)
    elif verdict.kind is Kind.EML:
        yield from _eml_file(path, options)
    else:
        yield Refusal(str(path), f"a {verdict.kind.value} file where a single message was expected")


def _eml_file(path: Path, options: SourceOptions) -> Iterator[Item]:
    try:
        size = path.stat().st_size
        if size > options.max_message_bytes:
            yield Refusal(str(path), _too_big(size, options))
            return
        yield FoundMessage(path.read_bytes(), str(path))
    except OSError as error:
        yield Refusal(str(path), f"cannot read: {error.strerror or error}")


def _mbox_file(path: Path, options: SourceOptions) -> Iterator[Item]:
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < options.checkpoint_min_bytes:
                yield from _mbox_items(read_mbox(handle, max_message_bytes=options.max_message_bytes), str(path), None, options)
                return
            key = mbox_key(path, options.custodian)
            checkpoint = Checkpoint(key=key, path=str(path.resolve()), position=0)
            saved = options.resume_point(key)
            start = saved.position if saved is not None and saved.position <= size else 0
            if start:
                yield Resumed(str(path), start)
            if start == size:
                yield replace(checkpoint, position=size, finished=True)
                return
            try:
                messages = read_mbox(handle, start=start, max_message_bytes=options.max_message_bytes)
                yield from _mbox_items(messages, str(path), checkpoint, options)
            except NotAtFromLineError:
                # The checkpoint no longer points at a message boundary (the file was
                # edited): read it all again; the journal recognises what it already has.
                handle.seek(0)
                messages = read_mbox(handle, start=0, max_message_bytes=options.max_message_bytes)
                yield from _mbox_items(messages, str(path), checkpoint, options)
    except OSError as error:
        yield Refusal(str(path), f"cannot read: {error.strerror or error}")


def _mbox_items(messages: Iterator[MboxMessage], location: str, checkpoint: Checkpoint | None, options: SourceOptions) -> Iterator[Item]:
    end = checkpoint.position if checkpoint else 0
    for message in messages:
        where = f"{location}:{message.offset}"
        if message.raw is None:
            yield Refusal(where, _too_big(message.size, options))
        elif not message.raw.strip():
            yield Refusal(where, "empty message")
        else:
            yield FoundMessage(message.raw, where, message.delivered_at)
        end = message.end
        if checkpoint is not None:
            yield replace(checkpoint, position=end)
    if checkpoint is not None:
        yield replace(checkpoint, position=end, finished=True)


def _zip(path: Path, options: SourceOptions) -> Iterator[Item]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        yield Refusal(str(path), f"unreadable zip file: {error}")
        return
    with archive:
        entries = archive.infolist()
        maildirs = _maildirs_in(entries)
        members = [entry for entry in entries if not entry.is_dir()]
        for member in members:
            location = f"{path}!{member.filename}"
            parent = PurePosixPath(member.filename).parent
            if parent in maildirs:
                yield Skipped(location, "maildir bookkeeping file")
                continue
            if parent.name in MAILDIR_BOOKKEEPING_DIRS and parent.parent in maildirs:
                yield Skipped(location, f"maildir {parent.name}/ (not delivered mail)")
                continue
            try:
                yield from _zip_member(archive, member, location, options)
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, NotImplementedError) as error:
                # RuntimeError: encrypted member; NotImplementedError: unknown compression.
                yield Refusal(location, f"unreadable zip member: {error}")


def _zip_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, location: str, options: SourceOptions) -> Iterator[Item]:
    if member.flag_bits & 0x1:
        yield Refusal(location, "encrypted zip member")
        return
    with archive.open(member) as handle:
        head = handle.read(HEAD_BYTES)
    verdict = sniff(head, member.file_size)
    if verdict.kind is None:
        yield Refusal(location, verdict.reason)
    elif verdict.kind is Kind.ZIP:
        yield Refusal(location, "zip inside a zip is not opened; extract the outer zip first")
    elif verdict.kind is Kind.MBOX:
        with archive.open(member) as handle:
            yield from _mbox_items(read_mbox(handle, max_message_bytes=options.max_message_bytes), location, None, options)
    elif member.file_size > options.max_message_bytes:
        yield Refusal(location, _too_big(member.file_size, options))
    else:
        yield FoundMessage(archive.read(member), location)


def _maildirs_in(entries: list[zipfile.ZipInfo]) -> set[PurePosixPath]:
    """Folders inside a zip that are maildirs: they have at least two of cur/, new/, tmp/."""
    children: dict[PurePosixPath, set[str]] = {}
    for entry in entries:
        path = PurePosixPath(entry.filename)
        for folder in (path.parent, path) if entry.is_dir() else (path.parent,):
            if folder.name in ("cur", "new", "tmp"):
                children.setdefault(folder.parent, set()).add(folder.name)
    return {folder for folder, kinds in children.items() if len(kinds) >= 2}


def _too_big(size: int, options: SourceOptions) -> str:
    return f"{size:,} bytes is larger than the {options.max_message_bytes:,}-byte message limit"


__all__ = ["DEFAULT_CHECKPOINT_MIN_BYTES", "FoundMessage", "Item", "Refusal", "Resumed", "Skipped", "SourceOptions", "iter_items"]
