"""docker-compose.yml, checked without a Docker engine: the real compose client renders it, and the accounts and
certificates it sets up are tried on real PostgreSQL, versitygw and TLS.

The compose client (`scripts/services compose-client`) validates and renders the file;
the tests then read the rendered configuration: what is published where, which
credentials each container gets, which certificates it verifies. The setup scripts the
file mounts run here against a private PostgreSQL cluster and a private versitygw
server (the binaries that `scripts/services up` installs), so the least-privilege
accounts are proven, not just declared.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from storage.engine_urls import OpenSearchUrl, S3BlobsUrl, parse_blobstore_url, parse_database_url, parse_search_url

REPO = Path(__file__).resolve().parent.parent
COMPOSE_DIR = REPO / "services" / "compose"
POSTVAULT_SERVICES = ("gateway", "worker", "beat")

# A complete .env: each value distinct, so a test can tell which secret reached which container.
SECRETS = {
    "POSTVAULT_JOURNAL_CLIENTS": "172.30.0.1,10.20.0.0/16",
    "POSTGRES_ADMIN_PASSWORD": "pgadmin0a1b2c3",
    "POSTVAULT_DB_PASSWORD": "pgpostvault4d5e6f",
    "REDIS_PASSWORD": "redis7a8b9c",
    "S3_ROOT_ACCESS_KEY": "rootkey0d1e2f",
    "S3_ROOT_SECRET_KEY": "rootsecret3a4b5c6d",
    "POSTVAULT_S3_ACCESS_KEY": "postvaultkey7e8f",
    "POSTVAULT_S3_SECRET_KEY": "postvaultsecret9a0b1c",
    "POSTVAULT_OPENSEARCH_PASSWORD": "opensearch2d3e4f5a6b",
}
REQUIRED = (*SECRETS, "POSTVAULT_TLS_DIR")


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _clean_env() -> dict[str, str]:
    """The compose client interpolates from the shell first: give it nothing but PATH and HOME."""
    return {key: os.environ[key] for key in ("PATH", "HOME", "DOCKER_CONFIG") if key in os.environ}


def compose(*args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    try:
        version = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        version = None
    if version is None or version.returncode != 0:
        _unavailable("the docker compose client is missing; run `scripts/services compose-client`")
    return subprocess.run(["docker", "compose", "--env-file", str(env_file), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60, env=_clean_env())


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `services/compose/make-certs.sh` makes, for real."""
    folder = tmp_path_factory.mktemp("tls") / "tls"
    made = subprocess.run([str(COMPOSE_DIR / "make-certs.sh"), str(folder), "journal.example.org"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return folder


def env_file_with(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


@pytest.fixture(scope="module")
def complete_env(tls_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return env_file_with(tmp_path_factory.mktemp("env") / "complete.env", {**SECRETS, "POSTVAULT_TLS_DIR": str(tls_dir)})


@pytest.fixture(scope="module")
def rendered(complete_env: Path) -> dict[str, Any]:
    result = compose("config", "--format", "json", env_file=complete_env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def environment(config: dict[str, Any], service: str) -> dict[str, str]:
    return {key: str(value) for key, value in (config["services"][service].get("environment") or {}).items()}


def mounts(config: dict[str, Any], service: str) -> dict[str, dict[str, Any]]:
    """Bind mounts of ``service`` by target."""
    return {volume["target"]: volume for volume in config["services"][service].get("volumes", []) if volume["type"] == "bind"}


def mounted_source(config: dict[str, Any], service: str, path: str) -> Path:
    """The host file behind ``path`` inside ``service``'s container (it must be on a read-only bind mount)."""
    for target, volume in mounts(config, service).items():
        if path == target or path.startswith(target.rstrip("/") + "/"):
            assert volume.get("read_only"), f"{service}: {target} is mounted writable"
            return Path(volume["source"]) / Path(path).relative_to(target)
    raise AssertionError(f"{service}: nothing is mounted at {path}")


# --------------------------------------------------------------------------- the compose file


def test_compose_file_validates_with_a_complete_environment(complete_env: Path) -> None:
    result = compose("config", "--quiet", env_file=complete_env)
    assert result.returncode == 0, result.stderr


def test_compose_runs_every_engine_and_postvault_role_with_health_checks(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert {"opensearch", "postgres", "redis", "s3", "gateway", "worker", "beat",
            "s3-accounts", "blobstore-init", "opensearch-init"} <= set(services)
    for name in ("opensearch", "postgres", "redis", "s3", "gateway", "worker", "beat"):
        assert "healthcheck" in services[name], name
    for name in POSTVAULT_SERVICES:
        needs = services[name]["depends_on"]
        assert needs["opensearch-init"]["condition"] == needs["blobstore-init"]["condition"] == "service_completed_successfully"
    assert rendered["volumes"], "data must live on named volumes"


def test_compose_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    result = compose("config", "--quiet", env_file=env_file_with(tmp_path / "empty.env", {}))
    assert result.returncode != 0
    assert "in .env" in result.stderr


def test_the_example_environment_holds_no_value_that_compose_would_accept() -> None:
    """Placeholders that look like passwords get deployed; empty values make compose refuse."""
    values = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                  if line and not line.startswith("#"))
    assert set(REQUIRED) <= set(values), sorted(set(REQUIRED) - set(values))
    assert {key: value for key, value in values.items() if value} == {}
    result = compose("config", "--quiet", env_file=REPO / ".env.example")
    assert result.returncode != 0
    for name in REQUIRED:
        assert f"required variable {name} is missing a value" in result.stderr, name


@pytest.mark.parametrize("missing", REQUIRED)
def test_compose_refuses_to_start_while_any_one_secret_is_empty(missing: str, tls_dir: Path, tmp_path: Path) -> None:
    values = {**SECRETS, "POSTVAULT_TLS_DIR": str(tls_dir), missing: ""}
    result = compose("config", "--quiet", env_file=env_file_with(tmp_path / "partial.env", values))
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr


def test_only_the_journal_listener_is_published_and_on_loopback_unless_told(rendered: dict[str, Any], complete_env: Path,
                                                                              tmp_path: Path) -> None:
    published = {name: service["ports"] for name, service in rendered["services"].items() if service.get("ports")}
    assert list(published) == ["gateway"]
    assert [(port["host_ip"], port["published"], port["target"]) for port in published["gateway"]] == [("127.0.0.1", "2525", 2525)]
    # Who may journal is the operator's statement, passed to the listener as is.
    assert environment(rendered, "gateway")["POSTVAULT_JOURNAL_CLIENTS"] == SECRETS["POSTVAULT_JOURNAL_CLIENTS"]
    # Every interface only when asked for.
    wide = env_file_with(tmp_path / "wide.env", {**dict(line.split("=", 1) for line in complete_env.read_text().splitlines()),
                                                 "POSTVAULT_SMTP_PUBLISH_ADDRESS": "0.0.0.0", "POSTVAULT_SMTP_PUBLISH_PORT": "25"})
    result = compose("config", "--format", "json", env_file=wide)
    assert result.returncode == 0, result.stderr
    ports = json.loads(result.stdout)["services"]["gateway"]["ports"]
    assert [(port["host_ip"], port["published"]) for port in ports] == [("0.0.0.0", "25")]


def test_postvault_verifies_the_certificates_of_opensearch_and_s3_against_the_private_ca(rendered: dict[str, Any],
                                                                                          tls_dir: Path) -> None:
    ca = (tls_dir / "ca" / "root-ca.pem").read_bytes()
    for name in POSTVAULT_SERVICES:
        env = environment(rendered, name)
        search = parse_search_url(env["POSTVAULT_SEARCH_URL"])
        assert isinstance(search, OpenSearchUrl) and search.secure and search.verify_certs, name
        assert mounted_source(rendered, name, search.ca_certs).read_bytes() == ca, name
        blobs = parse_blobstore_url(env["POSTVAULT_BLOBSTORE_URL"])
        assert isinstance(blobs, S3BlobsUrl) and blobs.secure and blobs.object_lock, name
        assert mounted_source(rendered, name, blobs.ca_certs).read_bytes() == ca, name
    s3 = rendered["services"]["s3"]["command"]
    assert mounted_source(rendered, "s3", s3[s3.index("--cert") + 1]).name == "s3.pem"


def test_postvault_logs_in_with_its_own_accounts_and_never_sees_an_admin_secret(rendered: dict[str, Any]) -> None:
    engine_secrets = {SECRETS[key] for key in ("POSTGRES_ADMIN_PASSWORD", "S3_ROOT_ACCESS_KEY", "S3_ROOT_SECRET_KEY")}
    for name in POSTVAULT_SERVICES:
        env = environment(rendered, name)
        assert env["POSTVAULT_OPENSEARCH_USER"] == "postvault", name
        assert env["POSTVAULT_OPENSEARCH_PASSWORD"] == SECRETS["POSTVAULT_OPENSEARCH_PASSWORD"]
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (SECRETS["POSTVAULT_S3_ACCESS_KEY"], SECRETS["POSTVAULT_S3_SECRET_KEY"])
        database = parse_database_url(env["POSTVAULT_DATABASE_URL"])
        assert database.url.startswith(f"postgresql+psycopg://postvault:{SECRETS['POSTVAULT_DB_PASSWORD']}@postgres:"), name
        leaked = {secret for secret in engine_secrets if any(secret in value for value in env.values())}
        assert leaked == set(), f"{name} gets an engine's admin secret"
        assert "admin" not in json.dumps(env).lower(), name
    # The root keys go to the S3 server and the two jobs that set its accounts up, nowhere else.
    holders = {name for name in rendered["services"] if SECRETS["S3_ROOT_SECRET_KEY"] in json.dumps(rendered["services"][name])}
    assert holders == {"s3", "s3-accounts", "blobstore-init"}
    holders = {name for name in rendered["services"] if SECRETS["POSTGRES_ADMIN_PASSWORD"] in json.dumps(rendered["services"][name])}
    assert holders == {"postgres"}


def test_the_gateways_settings_load_as_postvault_reads_them(rendered: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every POSTVAULT_* value the compose file gives a postvault container is one Settings accepts."""
    from archiver.journal_clients import JournalClients
    from postvault.settings import Settings
    from storage.engine_urls import parse_broker_url

    env = environment(rendered, "gateway")
    for key, value in env.items():
        if key.startswith("POSTVAULT_"):
            monkeypatch.setenv(key, value)
    settings = Settings()
    assert parse_broker_url(settings.broker_url) is not None
    # STARTTLS (and so SMTP AUTH) with make-certs.sh's journal certificate.
    for path in (settings.smtp_tls_cert, settings.smtp_tls_key):
        assert path is not None and mounted_source(rendered, "gateway", str(path)).is_file()
    clients = JournalClients.parse(settings.journal_clients)
    assert clients.allows("172.30.0.1") and clients.allows("10.20.3.4")
    assert not clients.allows("8.8.8.8") and not clients.allows("172.30.0.2")


def test_the_image_installs_the_extras_the_compose_urls_need(rendered: dict[str, Any]) -> None:
    from storage.engine_urls import parse_broker_url

    env = environment(rendered, "worker")
    needed = {parse_database_url(env["POSTVAULT_DATABASE_URL"]).library.extra, parse_broker_url(env["POSTVAULT_BROKER_URL"]).library.extra}  # type: ignore[union-attr]
    installs = next(line for line in (REPO / "Dockerfile").read_text().splitlines() if "pip install" in line)
    extras = set(installs.split("[", 1)[1].split("]", 1)[0].split(","))
    assert needed <= extras, installs


def test_a_real_dot_env_reaches_postvault_only_where_the_compose_file_names_it(tls_dir: Path, tmp_path: Path) -> None:
    """.env sits beside the compose file in a deployment; an env_file reading it would hand every root secret to postvault."""
    project = tmp_path / "project"
    shutil.copytree(COMPOSE_DIR, project / "services" / "compose")
    shutil.copy(REPO / "docker-compose.yml", project / "docker-compose.yml")
    env_file_with(project / ".env", {**SECRETS, "POSTVAULT_TLS_DIR": str(tls_dir)})
    env_file_with(project / "postvault.env", {"POSTVAULT_MAX_MESSAGE_BYTES": "1048576"})
    compose("version", env_file=project / ".env")  # skips or fails when there is no client
    result = subprocess.run(["docker", "compose", "config", "--format", "json"], cwd=project, capture_output=True, text=True,
                            timeout=60, env=_clean_env())
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    for name in POSTVAULT_SERVICES:
        env = environment(config, name)
        assert env["POSTVAULT_MAX_MESSAGE_BYTES"] == "1048576", "postvault.env is postvault's settings file"
        assert not {"S3_ROOT_SECRET_KEY", "S3_ROOT_ACCESS_KEY", "POSTGRES_ADMIN_PASSWORD"} & set(env), name
        for secret in ("S3_ROOT_ACCESS_KEY", "S3_ROOT_SECRET_KEY", "POSTGRES_ADMIN_PASSWORD"):
            assert SECRETS[secret] not in json.dumps(env), f"{name} gets {secret}"


def test_opensearch_runs_our_security_configuration_and_no_demo_one(rendered: dict[str, Any], tls_dir: Path) -> None:
    service = rendered["services"]["opensearch"]
    env = environment(rendered, "opensearch")
    assert env["DISABLE_INSTALL_DEMO_CONFIG"] == "true"
    assert "OPENSEARCH_INITIAL_ADMIN_PASSWORD" not in env and "DISABLE_SECURITY_PLUGIN" not in env
    config = "/usr/share/opensearch/config"
    for name in ("config.yml", "internal_users.yml", "roles.yml", "roles_mapping.yml"):
        assert mounted_source(rendered, "opensearch", f"{config}/opensearch-security/{name}") == COMPOSE_DIR / "opensearch" / "security" / name
    assert mounted_source(rendered, "opensearch", f"{config}/opensearch.yml") == COMPOSE_DIR / "opensearch" / "opensearch.yml"
    assert mounted_source(rendered, "opensearch", f"{config}/certs/node.pem") == tls_dir / "opensearch" / "node.pem"
    probe = " ".join(service["healthcheck"]["test"])
    assert "--cacert" in probe and " -k" not in probe and "--insecure" not in probe and "admin:" not in probe


def test_every_file_the_compose_file_mounts_exists(rendered: dict[str, Any]) -> None:
    for name in rendered["services"]:
        for target, volume in mounts(rendered, name).items():
            assert Path(volume["source"]).exists(), f"{name}: {volume['source']} (mounted at {target}) does not exist"


# --------------------------------------------------------------------------- OpenSearch's security configuration


def security_file(name: str) -> dict[str, Any]:
    # Written as JSON, which is YAML too: the security plugin reads it, and so can this test.
    return json.loads((COMPOSE_DIR / "opensearch" / "security" / name).read_text())


def opensearch_settings() -> dict[str, Any]:
    settings = {}
    for line in (COMPOSE_DIR / "opensearch" / "opensearch.yml").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(": ")
            settings[key] = json.loads(value) if value.startswith("[") else value
    return settings


def subject(certificate: Path) -> str:
    return subprocess.run(["openssl", "x509", "-in", str(certificate), "-noout", "-subject", "-nameopt", "RFC2253"],
                          capture_output=True, text=True, check=True).stdout.strip().removeprefix("subject=")


def test_postvaults_opensearch_role_reaches_its_own_indices_and_aliases_only(rendered: dict[str, Any]) -> None:
    from indexer.backends.opensearch_backend import Connection, OpenSearchBackend

    search = parse_search_url(environment(rendered, "gateway")["POSTVAULT_SEARCH_URL"])
    assert isinstance(search, OpenSearchUrl)
    backend = OpenSearchBackend(Connection.from_parsed(search, environ={}))
    try:
        names = (backend.alias, backend.rebuild_alias, f"{backend.alias}-v1", f"{backend.alias}-v42")
    finally:
        backend.close()
    role = security_file("roles.yml")["postvault"]
    patterns = [pattern for permission in role["index_permissions"] for pattern in permission["index_patterns"]]
    for name in names:
        assert any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns), f"{name}: the role cannot reach it"
    for other in (".opendistro_security", ".kibana", "security-auditlog-2026.12.04", "other-app-messages", "postvaultx"):
        assert not any(fnmatch.fnmatchcase(other, pattern) for pattern in patterns), f"the role reaches {other}"
    assert not {"cluster_all", "*", "cluster:*", "cluster_manage_index_templates"} & set(role["cluster_permissions"])
    assert security_file("roles_mapping.yml") == {
        "_meta": {"type": "rolesmapping", "config_version": 2},
        "postvault": {"reserved": True, "users": ["postvault"], "description": security_file("roles_mapping.yml")["postvault"]["description"]},
    }
    assert set(security_file("internal_users.yml")) == {"_meta"}, "no user with a password written in the repository"
    auth = security_file("config.yml")["config"]["dynamic"]
    assert auth["http"]["anonymous_auth_enabled"] is False


def test_the_node_names_the_certificates_make_certs_issues(tls_dir: Path) -> None:
    settings = opensearch_settings()
    assert settings["plugins.security.authcz.admin_dn"] == [subject(tls_dir / "opensearch" / "admin.pem")]
    assert settings["plugins.security.nodes_dn"] == [subject(tls_dir / "opensearch" / "node.pem")]
    assert settings["plugins.security.ssl.http.enabled"] == "true"
    assert settings["plugins.security.restapi.roles_enabled"] == [], "only the admin certificate manages users"
    for key in ("pemcert_filepath", "pemkey_filepath", "pemtrustedcas_filepath"):
        for layer in ("http", "transport"):
            assert (tls_dir / "opensearch" / Path(settings[f"plugins.security.ssl.{layer}.{key}"]).name).is_file()
    assert (tls_dir / "opensearch" / "node-key.pem").read_text().startswith("-----BEGIN PRIVATE KEY-----"), "PKCS#8"


def _serve_tls_once(certificate: Path, key: Path, ca: Path | None) -> tuple[int, threading.Thread, list[str]]:
    """A TLS server for one handshake (client certificate required when ``ca`` is given); returns its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    if ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(ca)
    listener = socket.create_server(("127.0.0.1", 0))
    peers: list[str] = []

    def serve() -> None:
        with listener:
            connection, _ = listener.accept()
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    peers.append(dict(item[0] for item in tls.getpeercert()["subject"]).get("commonName", "") if ca else "")
            except (ssl.SSLError, OSError):
                peers.append("refused")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread, peers


def test_the_certificates_verify_for_the_names_compose_uses(tls_dir: Path) -> None:
    ca = tls_dir / "postvault" / "root-ca.pem"
    for folder, name, host in (("opensearch", "node", "opensearch"), ("s3", "s3", "s3"), ("opensearch", "node", "127.0.0.1")):
        port, thread, _ = _serve_tls_once(tls_dir / folder / f"{name}.pem", tls_dir / folder / f"{name}-key.pem", None)
        client = ssl.create_default_context(cafile=str(ca))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, client.wrap_socket(raw, server_hostname=host) as tls:
            assert tls.version()
        thread.join(5)
    # Verification is real: another name, or the public CA bundle, is refused.
    port, thread, _ = _serve_tls_once(tls_dir / "s3" / "s3.pem", tls_dir / "s3" / "s3-key.pem", None)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|doesn't match"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            ssl.create_default_context(cafile=str(ca)).wrap_socket(raw, server_hostname="opensearch")
    thread.join(5)
    # The admin client certificate is accepted by a server that trusts the CA, as OpenSearch does.
    port, thread, peers = _serve_tls_once(tls_dir / "opensearch" / "node.pem", tls_dir / "opensearch" / "node-key.pem",
                                          tls_dir / "opensearch" / "root-ca.pem")
    client = ssl.create_default_context(cafile=str(ca))
    client.load_cert_chain(tls_dir / "opensearch" / "admin.pem", tls_dir / "opensearch" / "admin-key.pem")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, client.wrap_socket(raw, server_hostname="opensearch") as tls:
        tls.recv(1)
    thread.join(5)
    assert peers == ["postvault-admin"]
    assert not (tls_dir / "opensearch" / "root-ca-key.pem").exists() and (tls_dir / "ca" / "root-ca-key.pem").exists()


# --------------------------------------------------------------------------- PostgreSQL: postvault's role


def _pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        _unavailable("PostgreSQL's server binaries are missing; run `scripts/services up postgres`")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    # PostgreSQL refuses to run as root.
    prefix = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    return subprocess.run(prefix + command, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture
def private_postgres() -> Iterator[tuple[Path, int]]:
    """A throw-away PostgreSQL cluster of our own (socket folder, port): the init script gets a fresh server, as in the image."""
    bindir = _pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="pv-compose-pg-", dir="/tmp"))
    root.chmod(0o755)
    if os.getuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    data = root / "data"
    initialised = _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
                                "--auth-local=trust", "--auth-host=scram-sha-256"])
    assert initialised.returncode == 0, initialised.stderr
    started = _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
                            "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"])
    assert started.returncode == 0, started.stderr + (root / "log").read_text(errors="replace")
    try:
        yield root, port
    finally:
        _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.services
def test_postvaults_postgresql_role_owns_its_database_and_nothing_else(private_postgres: tuple[Path, int]) -> None:
    import psycopg
    from sqlalchemy import text

    from storage.database import open_catalogue_engine

    socket_dir, port = private_postgres
    password = "pv-role-secret-1"
    # What the postgres image does with /docker-entrypoint-initdb.d: run the script with psql on PATH.
    env = {**_clean_env(), "PATH": f"{_pg_bindir()}:{os.environ['PATH']}", "PGHOST": str(socket_dir), "PGPORT": str(port),
           "POSTGRES_USER": "postgres", "POSTVAULT_DB_PASSWORD": password}
    ran = _as_postgres(["env", *(f"{key}={value}" for key, value in env.items()), "sh", str(COMPOSE_DIR / "postgres" / "10-postvault-role.sh")])
    assert ran.returncode == 0, ran.stderr

    with psycopg.connect(host=str(socket_dir), port=port, user="postgres", dbname="postgres", autocommit=True) as admin:
        flags = admin.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin "
                              "FROM pg_roles WHERE rolname = 'postvault'").fetchone()
        assert flags == (False, False, False, False, False, True)
        owned = admin.execute("SELECT datname FROM pg_database JOIN pg_roles ON datdba = pg_roles.oid "
                              "WHERE rolname = 'postvault'").fetchall()
        assert owned == [("postvault",)]
        admin.execute("CREATE ROLE bystander LOGIN PASSWORD 'bystander-pw'")

    url = f"postgresql+psycopg://postvault:{password}@127.0.0.1:{port}/postvault"
    # postvault's own migrations run under the role: it can build its catalogue.
    engine = open_catalogue_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM messages")).scalar() == 0
    finally:
        engine.dispose()
    with psycopg.connect(host="127.0.0.1", port=port, user="postvault", password=password, dbname="postvault", autocommit=True) as role:
        for statement in ("CREATE DATABASE another", "CREATE ROLE another", "ALTER ROLE postvault SUPERUSER"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                role.execute(statement)
    # No other role may even connect to the catalogue.
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(host="127.0.0.1", port=port, user="bystander", password="bystander-pw", dbname="postvault").close()


# --------------------------------------------------------------------------- versitygw: postvault's account


def _versitygw() -> Path:
    cache = Path(os.environ.get("POSTVAULT_CACHE") or Path.home() / ".cache" / "postvault")
    found = sorted(cache.glob("versitygw/*/versitygw"))
    if not found:
        _unavailable("the versitygw binary is missing; run `scripts/services up s3`")
    return found[-1]


@pytest.fixture
def private_versitygw(tls_dir: Path, tmp_path: Path) -> Iterator[int]:
    """Our own versitygw over HTTPS with make-certs' s3 certificate and the compose file's root keys; yields its port."""
    binary = _versitygw()
    for folder in ("data", "versions", "meta", "iam"):
        (tmp_path / folder).mkdir()
    port = _free_port()
    log = (tmp_path / "versitygw.log").open("wb")
    process = subprocess.Popen(
        [str(binary), "--port", f"127.0.0.1:{port}", "--region", "us-east-1", "--health", "/health", "--iam-dir", str(tmp_path / "iam"),
         "--cert", str(tls_dir / "s3" / "s3.pem"), "--key", str(tls_dir / "s3" / "s3-key.pem"),
         "posix", "--versioning-dir", str(tmp_path / "versions"), "--sidecar", str(tmp_path / "meta"), str(tmp_path / "data")],
        env={**_clean_env(), "ROOT_ACCESS_KEY": SECRETS["S3_ROOT_ACCESS_KEY"], "ROOT_SECRET_KEY": SECRETS["S3_ROOT_SECRET_KEY"]},
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "versitygw.log").read_text()
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _set_up_s3(port: int, tls_dir: Path) -> None:
    """The compose file's s3-accounts and blobstore-init jobs, run as they are there."""
    env = {**_clean_env(), "PATH": f"{_versitygw().parent}:{os.environ['PATH']}", "S3_ENDPOINT": f"https://127.0.0.1:{port}",
           "SSL_CERT_FILE": str(tls_dir / "s3" / "root-ca.pem"), "ROOT_ACCESS_KEY": SECRETS["S3_ROOT_ACCESS_KEY"],
           "ROOT_SECRET_KEY": SECRETS["S3_ROOT_SECRET_KEY"], "POSTVAULT_S3_ACCESS_KEY": SECRETS["POSTVAULT_S3_ACCESS_KEY"],
           "POSTVAULT_S3_SECRET_KEY": SECRETS["POSTVAULT_S3_SECRET_KEY"]}
    accounts = subprocess.run(["sh", str(COMPOSE_DIR / "s3" / "accounts.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert accounts.returncode == 0, accounts.stdout + accounts.stderr
    env.update({"S3_ENDPOINT_HOST": f"127.0.0.1:{port}", "S3_CA_CERTS": str(tls_dir / "postvault" / "root-ca.pem"),
                "POSTVAULT_S3_BUCKET": "archive"})
    bucket = subprocess.run([sys.executable, str(COMPOSE_DIR / "s3" / "init_bucket.py")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert bucket.returncode == 0, bucket.stdout + bucket.stderr


@pytest.mark.services
def test_postvaults_s3_account_stores_and_locks_but_cannot_lift_a_governance_lock(private_versitygw: int, tls_dir: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from minio import Minio
    from minio.error import S3Error

    from storage.blobstore import BlobStoreError, LockMode, LockRequest
    from storage.s3 import S3BlobStore, S3Location

    port = private_versitygw
    _set_up_s3(port, tls_dir)
    _set_up_s3(port, tls_dir)  # a second `docker compose up` runs both jobs again

    ca = tls_dir / "postvault" / "root-ca.pem"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRETS["POSTVAULT_S3_ACCESS_KEY"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["POSTVAULT_S3_SECRET_KEY"])
    url = f"s3://archive?endpoint=127.0.0.1:{port}&secure=true&object_lock=true&ca_certs={ca}"
    store = S3BlobStore(S3Location.from_url(url))
    store.check()  # over HTTPS, verified against the private CA; versioned, with Object Lock
    until = datetime.now(timezone.utc) + timedelta(days=1)
    digest = store.put(b"Subject: kept\r\n\r\nunder GOVERNANCE\r\n", lock=LockRequest(LockMode.GOVERNANCE, until))
    assert store.get(digest).endswith(b"under GOVERNANCE\r\n") and store.exists(digest)
    store.set_legal_hold(digest, True)
    assert store.legal_hold(digest)
    store.set_legal_hold(digest, False)
    assert list(store.iter_digests()) == [digest]
    with pytest.raises(BlobStoreError):
        store.delete(digest)  # locked

    import urllib3

    http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(ca))
    as_postvault = Minio(f"127.0.0.1:{port}", SECRETS["POSTVAULT_S3_ACCESS_KEY"], SECRETS["POSTVAULT_S3_SECRET_KEY"],
                         secure=True, region="us-east-1", http_client=http)
    as_root = Minio(f"127.0.0.1:{port}", SECRETS["S3_ROOT_ACCESS_KEY"], SECRETS["S3_ROOT_SECRET_KEY"], secure=True,
                    region="us-east-1", http_client=http)
    key = S3BlobStore.key_for(digest)
    version = as_postvault.stat_object("archive", key).version_id
    bypass = {"x-amz-bypass-governance-retention": "true"}
    with pytest.raises(S3Error) as refused:
        as_postvault._execute("DELETE", "archive", key, headers=bypass, query_params={"versionId": version})  # noqa: SLF001
    assert refused.value.code == "AccessDenied"
    # Nor can it give itself the permission, or remove the policy that withholds it.
    grant = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": [SECRETS["POSTVAULT_S3_ACCESS_KEY"]]},
        "Action": ["s3:*"], "Resource": ["arn:aws:s3:::archive", "arn:aws:s3:::archive/*"]}]})
    for attempt in (lambda: as_postvault.set_bucket_policy("archive", grant), lambda: as_postvault.delete_bucket_policy("archive"),
                    lambda: as_postvault.make_bucket("unlocked")):
        with pytest.raises(S3Error, match="AccessDenied"):
            attempt()
    # The refusal is the account's, not the lock's: root, which postvault never holds, may bypass it.
    as_root._execute("DELETE", "archive", key, headers=bypass, query_params={"versionId": version})  # noqa: SLF001
    assert not store.exists(digest)

    # What else postvault does with the bucket works under the policy: a multipart upload,
    # and the purge of a blob whose retention ran out.
    from storage.s3 import MULTIPART_THRESHOLD

    large = store.put(b"X" * (MULTIPART_THRESHOLD + 1024))
    assert len(store.get(large)) == MULTIPART_THRESHOLD + 1024
    brief = store.put(b"Subject: brief\r\n\r\nkept two seconds\r\n",
                      lock=LockRequest(LockMode.GOVERNANCE, datetime.now(timezone.utc) + timedelta(seconds=2)))
    time.sleep(3)
    store.delete(brief)
    assert not store.exists(brief)

    # Verification is real: the public CA bundle does not vouch for the private certificate.
    with pytest.raises(BlobStoreError, match="unreachable"):
        S3BlobStore(S3Location.from_url(url.replace(f"&ca_certs={ca}", ""))).check()


# --------------------------------------------------------------------------- OpenSearch: the security configuration, live


def _opensearch_launcher() -> Path:
    """The build folder scripts/services keys by the launcher's sources (see os_build_dir there)."""
    node = REPO / "services" / "opensearch-node"
    sources = [node / "pom.xml", *sorted((node / "src/main/java/org/postvault/services").glob("*.java"))]
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()[:16]
    cache = Path(os.environ.get("POSTVAULT_CACHE") or Path.home() / ".cache" / "postvault")
    folder = cache / "opensearch-node" / digest
    if not (folder / "classpath.txt").is_file() or not list((folder / "opensearch-security").glob("opensearch-security-*.jar")):
        _unavailable("the OpenSearch launcher with the security plugin is not built; run `scripts/services up opensearch`")
    return folder


def _classpath(launcher: Path) -> str:
    """The node's classpath, then the security plugin's own jars that the node does not already have."""
    node = (launcher / "classpath.txt").read_text().strip().split(":")
    artifact = re.compile(r"-[0-9][0-9A-Za-z._-]*\.jar$")
    have = {artifact.sub("", Path(jar).name) for jar in node}
    plugin = [str(jar) for jar in sorted((launcher / "opensearch-security").glob("*.jar")) if artifact.sub("", jar.name) not in have]
    return ":".join([*node, str(launcher / "opensearch-node.jar"), *plugin])


def _admin_request(port: int, certs: Path, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=str(certs / "root-ca.pem"))
    context.load_cert_chain(certs / "admin.pem", certs / "admin-key.pem")
    request = urllib.request.Request(f"https://127.0.0.1:{port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310 - https by construction
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None
    except (urllib.error.URLError, OSError):  # not listening yet
        return 0, None


@pytest.fixture
def secured_opensearch(tls_dir: Path, tmp_path: Path) -> Iterator[int]:
    """A real OpenSearch 2.19 node with the security plugin, configured exactly as docker-compose.yml mounts it."""
    launcher = _opensearch_launcher()
    home = tmp_path / "opensearch"
    security = home / "config" / "opensearch-security"
    security.mkdir(parents=True)
    (home / "tmp").mkdir()
    # What the image brings (defaults for action groups, tenants, audit...), then what the compose file mounts over it.
    for default in (launcher / "opensearch-security" / "config").glob("*.yml"):
        shutil.copy(default, security / default.name)
    for name in ("config.yml", "internal_users.yml", "roles.yml", "roles_mapping.yml"):
        shutil.copy(COMPOSE_DIR / "opensearch" / "security" / name, security / name)
    shutil.copy(COMPOSE_DIR / "opensearch" / "opensearch.yml", home / "config" / "opensearch.yml")
    shutil.copytree(tls_dir / "opensearch", home / "config" / "certs")
    shutil.copy(REPO / "services" / "opensearch-node" / "config" / "log4j2.properties", home / "config")
    port, transport = _free_port(), _free_port()
    log = (home / "node.log").open("wb")
    process = subprocess.Popen(
        ["java", "-Xms256m", "-Xmx512m", f"-Djava.io.tmpdir={home / 'tmp'}", "-Dpv.plugins=org.opensearch.security.OpenSearchSecurityPlugin",
         "-cp", _classpath(launcher), "org.postvault.services.OpenSearchNode",
         # The launcher's loopback defaults win over the file's network.host, as they must here.
         f"path.home={home}", f"http.port={port}", f"transport.port={transport}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while _admin_request(port, home / "config" / "certs", "GET", "/_cluster/health?wait_for_status=yellow&timeout=1s")[0] != 200:
            assert process.poll() is None, (home / "node.log").read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "the secured node did not come up:\n" + (home / "node.log").read_text(errors="replace")[-4000:]
            time.sleep(1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _init_opensearch_user(port: int, tls_dir: Path, password: str) -> None:
    """The compose file's opensearch-init job, as it runs there."""
    env = {**_clean_env(), "OPENSEARCH_HOST": "127.0.0.1", "OPENSEARCH_PORT": str(port), "OPENSEARCH_CERTS": str(tls_dir / "opensearch"),
           "POSTVAULT_OPENSEARCH_PASSWORD": password}
    ran = subprocess.run([sys.executable, str(COMPOSE_DIR / "opensearch" / "init_user.py")], env=env, capture_output=True, text=True,
                         timeout=180)
    assert ran.returncode == 0, ran.stdout + ran.stderr


@pytest.mark.services
@pytest.mark.slow
def test_postvault_indexes_and_searches_as_its_own_opensearch_user_and_reaches_nothing_else(secured_opensearch: int,
                                                                                             tls_dir: Path) -> None:
    from indexer.backends.opensearch_backend import Connection, OpenSearchBackend
    from indexer.query.parser import parse_query
    from indexer.scope import Scope
    from indexer.search_backend import SearchBackendError
    from tests.indexer.test_opensearch_mapping import document

    port = secured_opensearch
    certs = tls_dir / "opensearch"
    # No password opens the cluster before opensearch-init ran: there is no admin user, and no demo user.
    for user, password in (("admin", "admin"), ("kibanaserver", "kibanaserver"), ("postvault", "")):
        probe = OpenSearchBackend(Connection.from_url(f"opensearchs://127.0.0.1:{port}?ca_certs={certs / 'root-ca.pem'}",
                                                      environ={"POSTVAULT_OPENSEARCH_USER": user, "POSTVAULT_OPENSEARCH_PASSWORD": password}))
        with pytest.raises(SearchBackendError):
            probe.check()
        probe.close()
    # What .env.example says to use (openssl rand -hex 24): the security plugin rates it strong.
    first, second = secrets.token_hex(24), secrets.token_hex(24)
    _init_opensearch_user(port, tls_dir, first)
    _init_opensearch_user(port, tls_dir, second)  # a re-run with a new .env secret changes the password

    url = f"opensearchs://127.0.0.1:{port}?verify_certs=true&ca_certs={tls_dir / 'postvault' / 'root-ca.pem'}&replicas=0"
    stale = OpenSearchBackend(Connection.from_url(url, environ={"POSTVAULT_OPENSEARCH_USER": "postvault", "POSTVAULT_OPENSEARCH_PASSWORD": first}))
    with pytest.raises(SearchBackendError):
        stale.check()
    stale.close()

    backend = OpenSearchBackend(Connection.from_url(url, environ={"POSTVAULT_OPENSEARCH_USER": "postvault", "POSTVAULT_OPENSEARCH_PASSWORD": second}))
    try:
        backend.check()
        # Everything the backend does, as the role allows it: bulk writes, searches, point-in-time listings, a rebuild.
        assert backend.index([document(id=n, subject=f"budget {n}") for n in range(1, 31)]) == {}
        backend._client.indices.refresh(index=backend.alias)  # noqa: SLF001
        assert backend.search(parse_query("budget"), Scope.everything(), limit=5).total == 30
        assert backend.count() == 30
        assert sorted(backend.indexed_ids()) == list(range(1, 31))
        assert len(list(backend.indexed_scopes())) == 30
        backend.begin_rebuild()
        backend.index([document(id=n, subject=f"budget {n}") for n in range(1, 31)])
        assert backend.finish_rebuild() == f"{backend.alias}-v2"
        backend.begin_rebuild()
        backend.abort_rebuild()
        backend.delete([1, 2])
        backend._client.indices.refresh(index=backend.alias)  # noqa: SLF001
        assert backend.count() == 28
        client = backend._client  # noqa: SLF001
        # ...and nothing outside postvault's indices.
        from opensearchpy.exceptions import AuthorizationException

        for attempt in (lambda: client.search(index=".opendistro_security"),
                        lambda: client.indices.create(index="other-app"),
                        lambda: client.indices.delete(index="_all"),
                        lambda: client.cluster.put_settings(body={"persistent": {"cluster.routing.allocation.enable": "all"}}),
                        lambda: client.transport.perform_request("GET", "/_plugins/_security/api/internalusers")):
            with pytest.raises(AuthorizationException):
                attempt()
    finally:
        backend.close()
    # The admin certificate, which only the init job and the health check hold, manages the security configuration.
    status, users = _admin_request(port, certs, "GET", "/_plugins/_security/api/internalusers")
    assert status == 200 and set(users) == {"postvault"}
