"""The journal listener under load: sessions capped in total and per client, bytes in flight bounded, 421/451 for the rest."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from sqlalchemy import func, select

from archiver.smtp import SmtpListener
from postvault.settings import Settings
from postvault.wiring import Archive
from storage import tables
from tests.archiver.smtp_client import RawSmtp

MiB = 1024 * 1024


@pytest.fixture
def start(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., tuple[SmtpListener, Archive]]]:
    """Starts a listener on an embedded archive with the given settings; stops it after the test."""
    running: list[tuple[SmtpListener, Archive]] = []

    def make(**overrides: object) -> tuple[SmtpListener, Archive]:
        settings = make_settings(smtp_host="127.0.0.1", smtp_port=0, **overrides)
        archive = Archive(settings)
        archive.sessions
        listener = SmtpListener(archive, settings)
        listener.start()
        running.append((listener, archive))
        return listener, archive

    yield make
    for listener, archive in running:
        listener.stop()
        archive.close()


def archived(archive: Archive) -> int:
    with archive.sessions() as session:
        return session.scalar(select(func.count()).select_from(tables.messages)) or 0


def message(size: int, tag: str) -> bytes:
    """``size`` bytes of mail in 998-octet lines, the longest RFC 5322 2.1.1 allows."""
    head = f"From: a@example.com\r\nTo: b@example.org\r\nSubject: load {tag}\r\n\r\n".encode()
    line = b"x" * 996 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def transaction(smtp: RawSmtp, payload: bytes) -> int:
    assert smtp.command(b"EHLO load.example")[0] == 250
    assert smtp.command(b"MAIL FROM:<a@example.com>")[0] == 250
    assert smtp.command(b"RCPT TO:<b@example.org>")[0] == 250
    return smtp.data(payload)[0]


def test_sessions_over_the_per_client_and_total_limits_get_421_and_a_closed_slot_is_reused(start) -> None:
    listener, _archive = start(smtp_max_connections=4, smtp_max_connections_per_client=2)
    first, second = RawSmtp(listener.host, listener.port), RawSmtp(listener.host, listener.port)
    assert first.greeting[0] == second.greeting[0] == 220
    third = RawSmtp(listener.host, listener.port)
    assert third.greeting == (421, b"4.7.0 Too many connections; try again later")
    with pytest.raises(ConnectionError):
        third.reply()  # 421 closes the channel (RFC 5321 3.8)
    others = [RawSmtp(listener.host, listener.port, source=f"127.0.0.{n}") for n in (3, 4)]
    assert [other.greeting[0] for other in others] == [220, 220]
    assert RawSmtp(listener.host, listener.port, source="127.0.0.5").greeting[0] == 421  # 4 open in total
    first.close()
    deadline = time.monotonic() + 10
    while (greeting := RawSmtp(listener.host, listener.port).greeting[0]) != 220 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert greeting == 220
    for session in (second, *others):
        session.close()


def test_a_message_over_the_bytes_in_flight_gets_451_until_the_other_is_journaled(start) -> None:
    listener, archive = start(smtp_max_inflight_bytes=1 * MiB, max_message_bytes=4 * MiB)
    payload = message(700 * 1024, "in flight")
    with RawSmtp(listener.host, listener.port) as slow, RawSmtp(listener.host, listener.port) as fast:
        assert slow.command(b"EHLO slow.example")[0] == 250
        assert slow.command(b"MAIL FROM:<a@example.com>")[0] == 250
        assert slow.command(b"RCPT TO:<b@example.org>")[0] == 250
        assert slow.command(b"DATA")[0] == 354
        slow.socket.sendall(payload)  # all but the end of data: its bytes are held
        time.sleep(0.5)
        assert transaction(fast, message(700 * 1024, "second")) == 451
        slow.socket.sendall(b".\r\n")
        assert slow.reply()[0] == 250
        assert transaction(fast, message(700 * 1024, "second")) == 250  # the sender's retry
        assert transaction(fast, message(3 * MiB, "alone")) == 250  # larger than the budget, but alone
    assert archived(archive) == 3


def _rss_sampler(stop: threading.Event, peak: list[int]) -> None:
    process = psutil.Process()
    while not stop.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        time.sleep(0.02)


def test_200_parallel_sessions_of_large_mail_keep_memory_bounded_and_the_surplus_gets_421_or_451(start) -> None:
    budget, size, sessions = 64 * MiB, 2 * MiB, 200
    listener, archive = start(smtp_max_connections=100, smtp_max_connections_per_client=20,
                     smtp_max_inflight_bytes=budget, max_message_bytes=8 * MiB)
    payload = message(size, "load")
    connected = threading.Barrier(sessions, timeout=60)

    def session(number: int) -> int | str:
        # 20 client addresses, 10 sessions each: the total cap, not the per-client one, bites.
        try:
            smtp = RawSmtp(listener.host, listener.port, source=f"127.0.0.{1 + number % 20}", timeout=60)
        except OSError as error:
            connected.wait()
            return f"connect: {error}"
        try:
            connected.wait()  # everyone holds a session (or its 421) before anyone sends
            if smtp.greeting[0] != 220:
                return smtp.greeting[0]
            return transaction(smtp, payload)
        except (OSError, ConnectionError) as error:
            return f"{type(error).__name__}: {error}"
        finally:
            smtp.close()

    baseline = psutil.Process().memory_info().rss
    peak = [baseline]
    stop = threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(stop, peak), daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=sessions) as pool:
            outcomes = Counter(pool.map(session, range(sessions)))
    finally:
        stop.set()
        sampler.join()
    elapsed = time.monotonic() - started

    assert set(outcomes) <= {250, 421, 451}, outcomes  # never a reset, a 5xx or a hang
    assert outcomes[421] == sessions - 100, outcomes
    assert outcomes[250] >= 1 and outcomes[250] + outcomes[451] == 100, outcomes
    assert archived(archive) == 1  # every accepted copy is the same bytes: one message
    growth = peak[0] - baseline
    # The bytes in flight are held about twice (the DATA buffer, then the message) while
    # a message is handed over; without the limits 100 sessions of 2 MiB hold several
    # hundred MiB at once.
    assert growth < 3 * budget, f"RSS grew {growth / MiB:.0f} MiB for a {budget / MiB:.0f} MiB budget: {outcomes}"
    assert elapsed < 60
    with RawSmtp(listener.host, listener.port) as smtp:  # and the listener still serves
        assert transaction(smtp, message(10_000, "after")) == 250
