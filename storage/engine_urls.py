"""Engine URLs (catalogue, blob store, search, broker) parsed once into frozen values, with errors that name the setting."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

# The settings these URLs come from: every error names one, so an operator knows what to fix.
DATABASE_SETTING = "POSTVAULT_DATABASE_URL"
BLOBSTORE_SETTING = "POSTVAULT_BLOBSTORE_URL"
SEARCH_SETTING = "POSTVAULT_SEARCH_URL"
BROKER_SETTING = "POSTVAULT_BROKER_URL"

OPENSEARCH_DEFAULT_PORT = 9200
OPENSEARCH_DEFAULT_PREFIX = "postvault"

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_PREFIX_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,200}")
_N = TypeVar("_N", int, float)


class EngineUrlError(ValueError):
    """An engine URL that postvault cannot use; the message starts with the setting's name."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


def parse_bool(value: str, *, setting: str, option: str) -> bool:
    """``true``/``false``, ``1``/``0``, ``yes``/``no`` (any case); anything else is an error, never a guess.

    A typo such as ``object_lock=flase`` must not quietly turn WORM retention on or off.
    """
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise EngineUrlError(setting, f"{option}={value!r} is not a boolean: use true or false (or 1/0, yes/no)")


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``: the form that may appear in logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


# --------------------------------------------------------------------------- options


class _Options:
    """The query options of one URL: each read once, typed; any left unread is an unknown option."""

    def __init__(self, query: str, *, setting: str, known: frozenset[str]) -> None:
        self.setting = setting
        self._values = {name: values[-1] for name, values in parse_qs(query, keep_blank_values=True).items()}
        unknown = sorted(set(self._values) - known)
        if unknown:
            raise EngineUrlError(setting, f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")

    def text(self, name: str, default: str) -> str:
        return self._values.get(name, default)

    def flag(self, name: str, default: bool) -> bool:
        value = self._values.get(name)
        return default if value is None else parse_bool(value, setting=self.setting, option=name)

    def number(self, name: str, default: _N, kind: Callable[[str], _N]) -> _N:
        value = self._values.get(name)
        if value is None:
            return default
        try:
            number = kind(value)
        except ValueError:
            raise EngineUrlError(self.setting, f"{name}={value!r} is not a number") from None
        if number < 0:
            raise EngineUrlError(self.setting, f"{name}={value!r} must not be negative")
        return number


def _folder(url: str, scheme: str, setting: str) -> Path:
    parts = urlsplit(url)
    path = parts.netloc + parts.path
    if not path:
        raise EngineUrlError(setting, f"{scheme}:// needs a folder, e.g. {scheme}:///var/lib/postvault/{'blobs' if scheme == 'file' else 'index'}")
    if parts.query:
        raise EngineUrlError(setting, f"{scheme}:// URLs take no options, not {parts.query!r}")
    return Path(unquote(path))


def _scheme(url: str, setting: str, expected: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme:
        raise EngineUrlError(setting, f"{url!r} is not a URL; expected {expected}")
    return parts.scheme.lower()


# --------------------------------------------------------------------------- blob store


@dataclass(frozen=True)
class FilesystemBlobsUrl:
    """``file:///path``: the embedded profile's blob folder."""

    path: Path


@dataclass(frozen=True)
class S3BlobsUrl:
    """``s3://bucket?endpoint=host:port&secure=true&region=r&object_lock=true&ca_certs=/path``.

    Credentials never sit in the URL: the adapter reads them from the environment.
    """

    bucket: str
    endpoint: str = "s3.amazonaws.com"
    secure: bool = True
    region: str | None = None  # None: $AWS_DEFAULT_REGION, else us-east-1
    object_lock: bool = False
    ca_certs: str = ""  # "": $SSL_CERT_FILE, else certifi's bundle


BlobstoreUrl = FilesystemBlobsUrl | S3BlobsUrl
_S3_OPTIONS = frozenset({"endpoint", "secure", "region", "object_lock", "ca_certs"})


def parse_blobstore_url(url: str, *, setting: str = BLOBSTORE_SETTING) -> BlobstoreUrl:
    expected = "file:///path or s3://bucket?endpoint=host:port"
    scheme = _scheme(url, setting, expected)
    if scheme == "file":
        return FilesystemBlobsUrl(_folder(url, "file", setting))
    if scheme != "s3":
        raise EngineUrlError(setting, f"must be {expected}, not {redacted(url)!r}")
    parts = urlsplit(url)
    if parts.username is not None:
        raise EngineUrlError(setting, "put no credentials in an s3:// URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if not parts.netloc:
        raise EngineUrlError(setting, f"no bucket in {url!r}: s3://bucket?endpoint=host:port")
    options = _Options(parts.query, setting=setting, known=_S3_OPTIONS)
    endpoint = options.text("endpoint", "s3.amazonaws.com")
    if not endpoint or "/" in endpoint:
        raise EngineUrlError(setting, f"endpoint={endpoint!r} must be host or host:port, without a scheme or path")
    return S3BlobsUrl(
        bucket=parts.netloc,
        endpoint=endpoint,
        secure=options.flag("secure", True),
        region=options.text("region", "") or None,
        object_lock=options.flag("object_lock", False),
        ca_certs=options.text("ca_certs", ""),
    )


# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class TantivyUrl:
    """``tantivy:///path``: the embedded profile's index folder."""

    path: Path


@dataclass(frozen=True)
class OpenSearchUrl:
    """``opensearch[s]://[user:password@]host[:port][,host[:port]...][/prefix][?option=value&...]``.

    Options: ``secure`` (same as opensearchs://), ``verify_certs`` (default true),
    ``ca_certs=/path``, ``timeout`` (seconds), ``shards`` and ``replicas`` (of new index
    versions). The path is the index prefix. A user and password in the URL are kept,
    but the environment is the better place for them (URLs end up in logs).
    """

    hosts: tuple[tuple[str, int], ...]
    secure: bool = False
    user: str = ""
    password: str = field(default="", repr=False)
    verify_certs: bool = True
    ca_certs: str = ""
    timeout: float = 30.0
    prefix: str = OPENSEARCH_DEFAULT_PREFIX
    shards: int = 1
    replicas: int = 1


SearchUrl = TantivyUrl | OpenSearchUrl
_OPENSEARCH_OPTIONS = frozenset({"secure", "verify_certs", "ca_certs", "timeout", "shards", "replicas"})


def parse_search_url(url: str, *, setting: str = SEARCH_SETTING) -> SearchUrl:
    expected = "tantivy:///path or opensearch://host:port"
    scheme = _scheme(url, setting, expected)
    if scheme == "tantivy":
        return TantivyUrl(_folder(url, "tantivy", setting))
    if scheme not in {"opensearch", "opensearchs"}:
        raise EngineUrlError(setting, f"must be {expected} (an OpenSearch URL starts with opensearch:// or opensearchs://), "
                                      f"not {redacted(url)!r}")
    return parse_opensearch_url(url, setting=setting)


def parse_opensearch_url(url: str, *, setting: str = SEARCH_SETTING) -> OpenSearchUrl:
    parts = urlsplit(url)
    if parts.scheme not in {"opensearch", "opensearchs"}:
        raise EngineUrlError(setting, f"an OpenSearch URL starts with opensearch:// or opensearchs://, not {redacted(url)!r}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    options = _Options(parts.query, setting=setting, known=_OPENSEARCH_OPTIONS)
    prefix = parts.path.strip("/") or OPENSEARCH_DEFAULT_PREFIX
    if not _PREFIX_RE.fullmatch(prefix):
        raise EngineUrlError(setting, f"the index prefix {prefix!r} (the URL path) must be lower-case letters, digits, '-', '_' or '.'")
    return OpenSearchUrl(
        hosts=tuple(_opensearch_host(item, setting) for item in hostlist.split(",")),
        secure=parts.scheme == "opensearchs" or options.flag("secure", False),
        user=unquote(user),
        password=unquote(password),
        verify_certs=options.flag("verify_certs", True),
        ca_certs=options.text("ca_certs", ""),
        timeout=options.number("timeout", 30.0, float),
        prefix=prefix,
        shards=options.number("shards", 1, int),
        replicas=options.number("replicas", 1, int),
    )


def _opensearch_host(item: str, setting: str) -> tuple[str, int]:
    parts = urlsplit("//" + item.strip())  # the URL parser knows [IPv6]:port
    try:
        port = parts.port
    except ValueError:
        raise EngineUrlError(setting, f"the port in {item!r} is not a number") from None
    if not parts.hostname:
        raise EngineUrlError(setting, f"no host name in the OpenSearch URL part {item!r}")
    return parts.hostname, port or OPENSEARCH_DEFAULT_PORT


# --------------------------------------------------------------------------- catalogue and broker


@dataclass(frozen=True)
class ClientLibrary:
    """The Python module an engine URL needs, and the optional dependency (extra) that installs it."""

    module: str
    extra: str | None  # None: a core dependency, always installed


@dataclass(frozen=True)
class DatabaseUrl:
    """A SQLAlchemy URL of a catalogue engine postvault supports: SQLite or PostgreSQL (psycopg 3)."""

    url: str = field(repr=False)
    dialect: str  # "sqlite" | "postgresql"
    library: ClientLibrary

    @property
    def shown(self) -> str:
        return redacted(self.url)


_DATABASE_DRIVERS: Mapping[tuple[str, str], ClientLibrary] = {
    ("sqlite", ""): ClientLibrary("sqlite3", None),
    ("sqlite", "pysqlite"): ClientLibrary("sqlite3", None),
    # SQLAlchemy 2.1's default PostgreSQL driver is psycopg (3); psycopg2 is not supported.
    ("postgresql", ""): ClientLibrary("psycopg", "postgres"),
    ("postgresql", "psycopg"): ClientLibrary("psycopg", "postgres"),
}


def parse_database_url(url: str, *, setting: str = DATABASE_SETTING) -> DatabaseUrl:
    expected = "sqlite:///path or postgresql+psycopg://user:password@host:port/database"
    scheme = _scheme(url, setting, expected)
    dialect, _, driver = scheme.partition("+")
    library = _DATABASE_DRIVERS.get((dialect, driver))
    if library is None:
        raise EngineUrlError(setting, f"must be {expected}, not {redacted(url)!r}")
    parts = urlsplit(url)
    if dialect == "postgresql":
        try:
            parts.port
        except ValueError:
            raise EngineUrlError(setting, f"the port in {redacted(url)!r} is not a number") from None
        if not parts.path.strip("/"):
            raise EngineUrlError(setting, f"no database name in {redacted(url)!r}")
    elif url != f"{scheme}://" and not url.startswith(f"{scheme}:///"):
        raise EngineUrlError(setting, f"a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path, not {url!r}")
    return DatabaseUrl(url=url, dialect=dialect, library=library)


@dataclass(frozen=True)
class BrokerUrl:
    """The Celery broker: Redis (``redis://[:password@]host:port/db``, or ``rediss://`` for TLS)."""

    url: str = field(repr=False)
    library: ClientLibrary = ClientLibrary("redis", "redis")

    @property
    def shown(self) -> str:
        return redacted(self.url)


def parse_broker_url(url: str, *, setting: str = BROKER_SETTING) -> BrokerUrl | None:
    """None for an empty setting: the embedded profile, background work in-process."""
    if not url:
        return None
    expected = "redis://[:password@]host:port/db (or rediss:// for TLS)"
    scheme = _scheme(url, setting, expected)
    if scheme not in {"redis", "rediss"}:
        raise EngineUrlError(setting, f"must be {expected}, not {redacted(url)!r}")
    parts = urlsplit(url)
    try:
        parts.port
    except ValueError:
        raise EngineUrlError(setting, f"the port in {redacted(url)!r} is not a number") from None
    if not parts.hostname:
        raise EngineUrlError(setting, f"no host in {redacted(url)!r}")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise EngineUrlError(setting, f"the Redis database {database!r} (the URL path) must be a number")
    return BrokerUrl(url=url)


__all__ = [
    "BLOBSTORE_SETTING",
    "BROKER_SETTING",
    "DATABASE_SETTING",
    "SEARCH_SETTING",
    "BlobstoreUrl",
    "BrokerUrl",
    "ClientLibrary",
    "DatabaseUrl",
    "EngineUrlError",
    "FilesystemBlobsUrl",
    "OpenSearchUrl",
    "S3BlobsUrl",
    "SearchUrl",
    "TantivyUrl",
    "parse_blobstore_url",
    "parse_bool",
    "parse_broker_url",
    "parse_database_url",
    "parse_opensearch_url",
    "parse_search_url",
    "redacted",
]
