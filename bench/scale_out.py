"""Scale-out profile: ingest-to-searchable on PostgreSQL + S3 + OpenSearch + Celery, against OpenSearch's raw _bulk.

    .venv/bin/python bench/ingest.py --profile scale-out                     # N = 100,000, worker concurrency 2
    .venv/bin/python bench/ingest.py --profile scale-out --sizes 10000 --concurrency 1,2
    .venv/bin/python bench/scale_out.py --sizes 2000 --repeat 5 --repeat-subprocess 3   # smoke run

Needs the services of ``scripts/services`` (``scripts/services up``); their addresses
and credentials come from ``scripts/services env``. Everything stays on 127.0.0.1.

For each size N (corpus from bench/corpus.py, as the embedded profile) and each worker
concurrency C, in a fresh namespace on every service (PostgreSQL schema
``pvbench_<n>_c<c>_<tag>`` via ``options=-c search_path=...``, S3 bucket
``pvbench-<n>-c<c>-<tag>``, OpenSearch index prefix ``pvbench-<n>-c<c>-<tag>`` with
``replicas=0``, an empty Redis database):

(a) ingest to searchable: ``postvault worker --concurrency C`` and ``postvault beat`` are
    started and ready; then ``postvault import <maildir> --no-index`` runs while the
    worker indexes what each committed batch put on the outbox. The clock runs from the
    start of the import until the import has exited, the outbox is empty and
    OpenSearch's count equals the catalogue's message count (polled every 0.5 s from
    this process, directly in the catalogue and OpenSearch, so no polling subprocess
    competes for the two cores). Peak RSS of import, worker tree and beat; CPU seconds
    of every postvault process and of each service (PostgreSQL, OpenSearch, versitygw,
    Redis) over the same window; the commands run under bench/_scale_out_probe.py,
    which times the phases inside postvault (S3 put, PostgreSQL, parsing, bulk, refresh).
(b) search p50/p95 for the embedded profile's query set: ``postvault search`` as a
    subprocess, and in-process (``search_archive`` and the bare ``OpenSearchBackend``).
(c) the limit: the exact JSON documents postvault sends for this corpus (parsed from
    the same files with ``indexer.parsing.parse_message``, joined with the catalogue's
    facts by ``indexer.outbox.build_document``, converted by
    ``opensearch_mapping.to_source``), sent with ``opensearchpy.helpers.bulk`` and
    ``parallel_bulk`` (2 threads) in chunks of 500 into a fresh index with the same
    settings and mapping, one refresh at the end; docs/s. The ratio (a) ÷ best of (c)
    is judged against the 0.7× target.
(d) phases alone on a sample, one thread: S3 PUT (as the import batches them), S3 GET,
    the catalogue writes of the journal, the worker's catalogue round trips, parsing,
    conversion, and ``OpenSearchBackend.index`` per batch with and without its refresh.
(e) the embedded profile on the same corpus, in the same run (``postvault import`` into a
    fresh data folder, as bench/ingest.py measures it, before the scale-out runs of the
    size): its CPU per message is what the scale-out profile's own processes (worker +
    import) are judged against, ≤ 1.5×.

Everything created is deleted at the end unless ``--keep``. Results:
``bench/results/<date>-scale-out.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import corpus  # noqa: E402
import ingest  # noqa: E402  (query set, timing helpers, search helpers shared with the embedded profile)
from services import probe  # noqa: E402  (finds the services as tests/services.py does)

PROFILE = "scale-out"
TARGET_VS_RAW = 0.7
# postvault's own CPU per message on the scale-out profile (the Celery workers plus the
# importer; the engines are shared and judged separately) against the embedded profile's
# whole pipeline on the same corpus in the same run.
TARGET_CPU_VS_EMBEDDED = 1.5
BULK_CHUNK = 500
BULK_BYTES = 10 * 1024 * 1024  # the adapter's BULK_BYTES
SAMPLE_INTERVAL = 0.2
POLL_INTERVAL = 0.5
MB = 2**20


class BenchError(ingest.BenchError):
    pass


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# The services and a fresh namespace on each


@dataclass(frozen=True)
class Services:
    database_url: str  # the services' own database; a schema per run goes into it
    s3_endpoint: str
    access_key: str
    secret_key: str
    region: str
    opensearch: str  # host:port
    redis: str  # host:port

    @staticmethod
    def wait_until_up(seconds: float) -> None:
        """All four services up; waits (other people's outage tests stop and restart them) up to ``seconds``."""
        script = probe.SERVICES_SCRIPT
        started = time.perf_counter()
        said = False
        while True:
            status = subprocess.run([str(script), "status"], capture_output=True, text=True)
            if status.returncode == 0:
                return
            if time.perf_counter() - started > seconds:
                raise BenchError("a service is down; run `scripts/services up` first:\n" + (status.stdout + status.stderr).strip())
            if not said:
                log("a service is down; waiting for it (scripts/services status):\n" + status.stdout.strip())
                said = True
            time.sleep(5)

    @classmethod
    def from_script(cls, wait_seconds: float = 0) -> "Services":
        cls.wait_until_up(wait_seconds)
        env = probe.services_env()
        if not env:
            raise BenchError("`scripts/services env` printed nothing; run `scripts/services up` first")
        blob = urlsplit(env["POSTVAULT_BLOBSTORE_URL"])
        blob_query = {k: v[-1] for k, v in parse_qs(blob.query).items()}
        search = urlsplit(env["POSTVAULT_SEARCH_URL"])
        broker = urlsplit(env["POSTVAULT_BROKER_URL"])
        for host in (blob_query.get("endpoint", ""), search.netloc, broker.netloc):
            if not host.startswith("127.0.0.1:"):
                raise BenchError(f"a service is not on 127.0.0.1 ({host}); this benchmark only talks to 127.0.0.1")
        return cls(
            database_url=env["POSTVAULT_DATABASE_URL"],
            s3_endpoint=blob_query["endpoint"],
            access_key=env.get("AWS_ACCESS_KEY_ID", ""),
            secret_key=env.get("AWS_SECRET_ACCESS_KEY", ""),
            region=env.get("AWS_DEFAULT_REGION", "us-east-1"),
            opensearch=search.netloc,
            redis=broker.netloc,
        )

    def minio(self):  # type: ignore[no-untyped-def]
        from minio import Minio

        return Minio(self.s3_endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False,
                     region=self.region)

    def opensearch_client(self):  # type: ignore[no-untyped-def]
        from opensearchpy import OpenSearch

        host, _, port = self.opensearch.partition(":")
        return OpenSearch(hosts=[{"host": host, "port": int(port)}], timeout=300, max_retries=0)


@dataclass
class Namespace:
    """One run's fresh schema, bucket, index prefix and Redis database."""

    tag: str  # pvbench-<n>-c<c>-<hex>
    schema: str
    bucket: str
    prefix: str
    redis_db: int
    database_url: str
    blobstore_url: str
    search_url: str
    broker_url: str
    created: dict

    @property
    def alias(self) -> str:
        return f"{self.prefix}-messages"


def _schema_url(base: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def create_namespace(services: Services, label: str, redis_db: int, object_lock: bool, *, use_redis: bool = True) -> Namespace:
    import redis
    import sqlalchemy as sa

    tag = f"pvbench-{label}-{secrets.token_hex(3)}"
    schema = tag.replace("-", "_")
    ns = Namespace(
        tag=tag, schema=schema, bucket=tag, prefix=tag, redis_db=redis_db,
        database_url=_schema_url(services.database_url, schema),
        blobstore_url=f"s3://{tag}?endpoint={services.s3_endpoint}&secure=false&object_lock={'true' if object_lock else 'false'}",
        search_url=f"opensearch://{services.opensearch}/{tag}?replicas=0",
        broker_url=f"redis://{services.redis}/{redis_db}",
        created={},
    )
    if use_redis:
        host, _, port = services.redis.partition(":")
        client = redis.Redis(host=host, port=int(port), db=redis_db)
        try:
            if client.dbsize():
                raise BenchError(f"Redis database {redis_db} is not empty (someone else's?); choose another with --redis-db")
        finally:
            client.close()
        ns.created["redis_db"] = redis_db
    engine = sa.create_engine(services.database_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    finally:
        engine.dispose()
    ns.created["schema"] = schema
    services.minio().make_bucket(ns.bucket, object_lock=object_lock)
    ns.created["bucket"] = ns.bucket
    ns.created["prefix"] = ns.prefix
    return ns


def drop_namespace(services: Services, ns: Namespace) -> dict:
    """Delete what create_namespace made (and the indices under its prefix); returns what was done."""
    import redis
    import sqlalchemy as sa

    done: dict = {}
    if ns.created.get("prefix"):
        try:
            client = services.opensearch_client()
            names = list(client.indices.get(index=f"{ns.prefix}-*", expand_wildcards="all"))
            if names:
                client.indices.delete(index=",".join(names))
            client.close()
            done["indices"] = names
        except Exception as error:  # noqa: BLE001
            done["indices_error"] = str(error)
    if ns.created.get("bucket"):
        started = time.perf_counter()
        try:
            done["objects_deleted"] = empty_and_remove_bucket(services, ns.bucket)
            done["bucket_seconds"] = round(time.perf_counter() - started, 1)
        except Exception as error:  # noqa: BLE001
            done["bucket_error"] = str(error)
    if ns.created.get("schema"):
        try:
            engine = sa.create_engine(services.database_url)
            with engine.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{ns.schema}" CASCADE')
            engine.dispose()
            done["schema"] = ns.schema
        except Exception as error:  # noqa: BLE001
            done["schema_error"] = str(error)
    if "redis_db" in ns.created:
        host, _, port = services.redis.partition(":")
        client = redis.Redis(host=host, port=int(port), db=ns.redis_db)
        try:
            client.flushdb()
            done["redis_db_flushed"] = ns.redis_db
        finally:
            client.close()
    return done


def empty_and_remove_bucket(services: Services, bucket: str) -> int:
    from minio.deleteobjects import DeleteObject

    client = services.minio()
    if not client.bucket_exists(bucket):
        return 0
    from concurrent.futures import ThreadPoolExecutor

    def remove(chunk: list) -> None:
        errors = list(client.remove_objects(bucket, iter(chunk), bypass_governance_mode=True))
        if errors:
            raise BenchError(f"could not delete {len(errors)} object(s) from {bucket}: {errors[0]}")

    deleted = 0
    while True:
        batch = [DeleteObject(o.object_name, o.version_id)
                 for o in client.list_objects(bucket, recursive=True, include_version=True)]
        if not batch:
            break
        with ThreadPoolExecutor(max_workers=4) as pool:  # versitygw deletes one file at a time per request
            list(pool.map(remove, [batch[i:i + 1000] for i in range(0, len(batch), 1000)]))
        deleted += len(batch)
    client.remove_bucket(bucket)
    return deleted


# ---------------------------------------------------------------------------------------
# Sampling processes: RSS of postvault's trees, CPU of everything involved


def service_processes(services: Services) -> dict:
    """This instance's service processes, found by command line and port (PostgreSQL: the postmaster,
    whose backends are its children). Several instances may run (POSTVAULT_SERVICES_DIR and ports)."""
    import psutil
    from sqlalchemy.engine import make_url

    pg_port = str(make_url(services.database_url).port)
    os_port = services.opensearch.rpartition(":")[2]
    s3 = services.s3_endpoint
    found: dict = {}
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            argv = proc.info.get("cmdline") or []
            cmd = " ".join(argv)
            name = proc.info.get("name") or ""
            if "org.postvault.services.OpenSearchNode" in cmd and f"http.port={os_port}" in argv:
                found["opensearch"] = proc
            elif "versitygw" in cmd and f"--port {s3}" in cmd:
                found["versitygw (S3)"] = proc
            elif name.startswith("redis-server") and services.redis in cmd:
                found["redis"] = proc
            elif name == "postgres" and "-p" in argv and argv[argv.index("-p") + 1] == pg_port:
                found["postgresql"] = proc
        except (psutil.Error, IndexError):
            continue
    return found


class Sampler(threading.Thread):
    """Every 0.2 s: RSS of each postvault group's tree, CPU time of every process of interest."""

    def __init__(self, services: Services) -> None:
        super().__init__(name="sampler", daemon=True)
        import psutil

        self.psutil = psutil
        self.groups: dict = {}  # name -> psutil.Process (root of a postvault tree)
        self.services = service_processes(services)
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self.cpu_last: dict = {}  # (group, pid, create_time) -> cpu seconds
        self.cpu_first: dict = {}
        self.peak_rss: dict = {}
        self.peak_pss: dict = {}
        self.peak_rss_single: dict = {}
        self.peak_rss_postvault = 0  # import + worker tree + beat
        self.peak_pss_postvault = 0
        self.peak_rss_import_worker = 0  # import + worker tree, summed at one sample
        self.peak_pss_import_worker = 0
        self.max_processes: dict = {}
        self.samples = 0
        self.timeline: list = []
        self.started = time.perf_counter()
        self.system_first = psutil.cpu_times()
        self.system_last = self.system_first
        self._tick = 0
        self._baseline()

    def _baseline(self) -> None:
        # Service processes already have CPU time: count only what they use from now on.
        for name, root in self.services.items():
            for proc in self._tree(root):
                key = (name, proc.pid, self._ctime(proc))
                try:
                    t = proc.cpu_times()
                    self.cpu_first[key] = t.user + t.system
                except self.psutil.Error:
                    pass

    def add(self, name: str, pid: int) -> None:
        with self._lock:
            self.groups[name] = self.psutil.Process(pid)

    def _tree(self, root):  # type: ignore[no-untyped-def]
        try:
            return [root, *root.children(recursive=True)]
        except self.psutil.Error:
            return []

    @staticmethod
    def _ctime(proc) -> float:  # type: ignore[no-untyped-def]
        try:
            return proc.create_time()
        except Exception:  # noqa: BLE001
            return 0.0

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_INTERVAL):
            self.sample()

    def sample(self) -> None:
        psutil = self.psutil
        self._tick += 1
        want_pss = self._tick % 5 == 0
        with self._lock:
            groups = dict(self.groups)
        rss_total = pss_total = 0
        rss_iw = pss_iw = 0
        for name, root in groups.items():
            rss_sum = pss_sum = rss_max = alive = 0
            for proc in self._tree(root):
                try:
                    t = proc.cpu_times()
                    self.cpu_last[(name, proc.pid, self._ctime(proc))] = t.user + t.system
                    if want_pss:
                        info = proc.memory_full_info()
                        pss_sum += getattr(info, "pss", info.rss)
                        rss = info.rss
                    else:
                        rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                alive += 1
                rss_sum += rss
                rss_max = max(rss_max, rss)
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss_sum)
            self.peak_rss_single[name] = max(self.peak_rss_single.get(name, 0), rss_max)
            self.max_processes[name] = max(self.max_processes.get(name, 0), alive)
            if want_pss:
                self.peak_pss[name] = max(self.peak_pss.get(name, 0), pss_sum)
            rss_total += rss_sum
            pss_total += pss_sum
            if name in ("import", "worker"):
                rss_iw += rss_sum
                pss_iw += pss_sum
        self.peak_rss_postvault = max(self.peak_rss_postvault, rss_total)
        self.peak_rss_import_worker = max(self.peak_rss_import_worker, rss_iw)
        if want_pss:
            self.peak_pss_postvault = max(self.peak_pss_postvault, pss_total)
            self.peak_pss_import_worker = max(self.peak_pss_import_worker, pss_iw)
        for name, root in self.services.items():
            for proc in self._tree(root):
                try:
                    t = proc.cpu_times()
                except psutil.Error:
                    continue
                self.cpu_last[(name, proc.pid, self._ctime(proc))] = t.user + t.system
        self.system_last = psutil.cpu_times()
        self.samples += 1
        now = time.perf_counter() - self.started
        if not self.timeline or now - self.timeline[-1][0] >= 1.0:
            self.timeline.append((round(now, 1), rss_total // MB))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self.sample()

    def cpu_by_name(self) -> dict:
        out: dict = {}
        for key, last in self.cpu_last.items():
            out[key[0]] = out.get(key[0], 0.0) + max(0.0, last - self.cpu_first.get(key, 0.0))
        return {k: round(v, 1) for k, v in out.items()}

    def system_cpu(self) -> dict:
        a, b = self.system_first, self.system_last
        busy = (b.user - a.user) + (b.system - a.system) + (getattr(b, "nice", 0) - getattr(a, "nice", 0)) + \
            (getattr(b, "irq", 0) - getattr(a, "irq", 0)) + (getattr(b, "softirq", 0) - getattr(a, "softirq", 0))
        return {"busy_seconds": round(busy, 1), "iowait_seconds": round(getattr(b, "iowait", 0) - getattr(a, "iowait", 0), 1),
                "idle_seconds": round(b.idle - a.idle, 1)}


# ---------------------------------------------------------------------------------------
# (a) Ingest to searchable


def _start(argv: list[str], env: dict, cwd: Path, log_dir: Path, label: str) -> subprocess.Popen:
    log_dir.mkdir(parents=True, exist_ok=True)
    out = (log_dir / f"{label}.stdout").open("wb")
    err = (log_dir / f"{label}.stderr").open("wb")
    return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def _stop(proc: subprocess.Popen | None, seconds: float = 60.0) -> int | None:
    """TERM the process we started (Celery: warm shutdown), then KILL its tree if it lingers."""
    import psutil

    if proc is None:
        return None
    if proc.poll() is None:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            for child in children:
                try:
                    child.kill()
                except psutil.Error:
                    pass
            proc.kill()
            proc.wait()
    return proc.returncode


def _wait_for_log(path: Path, pattern: str, proc: subprocess.Popen, seconds: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        if path.exists() and re.search(pattern, path.read_text(errors="replace")):
            return time.perf_counter() - started
        if proc.poll() is not None:
            raise BenchError(f"{path.stem} exited ({proc.returncode}) before it was ready: {ingest._tail(path.read_text(errors='replace'), 8)}")
        time.sleep(0.2)
    raise BenchError(f"{path.stem} not ready after {seconds:.0f} s")


class Observer:
    """Counts in the catalogue (this run's schema) and in OpenSearch (this run's alias)."""

    def __init__(self, services: Services, ns: Namespace) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.engine = sa.create_engine(ns.database_url, pool_size=1, max_overflow=0)
        self.client = services.opensearch_client()
        self.alias = ns.alias

    def catalogue(self) -> tuple[int | None, int | None]:
        try:
            with self.engine.connect() as c:
                messages = c.exec_driver_sql("SELECT count(*) FROM messages").scalar()
                outbox = c.exec_driver_sql("SELECT count(*) FROM index_outbox").scalar()
            return int(messages), int(outbox)
        except Exception:  # noqa: BLE001 - tables not there yet
            return None, None

    def indexed(self) -> int | None:
        try:
            return int(self.client.count(index=self.alias, ignore_unavailable=True)["count"])
        except Exception:  # noqa: BLE001 - no index yet
            return None

    def close(self) -> None:
        self.engine.dispose()
        self.client.close()


def _celery_tasks(text: str) -> dict:
    pattern = re.compile(r"Task postvault\.index_batch\[[^\]]+\] succeeded in ([\d.]+)s: \{'leased': (\d+), 'indexed': (\d+), 'failed': (\d+)\}")
    tasks = [(float(s), int(a), int(b), int(c)) for s, a, b, c in pattern.findall(text)]
    busy = [t for t in tasks if t[1]]
    return {
        "tasks": len(tasks), "empty_tasks": len(tasks) - len(busy),
        "task_seconds": round(sum(t[0] for t in tasks), 1),
        "leased": sum(t[1] for t in tasks), "indexed": sum(t[2] for t in tasks), "failed": sum(t[3] for t in tasks),
        "mean_batch": round(sum(t[1] for t in busy) / len(busy), 1) if busy else None,
        "mean_task_seconds": round(sum(t[0] for t in busy) / len(busy), 2) if busy else None,
        "warnings": len(re.findall(r"WARNING", text)), "errors": len(re.findall(r"\bERROR\b", text)),
    }


def _probe_totals(probe_dir: Path, role: str) -> dict:
    totals: dict = {}
    processes = 0
    for path in probe_dir.glob(f"probe-{role}-*.json"):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        processes += 1
        for name, (calls, seconds, items) in data["totals"].items():
            entry = totals.setdefault(name, {"calls": 0, "seconds": 0.0, "items": 0})
            entry["calls"] += calls
            entry["seconds"] += seconds
            entry["items"] += items
    for entry in totals.values():
        entry["seconds"] = round(entry["seconds"], 2)
    return {"processes": processes, "totals": totals}


def _default_index_batch() -> int:
    """postvault's own default POSTVAULT_INDEX_BATCH_SIZE (runs before 2026-11-27 session 4 used 500)."""
    from postvault.settings import Settings

    return int(Settings.model_fields["index_batch_size"].default)


def run_env(services: Services, ns: Namespace, data_dir: Path, index_batch: int | None) -> dict:
    env = ingest._clean_env(
        POSTVAULT_DATA_DIR=str(data_dir), POSTVAULT_DATABASE_URL=ns.database_url,
        POSTVAULT_BLOBSTORE_URL=ns.blobstore_url, POSTVAULT_SEARCH_URL=ns.search_url,
        POSTVAULT_BROKER_URL=ns.broker_url, AWS_ACCESS_KEY_ID=services.access_key,
        AWS_SECRET_ACCESS_KEY=services.secret_key, AWS_DEFAULT_REGION=services.region,
    )
    if index_batch:
        env["POSTVAULT_INDEX_BATCH_SIZE"] = str(index_batch)
    return env


def ingest_scale_out(services: Services, ns: Namespace, maildir: Path, files: int, work: Path, concurrency: int,
                     args) -> dict:
    exe, python = ingest.find_postvault()
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    probe_dir = work / "probe"
    env = run_env(services, ns, data_dir, args.index_batch_size)
    probe = [python, str(BENCH / "_scale_out_probe.py"), str(probe_dir)]

    def command(*rest: str) -> list[str]:
        return [*probe, *rest] if args.probe else [exe, *rest]

    out: dict = {"concurrency": concurrency, "namespace": {"schema": ns.schema, "bucket": ns.bucket, "prefix": ns.prefix,
                                                           "redis_db": ns.redis_db, "object_lock": args.object_lock},
                 "probe": args.probe, "code_version": ingest._code_version()}
    worker = beat = importer = None
    observer = Observer(services, ns)
    sampler = Sampler(services)
    services_before = {name: (proc.pid, Sampler._ctime(proc)) for name, proc in sampler.services.items()}
    try:
        worker = _start(command("worker", "--concurrency", str(concurrency), "--loglevel", "INFO"), env, work, logs, "worker")
        out["worker_ready_seconds"] = round(_wait_for_log(logs / "worker.stderr", r"\bready\.", worker, 120), 1)
        if args.beat:
            beat = _start([exe, "beat"], env, work, logs, "beat")
            _wait_for_log(logs / "beat.stderr", r"beat: Starting", beat, 60)
        warm = ingest.warm_page_cache(maildir)
        out["page_cache_warm_seconds"] = round(warm, 1)
        sampler.add("worker", worker.pid)
        if beat:
            sampler.add("beat", beat.pid)
        out["loadavg_before"] = round(os.getloadavg()[0], 2)
        argv = command("import", str(maildir), "--no-index", "--refusals-file", str(work / "refusals.jsonl"))
        if args.import_batch_size:
            argv += ["--batch-size", str(args.import_batch_size)]
        sampler.start()
        started = time.perf_counter()
        importer = _start(argv, env, work, logs, "import")
        sampler.add("import", importer.pid)
        import_exit = searchable = None
        timeline = []
        last_progress, last_state = time.perf_counter(), None
        first_indexed = None
        while True:
            now = time.perf_counter() - started
            if import_exit is None and importer.poll() is not None:
                import_exit = now
            messages, outbox = observer.catalogue()
            indexed = observer.indexed()
            if first_indexed is None and indexed:
                first_indexed = now
            if not timeline or now - timeline[-1][0] >= 1.0:
                timeline.append((round(now, 1), messages, outbox, indexed))
            if import_exit is not None and importer.returncode != 0:
                out["error"] = f"postvault import exited {importer.returncode}"
                break
            if import_exit is not None and outbox == 0 and messages and indexed == messages:
                searchable = now
                break
            state = (messages, outbox, indexed)
            if state != last_state:
                last_state, last_progress = state, time.perf_counter()
            elif time.perf_counter() - last_progress > args.stall_seconds:
                out["error"] = f"no progress for {args.stall_seconds:.0f} s (messages {messages}, outbox {outbox}, indexed {indexed})"
                break
            if now > args.timeout:
                out["error"] = f"not searchable after {args.timeout:.0f} s"
                break
            worker_rc = worker.poll()
            if worker_rc is not None:
                out["error"] = f"postvault worker exited {worker_rc}"
                break
            time.sleep(POLL_INTERVAL)
        sampler.stop()
        out["loadavg_after"] = round(os.getloadavg()[0], 2)
        if importer.poll() is None:
            importer.wait(600)
        import_exit = import_exit if import_exit is not None else time.perf_counter() - started
        out["import_exit_seconds"] = round(import_exit, 2)
        out["first_indexed_seconds"] = round(first_indexed, 2) if first_indexed is not None else None
        if searchable is not None:
            out["searchable_seconds"] = round(searchable, 2)
            out["msgs_per_s"] = round(files / searchable, 1)
            out["lag_after_import_seconds"] = round(searchable - import_exit, 2)
        messages, outbox = observer.catalogue()
        out["messages"], out["outbox_left"], out["indexed"] = messages, outbox, observer.indexed()
        if messages:
            out["archived_msgs_per_s"] = round(messages / searchable, 1) if searchable else None
        stdout = (logs / "import.stdout").read_text(errors="replace")
        out.update({f"import_{k}": v for k, v in ingest._parse_import_output(stdout).items()})
        out["import_stdout_tail"] = ingest._tail(stdout, 14)
        out["timeline"] = timeline
    finally:
        if sampler.is_alive():
            sampler.stop()
        for proc in (importer,):
            if proc is not None and proc.poll() is None:
                _stop(proc, 30)
        out["worker_exit"] = _stop(worker, 60)
        out["beat_exit"] = _stop(beat, 20)
        observer.close()
    services_after = {name: (proc.pid, Sampler._ctime(proc)) for name, proc in service_processes(services).items()}
    for name, before in services_before.items():
        if services_after.get(name) != before:
            out.setdefault("warnings", []).append(f"{name} restarted or stopped during the run: its CPU time is incomplete")
    # What the processes did
    out["peak_rss"] = {k: v for k, v in sampler.peak_rss.items()}
    out["peak_rss_single"] = dict(sampler.peak_rss_single)
    out["peak_pss"] = dict(sampler.peak_pss)
    out["peak_rss_postvault"] = sampler.peak_rss_postvault
    out["peak_pss_postvault"] = sampler.peak_pss_postvault
    out["peak_rss_import_worker"] = sampler.peak_rss_import_worker
    out["peak_pss_import_worker"] = sampler.peak_pss_import_worker
    out["max_processes"] = dict(sampler.max_processes)
    out["cpu_seconds"] = sampler.cpu_by_name()
    out["system_cpu"] = sampler.system_cpu()
    out["rss_timeline"] = sampler.timeline[:: max(1, len(sampler.timeline) // 600)]
    worker_log = (logs / "worker.stderr").read_text(errors="replace")
    out["celery"] = _celery_tasks(worker_log)
    window = out.get("searchable_seconds") or out.get("import_exit_seconds")
    if window:
        out["celery"]["worker_busy_share"] = round(out["celery"]["task_seconds"] / (concurrency * window), 2)
    out["worker_log_tail"] = ingest._tail(worker_log, 6)
    if args.probe:
        out["probe_import"] = _probe_totals(probe_dir, "import")
        out["probe_worker"] = _probe_totals(probe_dir, "worker")
    status = subprocess.run([exe, "status", "--json"], env=env, cwd=work, capture_output=True, text=True)
    try:
        out["status"] = json.loads(status.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out["status_error"] = ingest._tail(status.stderr, 5)
    refusals = work / "refusals.jsonl"
    if refusals.exists():
        out["refusals_sample"] = refusals.read_text(errors="replace").splitlines()[:5]
    # Passwords out: results files are committed.
    out["env"] = {k: re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", v) for k, v in env.items() if k.startswith("POSTVAULT_")}
    return out


# ---------------------------------------------------------------------------------------
# (b) Search latency


def search_latency(env: dict, work: Path, repeat: int, repeat_subprocess: int) -> dict:
    exe, python = ingest.find_postvault()
    queries = [(q.name, q.postvault) for q in ingest.query_set()]
    out: dict = {"modes": {}}
    log("  postvault search (subprocess)")
    out["modes"]["postvault cli"] = ingest.time_subprocess(
        lambda q: [exe, "search", "--all", "--json", "--limit", "20", q], queries, env=env, cwd=work,
        repeat=repeat_subprocess)
    log("  postvault search (in-process)")
    try:
        worker = ingest.time_worker(python, "postvault", queries, env=env, cwd=work, repeat=repeat)
        out["modes"]["postvault api"] = worker["modes"]["api"]
        out["modes"]["postvault backend"] = worker["modes"]["backend"]
        out["open_ms"] = worker["open_ms"]
    except ingest.BenchError as error:
        out.setdefault("errors", []).append(str(error))
    samples = []
    for i in range(6):
        started = time.perf_counter()
        subprocess.run([exe, "--help"], env=ingest._clean_env(), cwd=work, capture_output=True)
        if i:
            samples.append((time.perf_counter() - started) * 1000)
    out["startup_p50_ms"] = {"postvault --help": ingest._r(ingest.percentile(samples, 0.5))}
    comparable = [q.name for q in ingest.query_set() if q.notmuch is not None]
    for mode, per in out["modes"].items():
        pooled = [s for name, r in per.items() if name in comparable for s in r["samples_ms"]]
        out.setdefault("pooled", {})[mode] = {"p50_ms": ingest._r(ingest.percentile(pooled, 0.5)),
                                              "p95_ms": ingest._r(ingest.percentile(pooled, 0.95)), "n": len(pooled)}
    return out


# ---------------------------------------------------------------------------------------
# (c) The same documents, prepared, sent raw


_PREP_FACTS: dict = {}
_PREP_LIMITS = None


def _prep_chunk(job: tuple[int, list[str], str]) -> dict:
    """Parse, join, convert and serialise one chunk of files into OUT/prep-<chunk>.ndjson."""
    from indexer.backends.opensearch_mapping import to_source
    from indexer.outbox import build_document
    from indexer.parsing import parse_message

    number, paths, out_dir = job
    timings = {"read": 0.0, "parse_message": 0.0, "build_document": 0.0, "to_source": 0.0, "json": 0.0}
    written = skipped = nbytes = 0
    shas: list[str] = []
    cpu0 = time.process_time()
    with open(os.path.join(out_dir, f"prep-{number:06d}.ndjson"), "w", encoding="utf-8") as handle:
        for path in paths:
            t0 = time.perf_counter()
            with open(path, "rb") as f:
                raw = f.read()
            sha = hashlib.sha256(raw).hexdigest()
            t1 = time.perf_counter()
            timings["read"] += t1 - t0
            facts = _PREP_FACTS.get(sha)
            if facts is None:
                skipped += 1
                continue
            parsed = parse_message(raw, _PREP_LIMITS)
            t2 = time.perf_counter()
            document = build_document(facts, parsed)
            t3 = time.perf_counter()
            source = to_source(document)
            t4 = time.perf_counter()
            line = json.dumps(source, ensure_ascii=False)
            t5 = time.perf_counter()
            timings["parse_message"] += t2 - t1
            timings["build_document"] += t3 - t2
            timings["to_source"] += t4 - t3
            timings["json"] += t5 - t4
            handle.write(line)
            handle.write("\n")
            written += 1
            nbytes += len(line.encode("utf-8")) + 1
            shas.append(sha)
    return {"written": written, "skipped": skipped, "bytes": nbytes, "timings": timings,
            "cpu": time.process_time() - cpu0, "shas": shas}


def prepare_documents(ns: Namespace, maildir: Path, out_dir: Path, workers: int) -> dict:
    """Every message's OpenSearch JSON, as the adapter would send it, into out_dir/prep-*.ndjson."""
    global _PREP_FACTS, _PREP_LIMITS
    import multiprocessing

    from sqlalchemy import select

    from indexer.extraction import ExtractionLimits
    from indexer.outbox import load_facts
    from postvault.settings import Settings
    from storage.database import create_catalogue_engine
    from sqlalchemy.orm import sessionmaker
    from storage.tables import messages

    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    engine = create_catalogue_engine(ns.database_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions() as session:
        ids = list(session.scalars(select(messages.c.id).order_by(messages.c.id)))
    facts = {}
    for start in range(0, len(ids), 2000):
        for fact in load_facts(sessions, ids[start:start + 2000]).values():
            facts[fact.sha256] = fact
    engine.dispose()
    facts_seconds = time.perf_counter() - started
    _PREP_FACTS = facts
    _PREP_LIMITS = ExtractionLimits.from_settings(Settings())
    paths = sorted(str(p) for p in (maildir / "cur").iterdir())
    jobs = [(i, paths[s:s + 200], str(out_dir)) for i, s in enumerate(range(0, len(paths), 200))]
    totals = {"read": 0.0, "parse_message": 0.0, "build_document": 0.0, "to_source": 0.0, "json": 0.0}
    written = skipped = nbytes = 0
    cpu = 0.0
    seen: set[str] = set()
    duplicates = 0
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for result in pool.map(_prep_chunk, jobs):
            written += result["written"]
            skipped += result["skipped"]
            nbytes += result["bytes"]
            cpu += result["cpu"]
            for key, value in result["timings"].items():
                totals[key] += value
            for sha in result["shas"]:
                duplicates += sha in seen
                seen.add(sha)
    wall = time.perf_counter() - t0
    _PREP_FACTS = {}
    return {"documents": written - duplicates, "lines": written, "duplicate_files": duplicates,
            "not_in_catalogue": skipped, "bytes": nbytes, "catalogue_facts_seconds": round(facts_seconds, 1),
            "workers": workers, "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "phase_seconds": {k: round(v, 1) for k, v in totals.items()},
            "per_message_ms": {k: round(v / max(1, written) * 1000, 3) for k, v in totals.items()},
            "msgs_per_cpu_s": round(written / cpu, 1) if cpu else None}


def _iter_actions(out_dir: Path, index: str):  # type: ignore[no-untyped-def]
    """Actions from the prepared files; a repeated id (the same bytes twice in the maildir) once."""
    seen: set[int] = set()
    for path in sorted(out_dir.glob("prep-*.ndjson")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                source = json.loads(line)
                if source["id"] in seen:
                    continue
                seen.add(source["id"])
                yield {"_index": index, "_id": str(source["id"]), "_source": source}


def _cpu(proc) -> float:  # type: ignore[no-untyped-def]
    if proc is None:
        return 0.0
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except Exception:  # noqa: BLE001
        return 0.0


def raw_bulk(services: Services, ns: Namespace, prep_dir: Path, prepared: dict, preload_limit: int) -> dict:
    """helpers.bulk and parallel_bulk of the prepared documents, each into a fresh index."""
    from opensearchpy import helpers

    from indexer.backends import opensearch_mapping as mapping

    client = services.opensearch_client()
    opensearch = service_processes(services).get("opensearch")
    preload = prepared["bytes"] <= preload_limit
    out: dict = {"documents": prepared["documents"], "chunk_size": BULK_CHUNK, "max_chunk_bytes": BULK_BYTES,
                 "preloaded": preload, "variants": {}}
    actions_cache: list | None = None
    if preload:
        t0 = time.perf_counter()
        actions_cache = list(_iter_actions(prep_dir, "placeholder"))
        out["load_seconds"] = round(time.perf_counter() - t0, 1)

    def actions_for(index: str):  # type: ignore[no-untyped-def]
        if actions_cache is None:
            return _iter_actions(prep_dir, index)
        for action in actions_cache:
            action["_index"] = index
        return iter(actions_cache)

    def one(label: str, send) -> None:  # type: ignore[no-untyped-def]
        index = f"{ns.prefix}-raw-{label.replace('_', '-')}"
        client.indices.create(index=index, body=mapping.index_body(shards=1, replicas=0))
        try:
            actions = actions_for(index)
            os_cpu0 = _cpu(opensearch)
            me0 = time.process_time()
            t0 = time.perf_counter()
            errors = send(index, actions)
            t_bulk = time.perf_counter() - t0
            client.indices.refresh(index=index)
            seconds = time.perf_counter() - t0
            os_cpu = _cpu(opensearch) - os_cpu0
            client_cpu = time.process_time() - me0
            count = int(client.count(index=index)["count"])
            stats = client.indices.stats(index=index, metric="store")
            size = stats["indices"][index]["total"]["store"]["size_in_bytes"]
            out["variants"][label] = {"seconds": round(seconds, 2), "bulk_seconds": round(t_bulk, 2),
                                      "docs_per_s": round(count / seconds, 1) if seconds else None,
                                      "count": count, "errors": errors, "index_bytes": size,
                                      "opensearch_cpu_seconds": round(os_cpu, 1), "client_cpu_seconds": round(client_cpu, 1),
                                      "opensearch_cpu_ms_per_doc": round(os_cpu / count * 1000, 2) if count else None,
                                      "client_cpu_ms_per_doc": round(client_cpu / count * 1000, 2) if count else None,
                                      "loadavg": round(os.getloadavg()[0], 2)}
            log(f"  raw {label}: {count:,} docs in {seconds:.1f} s = {count / seconds:,.0f} docs/s")
        finally:
            client.indices.delete(index=index, ignore_unavailable=True)

    def send_bulk(index, actions):  # type: ignore[no-untyped-def]
        ok, errors = helpers.bulk(client, actions, chunk_size=BULK_CHUNK, max_chunk_bytes=BULK_BYTES,
                                  raise_on_error=False, request_timeout=300)
        return len(errors) if isinstance(errors, list) else errors

    def send_parallel(index, actions):  # type: ignore[no-untyped-def]
        failed = 0
        for ok, _item in helpers.parallel_bulk(client, actions, thread_count=2, chunk_size=BULK_CHUNK,
                                               max_chunk_bytes=BULK_BYTES, raise_on_error=False,
                                               request_timeout=300):
            failed += not ok
        return failed

    one("bulk", send_bulk)
    one("parallel_bulk_2", send_parallel)
    client.close()
    best = max(out["variants"].values(), key=lambda v: v["docs_per_s"] or 0)
    out["best_docs_per_s"] = best["docs_per_s"]
    return out


# ---------------------------------------------------------------------------------------
# (d) Phases alone, one thread, on a sample


class _NullBlobs:
    """A BlobStore that stores nothing: prices the journal's catalogue work alone."""

    def put_many(self, blobs, *, locks=None):  # type: ignore[no-untyped-def]
        from storage.blobstore import sha256_hex

        return [sha256_hex(b) for b in blobs]


class _NullBackend:
    """A SearchBackend that indexes nothing: prices the worker's catalogue round trips alone."""

    def index(self, documents) -> None:  # type: ignore[no-untyped-def]
        self.last = len(documents)


def phases(services: Services, ns: Namespace, maildir: Path, sample: int, import_batch: int, index_batch: int) -> dict:
    from sqlalchemy.orm import sessionmaker

    from archiver.envelope import Envelope
    from archiver.journal import Arrival, Journal
    from indexer.backends.opensearch_backend import OpenSearchBackend
    from indexer.backends.opensearch_mapping import to_source
    from indexer.extraction import ExtractionLimits
    from indexer.outbox import ParseOutcome, index_leased, lease_batch
    from indexer.parsing import parse_message
    from postvault.settings import Settings
    from storage.database import create_catalogue_engine, migrate
    from storage.s3 import S3BlobStore, S3Location

    paths = sorted((maildir / "cur").iterdir())
    step = max(1, len(paths) // sample)
    chosen = paths[::step][:sample]
    raws = [p.read_bytes() for p in chosen]
    total_bytes = sum(len(r) for r in raws)
    out: dict = {"sample": len(raws), "sample_bytes": total_bytes, "import_batch": import_batch,
                 "index_batch": index_batch, "phases": {}}

    def record(name: str, seconds: float, items: int, note: str = "") -> None:
        out["phases"][name] = {"seconds": round(seconds, 2), "items": items,
                               "per_s": round(items / seconds, 1) if seconds else None,
                               "ms_each": round(seconds / items * 1000, 3) if items else None, "note": note}
        log(f"  phase {name}: {items / seconds if seconds else 0:,.0f}/s ({note})")

    # S3 PUT in import batches, into a scratch bucket (same client code, 8 threads per batch)
    scratch = create_namespace(services, ns.tag.removeprefix("pvbench-") + "-ph", ns.redis_db, False, use_redis=False)
    try:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", services.access_key)
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", services.secret_key)
        store = S3BlobStore(S3Location.from_url(scratch.blobstore_url))
        t0 = time.perf_counter()
        digests: list[str] = []
        for s in range(0, len(raws), import_batch):
            digests += store.put_many(raws[s:s + import_batch])
        record("s3_put (import batches, conditional PUT, 8 threads)", time.perf_counter() - t0, len(raws),
               f"{total_bytes / MB / (time.perf_counter() - t0):.1f} MB/s")
        t0 = time.perf_counter()
        for digest in digests:
            store.get(digest)
        record("s3_get (one at a time, as the worker reads)", time.perf_counter() - t0, len(digests),
               "GET + rehash")
        # Journal's catalogue work: header facts + policy read + insert, no blob writes
        engine = create_catalogue_engine(scratch.database_url)
        migrate(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        journal = Journal(_NullBlobs(), sessions)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        from storage.blobstore import sha256_hex

        for s in range(0, len(raws), import_batch):
            batch = raws[s:s + import_batch]
            journal.known_digests([sha256_hex(r) for r in batch])
            journal.journal_many([Arrival(raw=r, envelope=Envelope(), source="import", source_detail=str(chosen[s + i]))
                                  for i, r in enumerate(batch)])
        record("pg_journal (header facts + catalogue transaction, no S3)", time.perf_counter() - t0, len(raws),
               "what the import does besides S3")
        # parse (one process), then the worker's catalogue round trips with a null backend
        limits = ExtractionLimits.from_settings(Settings())
        t0 = time.perf_counter()
        parsed = {sha256_hex(r): parse_message(r, limits) for r in raws}
        record("parse_message (one process)", time.perf_counter() - t0, len(raws), "MIME + text + attachments")
        documents = []
        backend = _NullBackend()

        def parse_many(digs):  # type: ignore[no-untyped-def]
            return [ParseOutcome(sha256=d, parsed=parsed[d]) for d in digs]

        t0 = time.perf_counter()
        done = 0
        while True:
            leases = lease_batch(sessions, index_batch)
            if not leases:
                break
            report = index_leased(sessions, backend, leases, parse_many)
            done += report.indexed
        record("pg_worker (lease + load facts + build_document + finish)", time.perf_counter() - t0, done,
               "worker's catalogue work, no parse, no OpenSearch")
        # documents for the adapter
        from indexer.outbox import build_document, load_facts

        with sessions() as session:
            from sqlalchemy import select

            from storage.tables import messages

            ids = list(session.scalars(select(messages.c.id)))
        facts = load_facts(sessions, ids)
        documents = [build_document(f, parsed[f.sha256]) for f in facts.values()]
        engine.dispose()
        t0 = time.perf_counter()
        for d in documents:
            to_source(d)
        record("to_source (conversion)", time.perf_counter() - t0, len(documents), "IndexDocument -> JSON dict")
        adapter = OpenSearchBackend.from_url(scratch.search_url)
        adapter.index(documents[:1])  # create the index outside the timing
        t0 = time.perf_counter()
        for s in range(0, len(documents), index_batch):
            adapter.index(documents[s:s + index_batch])
        record("OpenSearchBackend.index (per batch: convert, alias, bulk, refresh)", time.perf_counter() - t0,
               len(documents), f"batches of {index_batch}")
        adapter._refresh = lambda: None  # type: ignore[method-assign]  # price the refresh
        t0 = time.perf_counter()
        for s in range(0, len(documents), index_batch):
            adapter.index(documents[s:s + index_batch])
        record("OpenSearchBackend.index without refresh (re-index same ids)", time.perf_counter() - t0, len(documents),
               "prices the per-batch refresh")
        adapter.close()
    finally:
        out["scratch_cleanup"] = drop_namespace(services, scratch)
    return out


# ---------------------------------------------------------------------------------------
# One size


def run_size(n: int, args, services: Services) -> dict:
    maildir = corpus.ensure_corpus(n, args.seed, args.corpus_dir, spamassassin=not args.no_spamassassin)
    info = corpus.corpus_info(maildir)
    files = sum(1 for _ in os.scandir(maildir / "cur"))
    log(f"N={n:,}: {maildir} ({info['bytes'] / 1e6:,.0f} MB, {files:,} files)")
    base = Path(args.work_dir or corpus.default_base_dir())
    base.mkdir(parents=True, exist_ok=True)
    result: dict = {"n": n, "maildir": str(maildir), "corpus": info, "files": files, "runs": []}
    embedded_work = None
    if args.embedded:
        # First, and its folder kept until the end: ext4 makes creating files dearer for
        # minutes after a mass delete (see bench/README.md, Caveats), the scale-out clean-up
        # deletes a file per message from the S3 server's folder, and the embedded import
        # is the one that creates a file per message.
        result["embedded"], embedded_work = embedded_cpu(maildir, files, base, args.timeout)
    try:
        _scale_out_runs(n, args, services, maildir, files, base, result)
    finally:
        if embedded_work is not None:
            shutil.rmtree(embedded_work, ignore_errors=True)
    return result


def _scale_out_runs(n: int, args, services: Services, maildir: Path, files: int, base: Path, result: dict) -> None:  # type: ignore[no-untyped-def]
    for number, concurrency in enumerate(args.concurrency):
        Services.wait_until_up(args.wait_services)
        work = Path(tempfile.mkdtemp(prefix=f"scaleout-n{n}-c{concurrency}-", dir=base))
        ns = None
        run: dict = {"concurrency": concurrency, "work_dir": str(work)}
        try:
            ns = create_namespace(services, f"{n}-c{concurrency}", args.redis_db, args.object_lock)
            log(f"N={n:,} concurrency {concurrency}: ingest into schema {ns.schema}, bucket {ns.bucket}, "
                f"index prefix {ns.prefix}, redis db {ns.redis_db}")
            run.update(ingest_scale_out(services, ns, maildir, files, work, concurrency, args))
            log(f"N={n:,} concurrency {concurrency}: searchable after {run.get('searchable_seconds')} s = "
                f"{run.get('msgs_per_s')} msg/s (import exited at {run.get('import_exit_seconds')} s); "
                f"peak RSS import + worker {run.get('peak_rss_import_worker', 0) / MB:,.0f} MB"
                + (f"; ERROR {run['error']}" if run.get("error") else ""))
            if number == 0 and not run.get("error"):
                env = run_env(services, ns, work / "data", args.index_batch_size)
                if not args.skip_search:
                    log(f"N={n:,}: search latency")
                    result["search"] = search_latency(env, work, args.repeat, args.repeat_subprocess)
                if not args.skip_raw:
                    log(f"N={n:,}: preparing the documents postvault sends (parse + build_document + to_source)")
                    prep_dir = work / "prepared"
                    result["prepared"] = prepare_documents(ns, maildir, prep_dir, args.prep_workers)
                    log(f"N={n:,}: {result['prepared']['documents']:,} documents, "
                        f"{result['prepared']['bytes'] / MB:,.0f} MB JSON, in {result['prepared']['wall_seconds']} s")
                    result["raw_bulk"] = raw_bulk(services, ns, prep_dir, result["prepared"], args.preload_limit_mb * MB)
                    shutil.rmtree(prep_dir, ignore_errors=True)
                if not args.skip_phases:
                    log(f"N={n:,}: phases alone on a sample of {min(args.phase_sample, files):,}")
                    from archiver.importers.runner import DEFAULT_BATCH_MESSAGES

                    result["phases"] = phases(services, ns, maildir, min(args.phase_sample, files),
                                              args.import_batch_size or DEFAULT_BATCH_MESSAGES,
                                              args.index_batch_size or _default_index_batch())
                run["index_bytes"] = _index_bytes(services, ns)
                run["s3_bytes"] = ingest.du(Path(os.environ.get("POSTVAULT_SERVICES_DIR", "/tmp/postvault-services")) / "s3" / "data" / ns.bucket)
                run["pg_schema_bytes"] = _schema_bytes(services, ns)
        except (BenchError, ingest.BenchError) as error:
            run["error"] = str(error)
            log(f"N={n:,} concurrency {concurrency}: {error}")
        finally:
            if ns is not None:
                if args.keep:
                    run["kept"] = {"schema": ns.schema, "bucket": ns.bucket, "prefix": ns.prefix, "work_dir": str(work),
                                   "env": run.get("env")}
                else:
                    log(f"N={n:,} concurrency {concurrency}: cleaning up {ns.tag}")
                    run["cleanup"] = drop_namespace(services, ns)
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        result["runs"].append(run)


def embedded_cpu(maildir: Path, files: int, base: Path, timeout: float) -> tuple[dict, Path]:
    """(e) ``postvault import`` on the embedded profile (SQLite, filesystem, tantivy): CPU of
    its process tree; and the folder it wrote, for the caller to remove."""
    exe, _ = ingest.find_postvault()
    work = Path(tempfile.mkdtemp(prefix="scaleout-embedded-", dir=base))
    try:
        ingest.warm_page_cache(maildir)
        log(f"embedded profile: postvault import of the same {files:,} files")
        run = ingest.ingest_postvault({"postvault": exe}, maildir, work, files, timeout)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    keep = ("returncode", "error", "warnings", "searchable_seconds", "msgs_per_s", "messages", "cpu_seconds",
            "cpu_seconds_sampled", "msgs_per_cpu_s", "peak_rss_tree", "loadavg_before", "loadavg_after")
    out = {k: run[k] for k in keep if k in run}
    # wait4 counts the children the import reaped; the sampled sum also sees the parser
    # pool (children of the fork server). The larger is the fairer total.
    cpu = max(run.get("cpu_seconds") or 0.0, run.get("cpu_seconds_sampled") or 0.0)
    out["cpu_ms_per_message"] = round(cpu / files * 1000, 3) if cpu else None
    log(f"embedded profile: {out.get('cpu_ms_per_message')} CPU-ms per message")
    return out, work


def own_cpu_ms(run: dict, files: int) -> dict:
    """postvault's own CPU per message on the scale-out profile: worker tree, import, both."""
    cpu = run.get("cpu_seconds") or {}
    worker, importer = cpu.get("worker"), cpu.get("import")
    if worker is None or importer is None or not files:
        return {}
    return {"worker": round(worker / files * 1000, 3), "import": round(importer / files * 1000, 3),
            "total": round((worker + importer) / files * 1000, 3)}


def _index_bytes(services: Services, ns: Namespace) -> int | None:
    try:
        client = services.opensearch_client()
        stats = client.indices.stats(index=ns.alias, metric="store")
        client.close()
        return int(stats["_all"]["total"]["store"]["size_in_bytes"])
    except Exception:  # noqa: BLE001
        return None


def _schema_bytes(services: Services, ns: Namespace) -> int | None:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(services.database_url)
        with engine.connect() as c:
            value = c.exec_driver_sql(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
                (ns.schema,)).scalar()
        engine.dispose()
        return int(value)
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------------------------------
# Report


_mb, _num = ingest._mb, ingest._num  # the embedded report's number formats


def evaluate(results: dict) -> list[dict]:
    targets = []
    for size in results["sizes_run"]:
        limit = (size.get("raw_bulk") or {}).get("best_docs_per_s")
        bulk = ((size.get("raw_bulk") or {}).get("variants") or {}).get("bulk", {}).get("docs_per_s")
        for run in size["runs"]:
            rate = run.get("msgs_per_s")
            ratio = round(rate / limit, 2) if rate and limit else None
            ratio_seq = round(rate / bulk, 2) if rate and bulk else None
            targets.append({"n": size["n"], "concurrency": run["concurrency"],
                            "target": f"ingest-to-searchable ≥ {TARGET_VS_RAW}× OpenSearch raw _bulk (best of bulk / parallel_bulk)",
                            "value": f"{_num(rate, '{:,.0f}')} msg/s ÷ {_num(limit, '{:,.0f}')} docs/s = {ratio}×"
                                     + (f" (vs sequential helpers.bulk {_num(bulk, '{:,.0f}')}: {ratio_seq}×)" if bulk else ""),
                            "pass": None if ratio is None else ratio >= TARGET_VS_RAW})
            embedded = (size.get("embedded") or {}).get("cpu_ms_per_message")
            own = own_cpu_ms(run, size.get("files") or 0).get("total")
            if embedded and own:
                targets.append({"n": size["n"], "concurrency": run["concurrency"],
                                "target": f"postvault's own CPU per message (worker + import) ≤ {TARGET_CPU_VS_EMBEDDED}× "
                                          "the embedded profile's whole pipeline, same corpus, same run",
                                "value": f"{own:.2f} ms ÷ {embedded:.2f} ms = {own / embedded:.2f}×",
                                "pass": own / embedded <= TARGET_CPU_VS_EMBEDDED})
    return targets


def _worker_breakdown(run: dict) -> list[tuple[str, float, str]]:
    """Exclusive seconds per phase inside the worker processes, from the probe totals."""
    t = (run.get("probe_worker") or {}).get("totals") or {}

    def s(name: str) -> float:
        return (t.get(name) or {}).get("seconds", 0.0)

    rows = [
        ("PostgreSQL: lease batch", s("pg_lease_batch")),
        ("PostgreSQL: load facts", s("pg_load_facts")),
        ("S3: GET blob", s("s3_get")),
        ("parse_message (MIME, text, attachments)", s("parse_message")),
        ("build_document", s("build_document")),
        ("to_source (JSON conversion)", s("to_source")),
        ("OpenSearch: alias lookup (2 requests per batch)", s("os_alias_lookup")),
        ("OpenSearch: _bulk", s("os_bulk")),
        ("OpenSearch: refresh after each batch", s("os_refresh")),
        ("PostgreSQL: finish (mark indexed, delete outbox rows)", s("pg_finish")),
    ]
    known = sum(v for _, v in rows)
    other = s("index_leased") + s("pg_lease_batch") - known
    rows.append(("other (parse_blob glue, Celery, task overhead)", max(0.0, other)))
    total = sum(v for _, v in rows)
    return [(name, round(v, 1), f"{v / total * 100:.0f} %" if total else "–") for name, v in rows]


def _import_breakdown(run: dict) -> list[tuple[str, float, str]]:
    t = (run.get("probe_import") or {}).get("totals") or {}

    def s(name: str) -> float:
        return (t.get(name) or {}).get("seconds", 0.0)

    put = s("s3_put_many")
    rows = [
        ("S3: put_many (conditional PUT, 8 threads)", put),
        ("header facts (read_header_facts)", s("header_facts")),
        ("PostgreSQL: policy read", s("pg_policy_read")),
        ("PostgreSQL: insert rows (_record) + commit", max(0.0, s("journal_many") - put - s("header_facts") - s("pg_policy_read"))),
        ("PostgreSQL: known digests (skip re-imports)", s("pg_known_digests")),
    ]
    total = sum(v for _, v in rows)
    return [(name, round(v, 1), f"{v / total * 100:.0f} %" if total else "–") for name, v in rows]


def render_markdown(results: dict) -> str:
    host = results["host"]
    lines = [f"# postvault benchmark: scale-out profile, {results['date']}", "",
             f"Host: {host['cpus']} CPUs, {host['memory_gb']} GB RAM, {host['platform']}; Python {host['python']}.",
             f"Services (all on 127.0.0.1, from `scripts/services`): {results.get('service_versions', '')}.",
             f"postvault: {', '.join(sorted({run.get('code_version') for size in results['sizes_run'] for run in size['runs'] if run.get('code_version')}) or [results.get('code_version') or '?'])}"
             f" (git HEAD + hash of postvault's Python sources at each run). Corpus seed {results['seed']}. Worker concurrency: "
             f"{', '.join(map(str, results['concurrency']))}; index batch {results.get('index_batch_size') or 500}; "
             f"import batch {results.get('import_batch_size') or 200}; beat {'on' if results.get('beat') else 'off'}; "
             f"S3 Object Lock {'on' if results.get('object_lock') else 'off'}; phase probes "
             f"{'on' if results.get('probe') else 'off'}.", ""]
    lines += ["## Targets", "", "| N | C | target | value | result |", "|---|---|---|---|---|"]
    for t in results["targets"]:
        verdict = "–" if t["pass"] is None else ("PASS" if t["pass"] else "**FAIL**")
        lines.append(f"| {t['n']:,} | {t['concurrency']} | {t['target']} | {t['value']} | {verdict} |")
    lines.append("")
    for size in results["sizes_run"]:
        n = size["n"]
        c = size.get("corpus") or {}
        lines += [f"## N = {n:,}", ""]
        if c:
            lines += [f"Corpus: {size['files']:,} files, {c['bytes'] / 1e6:,.0f} MB (median {c['size_p50']:,} B, "
                      f"max {c['size_max']:,} B; {c['spamassassin_messages']:,} from SpamAssassin); digest `{c['digest'][:16]}`.", ""]
        lines += ["### Ingest to searchable (postvault import --no-index + postvault worker)", "",
                  "| C | searchable s | msgs/s | first doc searchable s | import exited s | lag after import s | archived | indexed | "
                  "peak RSS import + worker MB (PSS) | import / worker tree / beat MB | worker procs | load before→after | notes |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|"]
        for run in size["runs"]:
            pr = run.get("peak_rss", {})
            notes = []
            if run.get("import_archive_phase_rate"):
                notes.append(f"import's own rate {run['import_archive_phase_rate']:,.0f} msg/s")
            if run.get("import_duplicates"):
                notes.append(f"{run['import_duplicates']} duplicates")
            if run.get("import_refused"):
                notes.append(f"{run['import_refused']} refused")
            ce = run.get("celery") or {}
            if ce:
                notes.append(f"{ce.get('tasks')} tasks ({ce.get('empty_tasks')} empty), mean batch {ce.get('mean_batch')}, "
                             f"mean task {ce.get('mean_task_seconds')} s, worker processes busy "
                             f"{_num((ce.get('worker_busy_share') or 0) * 100, '{:.0f}')} % of the window")
            notes += run.get("warnings", [])
            if run.get("error"):
                notes.append(f"ERROR: {run['error']}")
            lines.append(
                f"| {run['concurrency']} | {_num(run.get('searchable_seconds'))} | {_num(run.get('msgs_per_s'), '{:,.0f}')} | "
                f"{_num(run.get('first_indexed_seconds'))} | "
                f"{_num(run.get('import_exit_seconds'))} | {_num(run.get('lag_after_import_seconds'))} | "
                f"{_num(run.get('messages'), '{:,}')} | {_num(run.get('indexed'), '{:,}')} | "
                f"{_mb(run.get('peak_rss_import_worker'))} ({_mb(run.get('peak_pss_import_worker'))}) | "
                f"{_mb(pr.get('import'))} / {_mb(pr.get('worker'))} / {_mb(pr.get('beat'))} | "
                f"{(run.get('max_processes') or {}).get('worker', '–')} | "
                f"{run.get('loadavg_before', '–')}→{run.get('loadavg_after', '–')} | {'; '.join(notes)} |")
        lines.append("")
        raw = size.get("raw_bulk")
        prep = size.get("prepared")
        if raw:
            lines += ["### The limit: OpenSearch raw _bulk of the same documents", "",
                      f"{prep['documents']:,} documents, {prep['bytes'] / MB:,.0f} MB of JSON (mean "
                      f"{prep['bytes'] / max(1, prep['lines']) / 1024:,.1f} KB), chunks of {raw['chunk_size']} / "
                      f"{raw['max_chunk_bytes'] // MB} MB, fresh index with postvault's settings and mapping (1 shard, 0 replicas), "
                      f"one refresh at the end{'' if raw['preloaded'] else '; streamed from disk (too large to preload)'}.", "",
                      "| variant | seconds | docs/s | OpenSearch CPU ms/doc | client CPU ms/doc | index MB | load avg after |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for label, v in raw["variants"].items():
                lines.append(f"| `{label}` | {_num(v['seconds'])} | {_num(v['docs_per_s'], '{:,.0f}')} | "
                             f"{_num(v.get('opensearch_cpu_ms_per_doc'), '{:.2f}')} | {_num(v.get('client_cpu_ms_per_doc'), '{:.2f}')} | "
                             f"{_mb(v.get('index_bytes'))} | {v.get('loadavg', '–')} |")
            lines += ["", "| C | postvault msgs/s | ÷ best raw | ÷ sequential bulk |", "|---:|---:|---:|---:|"]
            for run in size["runs"]:
                r = run.get("msgs_per_s")
                best = raw.get("best_docs_per_s")
                seq = raw["variants"].get("bulk", {}).get("docs_per_s")
                lines.append(f"| {run['concurrency']} | {_num(r, '{:,.0f}')} | {_num(r / best if r and best else None, '{:.2f}')}× | "
                             f"{_num(r / seq if r and seq else None, '{:.2f}')}× |")
            lines.append("")
        if prep:
            pm = prep["per_message_ms"]
            lines += ["### Preparing those documents (the parse cost, measured on the whole corpus)", "",
                      f"{prep['workers']} processes, {prep['wall_seconds']} s wall, {prep['cpu_seconds']} CPU s = "
                      f"{_num(prep.get('msgs_per_cpu_s'), '{:,.0f}')} messages per CPU-second. Per message: "
                      + ", ".join(f"{k} {v} ms" for k, v in pm.items()) + ".", ""]
        for run in size["runs"]:
            if not run.get("cpu_seconds"):
                continue
            secs = run.get("searchable_seconds") or run.get("import_exit_seconds") or 0
            lines += [f"### Where the time went, C = {run['concurrency']}", "",
                      f"CPU seconds over the {secs:.0f} s ingest window (2 cores = {2 * secs:.0f} CPU-s available); "
                      f"system-wide busy {run['system_cpu']['busy_seconds']} s, iowait {run['system_cpu']['iowait_seconds']} s:", "",
                      "| process | CPU s | share of capacity | per message ms |", "|---|---:|---:|---:|"]
            known = 0.0
            for name, value in sorted(run["cpu_seconds"].items(), key=lambda kv: -kv[1]):
                known += value
                lines.append(f"| {name} | {value:,.1f} | {value / (2 * secs) * 100 if secs else 0:.0f} % | "
                             f"{value / size['files'] * 1000:.2f} |")
            other = run["system_cpu"]["busy_seconds"] - known
            lines.append(f"| everything else on the machine (other jobs, kernel, this bench) | {other:,.1f} | "
                         f"{other / (2 * secs) * 100 if secs else 0:.0f} % | |")
            lines.append("")
            per_msg = known / size["files"] * 1000
            cores = results["host"]["cpus"] or 2
            raw_v = (size.get("raw_bulk") or {}).get("variants", {})
            raw_cpu = min((v.get("opensearch_cpu_ms_per_doc") or 0) + (v.get("client_cpu_ms_per_doc") or 0)
                          for v in raw_v.values()) if raw_v else None
            os_ms = run["cpu_seconds"].get("opensearch", 0.0) / size["files"] * 1000
            best = (size.get("raw_bulk") or {}).get("best_docs_per_s")
            budget = (f"CPU budget: the pipeline (postvault processes + the four services) spent {per_msg:.1f} CPU-ms per "
                      f"message, so {cores} cores doing nothing else would give at most {cores * 1000 / per_msg:,.0f} msg/s")
            if raw_cpu:
                budget += (f". The raw _bulk spent {raw_cpu:.2f} CPU-ms per document (OpenSearch + client): "
                           f"{per_msg / raw_cpu:.0f}× less, so while both share the same {cores} cores the rate ratio stays near "
                           f"{raw_cpu / per_msg:.2f}× however well postvault overlaps its work")
                if best:
                    need = TARGET_VS_RAW * best * (per_msg - os_ms) / 1000
                    budget += (f". {TARGET_VS_RAW}× of the raw rate ({TARGET_VS_RAW * best:,.0f} msg/s) at these costs needs about "
                               f"{need:,.0f} cores for everything but OpenSearch ({per_msg - os_ms:.1f} CPU-ms per message: "
                               f"workers, import, S3, PostgreSQL)")
            lines += [budget + ".", ""]
            if run.get("probe_worker", {}).get("totals"):
                wb = _worker_breakdown(run)
                lines += [f"Inside the worker ({run['probe_worker']['processes']} processes; wall seconds summed over them, "
                          "exclusive):", "", "| phase | seconds | share |", "|---|---:|---:|"]
                lines += [f"| {a} | {b:,.1f} | {c} |" for a, b, c in wb]
                lines.append("")
            if run.get("probe_import", {}).get("totals"):
                ib = _import_breakdown(run)
                lines += ["Inside the import's journal thread (wall seconds):", "", "| phase | seconds | share |", "|---|---:|---:|"]
                lines += [f"| {a} | {b:,.1f} | {c} |" for a, b, c in ib]
                lines.append("")
        emb = size.get("embedded")
        if emb:
            lines += ["### postvault's own CPU per message, against the embedded profile", "",
                      f"Embedded profile, same corpus, same run (`postvault import` into a fresh data folder): "
                      f"{_num(emb.get('cpu_ms_per_message'), '{:.2f}')} CPU-ms per message "
                      f"({_num(emb.get('cpu_seconds'))} CPU s, searchable after {_num(emb.get('searchable_seconds'))} s"
                      + (f"; ERROR {emb['error']}" if emb.get("error") else "") + ").", "",
                      "| C | worker ms | import ms | worker + import ms | ÷ embedded |", "|---:|---:|---:|---:|---:|"]
            for run in size["runs"]:
                own = own_cpu_ms(run, size["files"])
                if own:
                    ratio = own["total"] / emb["cpu_ms_per_message"] if emb.get("cpu_ms_per_message") else None
                    lines.append(f"| {run['concurrency']} | {own['worker']:.2f} | {own['import']:.2f} | {own['total']:.2f} | "
                                 f"{_num(ratio, '{:.2f}')}× |")
            lines.append("")
        ph = size.get("phases")
        if ph:
            lines += [f"### Phases alone (one thread, sample of {ph['sample']:,} messages, {ph['sample_bytes'] / MB:,.0f} MB)", "",
                      "| phase | per second | ms each | note |", "|---|---:|---:|---|"]
            for name, p in ph["phases"].items():
                lines.append(f"| {name} | {_num(p['per_s'], '{:,.0f}')} | {_num(p['ms_each'], '{:.2f}')} | {p['note']} |")
            lines.append("")
        search = size.get("search")
        if search:
            modes = list(search["modes"])
            lines += ["### Search latency (ms, p50 / p95)", "", "| query | " + " | ".join(modes) + " | total hits |",
                      "|---|" + "---:|" * len(modes) + "---:|"]
            for q in ingest.query_set():
                cells = []
                for mode in modes:
                    r = search["modes"][mode].get(q.name)
                    cells.append("n/a" if r is None else "error" if r.get("error") else f"{_num(r['p50_ms'])} / {_num(r['p95_ms'])}")
                total = (search["modes"].get("postvault api", {}).get(q.name) or {}).get("total")
                lines.append(f"| {q.name} | " + " | ".join(cells) + f" | {_num(total, '{:,}')} |")
            pooled = search.get("pooled", {})
            lines.append("| **pooled (12 comparable queries)** | " + " | ".join(
                f"**{_num(pooled.get(m, {}).get('p50_ms'))} / {_num(pooled.get(m, {}).get('p95_ms'))}**" for m in modes) + " | |")
            lines += ["", f"CLI start-up floor (`postvault --help`, p50): {search.get('startup_p50_ms', {}).get('postvault --help')} ms.", ""]
            errs = [f"{mode} {name}: {r['error']}" for mode, per in search["modes"].items() for name, r in per.items() if r.get("error")]
            errs += search.get("errors", [])
            if errs:
                lines += ["Search errors:", ""] + [f"- {e}" for e in errs] + [""]
        sizes_line = []
        for run in size["runs"]:
            if run.get("index_bytes") or run.get("s3_bytes"):
                sizes_line.append(f"C={run['concurrency']}: OpenSearch index {_mb(run.get('index_bytes'))} MB, S3 data "
                                  f"{_mb(run.get('s3_bytes'))} MB, PostgreSQL schema {_mb(run.get('pg_schema_bytes'))} MB")
        if sizes_line:
            lines += ["Storage after the run: " + "; ".join(sizes_line) + ".", ""]
    lines += ["See bench/README.md (scale-out profile) for what is measured and the caveats.", ""]
    return "\n".join(lines)


def service_versions(services: Services) -> str:
    parts = []
    try:
        client = services.opensearch_client()
        parts.append(f"OpenSearch {client.info()['version']['number']} "
                     f"(heap {_os_heap(client)})")
        client.close()
    except Exception:  # noqa: BLE001
        pass
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(services.database_url)
        with engine.connect() as c:
            parts.append("PostgreSQL " + c.exec_driver_sql("SHOW server_version").scalar().split()[0])
        engine.dispose()
    except Exception:  # noqa: BLE001
        pass
    status = subprocess.run([str(REPO / "scripts" / "services"), "status", "s3", "redis"], capture_output=True, text=True).stdout
    for name, pattern in (("S3", r"(versitygw v[\d.]+)"), ("Redis", r"(Redis [\d.]+)")):
        match = re.search(pattern, status)
        if match:
            parts.append(match.group(1))
    return "; ".join(parts)


def _os_heap(client) -> str:  # type: ignore[no-untyped-def]
    stats = client.nodes.stats(metric="jvm")
    for node in stats["nodes"].values():
        return f"{node['jvm']['mem']['heap_max_in_bytes'] / 2**30:.1f} GB"
    return "?"


# ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/ingest.py --profile scale-out", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=PROFILE, choices=(PROFILE,), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="100000", help="comma-separated corpus sizes (default 100000)")
    parser.add_argument("--concurrency", default="2", help="comma-separated worker concurrencies, one fresh run each (default 2)")
    parser.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    parser.add_argument("--object-lock", action="store_true", help="create the buckets with Object Lock (versioned)")
    parser.add_argument("--keep", action="store_true", help="keep schema, bucket, index and work dir (their names are in the results)")
    parser.add_argument("--redis-db", type=int, default=11, help="Redis database for the broker; must be empty (default 11)")
    parser.add_argument("--index-batch-size", type=int, default=None, help="POSTVAULT_INDEX_BATCH_SIZE (default: postvault's own default)")
    parser.add_argument("--import-batch-size", type=int, default=None, help="postvault import --batch-size (default: postvault's, 200)")
    parser.add_argument("--no-beat", dest="beat", action="store_false", help="do not run `postvault beat` (the outbox sweep)")
    parser.add_argument("--no-probe", dest="probe", action="store_false",
                        help="run the plain `postvault` executable instead of bench/_scale_out_probe.py (no phase timers)")
    parser.add_argument("--repeat", type=int, default=20, help="timed repeats per query, in-process")
    parser.add_argument("--repeat-subprocess", type=int, default=10, help="timed repeats per query, CLI")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-raw", action="store_true", help="skip preparing the documents and the raw _bulk")
    parser.add_argument("--skip-phases", action="store_true")
    parser.add_argument("--no-embedded", dest="embedded", action="store_false",
                        help="do not run the embedded profile's import on the same corpus (the CPU comparison)")
    parser.add_argument("--phase-sample", type=int, default=2000, help="messages in the phases-alone sample")
    parser.add_argument("--prep-workers", type=int, default=os.cpu_count() or 1, help="processes preparing documents")
    parser.add_argument("--preload-limit-mb", type=int, default=3000,
                        help="prepared JSON up to this size is loaded into memory before the raw bulk is timed; "
                             "larger is streamed from disk (default 3000)")
    parser.add_argument("--no-spamassassin", action="store_true")
    parser.add_argument("--corpus-dir", type=Path, default=None)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds allowed per ingest")
    parser.add_argument("--stall-seconds", type=float, default=300, help="give up when nothing moves for this long")
    parser.add_argument("--wait-services", type=float, default=900,
                        help="seconds to wait for a service that is down before a run (default 900)")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    parser.add_argument("--name", default=None, help="results file stem (default <date>-scale-out)")
    parser.add_argument("--render", type=Path, default=None, metavar="RESULTS.json", help="only re-render the .md from a results file")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="RESULTS.json",
                        help="only combine the sizes of several results files into one (named by --name) and render it")
    parser.add_argument("--drop", nargs="+", default=None, metavar="TAG",
                        help="only delete what a --keep run left: schema, bucket and indices of each pvbench-... tag")
    return parser


class Terminated(BaseException):
    """SIGTERM/SIGHUP: unwind like Ctrl-C, so the finally blocks stop our processes and drop the namespace."""


def _terminate(signum, _frame) -> None:  # type: ignore[no-untyped-def]
    raise Terminated(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    if args.render:
        results = json.loads(args.render.read_text())
        results["targets"] = evaluate(results)
        args.render.with_suffix(".md").write_text(render_markdown(results))
        print(render_markdown(results))
        return 0
    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
        results = dict(parts[0])
        results["sizes_run"] = [size for part in parts for size in part["sizes_run"]]
        results["sizes"] = [size["n"] for size in results["sizes_run"]]
        results["concurrency"] = sorted({run["concurrency"] for size in results["sizes_run"] for run in size["runs"]}, reverse=True)
        results["merged_from"] = [str(path) for path in args.merge]
        results["total_seconds"] = round(sum(part.get("total_seconds") or 0 for part in parts), 1)
        results["targets"] = evaluate(results)
        stem = args.name or f"{results['date']}-{PROFILE}"
        args.results_dir.mkdir(parents=True, exist_ok=True)
        (args.results_dir / f"{stem}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
        (args.results_dir / f"{stem}.md").write_text(render_markdown(results))
        log(f"merged {len(parts)} file(s) into {args.results_dir / (stem + '.json')} and .md")
        return 0
    if args.drop:
        services = Services.from_script()
        for tag in args.drop:
            if not re.fullmatch(r"pvbench-[a-z0-9-]+", tag):
                log(f"{tag!r} is not a pvbench-... tag; left alone")
                continue
            ns = Namespace(tag=tag, schema=tag.replace("-", "_"), bucket=tag, prefix=tag, redis_db=args.redis_db,
                           database_url="", blobstore_url="", search_url="", broker_url="",
                           created={"schema": 1, "bucket": 1, "prefix": 1})
            log(f"dropped {tag}: {drop_namespace(services, ns)}")
        return 0
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    try:
        import psutil

        services = Services.from_script(args.wait_services)
        ingest.find_postvault()
    except (BenchError, ingest.BenchError, ImportError) as error:
        log(str(error))
        return 2
    today = dt.date.today().isoformat()
    results: dict = {
        "profile": PROFILE, "date": today, "seed": args.seed, "sizes": sizes, "concurrency": args.concurrency,
        "object_lock": args.object_lock, "beat": args.beat, "probe": args.probe,
        "index_batch_size": args.index_batch_size or _default_index_batch(), "import_batch_size": args.import_batch_size,
        "repeat": args.repeat, "repeat_subprocess": args.repeat_subprocess,
        "host": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                 "platform": platform.platform(), "python": platform.python_version()},
        "service_versions": service_versions(services), "code_version": ingest._code_version(),
        "queries": [q.__dict__ for q in ingest.query_set()], "sizes_run": [],
    }
    started = time.perf_counter()
    stem = args.name or f"{today}-{PROFILE}"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        try:
            results["sizes_run"].append(run_size(n, args, services))
        except (BenchError, ingest.BenchError) as error:
            log(f"N={n}: {error}")
            results["sizes_run"].append({"n": n, "error": str(error), "runs": []})
        results["total_seconds"] = round(time.perf_counter() - started, 1)
        results["targets"] = evaluate(results)
        # written after every size, so a long run leaves its results as it goes
        (args.results_dir / f"{stem}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
        (args.results_dir / f"{stem}.md").write_text(render_markdown(results))
    print(render_markdown(results))
    log(f"results in {args.results_dir / (stem + '.json')} and .md ({results.get('total_seconds')} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
