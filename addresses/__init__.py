"""The one spelling of an address, a domain and a message id under which the archive stores, scopes and searches them."""

from __future__ import annotations

import re
import unicodedata

# Every package compares these values, and scope correctness depends on their agreeing:
# the archiver files a message under the mailboxes and domains it names, the scope filter
# and the catalogue's scope check look them up, the query fields search them, and a
# domain's policy is found by them. So each is normalised here, and only here.

# IDNA's other label separators (RFC 3490 section 3.1): ideographic and full-width stops.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
# RFC 5321 section 4.5.3.1: 64 octets of local part, 255 of domain, and the "@".
MAX_ADDRESS = 320
# re's \s on str is str.isspace (both are Py_UNICODE_ISSPACE), tested in C, not per character in Python.
_SPACE = re.compile(r"\s")


def domain_key(text: str) -> str:
    """``text`` as a domain is compared: lower case, internationalised labels as Unicode.

    Surrounding space and a leading "@" (as people write a domain in a scope) go, and so
    does the root's trailing dot ("example.com." is the absolute form of example.com, RFC
    1034 section 3.1). An A-label ("xn--bcher-kva") and its U-label ("bücher") are one
    key; labels are NFKC-normalised and lower-cased, as UTS 46 maps them.
    """
    name = text.strip().lstrip("@").translate(_DOTS).rstrip(".")
    if name.isascii() and "xn--" not in name.lower():
        return name.lower()
    return ".".join(_label_key(label) for label in name.split("."))


def _label_key(label: str) -> str:
    if label[:4].lower() == "xn--" and label.isascii():
        try:
            decoded = _fold(label[4:].encode("ascii").decode("punycode"))
        except UnicodeError:
            return label.lower()
        # Only the one A-label a U-label encodes to stands for it (RFC 5891 section 5.4
        # asks the same round trip); a label that decodes to plain ASCII, or that some
        # other spelling decodes to, stays itself, so no sender can file mail under
        # another domain's key.
        if not decoded.isascii() and decoded.encode("punycode") == label[4:].lower().encode("ascii"):
            return decoded
        return label.lower()
    return _fold(label)


def _fold(label: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", label).lower())


def address_key(text: str) -> str:
    """``text`` as an address (addr-spec) is compared: ``local@domain_key(domain)``.

    Angle brackets and a source route ("<@relay:alice@example.com>", which RFC 5321
    section 4.1.1.3 says to ignore) go. A quoted local part is unquoted: the quotes and
    backslashes of RFC 5322 section 3.2.4 are not part of the name, so ``"alice"@x`` is
    alice@x. The local part is lower-cased and NFC-normalised (RFC 6532 section 3.1):
    strictly it is case-sensitive, but mail systems treat it as not, and an archive that
    missed a custodian's mail over case would be the worse error. Text without an "@" is
    lower-cased only, so a query's ``mailbox:alice`` still means something.
    """
    value = text.strip().lstrip("<").rstrip(">").strip()
    if value.startswith("@") and ":" in value:
        value = value.partition(":")[2]
    if '"' in value or "\\" in value:
        local, at, domain = _unquoted(value)
    else:
        local, at, domain = value.rpartition("@")
    if not at:
        return unicodedata.normalize("NFC", value.lower())
    return f"{unicodedata.normalize('NFC', local.lower())}@{domain_key(domain)}"


def _unquoted(value: str) -> tuple[str, str, str]:
    """(local part without quotes and quoted-pairs, "@", domain), split at the last "@" outside quotes."""
    out: list[str] = []
    split: tuple[int, int] | None = None
    quoted = escaped = False
    for position, char in enumerate(value):
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        else:
            if char == "@" and not quoted:
                split = (len(out), position)
            out.append(char)
    if split is None:
        return "", "", "".join(out)
    return "".join(out[: split[0]]), "@", value[split[1] + 1 :]


def mailbox_key(text: str) -> str:
    """``address_key(text)`` if it is a mailbox one can file mail under, else ""."""
    key = address_key(text)
    local, at, domain = key.rpartition("@")
    if not at or not local or not domain or len(key) > MAX_ADDRESS or _SPACE.search(key):
        return ""
    return key


def domain_of(key: str) -> str:
    """The domain of an address key (``address_key`` already normalised it)."""
    return key.rpartition("@")[2]


def message_id_key(text: str) -> str:
    """``text`` as a message id is compared: without its angle brackets, lower-cased.

    RFC 5322 section 3.6.4 puts the brackets outside the id. Ids are otherwise opaque;
    they are compared case-insensitively because a false match by case alone is not a
    realistic risk, while ids copied through tools that change case are.
    """
    return text.strip().lstrip("<").rstrip(">").strip().lower()


__all__ = ["MAX_ADDRESS", "address_key", "domain_key", "domain_of", "mailbox_key", "message_id_key"]
