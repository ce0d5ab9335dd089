"""`postvault import`: archive EML, mbox, maildir and zip files, then index them so they are searchable."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from archiver.headers import normalise_address
from archiver.importers import ImportSummary, import_paths
from archiver.importers.header_pool import HeaderFactsPool
from archiver.importers.runner import DEFAULT_BATCH_MESSAGES
from indexer.outbox import ParseOutcome
from postvault.memory import limit_malloc_arenas
from postvault.settings import Settings
from postvault.wiring import Archive
from search_ui.terminal import json_safe, terminal_safe
from storage.blobstore import BlobStoreError

console = Console()
errors = Console(stderr=True)

_REFUSALS_SHOWN = 50


class _RateColumn(ProgressColumn):
    """Messages per second over the last few updates."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} msg/s" if speed else "– msg/s", style="progress.data.speed")


def import_command(
    paths: list[Path] = typer.Argument(..., help="Files or folders: EML files, folders of them, mbox, maildir (Maildir++), zip. "
                                   "Symbolic links inside a folder are not followed out of it."),
    mailbox: Optional[str] = typer.Option(None, "--mailbox", help="Custodian: the mailbox these messages belong to; it joins each message's search scope."),
    batch_size: int = typer.Option(DEFAULT_BATCH_MESSAGES, "--batch-size", min=1, max=10_000, help="Messages per durable batch (one fsync round, one catalogue transaction)."),
    index: bool = typer.Option(True, "--index/--no-index", help="Index what was imported before exiting, so it is searchable at once."),
    refusals_file: Optional[Path] = typer.Option(None, "--refusals-file", help="Also write every refusal to this file, one JSON object per line."),
) -> None:
    """Import mail into the archive: each message byte-exact, nothing twice, every refusal explained.

    Exit status 0 when everything that is mail was archived (refused non-mail files are
    listed, not failures); 1 when storage failed and the import stopped (run the same
    command again to resume).
    """
    custodian = ""
    if mailbox is not None:
        custodian = normalise_address(mailbox)
        if not custodian:
            raise typer.BadParameter(f"{mailbox!r} is not an email address", param_hint="--mailbox")
    limit_malloc_arenas()  # before the journal, indexer and tantivy threads start
    settings = Settings()
    archive = Archive(settings)
    try:
        try:
            archive.sessions, archive.journal  # open both engines before reading any mail
        except (BlobStoreError, SQLAlchemyError, OSError) as error:
            errors.print(Text.assemble(("Storage unavailable; nothing was imported: ", "red"), _shown(str(error))))
            raise typer.Exit(1) from None
        # Index while importing: journaling waits on the disk, parsing on the CPU.
        background = _BackgroundIndexer(archive) if index else None
        try:
            try:
                summary = _run_import(archive, settings, paths, custodian, batch_size)
            except BaseException:
                if background:
                    background.finish()
                raise
            if background and summary.storage_error:
                background.finish()
            _print_summary(summary)
            _print_refusals(summary, refusals_file)
            if summary.storage_error:
                errors.print(Text.assemble(("Storage failed; the import stopped: ", "red"), _shown(summary.storage_error)))
                errors.print(f"[red]{len(summary.not_archived):,} message(s) read but not archived.[/] "
                             "Fix the storage and run the same command again: it resumes and archives nothing twice.")
                raise typer.Exit(1)
            if index:
                _index(archive, background)
        finally:
            if background:
                background.close()
    finally:
        archive.close()


def _run_import(archive: Archive, settings: Settings, paths: list[Path], custodian: str, batch_size: int) -> ImportSummary:
    columns = (SpinnerColumn(), TextColumn("Importing"), TextColumn("{task.completed:,} messages"), _RateColumn(),
               TextColumn("{task.fields[refused]:,} refused"), TimeElapsedColumn())
    # Twice a second is enough for a counter, and each repaint takes the interpreter lock
    # the importer's own threads need.
    with Progress(*columns, console=console, transient=False, refresh_per_second=2) as progress, \
            _header_pool() as header_pool:
        task = progress.add_task("import", total=None, refused=0)
        notified = 0

        def on_progress(summary: ImportSummary) -> None:
            nonlocal notified
            progress.update(task, completed=summary.seen, refused=len(summary.refused))
            # Called after each committed batch: tell the indexer (a Celery worker in the
            # scale-out profile) that the outbox has new rows.
            if summary.seen > notified:
                archive.notifier.notify(summary.seen - notified)
                notified = summary.seen

        return import_paths(
            paths,
            journal=archive.journal,
            sessions=archive.sessions,
            max_message_bytes=settings.max_message_bytes,
            max_zip_members=settings.import_max_zip_members,
            max_zip_ratio=settings.max_zip_ratio,
            custodian=custodian,
            batch_messages=batch_size,
            on_progress=on_progress,
            read_facts=header_pool.start,
        )


@contextmanager
def _header_pool() -> Iterator[HeaderFactsPool]:
    pool = HeaderFactsPool()
    try:
        yield pool
    finally:
        pool.close()


def _print_summary(summary: ImportSummary) -> None:
    table = Table(title="postvault import")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("archived (new)", f"{summary.archived:,}")
    table.add_row("already in the archive", f"{summary.duplicate:,}")
    table.add_row("refused (not archived)", f"{len(summary.refused):,}")
    if summary.skipped:
        table.add_row("skipped (maildir bookkeeping, links within the import)", f"{len(summary.skipped):,}")
    if summary.not_archived:
        table.add_row("not archived: storage failed", f"{len(summary.not_archived):,}")
    table.add_row("bytes read", f"{summary.bytes:,}")
    table.add_row("time", f"{summary.elapsed:,.1f} s")
    table.add_row("rate", f"{summary.rate:,.0f} messages/s")
    console.print(table)
    for location, position in summary.resumed:
        console.print(Text.assemble("resumed ", _shown(location),
                                    f" at byte {position:,} (everything before it was archived earlier)"))


def _shown(value: str) -> Text:
    """A file name or a reason naming one, as the terminal may show it: names are data (invariant 9)."""
    return Text(terminal_safe(value))


def _print_refusals(summary: ImportSummary, refusals_file: Path | None) -> None:
    if refusals_file is not None:
        with refusals_file.open("w", encoding="utf-8") as handle:
            for location, reason in summary.refused:
                handle.write(json_safe(json.dumps({"location": location, "reason": reason}, ensure_ascii=False)) + "\n")
    if not summary.refused:
        return
    table = Table(title="Refused: not archived, with the reason", title_justify="left")
    table.add_column("location", overflow="fold")
    table.add_column("reason", overflow="fold")
    for location, reason in summary.refused[:_REFUSALS_SHOWN]:
        table.add_row(_shown(location), _shown(reason))
    console.print(table)
    rest = summary.refused[_REFUSALS_SHOWN:]
    if rest:
        console.print(f"…and {len(rest):,} more refusal(s):", highlight=False)
        for reason, count in Counter(reason for _location, reason in rest).most_common():
            console.print(Text.assemble(f"  {count:,} × ", _shown(reason)))
        if refusals_file is None:
            console.print("  (--refusals-file PATH writes every one of them)")


class _BackgroundIndexer:
    """Drains the outbox in a thread while the import journals; stops when told or when
    another process (a running `postvault serve`) owns the index."""

    def __init__(self, archive: Archive) -> None:
        from postvault.indexing import parser_for

        self._archive = archive
        self._parser = parser_for(archive, expected=10_000)
        self._stop = threading.Event()
        self._draining = threading.Event()
        self.indexed = 0
        self.failed = 0
        self.errors: list[str] = []
        self.locked = False
        self._thread = threading.Thread(target=self._run, name="import-indexer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from indexer.search_backend import IndexLockedError
        from postvault.indexing import drain_outbox

        while not self._stop.is_set():
            # Read before the drain starts: a drain that began after the import's last
            # commit and ran until nothing was leasable has indexed everything.
            last = self._draining.is_set()
            try:
                report = drain_outbox(self._archive, parse_many=self._parser, stop=self._stop)
            except IndexLockedError:
                self.locked = True
                return
            except Exception as error:  # the import itself must not die with its helper
                self.errors.append(f"background indexing stopped: {error}")
                return
            self.indexed += report.indexed
            self.failed += report.failed
            self.errors.extend(report.errors)
            if last:
                return
            self._draining.wait(0.2)

    @property
    def parser(self) -> Callable[[Sequence[str]], list[ParseOutcome]]:
        """Its parser: the final drain after the import reuses the pool's warm processes."""
        return self._parser

    def finish(self, *, drain: bool = False) -> None:
        """Stop indexing in the background: now, or (``drain``) once the outbox has nothing
        leasable left. The parser stays open until ``close``.

        Draining here keeps the parser pool's pipeline full to the end (the next batch is
        parsed while one is indexed); stopping and draining afresh would start it empty.
        """
        if drain:
            self._draining.set()
        else:
            self._stop.set()
        self._thread.join()

    def close(self) -> None:
        if self._thread.is_alive():  # not finished (an error on the way out): stop it before its parser goes
            self.finish()
        close = getattr(self._parser, "close", None)
        if close:
            close()


def _index(archive: Archive, background: _BackgroundIndexer | None = None) -> None:
    from indexer.search_backend import IndexLockedError
    from postvault.indexing import drain_outbox

    with Progress(SpinnerColumn(), TextColumn("Indexing"), TextColumn("{task.completed:,} messages"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("index", total=None, completed=background.indexed if background else 0)
        if background:
            background.finish(drain=True)
        indexed = background.indexed if background else 0
        failed = background.failed if background else 0
        errors_seen = list(background.errors) if background else []
        if background and background.locked:
            progress.stop()
            console.print("Another postvault process (serve) owns the search index; it indexes these messages.")
            return
        progress.update(task, completed=indexed)
        try:
            report = drain_outbox(archive, parse_many=background.parser if background else None,
                                  on_batch=lambda batch: progress.advance(task, batch.indexed + batch.failed))
        except IndexLockedError:
            console.print("Another postvault process (serve) owns the search index; it indexes these messages.")
            return
    report.indexed += indexed
    report.failed += failed
    report.errors[:0] = errors_seen
    console.print(f"Indexed {report.indexed:,} message(s); {report.failed:,} failed.")
    for error in report.errors[:10]:
        errors.print(Text.assemble("  ", _shown(error)), style="yellow")
    if report.failed:
        errors.print("[yellow]The failed messages are archived and stay queued; `postvault reindex` or the "
                     "background indexer retries them.[/]")


__all__ = ["import_command"]
