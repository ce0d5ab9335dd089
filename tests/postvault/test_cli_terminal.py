"""Mail is data on the terminal: hostile subjects and bodies print as text, never as escapes or markup (invariant 9)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postvault.cli import app
from search_ui.terminal import excerpt, json_safe, terminal_safe

runner = CliRunner()

ESC = "\x1b"
# What a terminal acts on: ANSI colours and screen clearing, an OSC window title, an OSC 8
# link, the one-character C1 CSI, a right-to-left override and a carriage return.
HOSTILE = f"{ESC}[31mred{ESC}[0m {ESC}[2J {ESC}]0;pwned\x07 {ESC}]8;;file:///etc/passwd\x07x{ESC}]8;;\x07 \x9b31m \u202eevil\r"
MARKUP = "[/x] [bold red]alert[/] [link=file:///etc/passwd]click[/link] [/]"


def _encoded(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def _raw(subject_header: str, body: str, sender: str = "Alice <alice@example.com>") -> bytes:
    head = (
        f"From: {sender}\r\nTo: bob@example.org\r\nSubject: {subject_header}\r\n"
        "Date: Tue, 05 Mar 2024 09:30:00 +0000\r\nMessage-ID: <{id}@test.postvault>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return (head.replace("{id}", str(abs(hash(subject_header + body)))) + body + "\r\n").encode("utf-8")


@pytest.fixture
def hostile_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("POSTVAULT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("POSTVAULT_INDEX_WORKERS", "1")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    mail = tmp_path / "mail"
    mail.mkdir()
    messages = {
        "markup": _raw(f"falcon {MARKUP}", f"falcon body {MARKUP}"),
        "escapes": _raw(f"falcon {_encoded(HOSTILE)}", f"falcon body {HOSTILE}\nsecond line",
                        sender=f"{_encoded('Mallory ' + ESC + '[5m')} <mallory@evil.test>"),
        "raw-escape": _raw(f"falcon raw {ESC}[41mheader", "falcon"),
    }
    for name, raw in messages.items():
        (mail / f"{name}.eml").write_bytes(raw)
    result = runner.invoke(app, ["import", str(mail), "--mailbox", "alice@example.com"])
    assert result.exit_code == 0, result.output
    found = runner.invoke(app, ["search", "falcon", "--all", "--json"])
    assert found.exit_code == 0, found.output
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert len(hits) == 3
    return {hit["subject"]: str(hit["id"]) for hit in hits}


def _assert_inert(output: str) -> None:
    assert ESC not in output
    assert "\x9b" not in output and "\u202e" not in output and "\r" not in output and "\x07" not in output


def test_the_search_table_prints_hostile_subjects_as_text(hostile_archive: dict[str, str]) -> None:
    result = runner.invoke(app, ["search", "falcon", "--all"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output  # a "[/x]" subject raised rich's MarkupError
    _assert_inert(result.output)
    assert "[/x]" in result.output and "[bold red]alert[/]" in result.output  # shown, not interpreted
    assert "␛[31mred" in result.output and "<U+202E>" in result.output


def test_search_json_keeps_the_data_and_escapes_what_a_terminal_would_act_on(hostile_archive: dict[str, str]) -> None:
    result = runner.invoke(app, ["search", "falcon", "--all", "--json"])
    assert result.exit_code == 0
    _assert_inert(result.stdout)
    subjects = {json.loads(line)["subject"] for line in result.stdout.splitlines()}
    assert any("\x9b31m" in subject and "\u202e" in subject for subject in subjects)  # read back unchanged


@pytest.mark.parametrize("which", ["markup", "escapes", "raw-escape"])
def test_show_prints_headers_and_body_as_text(hostile_archive: dict[str, str], which: str) -> None:
    message_id = next(id for subject, id in hostile_archive.items() if
                      {"markup": "[/x]", "escapes": "\u202e", "raw-escape": "raw"}[which] in subject)
    result = runner.invoke(app, ["show", message_id], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    _assert_inert(result.output)
    if which == "markup":
        assert result.output.count("[bold red]alert[/]") == 2  # subject and body, literally
    if which == "escapes":
        assert "Mallory ␛[5m" in result.output
        assert "␛]8;;file:///etc/passwd␇x" in result.output
        assert "second line" in result.output


def test_a_huge_bad_query_is_answered_at_once_with_a_short_echo(hostile_archive: dict[str, str]) -> None:
    query = "falcon " * 15_000 + "[/x] " + ESC + "[2J)"  # the stray ')' at the very end
    started = time.monotonic()
    result = runner.invoke(app, ["search", query, "--all"])
    elapsed = time.monotonic() - started
    assert result.exit_code == 2
    assert elapsed < 2.0, f"{elapsed:.1f} s to answer"
    assert f"position {len(query) - 1}" in result.output
    assert len(result.output) < 600 and "…" in result.output
    _assert_inert(result.output)
    shown, caret = result.output.splitlines()[-2:]
    assert caret.strip() == "^" and shown[len(caret) - 1] == ")"


def test_query_errors_quote_at_most_a_few_dozen_characters(hostile_archive: dict[str, str]) -> None:
    result = runner.invoke(app, ["search", "from:" + "&" * 100_000, "--all"])
    assert result.exit_code == 2
    assert len(result.output) < 600 and "Traceback" not in result.output


# --- the one function, on its own ---


def test_terminal_safe_shows_every_control_and_steering_character() -> None:
    controls = "".join(map(chr, [*range(0x00, 0x20), *range(0x7F, 0xA0)]))
    steering = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029\udcff"
    safe = terminal_safe(controls + steering)
    assert safe.isprintable()
    assert all(char not in safe for char in steering)
    assert terminal_safe("a\tb\nc", multiline=True) == "a\tb\nc"
    assert terminal_safe("a\tb\nc") == "a␉b␊c"
    assert terminal_safe("Grüße, 日本語 [b]x[/b]") == "Grüße, 日本語 [b]x[/b]"  # text and brackets are untouched


def test_json_safe_changes_the_text_but_not_the_data() -> None:
    value = {"subject": "a\x9bb\u202ec\x1bd\udcff"}
    line = json_safe(json.dumps(value, ensure_ascii=False))
    assert line.isascii() and json.loads(line) == value


def test_excerpt_points_at_the_position_inside_a_window() -> None:
    text = "x" * 1000 + "!" + "y" * 1000
    shown, caret = excerpt(text, 1000, width=10)
    assert shown == "…" + "x" * 10 + "!" + "y" * 9 + "…" and shown[caret] == "!"
    assert excerpt("short)", 5) == ("short)", 5)
