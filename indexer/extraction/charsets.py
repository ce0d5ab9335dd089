"""Bytes to text: the declared charset first, then fallbacks, so no text is ever lost."""

from __future__ import annotations

import codecs
from functools import lru_cache

# Labels that mail programs write but Python does not know, or knows by a narrower
# codec than the one senders actually used (the WHATWG Encoding Standard makes the
# same substitutions for the web, e.g. ISO-8859-1 -> windows-1252).
_ALIASES = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "x-euc-cn": "gb18030",
    "big5": "cp950",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "windows-31j": "cp932",
    "iso-2022-jp": "iso2022_jp_2",
    "iso-8859-8-i": "iso8859-8",
    "iso-8859-8-e": "iso8859-8",
    "iso-8859-6-i": "iso8859-6",
    "iso-8859-6-e": "iso8859-6",
    "windows-874": "cp874",
    "tis-620": "cp874",
    "x-mac-roman": "mac-roman",
    "ucs-2": "utf-16",
    "iso-10646-ucs-2": "utf-16",
    "utf8": "utf-8",
}
# Labels that say "8-bit, charset not known" (RFC 1428 unknown-8bit and relatives):
# not a defect of the message, just no information.
_UNSPECIFIED = frozenset({"unknown-8bit", "x-unknown", "unknown", "8bit", "default", "x-user-defined"})
# Text codecs that are not character sets: a hostile label must not select them.
_REFUSED = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"})
_SINGLE_BYTE_FALLBACKS = ("cp1252", "latin-1")
# Codecs where one bad byte sequence should cost one character, not the whole text.
_MULTI_BYTE = frozenset({
    "cp932", "cp949", "cp950", "gb18030", "gbk", "gb2312", "big5", "big5hkscs", "hz", "johab",
    "euc_jp", "euc_jis_2004", "euc_jisx0213", "euc_kr", "shift_jis", "shift_jis_2004",
    "shift_jisx0213", "iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_2004",
    "iso2022_jp_3", "iso2022_jp_ext", "iso2022_kr", "utf-16", "utf-16-be", "utf-16-le",
    "utf-32", "utf-32-be", "utf-32-le", "utf-7",
})


@lru_cache(maxsize=512)
def resolve_charset(label: str | None) -> tuple[str | None, bool]:
    """The Python codec for a MIME charset label, and whether the label was understood.

    ``(None, True)`` means no usable label was given; ``(None, False)`` an unknown one.
    """
    if not label:
        return None, True
    name = label.strip().strip("\"'").lower()
    # RFC 2231 section 5 allows a language suffix: utf-8*en.
    name = name.partition("*")[0]
    if not name or name in _UNSPECIFIED:
        return None, True
    name = _ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None, False
    if info.name in _REFUSED or not getattr(info, "_is_text_encoding", True):
        return None, False
    return info.name, True


def decode_bytes(data: bytes, label: str | None = None) -> tuple[str, str]:
    """Decode with the declared charset, then UTF-8, then windows-1252, then Latin-1.

    Returns ``(text, problem)``; ``problem`` is empty when the declared charset (or plain
    ASCII) decoded cleanly, else a short reason for the defect list.
    """
    if not data:
        return "", ""
    codec, understood = resolve_charset(label)
    unknown = "" if understood else f"unknown charset {label!r}"
    if data.isascii() and codec in (None, "ascii", "utf-8", "cp1252", "iso8859-15"):
        return data.decode("ascii"), unknown
    if codec is not None:
        try:
            return data.decode(codec), ""
        except (UnicodeDecodeError, LookupError):
            pass
    # Undeclared or ASCII-declared 8-bit text is everyday mail, not worth a defect.
    lenient = understood and codec in (None, "ascii")
    if codec != "utf-8":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return text, unknown or ("" if lenient else f"invalid {label} bytes, decoded as utf-8")
    if codec in _MULTI_BYTE:
        # A CJK text with one stray byte is better read in its own charset with one
        # replacement character than as windows-1252 mojibake.
        text = data.decode(codec, "replace")
        if text.count("\ufffd") <= max(2, len(text) // 50):
            return text, f"invalid {label} bytes replaced"
    for fallback in _SINGLE_BYTE_FALLBACKS:
        try:
            text = data.decode(fallback)
        except UnicodeDecodeError:
            continue
        return text, unknown or ("" if lenient and codec is None else f"invalid {label} bytes, decoded as {fallback}")
    raise AssertionError("latin-1 decodes every byte string")  # pragma: no cover
