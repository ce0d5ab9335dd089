"""SearchBackend over an OpenSearch cluster: the scale-out profile's search engine."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import (
    AuthenticationException,
    AuthorizationException,
    ConnectionError as TransportConnectionError,
    ConnectionTimeout,
    OpenSearchException,
    SSLError,
    TransportError,
)
from opensearchpy.helpers import streaming_bulk

from indexer.backends import opensearch_mapping as mapping
from indexer.backends.opensearch_query import compile_query, scoped, sort_clauses
from indexer.document import IndexDocument
from indexer.query import fields
from indexer.query.ast import Node
from indexer.scope import Scope, require_scope
from indexer.search_backend import Hit, IndexedScope, SearchBackendError, SearchPage, SortOrder
from storage.engine_urls import OPENSEARCH_DEFAULT_PREFIX, OpenSearchUrl, parse_opensearch_url

USER_ENV = "POSTVAULT_OPENSEARCH_USER"
PASSWORD_ENV = "POSTVAULT_OPENSEARCH_PASSWORD"
DEFAULT_PREFIX = OPENSEARCH_DEFAULT_PREFIX

# OpenSearch's index.max_result_window: from + size beyond it is refused, so deeper pages
# are reached with search_after over a point-in-time snapshot instead.
RESULT_WINDOW = 10_000
_IDS_PAGE = 10_000
_KEEP_ALIVE = "2m"
# Bulk requests of at most this many actions and bytes: a few large messages (attachment
# text) cannot make one request too big, and a busy cluster pushes back per request.
BULK_ACTIONS = 500
BULK_BYTES = 10 * 1024 * 1024
# Retries of documents the cluster rejects with 429 (indexing queue full): 0.5 s doubling
# to 30 s, about a minute in all, before the batch fails and the outbox retries it later.
BULK_RETRIES = 7
BULK_BACKOFF = 0.5
BULK_MAX_BACKOFF = 30


@dataclass(frozen=True)
class Connection(OpenSearchUrl):
    """Where the cluster is and how to talk to it: an ``opensearch://`` URL (its fields are
    storage.engine_urls.OpenSearchUrl's) with the credentials resolved."""

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str] = os.environ) -> "Connection":
        """An ``opensearch[s]://`` URL, parsed by storage.engine_urls (see OpenSearchUrl for its form).

        Credentials come from the URL, else from $POSTVAULT_OPENSEARCH_USER and
        $POSTVAULT_OPENSEARCH_PASSWORD (which keeps them out of URLs that end up in logs).
        """
        return cls.from_parsed(parse_opensearch_url(url), environ)

    @classmethod
    def from_parsed(cls, parsed: OpenSearchUrl, environ: Mapping[str, str] = os.environ) -> "Connection":
        values = {item.name: getattr(parsed, item.name) for item in dataclasses.fields(parsed)}
        if not parsed.user:
            values.update(user=environ.get(USER_ENV, ""), password=environ.get(PASSWORD_ENV, ""))
        return cls(**values)

    @property
    def where(self) -> str:
        """The cluster's address for messages: never the password."""
        scheme = "https" if self.secure else "http"
        return ",".join(f"{scheme}://{host}:{port}" for host, port in self.hosts)

    def client(self) -> OpenSearch:
        return OpenSearch(
            hosts=[{"host": host, "port": port} for host, port in self.hosts],
            http_auth=(self.user, self.password) if self.user else None,
            use_ssl=self.secure,
            verify_certs=self.verify_certs,
            ca_certs=self.ca_certs or None,
            timeout=self.timeout,
            # Connection failures are retried on the other nodes; a timeout is not, since
            # the cluster may still be working on the request.
            max_retries=2,
            retry_on_timeout=False,
        )


@dataclass(frozen=True)
class Layout:
    """The index versions of one prefix, and which of them the two aliases name."""

    live: str | None  # behind the search alias
    building: str | None  # behind the rebuild alias, while a rebuild runs
    versions: tuple[int, ...]


class OpenSearchBackend:
    """Messages in versioned indices ``<prefix>-messages-v<N>`` behind the alias ``<prefix>-messages``.

    Searches, counts and id listings go through the alias. A rebuild (``begin_rebuild``,
    then ``finish_rebuild``) fills a new version while the alias keeps serving the old one;
    while it runs, every ``index`` and ``delete`` — from any process — writes to both,
    found through a second alias, ``<prefix>-messages-rebuild``, so nothing indexed
    meanwhile is missing after the swap. ``clear`` is an empty rebuild: instant, and it
    applies the current mapping. The first write creates version 1.
    """

    def __init__(self, connection: Connection, client: OpenSearch | None = None) -> None:
        self.connection = connection
        self._client = client or connection.client()
        self.alias = f"{connection.prefix}-messages"
        self.rebuild_alias = f"{connection.prefix}-messages-rebuild"
        self._version_re = re.compile(re.escape(self.alias) + r"-v([0-9]+)")

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str] = os.environ) -> "OpenSearchBackend":
        return cls(Connection.from_url(url, environ))

    # --- writing ---

    def index(self, documents: Sequence[IndexDocument]) -> Mapping[int, str]:
        """Upsert by id; durable (translog fsynced per request) and searchable on return.

        Returns the documents refused one by one (a 400 on their ``_bulk`` item: they
        break the mapping or a limit) or that could not be made into JSON; the rest are
        indexed. Anything else that fails an item (busy, read-only, a missing alias, a
        shard down) is the cluster's failure and raises ``SearchBackendError``.
        """
        if not documents:
            return {}
        latest = {document.id: document for document in documents}  # a repeated id: the last copy wins
        sources: list[tuple[str, str]] = []  # (id, the document as JSON)
        refused: dict[int, str] = {}
        for message_id, document in latest.items():
            try:
                source = mapping.to_source(document)
                sources.append((str(source[fields.ID]), _json(source)))
            except Exception as error:  # one odd document must not sink the batch
                refused[message_id] = f"it cannot be made into an OpenSearch document ({type(error).__name__}: {error})"
        targets = self._write_targets()
        # A _source that is already a string goes into the bulk body as it is.
        actions = (
            {"_op_type": "index", "_index": target, "_id": doc_id, "_source": body}
            for doc_id, body in sources
            for target in targets
        )
        for item_id, reason in self._bulk(actions, "indexing", len(sources), refusable=True).items():
            refused[int(item_id)] = f"OpenSearch refused it: {reason}"
        self._refresh()
        return refused

    def delete(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        targets = self._write_targets()
        actions = (
            {"_op_type": "delete", "_index": target, "_id": str(message_id)}
            for message_id in sorted(set(ids))
            for target in targets
        )
        self._bulk(actions, "deleting", len(ids), missing_is_fine=True)
        self._refresh()

    def clear(self) -> None:
        """Swap in a new, empty index version: instant, and it applies the current mapping."""
        self.begin_rebuild()
        self.finish_rebuild()

    def close(self) -> None:
        with contextlib.suppress(OpenSearchException):
            self._client.close()

    def _bulk(
        self, actions: Any, doing: str, documents: int, *, missing_is_fine: bool = False, refusable: bool = False
    ) -> dict[str, str]:
        """Run the actions; with ``refusable``, return the ids of documents refused for themselves, with why."""
        failures: list[dict[str, Any]] = []
        refused: dict[str, str] = {}
        with self._translated(doing):
            for ok, item in streaming_bulk(
                self._client,
                actions,
                chunk_size=BULK_ACTIONS,
                max_chunk_bytes=BULK_BYTES,
                max_retries=BULK_RETRIES,
                initial_backoff=BULK_BACKOFF,  # type: ignore[arg-type]  # seconds; any number works
                max_backoff=BULK_MAX_BACKOFF,
                raise_on_error=False,  # collect failures here; raising would also skip the 429 retries
                # A request over http.max_content_length (100 MB) is refused whole with 413;
                # a chunk that large holds one document (chunks stop at BULK_BYTES), so it
                # comes back as that document's failure instead of an exception.
                ignore_status=(413,) if refusable else (),
                yield_ok=False,
                # Writes name aliases, never indices: if an alias has gone (a rebuild was just
                # swapped in), fail instead of letting OpenSearch create a stray index.
                require_alias=True,
            ):
                result = next(iter(item.values()))
                # Deleting an id the index does not hold is no failure; a missing index still is.
                if ok or (missing_is_fine and result.get("result") == "not_found"):
                    continue
                # 400 is the document's own fault (mapper_parsing_exception, a value out of
                # range), 413 its size: retrying can never succeed. 429 (busy), 403 (a
                # read-only block on a full disk), 404 (an alias gone) and 5xx are the cluster's.
                status = result.get("status")
                if refusable and status in (400, 413):
                    reason = _reason(result.get("error")) if status == 400 else "the document is larger than the cluster takes in one request (HTTP 413)"
                    refused.setdefault(str(result.get("_id")), reason)
                else:
                    failures.append(result)
        if failures:
            first = failures[0]
            reason = _reason(first.get("error"))
            raise SearchBackendError(
                f"OpenSearch at {self.connection.where} refused {len(failures)} of {documents} documents while "
                f"{doing} (first: id {first.get('_id')} in {first.get('_index')}: {reason})"
            )
        return refused

    def _refresh(self) -> None:
        # Only the live index: a version being rebuilt is searched by nobody until the swap,
        # which refreshes it once.
        with self._translated("refreshing the index"):
            self._client.indices.refresh(index=self.alias, ignore_unavailable=True)

    # --- rebuilding behind the alias ---

    def begin_rebuild(self) -> str:
        """Create the next index version and start writing to it; returns its name.

        An unfinished earlier rebuild is discarded: the caller queues every message again.
        """
        layout = self._layout()
        if layout.building is not None:
            self._delete_index(layout.building)
        name = f"{self.alias}-v{max(layout.versions, default=0) + 1}"
        body = mapping.index_body(shards=self.connection.shards, replicas=self.connection.replicas, building=True)
        body["aliases"] = {self.rebuild_alias: {}}
        with self._translated(f"creating the index {name}"):
            self._client.indices.create(index=name, body=body)
        return name

    def finish_rebuild(self, *, min_documents: int = 0) -> str:
        """Make the rebuilt version the live one in one atomic alias change; delete the old one.

        Refuses, changing nothing, if the new version holds fewer than ``min_documents``.
        Returns the name of the version now live. A search already running on the old
        version finishes; a point-in-time walk over it (``indexed_ids``) fails and is rerun.
        """
        layout = self._layout()
        new = layout.building
        if new is None:
            raise SearchBackendError(f"no rebuild of {self.alias} is in progress at {self.connection.where}")
        with self._translated(f"counting the documents in {new}"):
            self._client.indices.refresh(index=new)
            held = int(self._client.count(index=new)["count"])
        if held < min_documents:
            raise SearchBackendError(
                f"the rebuilt index {new} holds {held} messages, fewer than the {min_documents} expected; "
                "the live index was left in place"
            )
        actions: list[dict[str, Any]] = [
            {"add": {"index": new, "alias": self.alias, "is_write_index": True}},
            {"remove": {"index": new, "alias": self.rebuild_alias}},
        ]
        if layout.live is not None:
            actions.insert(0, {"remove": {"index": layout.live, "alias": self.alias}})
        with self._translated(f"pointing {self.alias} at {new}"):
            self._client.indices.put_settings(
                index=new,
                body={"index": {"refresh_interval": None, "number_of_replicas": self.connection.replicas}},
            )
            self._client.indices.update_aliases(body={"actions": actions})
            # Writes that reached the new version after the count above, and whose writer
            # refreshed the old one, become searchable now rather than at the next refresh.
            self._client.indices.refresh(index=new)
        if layout.live is not None:
            self._delete_index(layout.live)
        return new

    def abort_rebuild(self) -> None:
        """Drop an unfinished rebuild; the live index is untouched."""
        building = self._layout().building
        if building is not None:
            self._delete_index(building)

    def rebuild_in_progress(self) -> str | None:
        """The index version a rebuild is filling, if one is."""
        return self._layout().building

    def _delete_index(self, name: str) -> None:
        with self._translated(f"deleting the index {name}"):
            self._client.indices.delete(index=name, ignore_unavailable=True)

    # --- the index versions and aliases ---

    def _layout(self) -> Layout:
        with self._translated("reading the index aliases"):
            found = self._client.indices.get_alias(index=f"{self.alias}-v*", expand_wildcards="all")
        live = building = None
        versions = []
        for name, entry in found.items():
            number = self._version_re.fullmatch(name)
            if number is None:
                continue
            versions.append(int(number.group(1)))
            aliases = entry.get("aliases", {})
            if self.alias in aliases:
                live = name
            if self.rebuild_alias in aliases:
                building = name
        return Layout(live=live, building=building, versions=tuple(sorted(versions)))

    def _ensure_live(self) -> Layout:
        """The layout, after creating version 1 behind the alias if there is no index yet."""
        layout = self._layout()
        if layout.live is not None:
            return layout
        stray = [v for v in layout.versions if f"{self.alias}-v{v}" != layout.building]
        if stray:
            raise SearchBackendError(
                f"the alias {self.alias} names no index at {self.connection.where}, though "
                f"{', '.join(f'{self.alias}-v{v}' for v in stray)} exist; point the alias at one of them "
                "or run `postvault reindex`"
            )
        name = f"{self.alias}-v{max(layout.versions, default=0) + 1}"
        body = mapping.index_body(shards=self.connection.shards, replicas=self.connection.replicas)
        body["aliases"] = {self.alias: {"is_write_index": True}}
        with self._translated(f"creating the index {name}"):
            try:
                self._client.indices.create(index=name, body=body)
            except TransportError as error:
                if error.error != "resource_already_exists_exception":
                    raise
                # Another process created it a moment ago: use theirs.
        layout = self._layout()
        if layout.live is None:
            raise SearchBackendError(
                f"the alias {self.alias} at {self.connection.where} vanished while it was being created"
            )
        return layout

    def _write_targets(self) -> tuple[str, ...]:
        # Asked on every write, not remembered: another process may begin or finish a
        # rebuild at any time, and a write that missed the new version would be lost from it.
        layout = self._layout()
        if layout.live is None and layout.building is None:
            layout = self._ensure_live()
        # With no live index but a rebuild running (a reindex repairing a lost alias), the
        # rebuild alone is written to.
        return tuple(
            alias for alias, index in ((self.alias, layout.live), (self.rebuild_alias, layout.building)) if index
        )

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
        body: dict[str, Any] = {
            "query": scoped(compile_query(query), scope),
            "sort": sort_clauses(sort),
            "track_total_hits": True,
            "_source": False,
            "docvalue_fields": [{"field": fields.DATE, "format": "epoch_millis"}],
        }
        with self._translated("searching"):
            if limit == 0 or offset + limit <= RESULT_WINDOW:
                window = {"from": offset if limit else 0, "size": limit}  # a page of 0 only counts
                found = self._client.search(index=self.alias, body={**body, **window}, ignore_unavailable=True)
                total = found["hits"]["total"]["value"]
                hits = found["hits"]["hits"]
            else:
                total, hits = self._deep_page(body, offset, limit)
        return SearchPage(hits=tuple(_hit(hit, sort) for hit in hits), total=int(total), offset=offset, limit=limit)

    def _deep_page(self, body: dict[str, Any], offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """Walk to ``offset`` with search_after in one snapshot; only the wanted page is kept."""
        total = 0
        hits: list[dict[str, Any]] = []
        with self._point_in_time() as pit:
            if pit is None:
                return 0, []
            to_skip, after = offset, None
            first = True
            while len(hits) < limit:
                size = min(RESULT_WINDOW, to_skip or limit - len(hits))
                page_body = {**body, "size": size, "pit": {"id": pit, "keep_alive": _KEEP_ALIVE}}
                page_body["track_total_hits"] = first
                if to_skip:
                    page_body["docvalue_fields"] = []
                if after is not None:
                    page_body["search_after"] = after
                found = self._client.search(body=page_body)
                if first:
                    total, first = found["hits"]["total"]["value"], False
                page = found["hits"]["hits"]
                if not page:
                    break
                after = page[-1]["sort"]
                if to_skip:
                    to_skip -= len(page)
                else:
                    hits.extend(page)
        return total, hits

    @contextlib.contextmanager
    def _point_in_time(self) -> Iterator[str | None]:
        """A point-in-time snapshot of the live index; None when there is no index yet."""
        try:
            pit = self._client.create_pit(index=self.alias, keep_alive=_KEEP_ALIVE)["pit_id"]
        except TransportError as error:
            if error.status_code == 404:
                yield None
                return
            raise
        try:
            yield pit
        finally:
            with contextlib.suppress(OpenSearchException):
                self._client.delete_pit(body={"pit_id": [pit]})

    def indexed_ids(self) -> Iterator[int]:
        """Every id, ascending, from one point-in-time snapshot; pages by id, so memory stays flat."""
        for hit in self._every_document("listing indexed ids", source=False, filter_path="hits.hits.sort"):
            yield int(hit["sort"][0])

    def indexed_scopes(self) -> Iterator[IndexedScope]:
        """Every document's mailboxes and domains (kept in ``_source``), ascending by id, from one snapshot."""
        for hit in self._every_document("reading the indexed scopes", source=[fields.MAILBOX, fields.DOMAIN],
                                        filter_path="hits.hits.sort,hits.hits._source"):
            found = hit.get("_source", {})
            yield IndexedScope(
                id=int(hit["sort"][0]),
                mailboxes=frozenset(found.get(fields.MAILBOX, ())),
                domains=frozenset(found.get(fields.DOMAIN, ())),
            )

    def _every_document(self, doing: str, *, source: bool | list[str], filter_path: str) -> Iterator[dict[str, Any]]:
        """Every document's hit, ascending by id, a page at a time from one point-in-time snapshot."""
        with self._translated(doing), self._point_in_time() as pit:
            if pit is None:
                return
            after: list[Any] | None = None
            while True:
                body: dict[str, Any] = {
                    "size": _IDS_PAGE,
                    "query": {"match_all": {}},
                    "sort": [{fields.ID: {"order": "asc"}}],
                    "pit": {"id": pit, "keep_alive": _KEEP_ALIVE},
                    "track_total_hits": False,
                    "_source": source,
                }
                if after is not None:
                    body["search_after"] = after
                hits = self._client.search(body=body, filter_path=filter_path).get("hits", {}).get("hits", [])
                yield from hits
                if len(hits) < _IDS_PAGE:
                    return
                after = hits[-1]["sort"]

    def count(self) -> int:
        with self._translated("counting"):
            return int(self._client.count(index=self.alias, ignore_unavailable=True)["count"])

    # --- health ---

    def check(self) -> None:
        """Raise ``SearchBackendError`` saying plainly what is wrong: reachability, credentials,
        version, or an index whose mapping is not the one this code writes and queries."""
        with self._translated("connecting"):
            version = str(self._client.info()["version"]["number"])
        if int(version.split(".")[0]) < 2:
            raise SearchBackendError(
                f"OpenSearch at {self.connection.where} is version {version}; postvault needs 2.4 or later"
            )
        layout = self._layout()
        problems: list[str] = []
        if layout.live is None:
            if layout.versions:
                problems.append(
                    f"the alias {self.alias} names no index, though index versions {list(layout.versions)} exist"
                )
        else:
            with self._translated(f"reading the mapping of {layout.live}"):
                live_mappings = self._client.indices.get_mapping(index=layout.live)[layout.live]["mappings"]
                live_settings = self._client.indices.get_settings(index=layout.live)[layout.live]["settings"]["index"]
            mismatch = mapping.mapping_problems(live_mappings, live_settings)
            if mismatch:
                problems.append(
                    f"the index {layout.live} does not have the layout this postvault expects ({'; '.join(mismatch)}); "
                    "run `postvault reindex` to build one that has (searches keep working meanwhile)"
                )
        if layout.building is not None:
            problems.append(
                f"a rebuild into {layout.building} was started and not finished; every write goes to it too "
                "until `postvault reindex` is run again to completion"
            )
        if problems:
            raise SearchBackendError(f"OpenSearch at {self.connection.where}: " + " Also: ".join(problems))

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """Engine and network errors become ``SearchBackendError`` with a plain message."""
        where = self.connection.where
        try:
            yield
        except SearchBackendError:
            raise
        except ConnectionTimeout as error:
            raise SearchBackendError(
                f"OpenSearch at {where} did not answer within {self.connection.timeout:g} s while {doing}"
            ) from error
        except SSLError as error:
            raise SearchBackendError(
                f"the TLS connection to OpenSearch at {where} failed while {doing} ({_cause(error)}); "
                "check ca_certs / verify_certs in the URL"
            ) from error
        except TransportConnectionError as error:
            raise SearchBackendError(f"OpenSearch at {where} is unreachable ({_cause(error)}) while {doing}") from error
        except AuthenticationException as error:
            how = (
                f"the credentials of user {self.connection.user!r} were refused"
                if self.connection.user
                else f"it asks for a user and password: set {USER_ENV} and {PASSWORD_ENV}"
            )
            raise SearchBackendError(f"OpenSearch at {where} answered 401 while {doing}: {how}") from error
        except AuthorizationException as error:
            raise SearchBackendError(
                f"OpenSearch at {where} does not allow user {self.connection.user or '(anonymous)'} to do this "
                f"({doing}): {_reason(error.info)}"
            ) from error
        except TransportError as error:
            raise SearchBackendError(
                f"OpenSearch at {where} refused {doing} "
                f"(HTTP {error.status_code}: {_reason(error.info) or error.error})"
            ) from error
        except OpenSearchException as error:
            raise SearchBackendError(f"talking to OpenSearch at {where} failed while {doing}: {error}") from error


def _json(source: Mapping[str, Any]) -> str:
    """A document as compact JSON, non-ASCII characters escaped: the json module's fast path.
    (opensearch-py's serializer asks for ensure_ascii=False, which takes its slower path for
    every string; the word streams are nearly all ASCII, so the body hardly grows.)"""
    return json.dumps(source, separators=(",", ":"))


def _hit(hit: Mapping[str, Any], sort: SortOrder) -> Hit:
    millis = hit.get("fields", {}).get(fields.DATE)
    return Hit(
        id=int(hit["_id"]),
        score=float(hit.get("_score") or 0.0) if sort is SortOrder.RELEVANCE else 0.0,
        date=mapping.date_from_millis(int(millis[0])) if millis else None,
    )


def _reason(info: object) -> str:
    """The most specific reason in an OpenSearch error body."""
    if isinstance(info, Mapping):
        error = info.get("error", info)
        if isinstance(error, Mapping):
            causes = error.get("root_cause") or [error]
            cause = causes[0] if isinstance(causes[0], Mapping) else error
            text = f"{cause.get('type', '')}: {cause.get('reason', '')}".strip(": ")
            caused_by = error.get("caused_by")
            deeper = str(caused_by.get("reason") or "") if isinstance(caused_by, Mapping) else ""
            if deeper and deeper not in text:
                text += f" ({deeper})"
            return text
        return str(error)
    return str(info) if info else ""


def _cause(error: TransportConnectionError) -> str:
    text = str(error.info)
    for needle, plain in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "host name not found"),
        ("nodename nor servname", "host name not found"),
        ("timed out", "timed out"),
        ("CERTIFICATE_VERIFY_FAILED", "certificate not trusted"),
        ("WRONG_VERSION_NUMBER", "the server does not speak TLS"),
    ):
        if needle in text:
            return plain
    return text.splitlines()[0] if text else type(error.info).__name__
