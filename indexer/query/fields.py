"""Where each query field looks in the index, and what a leaf of the AST matches there; shared by every backend."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from addresses import address_key, domain_key, message_id_key
from indexer.document import Address, IndexDocument
from indexer.query.analysis import index_text, split_words, without_surrogates
from indexer.query.ast import Field, Near, Phrase, Prefix, Term

# Index field names. Every backend uses these names, so a query plan reads the same
# against the tantivy schema and the OpenSearch mapping.
ID = "id"
DATE = "date"
SIZE = "size"
SUBJECT = "subject"
BODY = "body"
ATTACHMENT = "attachment"
FILENAME = "filename"
ADDRESS_ROLES = ("from", "to", "cc", "bcc")
MAILBOX = "mailbox"
DOMAIN = "domain"
MESSAGE_ID = "message_id"
SHA256 = "sha256"
HAS_ATTACHMENT = "has_attachment"


def address_words_field(role: str) -> str:
    """Analysed field holding the display names and the addresses of one header, as words."""
    return role


def address_exact_field(role: str) -> str:
    """Keyword field holding the whole lower-cased addresses of one header."""
    return f"{role}_addr"


ADDRESS_WORD_FIELDS = tuple(address_words_field(role) for role in ADDRESS_ROLES)
ADDRESS_EXACT_FIELDS = tuple(address_exact_field(role) for role in ADDRESS_ROLES)
CONTENT_FIELDS = (SUBJECT, BODY, ATTACHMENT, FILENAME)

# Analysed with the rule in ``indexer.query.analysis``. The values of a multi-valued field
# (several addresses, several file names) sit one position apart, as in tantivy; an
# OpenSearch mapping sets ``position_increment_gap: 1`` to agree.
ANALYSED_FIELDS = CONTENT_FIELDS + ADDRESS_WORD_FIELDS
# Matched whole, after ``normalise_exact``; never split into words.
KEYWORD_FIELDS = (*ADDRESS_EXACT_FIELDS, MAILBOX, DOMAIN, MESSAGE_ID, SHA256)


@dataclass(frozen=True)
class Targets:
    """The index fields one query field searches."""

    words: tuple[str, ...]  # analysed: words, phrases, prefixes, NEAR
    exact: tuple[str, ...]  # keyword: whole addresses, mailboxes, domains, ids


def _role(role: str) -> Targets:
    return Targets(words=(address_words_field(role),), exact=(address_exact_field(role),))


TARGETS: Mapping[Field, Targets] = MappingProxyType(
    {
        Field.TEXT: Targets(words=ANALYSED_FIELDS, exact=ADDRESS_EXACT_FIELDS),
        Field.FROM: _role("from"),
        Field.TO: _role("to"),
        Field.CC: _role("cc"),
        Field.BCC: _role("bcc"),
        Field.PARTICIPANTS: Targets(words=ADDRESS_WORD_FIELDS, exact=ADDRESS_EXACT_FIELDS),
        Field.SUBJECT: Targets(words=(SUBJECT,), exact=()),
        Field.BODY: Targets(words=(BODY,), exact=()),
        Field.ATTACHMENT: Targets(words=(ATTACHMENT,), exact=()),
        Field.FILENAME: Targets(words=(FILENAME,), exact=()),
        Field.MAILBOX: Targets(words=(), exact=(MAILBOX,)),
        Field.DOMAIN: Targets(words=(), exact=(DOMAIN,)),
        Field.MESSAGE_ID: Targets(words=(), exact=(MESSAGE_ID,)),
    }
)


def is_keyword_field(field: Field) -> bool:
    """True for fields matched as whole values only (mailbox, domain, message-id)."""
    return not TARGETS[field].words


def takes_addresses(field: Field) -> bool:
    """True for fields where ``local@domain`` means one whole address."""
    return bool(TARGETS[field].words and TARGETS[field].exact)


# --- normalising whole values: the archive's one normaliser, at index and at query time ---


def _unbracket(text: str) -> str:
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text


# One '@' with something on each side, none of the characters that delimit addresses in
# headers and prose, and a domain ending in a letter or digit, or in the root's dot that
# ``domain_key`` drops ("alice@example.com." at the end of a sentence is that address).
_ADDRESS_RE = re.compile(r'[^\s@<>(),;:"\[\]]+@[^\s@<>(),;:"\[\]]*[^\W_]\.?')


def is_address(text: str) -> bool:
    """``local@domain``, optionally in angle brackets."""
    return _ADDRESS_RE.fullmatch(_unbracket(text)) is not None


def normalise_exact(field: Field, text: str) -> str:
    """The keyword a value of ``field`` is stored and searched as."""
    if field is Field.DOMAIN:
        return domain_key(text)
    if field is Field.MESSAGE_ID:
        return message_id_key(text)
    return address_key(text)


# --- what one leaf of the AST matches: alternatives, any one of which is a hit ---


@dataclass(frozen=True)
class Exact:
    """The keyword field holds exactly ``value``."""

    field: str
    value: str


@dataclass(frozen=True)
class Words:
    """The analysed field holds ``words`` adjacent and in order (one word: just that word)."""

    field: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class WordsNear:
    """The analysed field holds both words with at most ``distance`` words between, in either order."""

    field: str
    left: str
    right: str
    distance: int


@dataclass(frozen=True)
class StartsWith:
    """A word (analysed field) or the whole value (keyword field) begins with ``prefix``."""

    field: str
    prefix: str
    keyword: bool


Match = Exact | Words | WordsNear | StartsWith


def leaf_matches(node: Term | Phrase | Prefix | Near) -> tuple[Match, ...]:
    """The alternatives a leaf matches; empty when it can match nothing (no searchable words)."""
    targets = TARGETS[node.field]
    if isinstance(node, Term):
        return _term_matches(node.field, node.text, targets)
    if isinstance(node, Phrase):
        words = tuple(word for text in node.words for word in split_words(text))
        if not targets.words:
            value = normalise_exact(node.field, " ".join(node.words))
            return tuple(Exact(field, value) for field in targets.exact) if value else ()
        return tuple(Words(field, words) for field in targets.words) if words else ()
    if isinstance(node, Prefix):
        return _prefix_matches(node.field, node.prefix, targets)
    left, right = split_words(node.left), split_words(node.right)
    if len(left) != 1 or len(right) != 1 or node.distance < 0:
        return ()
    return tuple(WordsNear(field, left[0], right[0], node.distance) for field in targets.words)


def _term_matches(field: Field, text: str, targets: Targets) -> tuple[Match, ...]:
    if not targets.words:
        value = normalise_exact(field, text)
        return tuple(Exact(name, value) for name in targets.exact) if value else ()
    if targets.exact and is_address(text):
        address = address_key(text)
        exact = tuple(Exact(name, address) for name in targets.exact)
        # A whole address is looked up whole in address headers (as words it would also
        # match bob.alice@example.com), and as words where people write addresses in text.
        words = split_words(address)
        return exact + tuple(Words(name, words) for name in targets.words if name not in ADDRESS_WORD_FIELDS)
    words = split_words(text)
    return tuple(Words(name, words) for name in targets.words) if words else ()


def _prefix_matches(field: Field, prefix: str, targets: Targets) -> tuple[Match, ...]:
    if not targets.words or (targets.exact and "@" in prefix):
        value = prefix.strip().lower().lstrip("<")
        return tuple(StartsWith(name, value, keyword=True) for name in targets.exact) if value else ()
    words = split_words(prefix)
    if len(words) != 1:
        return ()
    return tuple(StartsWith(name, words[0], keyword=False) for name in targets.words)


# --- what a document holds in each analysed and keyword field ---


def _address_words(addresses: tuple[Address, ...]) -> tuple[str, ...]:
    values: list[str] = []
    for address in addresses:
        if address.name:
            values.append(address.name)
        if address.address:
            values.append(address.address)
    return tuple(values)


def document_values(document: IndexDocument) -> dict[str, tuple[str, ...]]:
    """Text for every analysed and keyword field of ``document``, keyword values normalised."""
    roles = {"from": document.from_, "to": document.to, "cc": document.cc, "bcc": document.bcc}
    values: dict[str, tuple[str, ...]] = {
        SUBJECT: (document.subject,),
        BODY: (document.body,),
        ATTACHMENT: (document.attachment_text,),
        FILENAME: document.filenames,
        MAILBOX: tuple(address_key(m) for m in document.mailboxes),
        DOMAIN: tuple(domain_key(d) for d in document.domains),
        MESSAGE_ID: (message_id_key(document.message_id),),
        SHA256: (document.sha256.strip().lower(),),
    }
    for role, addresses in roles.items():
        values[address_words_field(role)] = _address_words(addresses)
        values[address_exact_field(role)] = tuple(address_key(a.address) for a in addresses if a.address)
    return {
        name: tuple(without_surrogates(index_text(v) if name in ANALYSED_FIELDS else v) for v in texts if v)
        for name, texts in values.items()
    }
