"""SpamAssassin corpus end to end: `postvault import`, then `postvault search --json` against an
independent oracle (the stdlib's `email.policy.default` reading the same files)."""

from __future__ import annotations

import email
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from email import policy
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.importers.mbox import looks_like_mbox, read_mbox
from postvault.cli import app
from storage.blobstore import sha256_hex

pytestmark = pytest.mark.slow
runner = CliRunner()
_WORD = re.compile(r"[^\W_]+")


class Oracle:
    """What each corpus file says, read with a different parser from postvault's."""

    def __init__(self, files: list[Path]) -> None:
        self.digest: dict[Path, str] = {}
        self.subject_words: dict[Path, list[str]] = {}
        self.from_addresses: dict[Path, set[str]] = {}
        self.date: dict[Path, datetime | None] = {}
        self.filenames: dict[Path, list[str]] = {}
        for path in files:
            # The importer's own mbox reader only names the message (its digest); what the
            # message says is read below by the stdlib, independently of postvault's parser.
            raw = path.read_bytes()
            if looks_like_mbox(raw[:64]):
                with path.open("rb") as stream:
                    (entry,) = list(read_mbox(stream, max_message_bytes=1 << 30))
                raw = entry.raw
            self.digest[path] = sha256_hex(raw)
            message = email.message_from_bytes(raw, policy=policy.default)
            self.subject_words[path] = _words(_safe(lambda: str(message["subject"] or "")))
            self.from_addresses[path] = {
                address.lower() for _name, address in getaddresses([_safe(lambda: str(message["from"] or ""))]) if "@" in address
            }
            self.date[path] = _date(_safe(lambda: str(message["date"] or "")))
            self.filenames[path] = [_safe(lambda p=part: p.get_filename() or "") for part in message.walk()]

    def digests(self, predicate: Callable[[Path], bool]) -> set[str]:
        return {self.digest[path] for path in self.digest if predicate(path)}


def _safe(read: Callable[[], str]) -> str:
    try:
        return read()
    except Exception:  # the oracle reads hostile mail too; a header it cannot read is empty
        return ""


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _date(text: str) -> datetime | None:
    try:
        value = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _has_phrase(words: list[str], phrase: list[str]) -> bool:
    return any(words[i : i + len(phrase)] == phrase for i in range(len(words) - len(phrase) + 1))


@pytest.fixture(scope="module")
def corpus(spam_assassin_corpus: Path, tmp_path_factory) -> tuple[Oracle, Path]:
    files = sorted(spam_assassin_corpus.rglob("*.txt"))
    assert len(files) == 6046
    data_dir = tmp_path_factory.mktemp("spam-assassin") / "var"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("POSTVAULT_DATA_DIR", str(data_dir))
        result = runner.invoke(app, ["import", str(spam_assassin_corpus)])
    assert result.exit_code == 0, result.output
    return Oracle(files), data_dir


def search(data_dir: Path, query: str) -> set[str]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("POSTVAULT_DATA_DIR", str(data_dir))
        result = runner.invoke(app, ["search", query, "--all", "--json", "--limit", "10000"])
    assert result.exit_code == 0, result.output
    return {json.loads(line)["sha256"] for line in result.stdout.splitlines()}


def test_every_file_is_archived_and_indexed(corpus) -> None:
    oracle, data_dir = corpus
    with pytest.MonkeyPatch.context() as env:
        env.setenv("POSTVAULT_DATA_DIR", str(data_dir))
        status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
        assert runner.invoke(app, ["verify", "--no-orphans"]).exit_code == 0
    assert status["messages"] == len(set(oracle.digest.values()))
    assert status["indexed"] == status["messages"] and status["backlog"] == 0


def test_from_field_matches_the_whole_address(corpus) -> None:
    oracle, data_dir = corpus
    senders = Counter(a for addresses in oracle.from_addresses.values() for a in addresses)
    for address, _count in senders.most_common(3):
        expected = oracle.digests(lambda p: address in oracle.from_addresses[p])
        assert search(data_dir, f"from:{address}") == expected, address


def test_subject_word_phrase_and_boolean(corpus) -> None:
    oracle, data_dir = corpus
    words = oracle.subject_words
    cases = {
        "subject:money": lambda p: "money" in words[p],
        'subject:"your website"': lambda p: _has_phrase(words[p], ["your", "website"]),
        "subject:(free OR save) -subject:money": lambda p: ("free" in words[p] or "save" in words[p]) and "money" not in words[p],
        "subject:razor AND NOT (subject:users OR subject:re)": lambda p: "razor" in words[p] and not ("users" in words[p] or "re" in words[p]),
    }
    for query, predicate in cases.items():
        expected = oracle.digests(predicate)
        assert expected, f"oracle found nothing for {query}: pick another word"
        assert search(data_dir, query) == expected, query


def test_date_range_matches_the_date_header(corpus) -> None:
    oracle, data_dir = corpus
    start, end = datetime(2002, 9, 1, tzinfo=timezone.utc), datetime(2002, 9, 8, tzinfo=timezone.utc)
    hits = search(data_dir, "after:2002-08-31 before:2002-09-08")
    plausible = {p for p, d in oracle.date.items() if d is not None and d.year >= 1970}
    dated = {oracle.digest[p] for p in plausible}
    expected = oracle.digests(lambda p: p in plausible and start <= oracle.date[p] < end)
    assert len(expected) > 100
    # Among messages with a readable, plausible Date header the hits are exact; one
    # without ("Thu, 29 Aug 0102") is dated by its mbox From_ line, which the oracle
    # does not model.
    assert hits & dated == expected


def test_attachment_file_names(corpus) -> None:
    oracle, data_dir = corpus
    for extension in ("jpg", "gif", "patch"):
        expected = oracle.digests(lambda p: any(extension in _words(name) for name in oracle.filenames[p]))
        assert expected, extension
        hits = search(data_dir, f"filename:{extension}")
        assert hits == expected, extension
        assert hits <= search(data_dir, "has:attachment")
