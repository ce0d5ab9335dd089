"""`postvault serve` as an operator sees it: a short start-up block, then one log line per message and state change."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.archive_factory import make_message

POSTVAULT = str(Path(sys.executable).with_name("postvault"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., tuple[int, Callable[[], tuple[str, str]]]]]:
    """Starts `postvault serve` on a temp data dir; the returned ``stop()`` ends it and gives (stdout, stderr)."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(**variables: str) -> tuple[int, Callable[[], tuple[str, str]]]:
        port = free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("POSTVAULT_")}
        env.update({"POSTVAULT_DATA_DIR": str(tmp_path / "var"), "POSTVAULT_SMTP_PORT": str(port),
                    "POSTVAULT_INDEX_WORKERS": "1", **variables})
        out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        process = subprocess.Popen([POSTVAULT, "serve"], env=env, cwd=tmp_path, stdout=out.open("wb"),
                                   stderr=err.open("wb"), start_new_session=True)
        processes.append(process)
        deadline = time.monotonic() + 60
        while "postvault is running." not in out.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, err.read_text()[-3000:]

        def stop(sent: signal.Signals = signal.SIGTERM) -> tuple[str, str]:
            if sent == signal.SIGINT:
                os.killpg(process.pid, sent)  # Ctrl-C in a terminal reaches the whole process group
            else:
                process.send_signal(sent)  # what a service manager sends
            process.wait(60)
            return out.read_text(), err.read_text()

        return port, stop

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def send(port: int) -> bytes:
    raw = make_message(subject="logged once").replace(b"\n", b"\r\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("alice.sender@example.com", ["bob.recipient@example.org"], raw)
    return raw


def test_serve_says_where_it_listens_and_logs_one_line_per_message_and_state_change(serve, tmp_path: Path) -> None:
    port, stop = serve()
    raw = send(port)
    stdout, stderr = stop()

    data = tmp_path / "var"
    block = stdout.splitlines()
    assert block[0] == "postvault is running." and len(block) <= 8, stdout
    assert f"SMTP journal listener on smtp://127.0.0.1:{port}: mail from 127.0.0.0/8, ::1" in stdout
    assert f"catalogue  sqlite:///{data.resolve() / 'catalogue.sqlite3'}" in stdout
    assert f"messages   file://{data.resolve() / 'blobs'}" in stdout
    assert "Next: " in stdout and "postvault import" in stdout and "postvault search" in stdout

    lines = stderr.splitlines()
    [accepted] = [line for line in lines if "accepted message" in line]
    assert re.search(rf"INFO archiver\.smtp: accepted message 1 \([0-9a-f]{{16}}, {len(raw)} bytes, 1 recipients\) from 127\.0\.0\.1$", accepted)
    assert any(line.endswith(f"journal listener listening on 127.0.0.1:{port}") for line in lines)
    assert lines[-1].endswith("INFO postvault.serve: stopped")
    # No SMTP dialogue, no envelope addresses, no library chatter.
    assert "alice.sender" not in stderr and "bob.recipient" not in stderr
    assert not [line for line in lines if re.search(r"mail\.log|alembic|>>|EHLO|MAIL FROM", line, re.IGNORECASE)], stderr
    assert len(lines) <= 6, stderr


def test_log_level_debug_adds_the_smtp_dialogue(serve) -> None:
    port, stop = serve(POSTVAULT_LOG_LEVEL="DEBUG")
    send(port)
    _stdout, stderr = stop()
    assert re.search(r"mail\.log: .*>> b'mail FROM:<alice\.sender@example\.com>", stderr, re.IGNORECASE), stderr[-3000:]
    assert "accepted message 1 " in stderr


@pytest.mark.parametrize("pause", [0.0, 0.3, 1.5])
def test_ctrl_c_stops_serve_without_a_traceback_from_any_process(serve, pause: float) -> None:
    """Ctrl-C while the parser pool starts (its fork server still importing) and once it runs."""
    port, stop = serve()
    send(port)  # wakes the indexer, which starts the fork server and a parser process
    time.sleep(pause)
    _, err = stop(signal.SIGINT)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert "stopped" in err
