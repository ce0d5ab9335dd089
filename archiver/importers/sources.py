"""Turn import paths (files, folders, maildirs, mbox, zip) into a stream of found messages and refusals."""

from __future__ import annotations

import errno
import io
import os
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Union

from archiver.importers.checkpoint import Checkpoint, mbox_key
from archiver.importers.detect import HEAD_BYTES, MAILDIR_BOOKKEEPING_DIRS, Kind, is_maildir, sniff
from archiver.importers.mbox import MboxMessage, NotAtFromLineError, read_mbox
from indexer.extraction.archives import BoundedMember, ByteBudget, MemberRefusedError, inflation_allowance, member_cap
from indexer.extraction.limits import ExtractionLimits


@dataclass(frozen=True)
class FoundMessage:
    raw: bytes
    # path, path:offset (mbox), zip!member or zip!member:offset. A path is os.fsdecode's
    # text for its bytes (PEP 383): a name that is not UTF-8 keeps them as lone surrogates.
    location: str
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
    # The zip limits of attachment extraction (POSTVAULT_MAX_ZIP_MEMBERS, _MAX_ZIP_RATIO).
    max_zip_members: int = ExtractionLimits.max_zip_members
    max_zip_ratio: int = ExtractionLimits.max_zip_ratio


def iter_items(paths: list[Path], options: SourceOptions) -> Iterator[Item]:
    """Everything found under ``paths``, in a stable order (sorted names, file order in mbox and zip).

    A path given here is followed if it is a symbolic link: the operator named it. Inside a
    folder, a link is never read through: one that leaves the folder is refused (a link in
    a maildir's cur/ must not bring another user's mail into this mailbox's scope), one
    that stays inside it is skipped, since its target is read under its own name.
    """
    for path in paths:
        try:
            status = path.stat()
        except FileNotFoundError:
            yield Refusal(str(path), "no such file or folder")
            continue
        except OSError as error:
            yield Refusal(str(path), f"cannot read: {error.strerror or error}")
            continue
        if stat.S_ISDIR(status.st_mode):
            yield from _folder(path, options)
        else:
            yield from _file(path, status, options, follow=True)


def _folder(root: Path, options: SourceOptions) -> Iterator[Item]:
    tree = os.path.realpath(root)
    for listing in _walk(root):
        if isinstance(listing, Refusal):
            yield listing
            continue
        here = listing.path
        for name in listing.links:
            # Not walked: a link back up the tree would import everything twice over, and
            # one out of it would widen the import's scope.
            yield _folder_link(here / name, tree)
        if is_maildir(here):
            # A maildir's own files (dovecot-uidlist, maildirfolder, ...) are bookkeeping;
            # tmp/ holds deliveries still being written (maildir(5)): neither is mail.
            for name in listing.files:
                yield Skipped(str(here / name), "maildir bookkeeping file")
            for name in [s for s in listing.subfolders if s in MAILDIR_BOOKKEEPING_DIRS]:
                for inner in _walk(here / name):
                    if isinstance(inner, Refusal):
                        yield inner
                        continue
                    for inner_name in inner.files:
                        yield Skipped(str(inner.path / inner_name), f"maildir {name}/ (not delivered mail)")
            listing.subfolders[:] = [s for s in listing.subfolders if s not in MAILDIR_BOOKKEEPING_DIRS]
            continue
        in_maildir = here.name in ("cur", "new") and is_maildir(here.parent)
        for name in listing.files:
            yield from _walked_file(here / name, tree, options, maildir=in_maildir)


@dataclass
class _Listing:
    """One folder's names, sorted: ``subfolders`` are walked next (the caller may drop some), ``links`` never."""

    path: Path
    subfolders: list[str]
    links: list[str]  # symbolic links to folders
    files: list[str]  # everything else: files, links to them, dangling links, FIFOs


def _walk(root: Path) -> Iterator[_Listing | Refusal]:
    """Every folder under ``root``, top down and in sorted order, or a refusal for one that cannot be listed.

    Like ``os.walk(root, followlinks=False)``, but with a stack instead of recursion: a
    folder tree a thousand deep is easy to make, and Python 3.11's os.walk recurses.
    """
    stack = [root]
    while stack:
        here = stack.pop()
        listing = _Listing(here, [], [], [])
        try:
            with os.scandir(here) as entries:
                for entry in entries:
                    try:
                        is_folder = entry.is_dir()
                    except OSError:
                        is_folder = False
                    if not is_folder:
                        listing.files.append(entry.name)
                    elif entry.is_symlink():
                        listing.links.append(entry.name)
                    else:
                        listing.subfolders.append(entry.name)
        except OSError as error:  # unreadable, or gone since its parent was listed
            yield Refusal(str(here), f"cannot read folder: {error.strerror or error}")
            continue
        for names in (listing.subfolders, listing.links, listing.files):
            names.sort()
        yield listing
        stack.extend(here / name for name in reversed(listing.subfolders))


def _walked_file(path: Path, tree: str, options: SourceOptions, *, maildir: bool) -> Iterator[Item]:
    try:
        status = path.lstat()
    except OSError as error:  # gone since its folder was listed
        yield Refusal(str(path), f"cannot read: {error.strerror or error}")
        return
    if stat.S_ISLNK(status.st_mode):
        yield _file_link(path, tree)
        return
    if not maildir:
        yield from _file(path, status, options, follow=False)
        return
    # Maildir delivery sets the file's mtime; Dovecot and Courier use it as the IMAP
    # INTERNALDATE, the mailbox's own record of when the message arrived.
    delivered = datetime.fromtimestamp(status.st_mtime, tz=timezone.utc)
    for item in _file(path, status, options, follow=False, expect=Kind.EML):
        yield replace(item, received_at=delivered) if isinstance(item, FoundMessage) else item


def _file_link(path: Path, tree: str) -> Item:
    target = _link_target(path)
    if isinstance(target, Refusal):
        return target
    if not _within(target, tree):
        return Refusal(str(path), f"symbolic link to {target}, outside the folder being imported: not followed")
    return Skipped(str(path), f"symbolic link to {os.path.relpath(target, tree)} in the folder being imported, "
                              "which is read under its own name")


def _folder_link(path: Path, tree: str) -> Item:
    target = _link_target(path)
    if isinstance(target, Refusal):
        return target
    if not _within(target, tree):
        return Refusal(str(path), f"symbolic link to a folder outside the folder being imported ({target}) "
                                  "is not followed; name its target to import it")
    return Refusal(str(path), "symbolic link to a folder is not followed; its target is read as part of this import")


def _link_target(path: Path) -> str | Refusal:
    try:
        return os.path.realpath(path, strict=True)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return Refusal(str(path), "symbolic link loop: not followed")
        if error.errno == errno.ENOENT:
            return Refusal(str(path), "broken symbolic link")
        return Refusal(str(path), f"cannot follow symbolic link: {error.strerror or error}")


def _within(target: str, tree: str) -> bool:
    return target == tree or target.startswith(tree.rstrip(os.sep) + os.sep)


def _file(path: Path, status: os.stat_result, options: SourceOptions, *, follow: bool, expect: Kind | None = None) -> Iterator[Item]:
    if not stat.S_ISREG(status.st_mode):  # a FIFO or device would block or never end
        yield Refusal(str(path), "not a regular file")
        return
    try:
        opened = _open_regular(path, follow=follow)
        if isinstance(opened, Refusal):
            yield opened
            return
        handle, size = opened
        with handle:
            head = handle.read(HEAD_BYTES)
            verdict = sniff(head, size)
            if verdict.kind is None:
                yield Refusal(str(path), verdict.reason)
            elif verdict.kind is Kind.ZIP and expect is None:
                yield from _zip(path, handle, size, options)
            elif verdict.kind is Kind.MBOX:
                yield from _mbox_file(path, handle, size, options)
            elif verdict.kind is Kind.EML:
                yield from _eml_file(path, handle, size, head, options)
            else:
                yield Refusal(str(path), f"a {verdict.kind.value} file where a single message was expected")
    except OSError as error:
        yield Refusal(str(path), f"cannot read: {error.strerror or error}")


def _open_regular(path: Path, *, follow: bool) -> tuple[BinaryIO, int] | Refusal:
    """The file opened for reading and its size, if it is still a regular file (and, unless ``follow``, not a link)."""
    # O_NOFOLLOW: a file swapped for a symbolic link after its folder was listed is not
    # read through. O_NONBLOCK: one swapped for a FIFO does not block the import.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP and not follow:
            return Refusal(str(path), "became a symbolic link while the import ran: not followed")
        raise
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        return Refusal(str(path), "not a regular file")
    return os.fdopen(descriptor, "rb"), status.st_size


def _eml_file(path: Path, handle: BinaryIO, size: int, head: bytes, options: SourceOptions) -> Iterator[Item]:
    if size > options.max_message_bytes:
        yield Refusal(str(path), _too_big(size, options))
        return
    raw = head + handle.read(max(size + 1 - len(head), 0))
    if len(raw) > size:  # it grew since it was measured: read on, up to the limit
        raw += handle.read(max(options.max_message_bytes + 1 - len(raw), 0))
        if len(raw) > options.max_message_bytes:
            yield Refusal(str(path), _too_big(len(raw), options))
            return
    yield FoundMessage(raw, str(path))


def _mbox_file(path: Path, handle: BinaryIO, size: int, options: SourceOptions) -> Iterator[Item]:
    handle.seek(0)
    if size < options.checkpoint_min_bytes:
        yield from _mbox_items(read_mbox(handle, max_message_bytes=options.max_message_bytes), str(path), None, options)
        return
    key = mbox_key(path, options.custodian, os.fstat(handle.fileno()))
    checkpoint = Checkpoint(key=key, path=os.path.realpath(path), position=0)
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


def _zip(path: Path, handle: BinaryIO, size: int, options: SourceOptions) -> Iterator[Item]:
    try:
        archive = zipfile.ZipFile(handle)
    except Exception as error:  # BadZipFile, but a hostile directory raises others (a name flagged UTF-8 that is not)
        yield Refusal(str(path), f"unreadable zip file: {error}")
        return
    # The zip limits of attachment extraction. The budget for all members together is
    # the ratio applied to the whole file, so a directory whose entries overlap or lie
    # about their compressed sizes still cannot make the import inflate without end.
    allowance = inflation_allowance(size, options.max_zip_ratio)
    budget = ByteBudget(allowance)
    with archive:
        entries = archive.infolist()
        maildirs = _maildirs_in(entries)
        members = [entry for entry in entries if not entry.is_dir()]
        for number, member in enumerate(members):
            location = f"{path}!{member.filename}"
            if number >= options.max_zip_members:
                yield Refusal(location, f"not read: beyond the first {options.max_zip_members:,} members of the zip "
                                        "(POSTVAULT_MAX_ZIP_MEMBERS)")
                continue
            parent = PurePosixPath(member.filename).parent
            if parent in maildirs:
                yield Skipped(location, "maildir bookkeeping file")
                continue
            if parent.name in MAILDIR_BOOKKEEPING_DIRS and parent.parent in maildirs:
                yield Skipped(location, f"maildir {parent.name}/ (not delivered mail)")
                continue
            try:
                yield from _zip_member(archive, member, location, options, budget)
            except MemberRefusedError as refusal:
                yield Refusal(location, _zip_refusal(refusal, allowance, options))
            except Exception as error:  # zipfile, zlib, bz2, lzma: hostile data raises anything
                yield Refusal(location, f"unreadable zip member: {error}")


def _zip_refusal(refusal: MemberRefusedError, allowance: int, options: SourceOptions) -> str:
    if refusal.bomb:
        return f"not read: {refusal}; the limit is POSTVAULT_MAX_ZIP_RATIO"
    return (f"not read: {refusal}: the members of this zip may inflate to {allowance:,} bytes in all, "
            f"{options.max_zip_ratio} times its size (POSTVAULT_MAX_ZIP_RATIO)")


def _zip_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, location: str, options: SourceOptions,
                budget: ByteBudget) -> Iterator[Item]:
    if member.create_system == 3 and stat.S_ISLNK(member.external_attr >> 16):
        yield Refusal(location, "symbolic link inside the zip: not followed")
        return
    if member.flag_bits & 0x1:
        yield Refusal(location, "encrypted zip member")
        return
    cap = member_cap(member, max_ratio=options.max_zip_ratio, budget=budget)
    with _inflating(archive, member, cap, budget) as handle:
        head = handle.read(HEAD_BYTES)
        verdict = sniff(head, member.file_size)
        if verdict.kind is None:
            yield Refusal(location, verdict.reason)
            return
        if verdict.kind is Kind.ZIP:
            yield Refusal(location, "zip inside a zip is not opened; extract the outer zip first")
            return
        if verdict.kind is Kind.EML:
            if member.file_size > options.max_message_bytes:
                yield Refusal(location, _too_big(member.file_size, options))
            else:
                yield FoundMessage(head + handle.read(), location)
            return
    with _inflating(archive, member, cap, budget) as handle:  # an mbox, read from its start
        yield from _mbox_items(read_mbox(handle, max_message_bytes=options.max_message_bytes), location, None, options)


def _inflating(archive: zipfile.ZipFile, member: zipfile.ZipInfo, cap: int, budget: ByteBudget) -> io.BufferedReader:
    return io.BufferedReader(BoundedMember(archive.open(member), cap, budget), buffer_size=64 * 1024)


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
