"""The `postvault` command: serve, journal-account, import, search, show, reindex, verify, status, check."""

from __future__ import annotations

import importlib
import json
import logging
import os
import pwd
import signal
import sys
import threading
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import typer
from typer.core import TyperCommand

# Everything heavier than typer is imported inside the command that needs it: a CLI call
# pays Python's import time on every run, and `postvault search --json` needs neither
# rich nor the importers nor alembic (tests/postvault/test_cli_startup.py keeps it so).
if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from postvault.settings import Settings
    from postvault.wiring import Archive


class _DeferredCommand(TyperCommand):
    """A command listed by its summary whose module is imported only when it is run.

    Listing it in `postvault --help` needs nothing but the summary. Running it, or asking
    for its own help, goes through ``make_context``, which imports the real command and
    hands the call over to it.
    """

    target: ClassVar[str]  # "module:function": the function typer turns into the real command

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        module, _, function = self.target.partition(":")
        single = typer.Typer(add_completion=False)
        single.command(self.name)(getattr(importlib.import_module(module), function))
        return typer.main.get_command(single).make_context(info_name, args, parent=parent, **extra)


class _ImportCommand(_DeferredCommand):
    # The importers bring in rich's progress bars, every archive reader and the MIME
    # stack: a few hundred milliseconds no other command should pay.
    target = "postvault.cli_import:import_command"


app = typer.Typer(help="postvault: mail gateway and compliance archive.", no_args_is_help=True, add_completion=False)


@app.callback()
def _private_files() -> None:
    # Before any command writes: the catalogue, the index and the blobs it creates are
    # readable by postvault's user alone, whatever umask the shell had.
    from storage.private_files import keep_private

    keep_private()


@cache
def _console(*, stderr: bool = False) -> Console:
    """Where rich output goes; rich is imported on first use (`search --json` never uses it)."""
    from rich.console import Console

    return Console(stderr=stderr)


def _out() -> Console:
    return _console()


def _err() -> Console:
    return _console(stderr=True)


def _plain(text: str, *, style: str = "") -> Text:
    """``text`` as rich shows it literally: a ``Text`` is never read as markup, nor highlighted."""
    from rich.text import Text

    return Text(text, style=style)


def _mail(value: str) -> Text:
    """A one-line value from mail (a subject, an address) made safe for the terminal (invariant 9)."""
    from search_ui.terminal import terminal_safe

    return _plain(terminal_safe(value))


def _labelled(label: str, style: str, value: str) -> Text:
    """A styled label and a value that may hold mail content or user input, made safe (invariant 9)."""
    from rich.text import Text

    return Text.assemble((label, style), _mail(value))


def _settings() -> Settings:
    from postvault.settings import Settings

    return Settings()


def _archive() -> Archive:
    from postvault.wiring import Archive

    return Archive(_settings())


def _operator():  # type: ignore[no-untyped-def]
    # The CLI runs with the machine's authority: an admin who must still name a scope.
    from search_ui.principals import Principal, Role

    return Principal(name=f"cli:{_account_name()}", role=Role.ADMIN)


def _account_name() -> str:
    """The account of the real uid, for the audit trail.

    Not ``getpass.getuser()``: it reads LOGNAME and USER first, which whoever runs the
    command can set to anyone (invariant 5 needs the actor the system vouches for).
    """
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid with no passwd entry (containers often run as one)
        return f"uid:{uid}"


def _requested_scope(mailbox: list[str], domain: list[str], everything: bool):  # type: ignore[no-untyped-def]
    from indexer.scope import Scope

    if everything:
        if mailbox or domain:
            raise typer.BadParameter("--all cannot be combined with --mailbox or --domain")
        return Scope.everything()
    if not mailbox and not domain:
        _err().print("[red]Say whose mail to search:[/] --mailbox ADDRESS, --domain DOMAIN (repeatable), or --all for the whole archive.")
        raise typer.Exit(2)
    return Scope.of(mailboxes=mailbox, domains=domain)


@app.command()
def serve() -> None:
    """Run the SMTP journal listener, and (without a broker) the background indexer, until stopped."""
    from archiver.smtp import SmtpListener
    from postvault.background.notifier import InProcessNotifier
    from postvault.indexing import run_indexer
    from postvault.memory import limit_malloc_arenas
    from postvault.wiring import Archive

    limit_malloc_arenas()  # before the SMTP, journal, indexer and tantivy threads start
    settings = _settings()
    _configure_logging(settings.log_level)
    archive = Archive(settings)
    archive.sessions  # migrate before accepting mail
    notifier = archive.notifier
    listener = SmtpListener(archive, settings, notify_indexer=notifier.notify)
    stop = threading.Event()
    # Scale-out profile: Celery workers index (`postvault worker`); this process only
    # queues a task per message. Embedded profile: a thread here indexes, woken per commit.
    # The periodic jobs too: beat runs them on the scale-out profile, a thread here on the embedded one.
    worker = scheduler = None
    if isinstance(notifier, InProcessNotifier):
        from postvault.schedule import PERIODIC_JOBS, InProcessJobs, Scheduler

        indexer_ready = threading.Event()
        worker = threading.Thread(target=run_indexer, args=(archive, stop, notifier.wake, indexer_ready), name="indexer", daemon=True)
        scheduler = Scheduler(PERIODIC_JOBS, InProcessJobs(archive, notifier.wake))
    listener.start()
    if worker:
        worker.start()
        # "running" is said once the parser processes are up (see PooledParser.warm_up).
        indexer_ready.wait(timeout=120)
    if scheduler:
        scheduler.start(stop)
    indexing = "indexed in this process" if worker else f"indexed by Celery workers via {_without_password(settings.broker_url)}"
    # Plain print, not rich: the block must not be re-wrapped to a terminal width.
    print(_startup_block(settings, listener.port, listener.tls is not None, indexing), flush=True)
    serve_log.info("journal listener listening on %s:%d", settings.smtp_host, listener.port)

    def _stop(_signum, _frame):  # type: ignore[no-untyped-def]
        stop.set()
        if isinstance(notifier, InProcessNotifier):
            notifier.wake.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stop.wait()
    serve_log.info("stopping: the journal listener takes no more mail%s", "; finishing the current index batch" if worker else "")
    listener.stop()
    if worker:
        worker.join(timeout=60)
    archive.close()
    serve_log.info("stopped")


serve_log = logging.getLogger("postvault.serve")


def _configure_logging(level_name: str) -> None:
    """At INFO one line per message accepted or refused and per state change; at DEBUG the SMTP dialogue too."""
    level = logging.getLevelName(level_name.strip().upper())
    if not isinstance(level, int):
        _err().print(f"[red]POSTVAULT_LOG_LEVEL={level_name!r}[/] is not a level: use DEBUG, INFO, WARNING or ERROR.")
        raise typer.Exit(2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if level > logging.DEBUG:
        # aiosmtpd logs every command line, envelope addresses included, at INFO, and
        # Alembic a line per plugin and migration step: protocol and library detail.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        logging.getLogger("alembic").setLevel(logging.WARNING)


def _startup_block(settings: Settings, port: int, tls: bool, indexing: str) -> str:
    """Where each door listens, where the data lives, and what to do next: a few lines at start."""
    journal = f"smtp://{settings.smtp_host}:{port}"
    trusted = ", ".join(settings.journal_clients) or "nobody"
    auth = (f"or journal accounts in {settings.resolved_journal_accounts_file()} after STARTTLS" if tls
            else "(no STARTTLS: set POSTVAULT_SMTP_TLS_CERT and _KEY to let other clients log in)")
    return "\n".join([
        "postvault is running.",
        f"  SMTP journal listener on {journal}: mail from {trusted} {auth}",
        f"  catalogue  {_without_password(settings.resolved_database_url())}",
        f"  messages   {_without_password(settings.resolved_blobstore_url())}",
        f"  search     {_without_password(settings.resolved_search_url())}, {indexing}",
        f"Next: journal or send mail to {journal}, or `postvault import PATH --mailbox ADDRESS`; "
        "then `postvault search --mailbox ADDRESS WORDS` and `postvault status`. Ctrl-C stops.",
    ])


journal_account = typer.Typer(help="Accounts that may journal over SMTP AUTH after STARTTLS.", no_args_is_help=True)
app.add_typer(journal_account, name="journal-account")


@journal_account.command("add")
def journal_account_add(
    name: str = typer.Argument(..., help="Account name the journaling server logs in with."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input instead of asking."),
) -> None:
    """Add a journal account, or give one a new password; only its argon2 hash is stored."""
    from archiver.journal_clients import JournalAccountError, add_account

    path = _settings().resolved_journal_accounts_file()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        new = add_account(path, name, password)
    except JournalAccountError as error:
        _err().print(f"postvault journal-account: {error}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    _out().print(f"journal account {name} {'added to' if new else 'updated in'} {path}", markup=False, highlight=False)


def _broker_settings(command: str) -> Settings:
    settings = _settings()
    if not settings.broker_url:
        _err().print(f"[red]postvault {command} needs a broker:[/] set POSTVAULT_BROKER_URL (redis://host:port/0). "
                     "Without one, `postvault serve` indexes in its own process and needs no worker.")
        raise typer.Exit(2)
    return settings


@app.command()
def worker(
    concurrency: int = typer.Option(0, "--concurrency", "-c", min=0,
                                    help="Worker processes. 0: POSTVAULT_INDEX_WORKERS, else one per CPU core (always 1 with a tantivy index)."),
    pool: str = typer.Option("prefork", "--pool", help="Celery execution pool: prefork, solo or threads."),
    loglevel: str = typer.Option("INFO", "--loglevel"),
) -> None:
    """Run Celery workers that index the outbox (scale-out profile: needs POSTVAULT_BROKER_URL)."""
    from postvault.background.celery_app import make_celery, run_worker
    from postvault.memory import limit_malloc_arenas
    from postvault.wiring import Archive

    limit_malloc_arenas()  # inherited by the pool's processes, which read blobs on threads
    settings = _broker_settings("worker")
    if settings.resolved_search_url().startswith("tantivy:"):
        # tantivy lets one process write an index: a second worker process (here or on
        # another machine) would find it locked. Several workers need OpenSearch.
        processes = concurrency or 1
        if processes > 1:
            _err().print("[red]A tantivy index has one writer process at a time:[/] run one `postvault worker --concurrency 1`, "
                         "or use OpenSearch (POSTVAULT_SEARCH_URL=opensearch://...) to index with more.")
            raise typer.Exit(2)
    else:
        processes = concurrency or settings.index_workers or (os.cpu_count() or 1)
    archive = Archive(settings)
    try:
        archive.sessions  # migrate before taking tasks
    except Exception as error:
        _err().print(f"[red]Catalogue unavailable:[/] {_without_password(settings.resolved_database_url())}: {error}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        archive.close()  # the parent forks the pool: no connection may cross the fork
    run_worker(make_celery(settings), concurrency=processes, pool=pool, loglevel=loglevel)


@app.command()
def beat(
    interval: float = typer.Option(30.0, "--interval", min=0.5, help="Seconds between outbox sweeps."),
    loglevel: str = typer.Option("INFO", "--loglevel"),
) -> None:
    """Run Celery beat: the periodic jobs (postvault.schedule), e.g. the outbox sweep. Run exactly one per archive."""
    from postvault.background.celery_app import make_celery, run_beat
    from postvault.schedule import PERIODIC_JOBS, with_interval

    settings = _broker_settings("beat")
    jobs = with_interval(PERIODIC_JOBS, "sweep_outbox", timedelta(seconds=interval))
    run_beat(make_celery(settings, jobs=jobs), schedule_file=settings.data_dir / "celerybeat-schedule", loglevel=loglevel)


@app.command("import", cls=_ImportCommand)
def _import_summary() -> None:
    """Import mail into the archive: each message byte-exact, nothing twice, every refusal explained."""
    # Never called: _ImportCommand hands every run over to postvault.cli_import.import_command,
    # whose docstring this one repeats for `postvault --help` (a test keeps the two equal).


@app.command()
def search(
    query: str = typer.Argument(..., help='Query, e.g. \'from:alice subject:"q3 budget" after:2024-01-01 has:attachment\''),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per hit."),
    limit: int = typer.Option(20, "--limit", min=1, max=10000),
    offset: int = typer.Option(0, "--offset", min=0),
    mailbox: list[str] = typer.Option([], "--mailbox", help="Search this mailbox (repeatable)."),
    domain: list[str] = typer.Option([], "--domain", help="Search this domain (repeatable)."),
    everything: bool = typer.Option(False, "--all", help="Search the whole archive (must be asked for)."),
    sort: str = typer.Option("date", "--sort", help="date, date-asc or relevance."),
) -> None:
    """Search the archive within an explicit scope."""
    from indexer.query.parser import QuerySyntaxError
    from indexer.search_backend import SearchBackendError, SortOrder
    from search_ui.search import search_archive

    requested = _requested_scope(mailbox, domain, everything)
    try:
        order = SortOrder(sort)
    except ValueError:
        raise typer.BadParameter("--sort must be date, date-asc or relevance") from None
    archive = _archive()
    try:
        results = search_archive(archive, _operator(), query, requested=requested, sort=order, limit=limit, offset=offset)
    except QuerySyntaxError as error:
        from search_ui.terminal import excerpt

        shown, caret = excerpt(query, error.position)
        _err().print(_labelled("Query error: ", "red", str(error)))
        _err().print(_plain(f"  {shown}\n  {' ' * caret}^"), no_wrap=True, overflow="ignore", crop=False)
        raise typer.Exit(2) from None
    except SearchBackendError as error:
        _err().print(_labelled("Search engine unavailable: ", "red", str(error)))
        raise typer.Exit(3) from None
    finally:
        archive.close()
    if as_json:
        from search_ui.terminal import json_safe

        for hit in results.hits:
            sys.stdout.write(json_safe(json.dumps(hit.as_json(), ensure_ascii=False)) + "\n")
        return
    from rich.table import Table

    table = Table(title=f"{results.total} match(es); showing {len(results.hits)} from {results.offset + 1 if results.hits else 0}")
    for column in ("id", "date", "from", "subject"):
        table.add_column(column, overflow="fold")
    for hit in results.hits:
        table.add_row(str(hit.id), hit.date.strftime("%Y-%m-%d %H:%M") if hit.date else "", _mail(hit.from_), _mail(hit.subject))
    _out().print(table)


@app.command()
def show(
    message_id: int = typer.Argument(..., help="Message id from search."),
    raw: bool = typer.Option(False, "--raw", help="Write the exact archived bytes to stdout."),
    mailbox: list[str] = typer.Option([], "--mailbox"),
    domain: list[str] = typer.Option([], "--domain"),
    everything: bool = typer.Option(True, "--all/--scoped", help="The CLI operator sees the whole archive unless --scoped."),
) -> None:
    """Print one message: headers and text, or its exact bytes with --raw."""
    from indexer.parsing import parse_message
    from search_ui.search import MessageNotVisibleError, fetch_message

    requested = _requested_scope(mailbox, domain, everything and not (mailbox or domain))
    archive = _archive()
    try:
        message, data = fetch_message(archive, _operator(), message_id, requested=requested, raw=raw)
    except MessageNotVisibleError as error:
        _err().print(_plain(str(error), style="red"))
        raise typer.Exit(1) from None
    finally:
        archive.close()
    if raw:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    from search_ui.terminal import terminal_safe

    parsed = parse_message(data)
    console = _out()
    console.print(_labelled("Id: ", "bold", f"{message.id}   "), _labelled("SHA-256: ", "bold", f"{message.sha256}   "),
                  _labelled("Size: ", "bold", str(message.size)), sep="")
    console.print(_labelled("From: ", "bold", ", ".join(map(str, parsed.from_))))
    console.print(_labelled("To: ", "bold", ", ".join(map(str, parsed.to))))
    if parsed.cc:
        console.print(_labelled("Cc: ", "bold", ", ".join(map(str, parsed.cc))))
    console.print(_labelled("Date: ", "bold", parsed.date.isoformat() if parsed.date else "(none)"))
    console.print(_labelled("Subject: ", "bold", parsed.subject))
    for attachment in parsed.attachments:
        note = f" ({attachment.skipped})" if attachment.skipped else ""
        console.print(_labelled("Attachment: ", "bold",
                                f"{attachment.filename or '(unnamed)'} {attachment.content_type} {attachment.size} bytes{note}"))
    if parsed.defects:
        console.print(_labelled("Defects: ", "yellow", "; ".join(parsed.defects)))
    console.print()
    # Unwrapped, as the sender broke the lines; markup and highlighting off, like every
    # piece of mail this command prints.
    console.print(_plain(terminal_safe(parsed.body_text, multiline=True)), no_wrap=True, overflow="ignore", crop=False)


@app.command()
def reindex(
    failed: bool = typer.Option(False, "--failed", help="Index again only the messages that failed (and any never queued); "
                                "the index is not emptied."),
) -> None:
    """Rebuild the search index from blobs and catalogue alone (OpenSearch: beside the live one, then swapped)."""
    from indexer.outbox import leasable, retry_failed
    from indexer.reindex import abort_reindex, finish_reindex, start_reindex
    from indexer.search_backend import IndexLockedError, IndexOutdatedError, SearchBackendError

    archive = _archive()
    rebuilding = False
    try:
        if not failed:
            try:
                archive.search
            except IndexOutdatedError:
                # Built by another version for other fields: nothing in it can be kept, and
                # the blobs and catalogue hold everything needed to build it again.
                aside = archive.set_aside_outdated_index()
                _out().print(_plain(f"The index was built by another version of postvault; it was moved to {aside} "
                                    "and a new one is built now."))
        if failed:
            _out().print(f"{retry_failed(archive.sessions)} failed or unqueued message(s) queued again.")
            # The drain takes whatever else waits on the outbox too.
            report = _drain_with_progress(archive, leasable(archive.sessions), "Retrying")
            if report.failed:
                raise typer.Exit(1)
            return
        queued = start_reindex(archive.sessions, archive.search)
        rebuilding = True
        report = _drain_with_progress(archive, queued, "Reindexing")
        if report.deferred:
            # Rows handed back by an outage are not in the rebuilt index: swapping it in would
            # hide them from search. Their outbox rows stay and reach the live index later.
            raise SearchBackendError(f"{report.deferred} message(s) could not be indexed while the engine or the blob store was failing")
        # Messages that failed for themselves are expected to be missing (`status` lists them).
        swapped = finish_reindex(archive.search, expected=queued - report.failed)
        rebuilding = False
        if swapped:
            _out().print(f"The rebuilt index {swapped} is now live.")
    except IndexLockedError as error:
        _err().print(_plain(f"{error}\nStop `postvault serve` first, or let it index: the embedded index has one writer.", style="red"))
        raise typer.Exit(1) from None
    except SearchBackendError as error:
        _err().print(_labelled("Reindex failed: ", "red", str(error)))
        raise typer.Exit(1) from None
    finally:
        if rebuilding:
            _abandon_rebuild(archive, abort_reindex)
        archive.close()


def _abandon_rebuild(archive: Archive, abort_reindex) -> None:  # type: ignore[no-untyped-def]
    """A rebuild that did not finish takes every write meanwhile: drop it (the live index is untouched)."""
    from indexer.search_backend import SearchBackendError

    try:
        abort_reindex(archive.search)
    except SearchBackendError as error:
        _err().print(_labelled("The unfinished rebuild could not be dropped (run `postvault reindex` again): ", "red", str(error)))
    else:
        _err().print(_plain("The unfinished rebuild was dropped; searches and writes go to the live index as before."))


def _drain_with_progress(archive: Archive, expected: int, label: str):  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from postvault.indexing import drain_outbox

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=_out(), transient=False) as progress:
        task = progress.add_task(label, total=expected)
        report = drain_outbox(archive, on_batch=lambda batch: progress.advance(task, batch.indexed + batch.failed))
    _out().print(f"{label}: {report.indexed} indexed, {report.failed} failed.")
    for error in report.errors[:10]:
        # An error may quote the message (a header the parser choked on): mail is data.
        _err().print(_labelled("  ", "yellow", error))
    return report


@app.command()
def verify(orphans: bool = typer.Option(True, "--orphans/--no-orphans", help="Also list blobs that no catalogue row names.")) -> None:
    """Rehash every blob and cross-check catalogue, store and index; non-zero exit on any discrepancy."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from indexer.verify import verify_archive
    from retention.audit import verify_chain

    from indexer.search_backend import SearchBackendError
    from storage.blobstore import BlobStoreError

    archive = _archive()
    try:
        with Progress(TextColumn("Verifying"), BarColumn(), MofNCompleteColumn(), console=_out()) as progress:
            task = progress.add_task("verify", total=None)
            report = verify_archive(archive.read_sessions, archive.blobs, archive.search,
                                    on_progress=lambda n: progress.update(task, completed=n), check_orphans=orphans)
        chain_breaks = list(verify_chain(archive.read_sessions))
    except (SearchBackendError, BlobStoreError) as error:
        _err().print(f"[red]Cannot verify: an engine is unavailable:[/] {error}")
        raise typer.Exit(2) from None
    finally:
        archive.close()
    table = Table(title="postvault verify")
    table.add_column("check")
    table.add_column("result", justify="right")
    table.add_row("messages in catalogue", str(report.messages))
    table.add_row("blobs rehashed OK", str(report.blobs_checked))
    table.add_row("missing blobs", str(len(report.missing_blobs)))
    table.add_row("corrupt blobs", str(len(report.corrupt_blobs)))
    table.add_row("unreadable blobs", str(len(report.unreadable_blobs)))
    table.add_row("indexed", f"{report.indexed} ({report.index_coverage:.2%})")
    table.add_row("unindexed (of which queued)", f"{len(report.unindexed)} ({len(report.pending)})")
    table.add_row("failed at the attempt limit", str(len(report.failed)))
    table.add_row("indexed with a stale scope", str(len(report.stale_scopes)))
    table.add_row("index entries without a message", str(len(report.stale_index_entries)))
    table.add_row("orphan blobs (never acknowledged)", str(len(report.orphan_blobs)))
    table.add_row("audit chain breaks", str(len(chain_breaks)))
    _out().print(table)
    for label, items in (("missing", report.missing_blobs), ("corrupt", report.corrupt_blobs), ("unreadable", report.unreadable_blobs),
                         ("unindexed", report.unindexed), ("stale scope (mailboxes or domains)", report.stale_scopes),
                         ("stale index entry", report.stale_index_entries)):
        for item in items[:20]:
            _err().print(f"[red]{label}:[/] {item}")
    for message_id, error in list(report.failed.items())[:20]:
        _err().print(_labelled(f"failed {message_id}: ", "red", error))
    if report.failed or report.stale_scopes:
        _err().print("`postvault reindex --failed` indexes the failed messages again; `postvault reindex` rebuilds every scope.")
    for brk in chain_breaks[:20]:
        _err().print(f"[red]audit event {brk.event_id}:[/] {brk.reason}")
    if report.discrepancies or chain_breaks:
        raise typer.Exit(1)


@app.command()
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Counts, every message not indexed by why, and the age of the oldest unindexed message."""
    from sqlalchemy import func, select

    from indexer.outbox import MAX_ATTEMPTS, unindexed, utc_age
    from storage.tables import messages as message_rows

    archive = _archive()
    try:
        with archive.read_sessions() as session:
            messages = session.scalar(select(func.count()).select_from(message_rows)) or 0
            total_bytes = session.scalar(select(func.coalesce(func.sum(message_rows.c.size), 0))) or 0
        counts = unindexed(archive.read_sessions)
        try:
            indexed: object = archive.search.count()
        except Exception as error:  # a down engine is a status, not a crash
            indexed = f"unavailable: {error}"
    finally:
        archive.close()
    age = utc_age(counts.oldest)
    reasons = {
        "waiting": counts.waiting,
        "in_progress": counts.in_progress,
        "retrying": counts.retrying,
        "failed": counts.failed,
        "not_queued": counts.not_queued,
    }
    facts = {
        "messages": messages,
        "bytes": int(total_bytes),
        "indexed": indexed,
        "backlog": counts.backlog,
        "oldest_unindexed_age_seconds": round(age.total_seconds(), 1) if age else None,
        "not_indexed": counts.total,
        "not_indexed_by_reason": reasons,
        "failing": counts.retrying + counts.failed,
        "last_error": counts.last_error,
    }
    if as_json:
        sys.stdout.write(json.dumps(facts) + "\n")
        return
    from rich.table import Table

    table = Table(title="postvault status")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("messages archived", f"{messages:,}")
    table.add_row("raw bytes", f"{int(total_bytes):,}")
    table.add_row("indexed documents", f"{indexed:,}" if isinstance(indexed, int) else _mail(str(indexed)))
    table.add_row("not indexed", f"{counts.total:,}")
    for label, count in (
        ("  waiting", counts.waiting),
        ("  being indexed", counts.in_progress),
        ("  retrying after an error", counts.retrying),
        (f"  failed {MAX_ATTEMPTS} times, left alone", counts.failed),
        ("  not queued", counts.not_queued),
    ):
        table.add_row(label, f"{count:,}")
    table.add_row("oldest unindexed", _age_text(age))
    _out().print(table)
    if counts.last_error:
        _err().print(_labelled("last indexing error: ", "yellow", counts.last_error))
    if counts.failed or counts.not_queued:
        _err().print("`postvault reindex --failed` indexes them again.")


def _age_text(age: Optional[timedelta]) -> str:
    if age is None:
        return "-"
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


@app.command()
def check() -> None:
    """Connect to each configured engine and say plainly what is wrong, if anything."""
    from postvault.extras import missing
    from postvault.wiring import Archive
    from storage.engine_urls import (
        EngineUrlError,
        parse_blobstore_url,
        parse_broker_url,
        parse_database_url,
        parse_search_url,
        redacted,
    )

    settings = _settings()
    archive = Archive(settings)
    failures = 0

    def report(name: str, url: str, problem: object = None) -> None:
        nonlocal failures
        if problem is None:
            _out().print(_labelled(f"✓ {name} ", "green", redacted(url)), soft_wrap=True)
        else:
            failures += 1
            _out().print(_labelled(f"✗ {name} ", "red", f"{redacted(url)}: {problem}"), soft_wrap=True)

    engines = (
        ("catalogue", settings.resolved_database_url(), parse_database_url, lambda: archive.sessions),
        ("blob store", settings.resolved_blobstore_url(), parse_blobstore_url, lambda: archive.blobs.check()),
        ("search", settings.resolved_search_url(), parse_search_url, lambda: archive.search.check()),
        ("broker", settings.broker_url, parse_broker_url, lambda: _probe_broker(settings)),
    )
    try:
        for name, url, parse, probe in engines:
            try:
                parsed = parse(url)
            except EngineUrlError as error:
                report(name, url, error)
                continue
            if parsed is None:  # no broker: the embedded profile works in-process
                _out().print(_plain(f"- {name} none: background work runs in `postvault serve`"))
                continue
            library = getattr(parsed, "library", None)
            extra = missing(name, library) if library is not None else None
            if extra is not None:
                report(name, url, extra)
                continue
            try:
                probe()
            except Exception as error:  # each engine's own error says what is wrong
                report(name, url, error)
            else:
                report(name, url)
    finally:
        archive.close()
    if failures:
        raise typer.Exit(1)


def _probe_broker(settings: Settings) -> None:
    """One connection to the broker, as a publisher would open it (a few seconds at most)."""
    from postvault.background.broker import make_publisher

    publisher = make_publisher(settings)
    try:
        with publisher.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=5)
    finally:
        publisher.close()


if __name__ == "__main__":  # pragma: no cover
    app()
