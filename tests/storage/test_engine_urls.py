"""One typed parser for every engine URL: each bad value is refused with the setting's name, never guessed."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.backends.opensearch_backend import Connection
from postvault.wiring import blobstore_from_url, search_backend_from_url
from storage.engine_urls import (
    ClientLibrary,
    EngineUrlError,
    FilesystemBlobsUrl,
    OpenSearchUrl,
    S3BlobsUrl,
    TantivyUrl,
    parse_blobstore_url,
    parse_bool,
    parse_broker_url,
    parse_database_url,
    parse_search_url,
    redacted,
)
from storage.s3 import S3Location

# --------------------------------------------------------------------------- booleans


@pytest.mark.parametrize("word", ["true", "TRUE", "1", "yes", "Yes"])
def test_true_words(word: str) -> None:
    assert parse_bool(word, setting="S", option="o") is True


@pytest.mark.parametrize("word", ["false", "False", "0", "no", "NO"])
def test_false_words(word: str) -> None:
    assert parse_bool(word, setting="S", option="o") is False


@pytest.mark.parametrize("word", ["flase", "ture", "", "on", "off", "2", "y", "n", "enabled"])
def test_anything_else_is_not_a_boolean(word: str) -> None:
    with pytest.raises(EngineUrlError, match=r"^POSTVAULT_X: o=.* is not a boolean: use true or false"):
        parse_bool(word, setting="POSTVAULT_X", option="o")


def test_object_lock_flase_is_refused_by_every_reader_of_the_blob_store_url() -> None:
    """It read as true in storage/s3.py (anything not in a false-list) and raised elsewhere."""
    url = "s3://archive?endpoint=127.0.0.1:9000&secure=false&object_lock=flase"
    for reader in (parse_blobstore_url, S3Location.from_url, blobstore_from_url):
        with pytest.raises(EngineUrlError, match=r"^POSTVAULT_BLOBSTORE_URL: object_lock='flase' is not a boolean"):
            reader(url)


def test_a_secure_typo_cannot_turn_tls_off_for_s3_or_opensearch() -> None:
    with pytest.raises(EngineUrlError, match="POSTVAULT_BLOBSTORE_URL: secure='flase'"):
        S3Location.from_url("s3://b?secure=flase")
    with pytest.raises(EngineUrlError, match="POSTVAULT_SEARCH_URL: verify_certs='nope'"):
        Connection.from_url("opensearchs://h?verify_certs=nope")


# --------------------------------------------------------------------------- blob store


def test_blob_store_urls() -> None:
    assert parse_blobstore_url("file:///var/lib/pv/blobs") == FilesystemBlobsUrl(Path("/var/lib/pv/blobs"))
    assert parse_blobstore_url("s3://archive") == S3BlobsUrl("archive", "s3.amazonaws.com", True, None, False, "")
    assert parse_blobstore_url("s3://archive?endpoint=s3:7070&secure=0&region=eu-west-1&object_lock=yes&ca_certs=/ca.pem") == \
        S3BlobsUrl("archive", "s3:7070", False, "eu-west-1", True, "/ca.pem")


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://x", "must be file:///path or s3://bucket"),
    ("/var/blobs", "is not a URL"),
    ("file://", "needs a folder"),
    ("file:///x?sync=1", "take no options"),
    ("s3://", "no bucket"),
    ("s3://key:secret@bucket", "put no credentials in an s3:// URL"),
    ("s3://b?objectlock=true", r"unknown option\(s\) objectlock; known: ca_certs, endpoint, object_lock, region, secure"),
    ("s3://b?endpoint=http://h:9000", "without a scheme or path"),
    ("s3://b?secure=maybe", "secure='maybe' is not a boolean"),
])
def test_bad_blob_store_urls(url: str, reason: str) -> None:
    with pytest.raises(EngineUrlError, match=f"^POSTVAULT_BLOBSTORE_URL: .*{reason}"):
        parse_blobstore_url(url)


def test_the_s3_adapter_takes_the_ca_file_from_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sk")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    location = S3Location.from_url("s3://b?endpoint=h:1&ca_certs=/etc/pv/ca.pem")
    assert (location.ca_certs, location.secure, location.region, location.access_key) == ("/etc/pv/ca.pem", True, "eu-north-1", "ak")
    assert "sk" not in repr(location)


# --------------------------------------------------------------------------- search


def test_search_urls() -> None:
    assert parse_search_url("tantivy:///srv/index") == TantivyUrl(Path("/srv/index"))
    parsed = parse_search_url("opensearchs://u:p%40w@a:9201,b/pv-1?verify_certs=1&ca_certs=/ca&timeout=2.5&shards=2&replicas=0")
    assert parsed == OpenSearchUrl(hosts=(("a", 9201), ("b", 9200)), secure=True, user="u", password="p@w", verify_certs=True,
                                   ca_certs="/ca", timeout=2.5, prefix="pv-1", shards=2, replicas=0)
    assert "p@w" not in repr(parsed)
    assert parse_search_url("opensearch://h").verify_certs is True, "TLS verification is on unless turned off"


@pytest.mark.parametrize(("url", "reason"), [
    ("elastic://h", "must be tantivy:///path or opensearch://host:port"),
    ("tantivy://", "needs a folder"),
    ("opensearch://h/Upper", "must be lower-case"),
    ("opensearch://h?verify=false", r"unknown option\(s\) verify"),
    ("opensearch://h:port", "not a number"),
    ("opensearch://h?timeout=soon", "timeout='soon' is not a number"),
    ("opensearch://h?replicas=-1", "must not be negative"),
    ("opensearch://h?secure=maybe", "secure='maybe' is not a boolean"),
    ("opensearch://:9200", "no host name"),
])
def test_bad_search_urls(url: str, reason: str) -> None:
    with pytest.raises(EngineUrlError, match=f"^POSTVAULT_SEARCH_URL: .*{reason}"):
        parse_search_url(url)
    with pytest.raises(EngineUrlError, match=reason):
        search_backend_from_url(url)


# --------------------------------------------------------------------------- catalogue and broker


def test_database_urls_name_the_library_and_the_extra_they_need() -> None:
    sqlite = parse_database_url("sqlite:////var/lib/pv/catalogue.sqlite3")
    assert (sqlite.dialect, sqlite.library) == ("sqlite", ClientLibrary("sqlite3", None))
    assert parse_database_url("sqlite://").dialect == "sqlite"
    pg = parse_database_url("postgresql+psycopg://postvault:s3cret@db:5432/postvault")
    assert (pg.dialect, pg.library) == ("postgresql", ClientLibrary("psycopg", "postgres"))
    assert pg.shown == "postgresql+psycopg://postvault:***@db:5432/postvault"
    assert "s3cret" not in repr(pg)
    assert parse_database_url("postgresql://h/db").library.extra == "postgres"


@pytest.mark.parametrize(("url", "reason"), [
    ("mysql://h/db", "must be sqlite:///path or postgresql\\+psycopg://"),
    ("postgresql+psycopg2://u:pw@h/db", "must be sqlite:///path"),
    ("postgresql+psycopg://u:pw@h:port/db", "is not a number"),
    ("postgresql+psycopg://u:pw@h:5432/", "no database name"),
    ("sqlite:catalogue.db", "a SQLite URL is sqlite:///"),
])
def test_bad_database_urls(url: str, reason: str) -> None:
    with pytest.raises(EngineUrlError, match=f"^POSTVAULT_DATABASE_URL: .*{reason}") as raised:
        parse_database_url(url)
    assert ":pw@" not in str(raised.value), "a password never appears in an error"


def test_broker_urls() -> None:
    assert parse_broker_url("") is None
    broker = parse_broker_url("redis://:pw@redis:6379/0")
    assert broker is not None and broker.library == ClientLibrary("redis", "redis") and broker.shown == "redis://:***@redis:6379/0"
    assert parse_broker_url("rediss://redis:6380") is not None


@pytest.mark.parametrize(("url", "reason"), [
    ("amqp://guest@rabbit//", "must be redis://"),
    ("redis://:pw@h:port/0", "is not a number"),
    ("redis:///0", "no host"),
    ("redis://h/zero", "must be a number"),
])
def test_bad_broker_urls(url: str, reason: str) -> None:
    with pytest.raises(EngineUrlError, match=f"^POSTVAULT_BROKER_URL: .*{reason}") as raised:
        parse_broker_url(url)
    assert ":pw@" not in str(raised.value)


def test_redacted_hides_only_the_password() -> None:
    assert redacted("postgresql+psycopg://u:p@h:1/d") == "postgresql+psycopg://u:***@h:1/d"
    assert redacted("redis://h:1/0") == "redis://h:1/0"
