"""`postvault import`: archive EML, mbox, maildir and zip files, then index them so they are searchable."""

from __future__ import annotations

import json
from collections import Counter
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
from archiver.importers.runner import DEFAULT_BATCH_MESSAGES
from postvault.settings import Settings
from postvault.wiring import Archive
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
    paths: list[Path] = typer.Argument(..., help="Files or folders: EML files, folders of them, mbox, maildir (Maildir++), zip."),
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
    settings = Settings()
    archive = Archive(settings)
    try:
        try:
            archive.sessions, archive.journal  # open both engines before reading any mail
        except (BlobStoreError, SQLAlchemyError, OSError) as error:
            errors.print(f"[red]Storage unavailable; nothing was imported:[/] {error}", highlight=False)
            raise typer.Exit(1) from None
        summary = _run_import(archive, settings, paths, custodian, batch_size)
        _print_summary(summary)
        _print_refusals(summary, refusals_file)
        if summary.storage_error:
            errors.print(f"[red]Storage failed; the import stopped:[/] {summary.storage_error}", highlight=False)
            errors.print(f"[red]{len(summary.not_archived):,} message(s) read but not archived.[/] "
                         "Fix the storage and run the same command again: it resumes and archives nothing twice.")
            raise typer.Exit(1)
        if index:
            _index(archive)
    finally:
        archive.close()


def _run_import(archive: Archive, settings: Settings, paths: list[Path], custodian: str, batch_size: int) -> ImportSummary:
    columns = (SpinnerColumn(), TextColumn("Importing"), TextColumn("{task.completed:,} messages"), _RateColumn(),
               TextColumn("{task.fields[refused]:,} refused"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("import", total=None, refused=0)

        def on_progress(summary: ImportSummary) -> None:
            progress.update(task, completed=summary.seen, refused=len(summary.refused))

        return import_paths(
            paths,
            journal=archive.journal,
            sessions=archive.sessions,
            max_message_bytes=settings.max_message_bytes,
            custodian=custodian,
            batch_messages=batch_size,
            on_progress=on_progress,
        )


def _print_summary(summary: ImportSummary) -> None:
    table = Table(title="postvault import")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("archived (new)", f"{summary.archived:,}")
    table.add_row("already in the archive", f"{summary.duplicate:,}")
    table.add_row("refused (not archived)", f"{len(summary.refused):,}")
    if summary.skipped:
        table.add_row("skipped (maildir bookkeeping)", f"{len(summary.skipped):,}")
    if summary.not_archived:
        table.add_row("not archived: storage failed", f"{len(summary.not_archived):,}")
    table.add_row("bytes read", f"{summary.bytes:,}")
    table.add_row("time", f"{summary.elapsed:,.1f} s")
    table.add_row("rate", f"{summary.rate:,.0f} messages/s")
    console.print(table)
    for location, position in summary.resumed:
        console.print(f"resumed {location} at byte {position:,} (everything before it was archived earlier)", highlight=False)


def _print_refusals(summary: ImportSummary, refusals_file: Path | None) -> None:
    if refusals_file is not None:
        with refusals_file.open("w", encoding="utf-8") as handle:
            for location, reason in summary.refused:
                handle.write(json.dumps({"location": location, "reason": reason}, ensure_ascii=False) + "\n")
    if not summary.refused:
        return
    table = Table(title="Refused: not archived, with the reason", title_justify="left")
    table.add_column("location", overflow="fold")
    table.add_column("reason", overflow="fold")
    for location, reason in summary.refused[:_REFUSALS_SHOWN]:
        table.add_row(location, reason)
    console.print(table)
    rest = summary.refused[_REFUSALS_SHOWN:]
    if rest:
        console.print(f"…and {len(rest):,} more refusal(s):", highlight=False)
        for reason, count in Counter(reason for _location, reason in rest).most_common():
            console.print(f"  {count:,} × {reason}", highlight=False)
        if refusals_file is None:
            console.print("  (--refusals-file PATH writes every one of them)")


def _index(archive: Archive) -> None:
    try:
        from postvault.indexing import drain_outbox
    except ImportError:  # an archive without the indexer: the messages wait in the outbox
        console.print("Indexing is not available here; the messages wait in the index outbox.")
        return
    with Progress(SpinnerColumn(), TextColumn("Indexing"), TextColumn("{task.completed:,} messages"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("index", total=None)
        report = drain_outbox(archive, on_batch=lambda batch: progress.advance(task, batch.indexed + batch.failed))
    console.print(f"Indexed {report.indexed:,} message(s); {report.failed:,} failed.")
    for error in report.errors[:10]:
        errors.print(f"  [yellow]{error}[/]", highlight=False)
    if report.failed:
        errors.print("[yellow]The failed messages are archived and stay queued; `postvault reindex` or the "
                     "background indexer retries them.[/]")


__all__ = ["import_command"]
