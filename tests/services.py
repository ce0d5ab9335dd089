"""The external services scale-out tests run against: each function returns a URL, or skips (locally) or fails (CI)."""

from __future__ import annotations

import functools
import os
import time
import uuid
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

from services import probe
from storage.engine_urls import EngineUrlError, S3BlobsUrl, parse_blobstore_url, parse_opensearch_url

# Tests that call these carry ``@pytest.mark.services`` (registered in pyproject.toml), so
# ``pytest -m "not services"`` runs everything that needs no server. Locally an unreachable
# service skips its tests with the way to start it; in CI (env CI set) it fails them, since
# a silently skipped backend would hide a regression. Ports are those of scripts/services.

_HOW = "start it with `scripts/services up {service}` or set {variable}"


def _unavailable(what: str, url: str, why: str, service: str, variable: str) -> None:
    message = f"{what} is not reachable at {url} ({why}); " + _HOW.format(service=service, variable=variable)
    if os.environ.get("CI"):
        pytest.fail(f"service missing in CI: {message}", pytrace=False)
    pytest.skip(message)


def opensearch_url() -> str:
    """``$POSTVAULT_TEST_OPENSEARCH_URL`` (default ``opensearch://127.0.0.1:59200``) once the node answers HTTP."""
    variable = "POSTVAULT_TEST_OPENSEARCH_URL"
    url = os.environ.get(variable) or "opensearch://127.0.0.1:59200"
    parsed = parse_opensearch_url(url, setting=variable)
    host, port = parsed.hosts[0]
    base = f"{'https' if parsed.secure else 'http'}://{host}:{port}/"
    try:
        # Any HTTP answer, 401 included, means a node is up: wrong credentials are for the
        # tests to report, not a reason to skip them.
        urllib.request.urlopen(base, timeout=5).close()  # noqa: S310 - the URL is http(s) by construction
    except urllib.error.HTTPError:
        pass
    except (urllib.error.URLError, OSError) as error:
        _unavailable("OpenSearch", base, str(getattr(error, "reason", error)), "opensearch", variable)
    return url


@functools.cache
def services_env() -> dict[str, str]:
    """What ``scripts/services env`` exports (credentials of the local services), or {}."""
    return probe.services_env()


def postgres_url() -> str:
    """``$POSTVAULT_TEST_DATABASE_URL``, else the local services' catalogue URL (with its
    password), once its host accepts connections."""
    variable = "POSTVAULT_TEST_DATABASE_URL"
    url = (os.environ.get(variable) or services_env().get("POSTVAULT_DATABASE_URL")
           or "postgresql+psycopg://postvault@127.0.0.1:55432/postvault")
    return _tcp_service("PostgreSQL", url, 5432, "postgres", variable)


def redis_url() -> str:
    """``$POSTVAULT_TEST_REDIS_URL`` (default ``redis://127.0.0.1:56379/0``) once it accepts connections."""
    variable = "POSTVAULT_TEST_REDIS_URL"
    url = os.environ.get(variable) or "redis://127.0.0.1:56379/0"
    return _tcp_service("Redis", url, 6379, "redis", variable)


def s3_url() -> str:
    """``$POSTVAULT_TEST_S3_URL`` (default bucket ``postvault`` at 127.0.0.1:57070) once the endpoint accepts connections."""
    variable = "POSTVAULT_TEST_S3_URL"
    url = os.environ.get(variable) or "s3://postvault?endpoint=127.0.0.1:57070&secure=false"
    endpoint = _s3(url, variable).endpoint
    parts = urlsplit("//" + endpoint)
    problem = probe.tcp_problem(parts.hostname or "127.0.0.1", parts.port or 443)
    if problem:
        _unavailable("S3", endpoint, problem, "s3", variable)
    return url


def _tcp_service(what: str, url: str, default_port: int, service: str, variable: str) -> str:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    problem = probe.tcp_problem(host, port)
    if problem:
        _unavailable(what, f"{host}:{port}", problem, service, variable)
    return url



# --- throw-away catalogues on the services' PostgreSQL -------------------------------


@contextmanager
def postgres_schema(prefix: str = "pv_test") -> Iterator[str]:
    """A new, empty schema on ``postgres_url()``'s server; yields a catalogue URL that sees only it.

    Every connection made from the yielded URL (in this process or in a subprocess it is
    passed to) has ``search_path`` set to the schema alone, so Alembic migrates it from
    empty and tests never see one another's rows. A schema rather than a database: the
    application role needs no CREATEDB (scripts/services does not grant it, and managed
    servers rarely do). It is dropped, with everything in it, on exit.
    """
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url())
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False),
                                autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        _unavailable("PostgreSQL", f"{url.host}:{url.port}", f"cannot log in: {error}".strip(), "postgres", "POSTVAULT_TEST_DATABASE_URL")
    with admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield url.update_query_dict({"options": f"-c search_path={name}"}).render_as_string(hide_password=False)
        finally:
            admin.execute("SET lock_timeout = '20s'")  # a connection a test leaked must not hang the session
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


# --- throw-away buckets on the services' S3 ------------------------------------------


def s3_credentials() -> tuple[str, str]:
    """(access key, secret key): AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else the pair
    ``scripts/services env`` prints for the local versitygw."""
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if access and secret:
        return access, secret
    values = services_env()
    if not values:
        _unavailable("S3 credentials", "scripts/services env", "it printed nothing", "s3", "AWS_ACCESS_KEY_ID")
    return values.get("AWS_ACCESS_KEY_ID", ""), values.get("AWS_SECRET_ACCESS_KEY", "")


def s3_client(url: str):  # type: ignore[no-untyped-def]
    """A minio client for the server of an ``s3://`` URL, with ``s3_credentials()``."""
    from minio import Minio

    parsed = _s3(url, "POSTVAULT_TEST_S3_URL")
    access, secret = s3_credentials()
    return Minio(parsed.endpoint, access, secret, secure=parsed.secure,
                 region=parsed.region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


def _s3(url: str, variable: str) -> S3BlobsUrl:
    parsed = parse_blobstore_url(url, setting=variable)
    if not isinstance(parsed, S3BlobsUrl):
        raise EngineUrlError(variable, f"must be an s3:// URL, not {url!r}")
    return parsed


@contextmanager
def s3_bucket(prefix: str = "pv-test", *, object_lock: bool = True, lock_wait_seconds: float = 60.0) -> Iterator[str]:
    """A new bucket on ``s3_url()``'s server, versioned with Object Lock unless told not;
    yields its ``s3://`` URL (with ``object_lock=true`` when locked).

    A bucket of its own keeps tests off the shared ``postvault`` bucket. On exit every
    version is deleted (GOVERNANCE bypassed, legal holds lifted) and the bucket removed.
    COMPLIANCE locks cannot be bypassed by anyone, so tests lock for seconds: cleanup
    waits up to ``lock_wait_seconds`` for them to run out, then leaves the rest (the
    services folder is throw-away) with a warning.
    """
    from minio.error import S3Error

    base = s3_url()
    client = s3_client(base)
    parsed = _s3(base, "POSTVAULT_TEST_S3_URL")
    endpoint, secure = parsed.endpoint, "true" if parsed.secure else "false"
    name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        client.make_bucket(name, object_lock=object_lock)
    except S3Error as error:
        _unavailable("S3", endpoint, f"cannot create a bucket: {error.code}", "s3", "POSTVAULT_TEST_S3_URL")
    try:
        yield f"s3://{name}?endpoint={endpoint}&secure={secure}" + ("&object_lock=true" if object_lock else "")
    finally:
        _remove_bucket(client, name, lock_wait_seconds)


def _remove_bucket(client, bucket: str, lock_wait_seconds: float) -> None:  # type: ignore[no-untyped-def]
    from minio.deleteobjects import DeleteObject
    from minio.error import S3Error

    deadline = time.monotonic() + lock_wait_seconds
    while True:
        versions = s3_versions(client, bucket)
        refused = list(client.remove_objects(bucket, [DeleteObject(key, version) for key, version, _ in versions],
                                             bypass_governance_mode=True))
        if not refused:
            client.remove_bucket(bucket)
            return
        if time.monotonic() > deadline:
            warnings.warn(f"left S3 bucket {bucket}: {len(refused)} versions still locked", stacklevel=3)
            return
        for error in refused:
            try:
                client.disable_object_legal_hold(bucket, error.name, version_id=error.version_id)
            except S3Error:
                pass  # not a hold: a COMPLIANCE lock, which only time lifts
        time.sleep(1.0)


def s3_versions(client, bucket: str, prefix: str = "") -> list[tuple[str, str | None, bool]]:  # type: ignore[no-untyped-def]
    """(key, version id, is a delete marker) of every version in ``bucket`` under ``prefix``.

    ListObjectVersions' XML read directly: minio-py 7.2 cannot parse versitygw's
    nanosecond delete-marker timestamps.
    """
    import xml.etree.ElementTree as ET

    def text(element, tag: str) -> str:  # type: ignore[no-untyped-def]
        found = element.find(f"{{*}}{tag}")
        return (found.text or "") if found is not None else ""

    found: list[tuple[str, str | None, bool]] = []
    query = {"versions": "", "prefix": prefix}
    while True:
        root = ET.fromstring(client._execute("GET", bucket, query_params=query).data)  # noqa: SLF001
        for element in root:
            tag = element.tag.rsplit("}", 1)[-1]
            if tag in {"Version", "DeleteMarker"}:
                version = text(element, "VersionId")
                found.append((text(element, "Key"), None if version in {"", "null"} else version, tag == "DeleteMarker"))
        if text(root, "IsTruncated") != "true":
            return found
        query = {**query, "key-marker": text(root, "NextKeyMarker"), "version-id-marker": text(root, "NextVersionIdMarker")}
