"""The stdlib feed parser's boundary and end-of-line matching, without its per-part regex work."""

from __future__ import annotations

import re
import types
from email import feedparser

# email.feedparser compiles, for every multipart it meets, the pattern
#   (?P<sep>--BOUNDARY)(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$
# Boundaries are unique per message (RFC 2046 section 5.1.1 asks senders to make them
# so), so re's compile cache never hits and each compile runs the pure-Python regex
# parser over the escaped boundary: a seventh of the CPU of parsing ordinary mail with
# attachments. The matcher below gives the same matches: a prefix test for the separator,
# then one shared pattern for the rest of the line.
_PREFIX = "(?P<sep>"
_TAIL = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
_AFTER_SEPARATOR = re.compile(_TAIL[1:])
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


class BoundaryMatcher:
    """``match(line)`` as the compiled boundary pattern's: the feed parser uses nothing else."""

    __slots__ = ("separator",)

    def __init__(self, separator: str) -> None:
        self.separator = separator

    def match(self, line: str) -> re.Match[str] | None:
        if not line.startswith(self.separator):
            return None
        return _AFTER_SEPARATOR.match(line, len(self.separator))


# The feed parser finds the line break that ends a part's payload with
# NLCRE_eol.search(payload), a pattern anchored at the end (``(\r\n|\r|\n)\Z``) that
# search() still tries at every position from the start: a scan of every attachment.
# Any match starts in the last two characters, so searching from there finds the same one.
_END_OF_LINE = feedparser.NLCRE_eol


class EndOfLine:
    """``search(text)`` as ``NLCRE_eol.search(text)``, looking at the end of ``text`` only."""

    __slots__ = ()

    def search(self, text: str) -> re.Match[str] | None:
        return _END_OF_LINE.search(text, max(0, len(text) - 2))


def _compile(pattern, flags=0):  # type: ignore[no-untyped-def]
    if flags == 0 and isinstance(pattern, str) and pattern.startswith(_PREFIX) and pattern.endswith(_TAIL):
        # re.escape puts a backslash before single characters only, so dropping each
        # backslash (and keeping what follows it) gives the separator back.
        return BoundaryMatcher(_ESCAPE.sub(r"\1", pattern[len(_PREFIX) : -len(_TAIL)]))
    return re.compile(pattern, flags)


def install() -> None:
    """Give email.feedparser the two matchers above, in place of its per-boundary
    ``re.compile`` and of its ``NLCRE_eol``.

    Only that module's view of ``re`` changes, and only ``compile`` of the boundary
    pattern; every other pattern and every other module use ``re`` as before.
    """
    feedparser.NLCRE_eol = EndOfLine()  # type: ignore[assignment]
    if getattr(feedparser.re, "compile", None) is _compile:
        return
    shim = types.ModuleType("re")
    shim.__dict__.update({name: getattr(re, name) for name in dir(re) if not name.startswith("__")})
    shim.compile = _compile  # type: ignore[attr-defined]
    feedparser.re = shim  # type: ignore[attr-defined]
