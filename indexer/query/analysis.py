"""How text becomes index terms: the one word-splitting rule every backend's analyzer must follow."""

from __future__ import annotations

import re
from bisect import bisect_right

# The rule (tantivy's ``default`` analyzer, which an OpenSearch analyzer must reproduce):
#   0. Chinese and Japanese script characters (``IDEOGRAPHIC``) are words of one character:
#      those languages put no spaces between words, so a run of them is a sentence, not a
#      word (and at 3-4 bytes a character, any sentence over 13 characters would be
#      dropped whole by rule 2). Indexed text goes through ``index_text``, which spaces
#      them out for the engines; a query word of several such characters becomes a phrase
#      of them, so "会議" finds "会議室" too: substring search, as CJK search engines do;
#   1. a word is a maximal run of characters that are Unicode Alphabetic or Numeric
#      (Rust ``char::is_alphanumeric``; Java ``[\p{IsAlphabetic}\p{N}]``);
#   2. a word of MAX_TOKEN_BYTES or more UTF-8 bytes (counted before lower-casing) would be
#      dropped by the engines (tantivy's ``default`` analyzer, and Lucene refuses terms over
#      32766 bytes), so ``index_text`` cuts it first into pieces of at most
#      MAX_TOKEN_BYTES - 1 bytes, one word each: a long token (a SHA-1, a tracking id, a
#      long compound word) is then found as the phrase of its pieces, in both engines, and
#      a prefix of its first piece finds it too;
#   3. each character is lower-cased on its own (so a final sigma becomes plain sigma).
# No stemming, no stop words, no accent folding: "Straße" matches only "straße".
MAX_TOKEN_BYTES = 40

# Han ideographs (with the iteration and closing marks and Hangzhou numerals), kana
# (hiragana, katakana, half-width katakana, the prolonged sound mark) and bopomofo. Hangul
# is not here: Korean separates its words with spaces. Thai, Lao, Khmer and Myanmar write
# without spaces too but build syllables from combining marks; they keep rule 1.
IDEOGRAPHIC = (
    "\u3005-\u3007\u3021-\u3029\u3038-\u303c\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff"
    "\u3105-\u312f\u31a0-\u31bf\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
    "\U0001b000-\U0001b16f\U00020000-\U0002fa1f\U00030000-\U000323af"
)
_IDEOGRAPH_RE = re.compile(f"[{IDEOGRAPHIC}]")

# Python's ``str.isalnum`` misses two kinds of characters that Rust counts: Other_Alphabetic
# marks (Indic and Thai vowel signs, circled letters) and letters newer than this Python's
# Unicode tables. These ranges (hex code points) were computed by asking tantivy about every
# code point; tests/indexer/test_tantivy_backend.py re-checks them against the installed
# tantivy, so an engine upgrade that moves the rule fails loudly instead of silently
# missing words.
_EXTRA_WORD_CHARS = """
345 363-36F 5B0-5BD 5BF 5C1-5C2 5C4-5C5 5C7 610-61A 64B-657 659-65F 670 6D6-6DC 6E1-6E4 6E7-6E8 6ED
711 730-73F 7A6-7B0 816-817 81B-823 825-827 829-82C 88F 897 8D4-8DF 8E3-8E9 8F0-903 93A-93B 93E-94C
94E-94F 955-957 962-963 981-983 9BE-9C4 9C7-9C8 9CB-9CC 9D7 9E2-9E3 A01-A03 A3E-A42 A47-A48 A4B-A4C
A51 A70-A71 A75 A81-A83 ABE-AC5 AC7-AC9 ACB-ACC AE2-AE3 AFA-AFC B01-B03 B3E-B44 B47-B48 B4B-B4C
B56-B57 B62-B63 B82 BBE-BC2 BC6-BC8 BCA-BCC BD7 C00-C04 C3E-C44 C46-C48 C4A-C4C C55-C56 C5C C62-C63
C81-C83 CBE-CC4 CC6-CC8 CCA-CCC CD5-CD6 CDC CE2-CE3 CF3 D00-D03 D3E-D44 D46-D48 D4A-D4C D57 D62-D63
D81-D83 DCF-DD4 DD6 DD8-DDF DF2-DF3 E31 E34-E3A E4D EB1 EB4-EB9 EBB-EBC ECD F71-F83 F8D-F97 F99-FBC
102B-1036 1038 103B-103E 1056-1059 105E-1060 1062-1064 1067-106D 1071-1074 1082-108D 108F 109A-109D
1712-1713 1732-1733 1752-1753 1772-1773 17B6-17C8 1885-1886 18A9 1920-192B 1930-1938 1A17-1A1B
1A55-1A5E 1A61-1A74 1ABF-1AC0 1ACC-1ACE 1B00-1B04 1B35-1B43 1B80-1B82 1BA1-1BA9 1BAC-1BAD 1BE7-1BF1
1C24-1C36 1C89-1C8A 1DD3-1DF4 24B6-24E9 2DE0-2DFF A674-A67B A69E-A69F A7CB-A7CF A7D2 A7D4 A7DA-A7DC
A7F1 A802 A80B A823-A827 A880-A881 A8B4-A8C3 A8C5 A8FF A926-A92A A947-A952 A980-A983 A9B4-A9BF A9E5
AA29-AA36 AA43 AA4C-AA4D AA7B-AA7D AAB0 AAB2-AAB4 AAB7-AAB8 AABE AAEB-AAEF AAF5 ABE3-ABEA FB1E
10376-1037A 105C0-105F3 10940-10959 10A01-10A03 10A05-10A06 10A0C-10A0F 10D24-10D27 10D40-10D65
10D69 10D6F-10D85 10EAB-10EAC 10EC2-10EC7 10EFA-10EFC 11000-11002 11038-11045 11073-11074
11080-11082 110B0-110B8 110C2 11100-11102 11127-11132 11145-11146 11180-11182 111B3-111BF
111CE-111CF 1122C-11234 11237 1123E-11241 112DF-112E8 11300-11303 1133E-11344 11347-11348
1134B-1134C 11357 11362-11363 11380-11389 1138B 1138E 11390-113B5 113B7-113C0 113C2 113C5
113C7-113CA 113CC-113CD 113D1 113D3 11435-11441 11443-11445 114B0-114C1 115AF-115B5 115B8-115BE
115DC-115DD 11630-1163E 11640 116AB-116B5 116D0-116E3 1171D-1172A 1182C-11838 11930-11935
11937-11938 1193B-1193C 11940 11942 119D1-119D7 119DA-119DF 119E4 11A01-11A0A 11A35-11A39
11A3B-11A3E 11A51-11A5B 11A8A-11A97 11B60-11B67 11BC0-11BE0 11BF0-11BF9 11C2F-11C36 11C38-11C3E
11C92-11CA7 11CA9-11CB6 11D31-11D36 11D3A 11D3C-11D3D 11D3F-11D41 11D43 11D47 11D8A-11D8E
11D90-11D91 11D93-11D96 11DB0-11DDB 11DE0-11DE9 11EF3-11EF6 11F00-11F10 11F12-11F3A 11F3E-11F40
11F50-11F59 1342F 13441-13446 13460-143FA 16100-1612E 16130-16139 16D40-16D6C 16D70-16D79
16EA0-16EB8 16EBB-16ED3 16F4F 16F51-16F87 16F8F-16F92 16FF0-16FF6 187F8-187FF 18CFF 18D09-18D1E
18D80-18DF2 1B132 1B155 1BC9E 1CCF0-1CCF9 1D2C0-1D2D3 1DF25-1DF2A 1E000-1E006 1E008-1E018
1E01B-1E021 1E023-1E024 1E026-1E02A 1E030-1E06D 1E08F 1E4D0-1E4EB 1E4F0-1E4F9 1E5D0-1E5ED
1E5F0-1E5FA 1E6C0-1E6DE 1E6E0-1E6F5 1E6FE-1E6FF 1E947 1F130-1F149 1F150-1F169 1F170-1F189
2B739-2B73F 2CEA2-2CEAD 2EBF0-2EE5D 31350-33479
"""

# Lower-case mappings newer than this Python's Unicode tables (code point: lower-case).
_EXTRA_LOWER = """
1C89:1C8A A7CB:264 A7CC:A7CD A7CE:A7CF A7D2:A7D3 A7D4:A7D5 A7DA:A7DB A7DC:19B 10D50:10D70
10D51:10D71 10D52:10D72 10D53:10D73 10D54:10D74 10D55:10D75 10D56:10D76 10D57:10D77 10D58:10D78
10D59:10D79 10D5A:10D7A 10D5B:10D7B 10D5C:10D7C 10D5D:10D7D 10D5E:10D7E 10D5F:10D7F 10D60:10D80
10D61:10D81 10D62:10D82 10D63:10D83 10D64:10D84 10D65:10D85 16EA0:16EBB 16EA1:16EBC 16EA2:16EBD
16EA3:16EBE 16EA4:16EBF 16EA5:16EC0 16EA6:16EC1 16EA7:16EC2 16EA8:16EC3 16EA9:16EC4 16EAA:16EC5
16EAB:16EC6 16EAC:16EC7 16EAD:16EC8 16EAE:16EC9 16EAF:16ECA 16EB0:16ECB 16EB1:16ECC 16EB2:16ECD
16EB3:16ECE 16EB4:16ECF 16EB5:16ED0 16EB6:16ED1 16EB7:16ED2 16EB8:16ED3
"""


def _parse_ranges(table: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    starts: list[int] = []
    ends: list[int] = []
    for item in table.split():
        first, _, last = item.partition("-")
        starts.append(int(first, 16))
        ends.append(int(last or first, 16))
    return tuple(starts), tuple(ends)


_STARTS, _ENDS = _parse_ranges(_EXTRA_WORD_CHARS)
_LOWER = {int(upper, 16): chr(int(lower, 16)) for upper, lower in (pair.split(":") for pair in _EXTRA_LOWER.split())}


def is_word_char(char: str) -> bool:
    """True if ``char`` (one character) belongs inside a word."""
    if char.isalnum():
        return True
    index = bisect_right(_STARTS, ord(char)) - 1
    return index >= 0 and ord(char) <= _ENDS[index]


def _lower(word: str) -> str:
    if word.isascii():
        return word.lower()
    return "".join(_LOWER.get(ord(char)) or char.lower() for char in word)


def split_words(text: str) -> tuple[str, ...]:
    """The words the index holds for ``text``, in order, lower-cased; long words in pieces."""
    return tuple(_lower(word) for word in words_as_written(text))


def words_as_written(text: str) -> tuple[str, ...]:
    """The words of ``text`` before lower-casing (long words in pieces), for a query's AST.

    The AST keeps words as written and each backend's compiler analyses them once, through
    ``split_words``. Analysing twice is not harmless: "İ" lower-cases to "i" plus a
    combining dot (U+0307), which is not a word character, so a second split would cut
    "i̇stanbul" into "i" and "stanbul" and find nothing.
    """
    words: list[str] = []
    start = None
    text_spaced = index_text(text)
    for position, char in enumerate(text_spaced):
        if is_word_char(char):
            if start is None:
                start = position
        elif start is not None:
            words.append(text_spaced[start:position])
            start = None
    if start is not None:
        words.append(text_spaced[start:])
    return tuple(word for word in words if len(word.encode("utf-8")) < MAX_TOKEN_BYTES)


def is_ideographic(word: str) -> bool:
    """True for a word of one ideographic character (rule 0)."""
    return len(word) == 1 and _IDEOGRAPH_RE.match(word) is not None


def index_text(text: str) -> str:
    """``text`` as an analysed field is indexed: every ideographic character (rule 0) set
    apart by spaces, and every long word (rule 2) cut into pieces set apart by spaces, so
    that engines splitting at non-word characters make each a word."""
    if not text.isascii() and _IDEOGRAPH_RE.search(text) is not None:
        text = _IDEOGRAPH_RE.sub(r" \g<0> ", text)
    if _LONG_RUN not in text.encode("utf-8", "surrogatepass").translate(_RUN_BYTES):
        return text
    return _cut_long_words(text)


# Every byte that may belong to a word (ASCII letters and digits, and all bytes of non-ASCII
# characters) becomes "a", every other byte a space: a text without MAX_TOKEN_BYTES "a"s in
# a row has no long word. Two C calls per value, where a regular expression looking for
# long words cost more than all the rest of indexing a field.
_RUN_BYTES = bytes(ord("a") if byte >= 0x80 or chr(byte).isalnum() else ord(" ") for byte in range(256))
_LONG_RUN = b"a" * MAX_TOKEN_BYTES


def _cut_long_words(text: str) -> str:
    """``text`` with each word of MAX_TOKEN_BYTES or more cut into pieces (rule 2)."""
    min_chars = MAX_TOKEN_BYTES // 4  # a shorter run of characters cannot be a long word
    chunks = text.split()
    parts: list[str] = []
    done = cursor = 0
    for chunk in chunks:
        if len(chunk) < min_chars:
            continue
        at = text.find(chunk, cursor)
        cursor = at + len(chunk)
        if len(chunk.encode("utf-8", "surrogatepass")) < MAX_TOKEN_BYTES:
            continue
        for start, end in _word_spans(chunk, at):
            word = text[start:end]
            if len(word.encode("utf-8")) >= MAX_TOKEN_BYTES:
                parts.append(text[done:start])
                parts.append(" ".join(_pieces(word)))
                done = end
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def _word_spans(run: str, offset: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = None
    for position, char in enumerate(run):
        if is_word_char(char):
            if start is None:
                start = position
        elif start is not None:
            spans.append((offset + start, offset + position))
            start = None
    if start is not None:
        spans.append((offset + start, offset + len(run)))
    return spans


def _pieces(word: str) -> list[str]:
    """``word`` cut greedily into pieces of at most MAX_TOKEN_BYTES - 1 UTF-8 bytes."""
    pieces: list[str] = []
    start = size = 0
    for position, char in enumerate(word):
        width = len(char.encode("utf-8"))
        if size + width >= MAX_TOKEN_BYTES:
            pieces.append(word[start:position])
            start, size = position, 0
        size += width
    pieces.append(word[start:])
    return pieces


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (same length, so offsets hold).

    Text decoded with ``surrogateescape``, or JSON with a stray ``\\ud800``, carries them, and
    no UTF-8 engine accepts them.
    """
    return text if text.isascii() else _SURROGATE_RE.sub("\ufffd", text)
