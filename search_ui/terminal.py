"""Mail text made safe to print on a terminal: no control sequences, no reordering (invariant 9)."""

from __future__ import annotations

import re

# What a terminal would act on instead of showing:
# - C0 controls and DEL (ESC starts every ANSI/OSC sequence: colours, cursor moves, window
#   titles, OSC 8 links, OSC 52 clipboard writes; CR and BS overwrite what was printed);
# - C1 controls (U+0080-U+009F; U+009B is a one-character CSI to many terminals);
# - the bidirectional overrides, embeddings and isolates, and the marks that steer them,
#   which make text display in an order other than the one it has ("Trojan Source",
#   CVE-2021-42574);
# - lone surrogates (bytes kept with ``surrogateescape``), which no terminal encoding takes;
# - U+2028/U+2029, which some terminals and pagers treat as line breaks.
_CONTROL = "\x00-\x08\x0b-\x1f\x7f-\x9f"
_STEERING = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff"
_UNSAFE_ONE_LINE = re.compile(f"[\t\n{_CONTROL}{_STEERING}]")
_UNSAFE_LINES = re.compile(f"[{_CONTROL}{_STEERING}]")  # keeps tab and newline
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f{_STEERING}]")  # json.dumps already escapes C0


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block: ESC shows as "␛"
    if code == 0x7F:
        return "\u2421"  # ␡
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return f"<U+{code:04X}>"


def terminal_safe(text: str, *, multiline: bool = False) -> str:
    """``text`` with every character a terminal would act on shown as a visible stand-in.

    One-line values (subjects, addresses) lose their tabs and line breaks too, so a
    header cannot fake extra rows; ``multiline`` keeps tab and newline for bodies. The
    result is plain text: print it with markup off (rich: as a ``Text``).
    """
    pattern = _UNSAFE_LINES if multiline else _UNSAFE_ONE_LINE
    return pattern.sub(_shown, text)


def json_safe(line: str) -> str:
    """A JSON text with C1 controls, bidi controls and lone surrogates written as ``\\uXXXX``.

    ``json.dumps(..., ensure_ascii=False)`` escapes only C0 controls; these characters can
    appear only inside its strings, where the escape means the same character, so the data
    a program reads back is unchanged.
    """
    return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", line)


def excerpt(text: str, position: int, *, width: int = 60) -> tuple[str, int]:
    """At most about ``2 * width`` characters of ``text`` around ``position``, made safe,
    and where ``position`` falls in them: for echoing a long query under its error."""
    position = max(0, min(position, len(text)))
    start = max(0, position - width)
    end = min(len(text), position + width)
    before = ("…" if start else "") + terminal_safe(text[start:position])
    after = terminal_safe(text[position:end]) + ("…" if end < len(text) else "")
    return before + after, len(before)
