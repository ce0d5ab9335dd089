"""SearchBackend over a tantivy index folder: the embedded profile's search engine."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import tantivy

from indexer.backends.tantivy_query import compile_query, scope_filter
from indexer.document import IndexDocument
from indexer.query import fields
from indexer.query.ast import Node
from indexer.scope import Scope, require_scope
from indexer.search_backend import Hit, IndexedScope, IndexLockedError, IndexOutdatedError, SearchBackendError, SearchPage, SortOrder
from storage.private_files import private_folder

# Date order is to the second, ties broken by id in the same direction, so that paging
# through messages with identical dates (bulk imports) neither repeats nor skips any. Both
# are packed into one u64 fast field because tantivy sorts by a single field.
DATE_ORDER = "date_order"
_ID_BITS = 28
_ID_MASK = (1 << _ID_BITS) - 1
_EPOCH = tantivy.MIN_DATETIME

_IDS_PAGE = 10_000
_RELOAD_ATTEMPTS = 4
# A batch of 1000 ordinary messages fills a few tens of MB (a batch that fills the heap is
# cut into two segments, no more); more heap only raises peak memory.
DEFAULT_WRITER_HEAP = 64 * 1024 * 1024
# One indexing thread: a batch of a few hundred messages is committed at once, and every
# writer thread cuts its own segment per commit, so more threads mean more files to fsync
# and more merging for no gain.
# The parallel work of indexing, MIME parsing, happens before ``index`` is called.
DEFAULT_WRITER_THREADS = 1


def build_schema() -> tantivy.Schema:
    """The index layout; field names and meanings come from ``indexer.query.fields``."""
    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field(fields.ID, stored=True, indexed=True, fast=True)
    builder.add_date_field(fields.DATE, stored=True, indexed=True, fast=True)
    builder.add_unsigned_field(DATE_ORDER, fast=True)
    builder.add_unsigned_field(fields.SIZE, indexed=True, fast=True)
    builder.add_boolean_field(fields.HAS_ATTACHMENT, indexed=True)
    for name in fields.ANALYSED_FIELDS:
        # "default" is tantivy's SimpleTokenizer + RemoveLong(40 bytes) + LowerCaser, the rule
        # ``indexer.query.analysis`` mirrors; no stemming so OpenSearch can match it exactly.
        builder.add_text_field(name, tokenizer_name="default")
    for name in fields.KEYWORD_FIELDS:
        # Whole values are never searched as phrases: no positions, no frequencies to store.
        # Mailboxes and domains are stored too, so that `verify` can read a document's
        # scope back and compare it with the catalogue's.
        builder.add_text_field(name, tokenizer_name="raw", index_option="basic", stored=name in _SCOPE_FIELDS)
    return builder.build()


_SCOPE_FIELDS = (fields.MAILBOX, fields.DOMAIN)


def _utc(moment: datetime) -> datetime:
    # Naive dates are taken as UTC; tantivy cannot hold dates outside 1677-2262.
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    # Outside tantivy's span, and converting 9999-12-31 in a zone west of UTC would pass
    # datetime's own range.
    if moment.year > tantivy.MAX_DATETIME.year:
        return tantivy.MAX_DATETIME
    if moment.year < tantivy.MIN_DATETIME.year:
        return tantivy.MIN_DATETIME
    return min(max(moment.astimezone(timezone.utc), tantivy.MIN_DATETIME), tantivy.MAX_DATETIME)


def date_order(moment: datetime, message_id: int) -> int:
    seconds = int((_utc(moment) - _EPOCH).total_seconds())
    return (seconds << _ID_BITS) | (message_id & _ID_MASK)


def to_tantivy(document: IndexDocument) -> tantivy.Document:
    doc = tantivy.Document()
    doc.add_unsigned(fields.ID, document.id)
    doc.add_date(fields.DATE, _utc(document.date))
    doc.add_unsigned(DATE_ORDER, date_order(document.date, document.id))
    doc.add_unsigned(fields.SIZE, max(document.size, 0))
    doc.add_boolean(fields.HAS_ATTACHMENT, document.has_attachment)
    for name, values in fields.document_values(document).items():
        for value in values:
            doc.add_text(name, value)
    return doc


class TantivyBackend:
    """A tantivy index in one folder.

    Any number of processes may search the folder; one process at a time may change it.
    The writer (and its lock) is taken on the first change and held until ``close``, so a
    process that only searches never contends for it; a change attempted while another
    process holds it raises ``SearchBackendError``. Searches pick up commits made by other
    processes. Hits sorted by date carry a score of 0.0.
    """

    def __init__(
        self, path: Path, *, writer_heap_bytes: int = DEFAULT_WRITER_HEAP, writer_threads: int = DEFAULT_WRITER_THREADS
    ) -> None:
        self._path = Path(path)
        self._heap = writer_heap_bytes
        self._threads = writer_threads
        self._schema = build_schema()
        try:
            private_folder(self._path)  # its files are the index of people's mail
            self._index = tantivy.Index(self._schema, path=str(self._path), reuse=True)
            self._index.config_reader(reload_policy="manual")
        except ValueError as error:
            if "schema does not match" in str(error):
                raise IndexOutdatedError(
                    f"the search index at {self._path} was built by another version of postvault, for fields "
                    "this one does not use; run `postvault reindex` (it sets the old index aside and builds a new one)"
                ) from error
            raise SearchBackendError(f"cannot open the search index at {self._path}: {error}") from error
        except OSError as error:
            raise SearchBackendError(f"cannot open the search index at {self._path}: {error}") from error
        self._writer: tantivy.IndexWriter | None = None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._closed = False
        self._refresh()

    # --- writing ---

    def index(self, documents: Sequence[IndexDocument]) -> Mapping[int, str]:
        """Upsert by id, one commit for the whole batch; visible to ``search`` on return.

        A document that cannot be made into a tantivy document (a value out of its
        range) is returned as refused, and the rest are committed.
        """
        if not documents:
            return {}
        latest = {document.id: document for document in documents}  # a repeated id: the last copy wins
        converted: dict[int, tantivy.Document] = {}
        refused: dict[int, str] = {}
        for message_id, document in latest.items():
            try:
                converted[message_id] = to_tantivy(document)
            except Exception as error:  # one odd document must not sink the batch
                refused[message_id] = f"tantivy cannot hold it ({type(error).__name__}: {error})"
        with self._write_lock:
            writer = self._open_writer()
            try:
                # One delete for the batch: it removes only documents added before it. A
                # document refused above keeps its older copy, as OpenSearch keeps one.
                if converted:
                    writer.delete_documents_by_query(self._ids_query(converted))
                for message_id, doc in converted.items():
                    try:
                        writer.add_document(doc)
                    except ValueError as error:
                        refused[message_id] = f"tantivy refused it ({error})"
                writer.commit()
            except (ValueError, OSError) as error:
                self._rollback(writer)
                raise SearchBackendError(f"indexing into {self._path} failed: {error}") from error
        self._refresh(force=True)
        return refused

    def delete(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._write_lock:
            writer = self._open_writer()
            try:
                writer.delete_documents_by_query(self._ids_query(ids))
                writer.commit()
            except (ValueError, OSError) as error:
                self._rollback(writer)
                raise SearchBackendError(f"deleting from {self._path} failed: {error}") from error
        self._refresh(force=True)

    def clear(self) -> None:
        with self._write_lock:
            writer = self._open_writer()
            try:
                writer.delete_all_documents()
                writer.commit()
            except (ValueError, OSError) as error:
                self._rollback(writer)
                raise SearchBackendError(f"clearing {self._path} failed: {error}") from error
        self._refresh(force=True)

    def close(self) -> None:
        """Finish background merges and release the writer lock; the backend is unusable after."""
        with self._write_lock:
            writer, self._writer = self._writer, None
            self._closed = True
            if writer is not None:
                # A failed merge leaves the committed segments it read intact: nothing to do.
                with contextlib.suppress(ValueError):
                    writer.wait_merging_threads()

    def _ids_query(self, ids: Iterable[int]) -> tantivy.Query:
        # Not delete_documents_by_term: tantivy-py 0.27 turns a Python int into an i64 term,
        # which never equals a u64 id, so the delete silently removes nothing.
        return tantivy.Query.term_set_query(self._schema, fields.ID, sorted(set(ids)))

    def _open_writer(self) -> tantivy.IndexWriter:
        self._check_open()
        if self._writer is None:
            try:
                self._writer = self._index.writer(heap_size=self._heap, num_threads=self._threads)
            except ValueError as error:
                if "LockBusy" in str(error):
                    raise IndexLockedError(
                        f"the search index at {self._path} is locked by another writer (is another "
                        "postvault process indexing?); this process can search it but not change it"
                    ) from error
                raise SearchBackendError(f"cannot write to the search index at {self._path}: {error}") from error
        return self._writer

    def _rollback(self, writer: tantivy.IndexWriter) -> None:
        try:
            writer.rollback()
        except ValueError:
            self._writer = None  # leave the broken writer behind; the next change opens a new one

    # --- reading ---

    def search(
        self,
        query: Node,
        scope: Scope,
        *,
        sort: SortOrder = SortOrder.DATE_DESC,
        limit: int = 20,
        offset: int = 0,
    ) -> SearchPage:
        scope = require_scope(scope)
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        if scope.is_empty:
            return SearchPage(hits=(), total=0, offset=offset, limit=limit)
        compiled = compile_query(query, self._schema)
        restriction = scope_filter(scope, self._schema)
        if restriction is not None:
            compiled = tantivy.Query.boolean_query([(tantivy.Occur.Must, compiled), (tantivy.Occur.Must, restriction)])
        searcher = self._searcher()
        # tantivy wants at least one hit; a page of 0 still needs the count.
        wanted = max(limit, 1)
        try:
            if sort is SortOrder.RELEVANCE:
                result = searcher.search(compiled, wanted, count=True, offset=offset)
            else:
                order = tantivy.Order.Asc if sort is SortOrder.DATE_ASC else tantivy.Order.Desc
                result = searcher.search(
                    compiled, wanted, count=True, order_by_field=DATE_ORDER, offset=offset, order=order
                )
            hits = tuple(self._hit(searcher, key, address, sort) for key, address in result.hits[:limit])
        except ValueError as error:
            raise SearchBackendError(f"searching {self._path} failed: {error}") from error
        total = result.count  # type: ignore[attr-defined]  # set when count=True; the 0.27 stub omits it
        return SearchPage(hits=hits, total=int(total), offset=offset, limit=limit)

    @staticmethod
    def _hit(searcher: tantivy.Searcher, key: object, address: tantivy.DocAddress, sort: SortOrder) -> Hit:
        stored = searcher.doc(address)
        score = float(key) if sort is SortOrder.RELEVANCE else 0.0  # type: ignore[arg-type]
        return Hit(id=int(stored[fields.ID][0]), score=score, date=stored[fields.DATE][0])

    def indexed_ids(self) -> Iterator[int]:
        """Every id, ascending, from one snapshot; pages by id so memory stays flat."""
        for page in self._pages_by_id("listing ids"):
            yield from (message_id for message_id, _ in page)

    def indexed_scopes(self) -> Iterator[IndexedScope]:
        """Every document's stored mailboxes and domains, ascending by id, from one snapshot."""
        searcher = self._searcher()
        for page in self._pages_by_id("reading scopes", searcher):
            try:
                stored = [(message_id, searcher.doc(address)) for message_id, address in page]
            except ValueError as error:
                raise SearchBackendError(f"reading scopes in {self._path} failed: {error}") from error
            for message_id, doc in stored:
                yield IndexedScope(
                    id=message_id,
                    mailboxes=frozenset(doc.get_all(fields.MAILBOX)),
                    domains=frozenset(doc.get_all(fields.DOMAIN)),
                )

    def _pages_by_id(self, doing: str, searcher: tantivy.Searcher | None = None) -> Iterator[list[tuple[int, tantivy.DocAddress]]]:
        """(id, document address) of every document, ascending by id, a page at a time from one searcher."""
        searcher = searcher or self._searcher()
        query = tantivy.Query.all_query()
        while True:
            try:
                page = searcher.search(query, _IDS_PAGE, count=False, order_by_field=fields.ID, order=tantivy.Order.Asc)
            except ValueError as error:
                raise SearchBackendError(f"{doing} in {self._path} failed: {error}") from error
            hits = [(int(key), address) for key, address in page.hits]
            yield hits
            if len(hits) < _IDS_PAGE:
                return
            query = tantivy.Query.range_query(
                self._schema, fields.ID, tantivy.FieldType.Unsigned, lower_bound=hits[-1][0], include_lower=False
            )

    def check(self) -> None:
        """Opening the index is the check: a missing or unreadable folder raises here."""
        self.count()

    def count(self) -> int:
        return self._searcher().num_docs

    def _searcher(self) -> tantivy.Searcher:
        self._check_open()
        self._refresh()
        return self._index.searcher()

    def _refresh(self, *, force: bool = False) -> None:
        """Reload the reader if any process committed since the last look (meta.json changed)."""
        with self._read_lock:
            stamp = self._meta_stamp()
            if not force and stamp is not None and stamp == self._seen:
                return
            for attempt in range(_RELOAD_ATTEMPTS):
                try:
                    self._index.reload()
                    break
                except (ValueError, OSError) as error:
                    # A writer in another process may merge away the segments named by the
                    # meta.json just read; the next meta.json names the merged one.
                    if attempt == _RELOAD_ATTEMPTS - 1:
                        raise SearchBackendError(f"cannot read the search index at {self._path}: {error}") from error
                    time.sleep(0.05 * (attempt + 1))
                    stamp = self._meta_stamp()
            self._seen = stamp

    def _meta_stamp(self) -> tuple[int, int, int] | None:
        try:
            meta = os.stat(self._path / "meta.json")
        except OSError:
            return None
        return (meta.st_ino, meta.st_mtime_ns, meta.st_size)

    def _check_open(self) -> None:
        if self._closed:
            raise SearchBackendError(f"the search index at {self._path} has been closed")
