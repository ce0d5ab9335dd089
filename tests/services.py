"""The external services scale-out tests run against: each function returns a URL, or skips (locally) or fails (CI)."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest

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


def _tcp_problem(host: str, port: int, timeout: float = 2.0) -> str:
    """Why nothing accepts connections at host:port, or "" if something does."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except OSError as error:
        return error.strerror or str(error)


def opensearch_url() -> str:
    """``$POSTVAULT_TEST_OPENSEARCH_URL`` (default ``opensearch://127.0.0.1:59200``) once the node answers HTTP."""
    variable = "POSTVAULT_TEST_OPENSEARCH_URL"
    url = os.environ.get(variable) or "opensearch://127.0.0.1:59200"
    parts = urlsplit(url)
    secure = parts.scheme == "opensearchs" or parse_qs(parts.query).get("secure", [""])[-1].lower() == "true"
    host = parts.hostname or "127.0.0.1"
    base = f"{'https' if secure else 'http'}://{host}:{parts.port or 9200}/"
    try:
        # Any HTTP answer, 401 included, means a node is up: wrong credentials are for the
        # tests to report, not a reason to skip them.
        urllib.request.urlopen(base, timeout=5).close()  # noqa: S310 - the URL is http(s) by construction
    except urllib.error.HTTPError:
        pass
    except (urllib.error.URLError, OSError) as error:
        _unavailable("OpenSearch", base, str(getattr(error, "reason", error)), "opensearch", variable)
    return url


def postgres_url() -> str:
    """``$POSTVAULT_TEST_DATABASE_URL`` once its host accepts connections (the password comes with the URL)."""
    variable = "POSTVAULT_TEST_DATABASE_URL"
    url = os.environ.get(variable) or "postgresql+psycopg://postvault@127.0.0.1:55432/postvault"
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
    endpoint = parse_qs(urlsplit(url).query).get("endpoint", ["127.0.0.1:443"])[-1]
    parts = urlsplit("//" + endpoint)
    problem = _tcp_problem(parts.hostname or "127.0.0.1", parts.port or 443)
    if problem:
        _unavailable("S3", endpoint, problem, "s3", variable)
    return url


def _tcp_service(what: str, url: str, default_port: int, service: str, variable: str) -> str:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    problem = _tcp_problem(host, port)
    if problem:
        _unavailable(what, f"{host}:{port}", problem, service, variable)
    return url
