"""Zip archives: list the members, read the extractable ones, refuse bombs (never inflate blind)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from indexer.extraction.extracted import Extracted, truncate
from indexer.extraction.kinds import Kind, kind_by_name
from indexer.extraction.limits import ExtractionLimits

# Reads one member's bytes: (data, member name, nesting depth) -> what it holds.
MemberReader = Callable[[bytes, str, int], Extracted]

_CHUNK = 64 * 1024
# Below this size a high compression ratio is ordinary (a page of repeated log lines);
# the byte budget bounds the total, so only large members need the ratio test.
_RATIO_FLOOR = 1024 * 1024


@dataclass
class ByteBudget:
    """Uncompressed bytes still allowed for one archive, shared with archives nested in it."""

    remaining: int


class MemberRefusedError(Exception):
    """A member that may not be read; the message is the reason."""

    def __init__(self, reason: str, *, bomb: bool = False) -> None:
        super().__init__(reason)
        self.bomb = bomb


def inflation_allowance(compressed_size: int, max_ratio: int) -> int:
    """The most bytes that ``compressed_size`` bytes may inflate to before they count as a bomb."""
    return max(_RATIO_FLOOR, compressed_size * max_ratio)


def member_cap(info: zipfile.ZipInfo, *, max_ratio: int, budget: ByteBudget) -> int:
    """The most bytes ``info`` may inflate to, or ``MemberRefusedError`` if its entry alone rules it out."""
    declared = info.file_size
    allowed_by_ratio = inflation_allowance(info.compress_size, max_ratio)
    if declared > allowed_by_ratio:
        raise MemberRefusedError(f"compression ratio above {max_ratio} (zip bomb)", bomb=True)
    if declared > budget.remaining:
        raise MemberRefusedError("archive byte budget spent")
    return min(declared, budget.remaining, allowed_by_ratio)


class BoundedMember(io.RawIOBase):
    """A member's inflated bytes, charged to ``budget``, that refuse to run past ``cap``.

    The directory may lie: this counts what actually comes out. zipfile itself stops at
    the declared size and then fails the CRC, which the reader sees as ``BadZipFile``.
    """

    def __init__(self, stream: IO[bytes], cap: int, budget: ByteBudget) -> None:
        super().__init__()
        self._stream = stream
        self._cap = cap
        self._budget = budget
        self._produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(min(len(buffer), _CHUNK))
        self._produced += len(data)
        self._budget.remaining -= len(data)
        if self._produced > self._cap:
            raise MemberRefusedError("inflates beyond its declared size (zip bomb)", bomb=True)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


def open_zip(data: bytes) -> zipfile.ZipFile | None:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except Exception:  # BadZipFile, but hostile directories raise others too
        return None


def declared_size_problem(archive: zipfile.ZipFile, budget_bytes: int) -> str:
    """Why an OOXML package must not be opened, or "".

    The DOCX reader reads its parts with zipfile, which never inflates past the size a member
    declares, so checking declared sizes bounds its memory.
    """
    total = 0
    for info in archive.infolist():
        total += info.file_size
        if total > budget_bytes:
            return f"declares {total} uncompressed bytes, above the limit of {budget_bytes}"
    return ""


def inflation_problem(archive: zipfile.ZipFile) -> str:
    """Why a package whose reader trusts no declared size must not be opened, or "".

    calamine's zip reader inflates until the stream ends, whatever the header says. So
    first stream every member through zipfile, which stops at the declared size and
    checks the CRC: a member that inflates to more than it declares fails here, having
    cost at most its declared size (already bounded by ``declared_size_problem``).
    """
    try:
        for info in archive.infolist():
            with archive.open(info) as member:
                while member.read(_CHUNK):
                    pass
    except Exception as error:  # BadZipFile (CRC/size mismatch), zlib errors, NotImplementedError
        return f"member sizes or checksums do not match its directory ({type(error).__name__})"
    return ""


def zip_text(
    data: bytes,
    *,
    limits: ExtractionLimits,
    depth: int,
    read_member: MemberReader,
    budget: ByteBudget | None = None,
) -> Extracted:
    """The member listing, then the text of each extractable member, within all limits."""
    archive = open_zip(data)
    if archive is None:
        return Extracted(skipped="corrupt", defects=("zip archive unreadable",))
    budget = budget if budget is not None else ByteBudget(limits.archive_budget_bytes)
    defects: list[str] = []
    with archive:
        try:
            members = archive.infolist()
        except Exception:
            return Extracted(skipped="corrupt", defects=("zip directory unreadable",))
        if len(members) > limits.max_zip_members:
            defects.append(f"zip has {len(members)} members, only the first {limits.max_zip_members} are listed")
            members = members[: limits.max_zip_members]
        names = [info.filename for info in members]
        sections: list[str] = []
        bomb = False
        for info in members:
            if info.is_dir() or kind_by_name(info.filename) is Kind.NONE:
                continue
            if depth + 1 > limits.max_nesting_depth:
                defects.append(f"zip member {info.filename!r}: nesting deeper than {limits.max_nesting_depth}")
                continue
            try:
                content = _read_member(archive, info, limits, budget)
            except MemberRefusedError as refusal:
                bomb = bomb or refusal.bomb
                defects.append(f"zip member {info.filename!r}: {refusal}")
                continue
            except Exception as error:  # zipfile, zlib, lzma, bz2: hostile data raises anything
                defects.append(f"zip member {info.filename!r}: unreadable ({type(error).__name__}: {error})")
                continue
            found = read_member(content, info.filename, depth + 1)
            defects.extend(f"zip member {info.filename!r}: {defect}" for defect in found.defects)
            if found.text:
                sections.append(f"{info.filename}\n{found.text}")
    text = "\n".join(names)
    if sections:
        text += "\n\n" + "\n\n".join(sections)
    return Extracted(
        text=truncate(text, limits.max_extracted_chars),
        skipped="zip bomb" if bomb else "",
        defects=tuple(defects),
    )


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ExtractionLimits, budget: ByteBudget
) -> bytes:
    if info.flag_bits & 0x1:
        raise MemberRefusedError("encrypted")
    declared = info.file_size
    if declared > limits.max_attachment_bytes:
        raise MemberRefusedError(f"declares {declared} bytes, above the attachment limit")
    cap = member_cap(info, max_ratio=limits.max_zip_ratio, budget=budget)
    with BoundedMember(archive.open(info), cap, budget) as stream:
        return b"".join(iter(lambda: stream.read(_CHUNK), b""))
