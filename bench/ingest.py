"""Ingest-to-searchable and search latency: postvault (embedded profile) against notmuch and mu.

    .venv/bin/python bench/ingest.py                         # sizes 10000,100000, seed 42
    .venv/bin/python bench/ingest.py --sizes 2000 --repeat 5  # smoke run
    .venv/bin/python bench/ingest.py --only notmuch,mu --keep

For each size N, on one maildir from bench/corpus.py (built or taken from its cache):

(a) ``postvault import <maildir>`` into a fresh data dir, timed from start until
    ``postvault status --json`` reports backlog 0 ("import to searchable"); peak RSS of
    the process tree sampled every 100 ms (sum over the tree and the largest process);
(b) ``notmuch new`` with a fresh config whose database lives outside the maildir;
(c) ``mu init`` + ``mu index`` with a fresh ``--muhome``;
(d) search latency for a fixed query set expressed in each tool's syntax, each query
    ``--repeat`` times after a warm-up: postvault as a subprocess and in-process (API and
    backend), notmuch as a subprocess and through its Python bindings (if importable),
    mu as a subprocess; p50 and p95 in ms;
(e) peak RSS across sizes.

Results: a table on stdout and ``bench/results/<date>-<profile>.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import corpus  # noqa: E402

TOOLS = ("postvault", "notmuch", "mu")
SAMPLE_INTERVAL = 0.1
RSS_LIMIT_BYTES = 500 * 1024 * 1024
RSS_GROWTH_TOLERANCE = 1.20  # "not growing": peak at the largest size <= 1.2 x peak at the smallest
INGEST_TARGET_VS_MU = 1.5


# ---------------------------------------------------------------------------------------
# The query set


@dataclass(frozen=True)
class Query:
    name: str
    what: str
    postvault: str
    notmuch: str | None
    mu: str | None


def query_set() -> list[Query]:
    frequent_sender = corpus.SENDERS[0].address
    other_sender = corpus.SENDERS[1].address
    recipient = corpus.RECIPIENTS[3].address
    phrase = " ".join(corpus.PHRASE)
    return [
        Query("word-broad", "frequent body word", corpus.BROAD_WORD, corpus.BROAD_WORD, corpus.BROAD_WORD),
        Query("word-rare", "planted in ~1/5000 bodies", corpus.RARE_WORD, corpus.RARE_WORD, corpus.RARE_WORD),
        Query("phrase", "3-word phrase, ~1/100 bodies", f'"{phrase}"', f'"{phrase}"', f'"{phrase}"'),
        Query("from", "most frequent sender", f"from:{frequent_sender}", f"from:{frequent_sender}",
              f"from:{frequent_sender}"),
        Query("to", "one recipient", f"to:{recipient}", f"to:{recipient}", f"to:{recipient}"),
        Query("subject", "subject word", "subject:invoice", "subject:invoice", "subject:invoice"),
        Query("date-range", "first half of 2020 (UTC)", "after:2019-12-31 before:2020-07-01",
              "date:2020-01-01..2020-06-30", "date:20200101..20200630"),
        Query("boolean", "(A OR B) AND NOT C", "(budget OR forecast) AND NOT draft",
              "(budget OR forecast) AND NOT draft", "(budget OR forecast) AND NOT draft"),
        Query("has-attachment", "attachment presence", "has:attachment", "tag:attachment", "flag:attach"),
        Query("prefix", "word prefix", "budg*", "budg*", "budg*"),
        Query("non-ascii", "German word (subjects, bodies)", "Büromöbel", "Büromöbel", "Büromöbel"),
        Query("combined", "sender + attachment + date", f"from:{other_sender} has:attachment after:2019-12-31",
              f"from:{other_sender} AND tag:attachment AND date:2020-01-01..",
              f"from:{other_sender} AND flag:attach AND date:20200101.."),
        # postvault only: notmuch and mu do not index attachment text out of the box
        Query("attachment-text", "word only inside PDF/DOCX text", corpus.ATTACHMENT_WORD, None, None),
    ]


# ---------------------------------------------------------------------------------------
# Tools


class BenchError(RuntimeError):
    pass


def _apt_install(packages: list[str], *, optional: bool = False) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        if optional:
            return
        raise BenchError(f"missing {' '.join(packages)}: run `sudo apt-get install -y {' '.join(packages)}` "
                         "(this script installs them itself only when it runs as root on Debian/Ubuntu)")
    print(f"bench: apt-get install {' '.join(packages)}", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=not optional, env=env, stdout=subprocess.DEVNULL)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env, stdout=subprocess.DEVNULL)
    if done.returncode != 0 and not optional:
        raise BenchError(f"apt-get install {' '.join(packages)} failed (exit {done.returncode})")


def find_postvault() -> tuple[str, str]:
    """(postvault executable, python that can import postvault)."""
    venv = REPO / ".venv" / "bin"
    exe = venv / "postvault"
    if exe.exists():
        python = venv / "python"
        return str(exe), str(python)
    found = shutil.which("postvault")
    if not found:
        raise BenchError("postvault is not installed: run ./scripts/test once (or `pip install -e .[bench]`)")
    return found, sys.executable


def ensure_tools(only: list[str]) -> dict[str, str]:
    tools: dict[str, str] = {}
    if "postvault" in only:
        exe, python = find_postvault()
        helptext = subprocess.run([exe, "--help"], capture_output=True, text=True, env=_clean_env()).stdout
        if not re.search(r"\bimport\b", helptext):
            raise BenchError("this postvault has no `import` command yet")
        tools["postvault"], tools["postvault_python"] = exe, python
    if "notmuch" in only or "mu" in only:
        missing = [pkg for tool, pkg in (("notmuch", "notmuch"), ("mu", "maildir-utils"))
                   if tool in only and not shutil.which(tool)]
        if missing:
            _apt_install(missing)
    if "notmuch" in only:
        tools["notmuch"] = shutil.which("notmuch") or ""
        system_python = "/usr/bin/python3"
        ok = Path(system_python).exists() and subprocess.run(
            [system_python, "-c", "import notmuch2"], capture_output=True).returncode == 0
        if not ok and Path(system_python).exists():
            _apt_install(["python3-notmuch2"], optional=True)
            ok = subprocess.run([system_python, "-c", "import notmuch2"], capture_output=True).returncode == 0
        if ok:
            tools["notmuch_python"] = system_python
    if "mu" in only:
        tools["mu"] = shutil.which("mu") or ""
    for name in ("notmuch", "mu"):
        if name in only and not tools.get(name):
            raise BenchError(f"{name} is still missing after the install attempt")
    return tools


def tool_versions(tools: dict[str, str]) -> dict[str, str]:
    out = {}
    if "notmuch" in tools:
        out["notmuch"] = subprocess.run([tools["notmuch"], "--version"], capture_output=True, text=True).stdout.strip()
    if "mu" in tools:
        out["mu"] = subprocess.run([tools["mu"], "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    if "postvault" in tools:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        tantivy = subprocess.run([tools["postvault_python"], "-c",
                                  "import importlib.metadata as m; print(m.version('tantivy'))"],
                                 capture_output=True, text=True).stdout.strip()
        out["postvault"] = f"git {rev.stdout.strip() or '?'}{' (modified tree)' if dirty else ''}; tantivy {tantivy}"
    return out


def _code_version() -> str:
    """HEAD plus a short hash of uncommitted changes to postvault's Python sources."""
    import hashlib

    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    digest = hashlib.sha256()
    for package in ("postvault", "archiver", "indexer", "search_ui", "retention", "storage"):
        for path in sorted((REPO / package).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return f"{head.stdout.strip() or '?'}+src:{digest.hexdigest()[:10]}"


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without postvault/notmuch settings that would point elsewhere."""
    # PYTHONDONTWRITEBYTECODE too: an installed postvault has its bytecode cached (pip
    # compiles site-packages; the editable checkout compiles on the warm-up run), and
    # without the cache every command-line call recompiles postvault's own modules.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("POSTVAULT_") and k not in ("NOTMUCH_CONFIG", "MUHOME", "PYTHONDONTWRITEBYTECODE")}
    if "POSTVAULT_CACHE" in os.environ:
        env["POSTVAULT_CACHE"] = os.environ["POSTVAULT_CACHE"]
    env["TZ"] = "UTC"  # date ranges mean UTC days in every tool
    env.setdefault("LANG", "C.UTF-8")
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------
# Measuring a process tree


@dataclass
class Measured:
    argv: list[str]
    returncode: int
    seconds: float
    peak_rss_tree: int = 0  # max over samples of the sum of RSS over the tree (shared pages counted twice)
    peak_rss_single: int = 0  # max over samples of the largest single process
    peak_pss_tree: int = 0  # max over samples of the sum of PSS (shared pages split): the honest total
    # max over samples of the sum of anonymous memory (RSS minus file-backed pages): the heap a
    # process needs. RSS also counts the pages of mmapped index files a process has read
    # (tantivy, Xapian and mu's stores all read their index through mmap), which the kernel
    # can drop at any time and which grow with the index, not with the process's needs.
    peak_anon_tree: int = 0
    peak_file_mapped_single: int = 0  # the most file-backed (mmapped index) RSS any one process held
    max_processes: int = 0
    samples: int = 0
    timeline: list[tuple[float, int, int]] = field(default_factory=list)  # (s, rss tree MB, processes)
    stdout: str = ""
    stderr: str = ""
    cpu_seconds: float = 0.0  # user + system of the child and every descendant it reaped
    cpu_seconds_sampled: float = 0.0  # sum over sampled processes of their last-seen CPU time (a cross-check)
    ru_maxrss: int = 0  # getrusage max RSS: the largest single process among them
    loadavg_before: float = 0.0
    loadavg_after: float = 0.0


def run_measured(argv: list[str], *, env: dict[str, str], cwd: Path, log_dir: Path, label: str,
                 timeout: float) -> Measured:
    import psutil

    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{label}.stdout", log_dir / f"{label}.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        result = Measured(argv=argv, returncode=-1, seconds=0.0, loadavg_before=load_before)
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            root = None
        tick = 0
        next_timeline = 0.0
        cpu_seen: dict[int, float] = {}  # last CPU time seen per process (children that exit unreaped still count)
        rusage = None
        while True:
            # wait4 (not poll) so the child's CPU time and max RSS, with its reaped children's, come back
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                rusage = usage
                break
            now = time.perf_counter() - started
            if now > timeout:
                _kill_tree(proc.pid)
                os.waitpid(proc.pid, 0)
                raise BenchError(f"{label}: still running after {timeout:.0f}s; killed (see {log_dir})")
            if root is not None:
                try:
                    members = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    members = []
                rss_sum = rss_max = pss_sum = anon_sum = file_max = 0
                alive = 0
                for member in members:
                    try:
                        times = member.cpu_times()
                        cpu_seen[member.pid] = times.user + times.system
                    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                        pass
                want_pss = tick % 5 == 0
                for member in members:
                    try:
                        if want_pss:
                            info = member.memory_full_info()
                            pss_sum += getattr(info, "pss", info.rss)
                            rss = info.rss
                        else:
                            info = member.memory_info()
                            rss = info.rss
                    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                        continue
                    alive += 1
                    rss_sum += rss
                    # On Linux psutil's "shared" is RssFile + RssShmem, so the rest is anonymous.
                    anon_sum += rss - info.shared
                    file_max = max(file_max, info.shared)
                    rss_max = max(rss_max, rss)
                result.peak_rss_tree = max(result.peak_rss_tree, rss_sum)
                result.peak_rss_single = max(result.peak_rss_single, rss_max)
                result.peak_pss_tree = max(result.peak_pss_tree, pss_sum)
                result.peak_anon_tree = max(result.peak_anon_tree, anon_sum)
                result.peak_file_mapped_single = max(result.peak_file_mapped_single, file_max)
                result.max_processes = max(result.max_processes, alive)
                result.samples += 1
                if now >= next_timeline:
                    result.timeline.append((round(now, 1), rss_sum // 2**20, alive))
                    next_timeline = now + 1.0
            tick += 1
            time.sleep(SAMPLE_INTERVAL)
        result.seconds = time.perf_counter() - started
        result.returncode = proc.returncode
        if rusage is not None:
            result.cpu_seconds = round(rusage.ru_utime + rusage.ru_stime, 2)
            result.ru_maxrss = rusage.ru_maxrss * 1024
        result.loadavg_after = os.getloadavg()[0]
        result.cpu_seconds_sampled = round(sum(cpu_seen.values()), 2)
    result.stdout = out_path.read_text(errors="replace")
    result.stderr = err_path.read_text(errors="replace")
    if len(result.timeline) > 600:
        step = len(result.timeline) // 600 + 1
        result.timeline = result.timeline[::step]
    return result


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        parent = psutil.Process(pid)
        for child in parent.children(recursive=True):
            child.kill()
        parent.kill()
    except psutil.NoSuchProcess:
        pass


def warm_page_cache(maildir: Path) -> float:
    """Read every message once so no tool pays for a cold cache the others do not."""
    started = time.perf_counter()
    buf = bytearray(1 << 20)
    for entry in os.scandir(maildir / "cur"):
        with open(entry.path, "rb", buffering=0) as handle:
            while handle.readinto(buf):
                pass
    return time.perf_counter() - started


def du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


# ---------------------------------------------------------------------------------------
# Ingest


# POSTVAULT_* settings given with --postvault-setting, for the import and the searches alike.
POSTVAULT_SETTINGS: dict[str, str] = {}


def ingest_postvault(tools: dict, maildir: Path, work: Path, expected: int, timeout: float) -> dict:
    data = work / "postvault-data"
    env = _clean_env(POSTVAULT_DATA_DIR=str(data), **POSTVAULT_SETTINGS)
    exe = tools["postvault"]
    refusals = work / "postvault-refusals.jsonl"
    argv = [exe, "import", str(maildir), "--refusals-file", str(refusals)]
    started = time.perf_counter()
    run = run_measured(argv, env=env, cwd=work, log_dir=work / "logs", label="postvault-import", timeout=timeout)
    import_exit = time.perf_counter() - started
    out: dict = {"command": " ".join(argv), "returncode": run.returncode, "import_command_seconds": round(import_exit, 2),
                 **_measured_facts(run), "stdout_tail": _tail(run.stdout), "stderr_tail": _tail(run.stderr)}
    out.update(_parse_import_output(run.stdout))
    if run.returncode != 0:
        out["error"] = f"postvault import exited {run.returncode}"
    # Poll until the index backlog is empty; the import normally drains it before exiting.
    status = None
    searchable = None
    last_backlog = None
    last_progress = time.perf_counter()
    polls = 0
    while time.perf_counter() - started < timeout:
        poll_started = time.perf_counter() - started
        done = subprocess.run([exe, "status", "--json"], env=env, cwd=work, capture_output=True, text=True)
        polls += 1
        try:
            status = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            out["error"] = f"postvault status --json gave no JSON (exit {done.returncode}): {_tail(done.stderr)}"
            break
        backlog = status.get("backlog")
        if backlog == 0:
            # Searchable no later than this poll started; if the first poll already says 0,
            # that is the moment the import command returned.
            searchable = import_exit if polls == 1 else poll_started
            break
        if backlog != last_backlog:
            last_backlog, last_progress = backlog, time.perf_counter()
        elif time.perf_counter() - last_progress > 120:
            out["error"] = f"index backlog stuck at {backlog} for 120 s after the import (nothing drains it?)"
            break
        time.sleep(1.0)
    out["status"] = status
    out["status_polls"] = polls
    if searchable is not None:
        out["searchable_seconds"] = round(searchable, 2)
        archived = (status or {}).get("messages") or 0
        out["messages"] = archived
        out["msgs_per_s"] = round(expected / searchable, 1) if searchable else None
        indexed = (status or {}).get("indexed")
        if isinstance(indexed, int) and indexed < archived:
            out.setdefault("warnings", []).append(f"index holds {indexed} documents for {archived} messages")
        if archived < expected:
            out.setdefault("warnings", []).append(
                f"{expected - archived} of {expected} files not in the archive as separate messages "
                f"(duplicates: {out.get('duplicates')}, refused: {out.get('refused')})")
        if (status or {}).get("failing"):
            out.setdefault("warnings", []).append(f"{status['failing']} failing to index: {status.get('last_error')}")
    if refusals.exists():
        lines = refusals.read_text(errors="replace").splitlines()
        out["refusals_sample"] = lines[:10]
    out["msgs_per_cpu_s"] = round(expected / out["cpu_seconds"], 1) if out.get("cpu_seconds") else None
    out["data_dir_bytes"] = du(data)
    out["index_bytes"] = du(data / "index") if (data / "index").exists() else None
    out["data_dir"] = str(data)
    out["env"] = {"POSTVAULT_DATA_DIR": str(data), **POSTVAULT_SETTINGS}
    out["settings"] = dict(POSTVAULT_SETTINGS)
    return out


def _parse_import_output(text: str) -> dict:
    facts: dict = {}
    patterns = {
        "archived": r"archived \(new\)\s*[│|]\s*([\d,]+)",
        "duplicates": r"already in the archive\s*[│|]\s*([\d,]+)",
        "refused": r"refused \(not archived\)\s*[│|]\s*([\d,]+)",
        "archive_phase_seconds": r"[│|]\s*time\s*[│|]\s*([\d,.]+) s",
        "archive_phase_rate": r"[│|]\s*rate\s*[│|]\s*([\d,.]+) messages/s",
        "indexed_by_import": r"Indexed ([\d,]+) message",
        "index_failed": r"Indexed [\d,]+ message\(s\); ([\d,]+) failed",
    }
    for key, pattern in patterns.items():
        match = re.search(pattern, text)
        if match:
            value = match.group(1).replace(",", "")
            facts[key] = float(value) if "." in value else int(value)
    return facts


def ingest_notmuch(tools: dict, maildir: Path, work: Path, expected: int, timeout: float) -> dict:
    home = work / "notmuch"
    (home / "db").mkdir(parents=True, exist_ok=True)
    config = home / "config"
    # database.path outside the maildir (mail_root): notmuch writes nothing into the corpus.
    config.write_text(
        "[database]\n"
        f"path={home / 'db'}\n"
        f"mail_root={maildir}\n"
        "[new]\ntags=\nignore=.complete;.building\n"
        "[maildir]\nsynchronize_flags=false\n"
        "[search]\nexclude_tags=\n"
        "[user]\nname=Bench\nprimary_email=bench@example.org\n"
    )
    env = _clean_env(NOTMUCH_CONFIG=str(config))
    run = run_measured([tools["notmuch"], "new"], env=env, cwd=work, log_dir=work / "logs", label="notmuch-new",
                       timeout=timeout)
    out: dict = {"command": "notmuch new", "returncode": run.returncode, "seconds": round(run.seconds, 2),
                 **_measured_facts(run), "stdout_tail": _tail(run.stdout), "stderr_tail": _tail(run.stderr)}
    count = subprocess.run([tools["notmuch"], "count", "*"], env=env, capture_output=True, text=True)
    out["messages"] = int(count.stdout.strip() or 0) if count.returncode == 0 else None
    out["msgs_per_s"] = round(expected / run.seconds, 1) if run.seconds else None
    if run.returncode != 0:
        out["error"] = f"notmuch new exited {run.returncode}"
    out["msgs_per_cpu_s"] = round(expected / out["cpu_seconds"], 1) if out.get("cpu_seconds") else None
    out["index_bytes"] = du(home / "db")
    out["config"] = str(config)
    out["env"] = {"NOTMUCH_CONFIG": str(config)}
    return out


def ingest_mu(tools: dict, maildir: Path, work: Path, expected: int, timeout: float) -> dict:
    home = work / "mu"
    home.mkdir(parents=True, exist_ok=True)
    env = _clean_env()
    init = run_measured([tools["mu"], "init", f"--maildir={maildir}", f"--muhome={home}"], env=env, cwd=work,
                        log_dir=work / "logs", label="mu-init", timeout=timeout)
    index = run_measured([tools["mu"], "index", f"--muhome={home}"], env=env, cwd=work, log_dir=work / "logs",
                         label="mu-index", timeout=timeout)
    seconds = init.seconds + index.seconds
    out: dict = {"command": "mu init + mu index", "returncode": init.returncode or index.returncode,
                 "seconds": round(seconds, 2), "init_seconds": round(init.seconds, 2),
                 "index_seconds": round(index.seconds, 2), **_measured_facts(init, index),
                 "stdout_tail": _tail(index.stdout), "stderr_tail": _tail(index.stderr + init.stderr)}
    match = re.findall(r"updated/new:\s*(\d+)", index.stdout + index.stderr)
    out["messages_processed"] = int(match[-1]) if match else None
    count = subprocess.run([tools["mu"], "find", f"--muhome={home}", "--fields=i", "--maxnum=1000000", ""],
                           env=env, capture_output=True, text=True)
    out["messages"] = len(count.stdout.splitlines()) if count.returncode == 0 else None
    out["msgs_per_s"] = round(expected / seconds, 1) if seconds else None
    if out["returncode"] != 0:
        out["error"] = f"mu exited {out['returncode']}"
    out["msgs_per_cpu_s"] = round(expected / out["cpu_seconds"], 1) if out.get("cpu_seconds") else None
    out["index_bytes"] = du(home)
    out["muhome"] = str(home)
    return out


def _measured_facts(*runs: Measured) -> dict:
    return {
        "peak_rss_tree": max(r.peak_rss_tree for r in runs), "peak_rss_single": max(r.peak_rss_single for r in runs),
        "peak_pss_tree": max(r.peak_pss_tree for r in runs), "max_processes": max(r.max_processes for r in runs),
        "peak_anon_tree": max(r.peak_anon_tree for r in runs),
        "peak_file_mapped_single": max(r.peak_file_mapped_single for r in runs),
        "ru_maxrss": max(r.ru_maxrss for r in runs), "cpu_seconds": round(sum(max(r.cpu_seconds, r.cpu_seconds_sampled) for r in runs), 2),
        "cpu_seconds_rusage": round(sum(r.cpu_seconds for r in runs), 2),
        "cpu_seconds_sampled": round(sum(r.cpu_seconds_sampled for r in runs), 2),
        "loadavg_before": round(runs[0].loadavg_before, 2), "loadavg_after": round(runs[-1].loadavg_after, 2),
        "rss_timeline": runs[-1].timeline,
    }


def _tail(text: str, lines: int = 15) -> str:
    # rich progress output may contain carriage returns; keep the last lines that say something
    kept = [line.rstrip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


# ---------------------------------------------------------------------------------------
# Search latency


def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _summary(samples: list[float], hits=None, total=None, error=None) -> dict:
    return {"p50_ms": _r(percentile(samples, 0.50)), "p95_ms": _r(percentile(samples, 0.95)),
            "mean_ms": _r(statistics.fmean(samples)) if samples else None, "n": len(samples),
            "hits": hits, "total": total, "error": error, "samples_ms": [round(s, 3) for s in samples]}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def time_subprocess(argv_for, queries: list[tuple[str, str]], *, env: dict, cwd: Path, repeat: int,
                    ok_codes=(0,), count_lines=True) -> dict:
    results = {}
    for name, query in queries:
        argv = argv_for(query)
        samples: list[float] = []
        error = None
        hits = None
        for i in range(repeat + 1):  # the first run is a warm-up
            started = time.perf_counter()
            done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
            elapsed = (time.perf_counter() - started) * 1000.0
            if done.returncode not in ok_codes:
                error = f"exit {done.returncode}: {_tail(done.stderr, 3)}"
                break
            if i:
                samples.append(elapsed)
            hits = len([line for line in done.stdout.splitlines() if line.strip()]) if count_lines else None
        results[name] = _summary(samples, hits=hits, error=error)
    return results


def time_worker(python: str, which: str, queries: list[tuple[str, str]], *, env: dict, cwd: Path, repeat: int,
                config: str | None = None) -> dict:
    request = {"queries": queries, "repeat": repeat, "warmup": 1, "limit": 20, "config": config}
    done = subprocess.run([python, str(BENCH / "_search_worker.py"), which], input=json.dumps(request), env=env,
                          cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"{which} in-process search failed (exit {done.returncode}): {_tail(done.stderr, 8)}")
    raw = json.loads(done.stdout)
    modes = {}
    for mode, per_query in raw["modes"].items():
        modes[mode] = {name: _summary(r["samples_ms"], hits=r["hits"], total=r["total"], error=r["error"])
                       for name, r in per_query.items()}
    return {"modes": modes, "open_ms": raw.get("open_ms")}


def hit_counts(tools: dict, queries: list[Query], ingest: dict, work: Path) -> dict:
    """Total matches per query per tool (messages), to spot a tool that finds nothing."""
    counts: dict = {}
    if "notmuch" in ingest and "env" in ingest["notmuch"]:
        env = _clean_env(**ingest["notmuch"]["env"])
        for q in queries:
            if q.notmuch is None:
                continue
            done = subprocess.run([tools["notmuch"], "count", q.notmuch], env=env, capture_output=True, text=True)
            counts.setdefault(q.name, {})["notmuch"] = int(done.stdout.strip()) if done.returncode == 0 else None
    if "mu" in ingest and "muhome" in ingest["mu"]:
        for q in queries:
            if q.mu is None:
                continue
            done = subprocess.run([tools["mu"], "find", f"--muhome={ingest['mu']['muhome']}", "--fields=i",
                                   "--maxnum=1000000", q.mu], env=_clean_env(), capture_output=True, text=True)
            counts.setdefault(q.name, {})["mu"] = (len(done.stdout.splitlines()) if done.returncode == 0
                                                   else 0 if done.returncode in (2, 4) else None)
    return counts


def search_latency(tools: dict, queries: list[Query], ingest: dict, work: Path, repeat: int,
                   repeat_subprocess: int) -> dict:
    out: dict = {"modes": {}, "open_ms": {}}
    pv = ingest.get("postvault")
    if pv and pv.get("searchable_seconds") is not None:
        env = _clean_env(**pv["env"])
        pv_queries = [(q.name, q.postvault) for q in queries]
        print("bench:   postvault search (subprocess)", file=sys.stderr, flush=True)
        out["modes"]["postvault cli"] = time_subprocess(
            lambda q: [tools["postvault"], "search", "--all", "--json", "--limit", "20", q], pv_queries, env=env,
            cwd=work, repeat=repeat_subprocess)
        print("bench:   postvault search (in-process)", file=sys.stderr, flush=True)
        try:
            worker = time_worker(tools["postvault_python"], "postvault", pv_queries, env=env, cwd=work, repeat=repeat)
            out["modes"]["postvault api"] = worker["modes"]["api"]
            out["modes"]["postvault backend"] = worker["modes"]["backend"]
            out["open_ms"]["postvault"] = worker["open_ms"]
        except BenchError as error:
            out.setdefault("errors", []).append(str(error))
    nm = ingest.get("notmuch")
    if nm and nm.get("returncode") == 0:
        env = _clean_env(**nm["env"])
        nm_queries = [(q.name, q.notmuch) for q in queries if q.notmuch is not None]
        print("bench:   notmuch search (subprocess)", file=sys.stderr, flush=True)
        out["modes"]["notmuch cli"] = time_subprocess(
            lambda q: [tools["notmuch"], "search", "--limit=20", q], nm_queries, env=env, cwd=work,
            repeat=repeat_subprocess)
        if tools.get("notmuch_python"):
            print("bench:   notmuch search (bindings)", file=sys.stderr, flush=True)
            try:
                worker = time_worker(tools["notmuch_python"], "notmuch", nm_queries, env=env, cwd=work, repeat=repeat,
                                     config=nm["config"])
                out["modes"]["notmuch bindings"] = worker["modes"]["bindings"]
                out["open_ms"]["notmuch"] = worker["open_ms"]
            except BenchError as error:
                out.setdefault("errors", []).append(str(error))
    mu = ingest.get("mu")
    if mu and mu.get("returncode") == 0:
        mu_queries = [(q.name, q.mu) for q in queries if q.mu is not None]
        print("bench:   mu find (subprocess)", file=sys.stderr, flush=True)
        out["modes"]["mu cli"] = time_subprocess(
            lambda q: [tools["mu"], "find", f"--muhome={mu['muhome']}", "--maxnum=20", "--sortfield=date", "--reverse",
                       "--fields=d f s", q], mu_queries, env=_clean_env(), cwd=work, repeat=repeat_subprocess,
            ok_codes=(0, 2, 4))  # mu exits non-zero when nothing matches
    # Start-up floor of each CLI: what every subprocess sample pays before it searches anything.
    startup = {}
    for label, argv in (("postvault --help", [tools.get("postvault"), "--help"]),
                        ("notmuch --version", [tools.get("notmuch"), "--version"]),
                        ("mu --version", [tools.get("mu"), "--version"])):
        if argv[0] and label.split()[0] in ingest:
            samples = []
            for i in range(6):
                started = time.perf_counter()
                subprocess.run(argv, env=_clean_env(), cwd=work, capture_output=True)
                if i:
                    samples.append((time.perf_counter() - started) * 1000.0)
            startup[label] = _r(percentile(samples, 0.5))
    out["startup_p50_ms"] = startup
    out["hit_counts"] = hit_counts(tools, queries, ingest, work)
    for name, per_query in out["modes"].items():
        comparable = [q.name for q in queries if q.notmuch is not None]
        pooled = [s for qn, r in per_query.items() if qn in comparable for s in r["samples_ms"]]
        out.setdefault("pooled", {})[name] = {"p50_ms": _r(percentile(pooled, 0.5)),
                                              "p95_ms": _r(percentile(pooled, 0.95)), "n": len(pooled)}
    return out


# ---------------------------------------------------------------------------------------
# One size


def run_size(n: int | str, args, tools: dict, only: list[str]) -> dict:
    """One corpus, every tool: ``n`` a size of the generated corpus, or "spamassassin"."""
    if n == corpus.SPAM_ASSASSIN_CORPUS:
        maildir = corpus.ensure_spam_assassin_corpus(args.corpus_dir)
    else:
        maildir = corpus.ensure_corpus(int(n), args.seed, args.corpus_dir, spamassassin=not args.no_spamassassin)
    info = corpus.corpus_info(maildir)
    files = sum(1 for _ in os.scandir(maildir / "cur"))
    label = _label(n)
    print(f"bench: N={label}: {maildir} ({info['bytes'] / 1e6:,.0f} MB, {files:,} files)", file=sys.stderr, flush=True)
    base = Path(args.work_dir or corpus.default_base_dir())
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"run-n{n}-", dir=base))
    result: dict = {"n": n, "label": label, "maildir": str(maildir), "corpus": info, "files": files, "work_dir": str(work), "ingest": {}}
    try:
        for tool, fn in (("postvault", ingest_postvault), ("notmuch", ingest_notmuch), ("mu", ingest_mu)):
            if tool not in only or (tool != "postvault" and not _peers_run_at(n, args.peer_sizes)):
                continue
            warm = warm_page_cache(maildir)
            print(f"bench: N={label}: {tool} ingest (page cache warmed in {warm:.1f}s)", file=sys.stderr, flush=True)
            code = _code_version() if tool == "postvault" else None
            try:
                result["ingest"][tool] = fn(tools, maildir, work, files, args.timeout)
                if code:
                    # the tree is an editable install: say which code this run actually ran
                    result["ingest"][tool]["code_version"] = code
                    after = _code_version()
                    if after != code:
                        result["ingest"][tool].setdefault("warnings", []).append(
                            f"postvault's source changed during the run ({code} -> {after})")
            except BenchError as error:
                result["ingest"][tool] = {"error": str(error)}
            r = result["ingest"][tool]
            secs = r.get("searchable_seconds", r.get("seconds"))
            print(f"bench: N={label}: {tool}: {secs} s, {r.get('msgs_per_s')} msg/s, peak RSS tree "
                  f"{(r.get('peak_rss_tree') or 0) / 2**20:,.0f} MB{'; ERROR ' + r['error'] if r.get('error') else ''}",
                  file=sys.stderr, flush=True)
        # The query set's planted terms and people are the generated corpus's own.
        if not args.skip_search and n != corpus.SPAM_ASSASSIN_CORPUS:
            print(f"bench: N={label}: search latency", file=sys.stderr, flush=True)
            result["search"] = search_latency(tools, query_set(), result["ingest"], work, args.repeat,
                                              args.repeat_subprocess)
    finally:
        # Removed only when the whole bench is done: ext4 skips inodes freed in the last
        # minutes when it allocates new ones, so a large tree deleted just before a run
        # makes creating every file of the next run dearer (bench/README.md, "Recently
        # deleted files"), and the tools do not create files alike.
        if not args.keep:
            _REMOVE_AT_EXIT.append(work)
    return result


_REMOVE_AT_EXIT: list[Path] = []


def _peers_run_at(n: int | str, peer_sizes: str) -> bool:
    """notmuch and mu run on the SpamAssassin corpus and on the sizes ``--peer-sizes`` names (all if empty)."""
    if not isinstance(n, int) or not peer_sizes:
        return True
    return n in {int(size.replace("_", "")) for size in peer_sizes.split(",") if size.strip()}


def _label(n: int | str) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


# ---------------------------------------------------------------------------------------
# Report


def _mb(value) -> str:
    return "–" if not value else f"{value / 2**20:,.0f}"


def _num(value, fmt="{:,.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def _ratio(a, b) -> float | None:
    return round(a / b, 2) if a and b else None


def evaluate(results: dict) -> list[dict]:
    """The targets, per size, with pass/fail."""
    targets = []
    sizes = results["runs"]
    for run in sizes:
        n = run["n"]
        pv = run["ingest"].get("postvault", {})
        mu = run["ingest"].get("mu", {})
        nm = run["ingest"].get("notmuch", {})
        ratio_mu = _ratio(pv.get("msgs_per_s"), mu.get("msgs_per_s"))
        targets.append({"n": n, "target": f"ingest-to-searchable ≥ {INGEST_TARGET_VS_MU}× mu msgs/s",
                        "value": f"{ratio_mu}×" if ratio_mu else "–",
                        "pass": None if ratio_mu is None else ratio_mu >= INGEST_TARGET_VS_MU})
        ratio_nm = _ratio(pv.get("msgs_per_s"), nm.get("msgs_per_s"))
        targets.append({"n": n, "target": "ingest-to-searchable vs notmuch (info)",
                        "value": f"{ratio_nm}×" if ratio_nm else "–", "pass": None})
        pooled = run.get("search", {}).get("pooled", {})
        for pv_mode, nm_mode in (("postvault cli", "notmuch cli"), ("postvault api", "notmuch bindings")):
            a, b = pooled.get(pv_mode, {}).get("p95_ms"), pooled.get(nm_mode, {}).get("p95_ms")
            targets.append({"n": n, "target": f"search p95 ≤ notmuch ({pv_mode} vs {nm_mode}, pooled over queries)",
                            "value": f"{a} ms vs {b} ms ({_ratio(a, b)}×)" if a and b else "–",
                            "pass": None if not (a and b) else a <= b})
        peak = pv.get("peak_rss_tree")
        targets.append({"n": n, "target": "postvault peak RSS < 500 MB (process tree, summed)",
                        "value": f"{_mb(peak)} MB (largest process {_mb(pv.get('peak_rss_single'))} MB, "
                                 f"PSS {_mb(pv.get('peak_pss_tree'))} MB)" if peak else "–",
                        "pass": None if not peak else peak < RSS_LIMIT_BYTES})
        anon = pv.get("peak_anon_tree")
        targets.append({"n": n, "target": "postvault peak anonymous memory < 500 MB (process tree, summed; RSS without mmapped index pages)",
                        "value": f"{_mb(anon)} MB (most mmapped-file RSS in one process: {_mb(pv.get('peak_file_mapped_single'))} MB)"
                                 if anon else "–",
                        "pass": None if not anon else anon < RSS_LIMIT_BYTES})
    for key, label in (("peak_rss_tree", "peak RSS"), ("peak_anon_tree", "peak anonymous memory")):
        peaks = [(run["n"], run["ingest"].get("postvault", {}).get(key)) for run in sizes if isinstance(run["n"], int)]
        peaks = [(n, p) for n, p in peaks if p]
        if len(peaks) >= 2:
            (n0, p0), (n1, p1) = peaks[0], peaks[-1]
            targets.append({"n": f"{n0}→{n1}", "target": f"{label} not growing with corpus size (≤ {RSS_GROWTH_TOLERANCE}×)",
                            "value": f"{_mb(p0)} MB → {_mb(p1)} MB ({_ratio(p1, p0)}×)",
                            "pass": p1 <= p0 * RSS_GROWTH_TOLERANCE})
    return targets


def render_markdown(results: dict) -> str:
    lines = [f"# postvault benchmark: {results['profile']} profile, {results['date']}", ""]
    host = results["host"]
    lines += [f"Host: {host['cpus']} CPUs, {host['memory_gb']} GB RAM, {host['platform']}; Python {host['python']}.",
              f"Versions: " + "; ".join(f"{k}: {v}" for k, v in results["versions"].items()) + ".",
              f"Corpus seed {results['seed']}; search repeats: {results['repeat']} in-process, "
              f"{results['repeat_subprocess']} subprocess (after one warm-up each).", ""]
    lines += ["## Targets", "", "| N | target | value | result |", "|---|---|---|---|"]
    for t in results["targets"]:
        verdict = "–" if t["pass"] is None else ("PASS" if t["pass"] else "**FAIL**")
        lines.append(f"| {t['n']} | {t['target']} | {t['value']} | {verdict} |")
    lines.append("")
    for run in results["runs"]:
        heading = (f"## N = {run['n']:,}" if isinstance(run["n"], int)
                   else f"## The {run['n']} corpus alone ({run.get('files', 0):,} messages)")
        if "corpus" not in run:
            lines += [heading, "", f"ERROR: {run.get('error')}", ""]
            continue
        c = run["corpus"]
        lines += [heading, "",
                  f"Corpus: {run['files']:,} files, {c['bytes'] / 1e6:,.0f} MB (median {c['size_p50']:,} B, "
                  f"p90 {c['size_p90']:,} B, max {c['size_max']:,} B, {c['over_100k']:,} over 100 KB; "
                  f"{c['spamassassin_messages']:,} from SpamAssassin); digest `{c['digest'][:16]}`.", "",
                  "### Ingest to searchable", "",
                  "| tool | seconds | msgs/s | CPU s | CPU ms/msg | peak RSS tree MB | largest process MB | peak PSS tree MB | peak anon tree MB | max mmapped-file MB | processes | index MB | load avg before→after | notes |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for tool in TOOLS:
            r = run["ingest"].get(tool)
            if not r:
                continue
            secs = r.get("searchable_seconds", r.get("seconds"))
            notes = []
            if tool == "postvault":
                if r.get("archive_phase_seconds") is not None:
                    notes.append(f"archive phase {r['archive_phase_seconds']} s, index phase "
                                 f"{round(r['import_command_seconds'] - r['archive_phase_seconds'], 1)} s")
                notes.append(f"archived {r.get('archived')}, duplicates {r.get('duplicates')}, refused {r.get('refused')}, "
                             f"indexed {(r.get('status') or {}).get('indexed')}")
                notes += [f"{key}={value}" for key, value in (r.get("settings") or {}).items()]
            if tool == "mu":
                notes.append(f"init {r.get('init_seconds')} s + index {r.get('index_seconds')} s; {r.get('messages')} in store")
            if tool == "notmuch":
                notes.append(f"{r.get('messages')} in database")
            notes += r.get("warnings", [])
            if r.get("error"):
                notes.append(f"ERROR: {r['error']}")
            lines.append(f"| {tool} | {_num(secs)} | {_num(r.get('msgs_per_s'), '{:,.0f}')} | {_num(r.get('cpu_seconds'))} | "
                         f"{_num(1000 / r['msgs_per_cpu_s'] if r.get('msgs_per_cpu_s') else None, '{:,.2f}')} | {_mb(r.get('peak_rss_tree'))} | "
                         f"{_mb(r.get('peak_rss_single'))} | {_mb(r.get('peak_pss_tree'))} | {_mb(r.get('peak_anon_tree'))} | "
                         f"{_mb(r.get('peak_file_mapped_single'))} | {r.get('max_processes', 1)} | "
                         f"{_mb(r.get('index_bytes'))} | {r.get('loadavg_before', '–')}→{r.get('loadavg_after', '–')} | "
                         f"{'; '.join(notes)} |")
        pv, nm, mu = (run["ingest"].get(t, {}) for t in TOOLS)
        lines += ["", f"Ratios: postvault ÷ mu msgs/s = {_num(_ratio(pv.get('msgs_per_s'), mu.get('msgs_per_s')), '{}')}; "
                      f"postvault ÷ notmuch msgs/s = {_num(_ratio(pv.get('msgs_per_s'), nm.get('msgs_per_s')), '{}')}.", ""]
        search = run.get("search")
        if search:
            modes = list(search["modes"])
            lines += ["### Search latency (ms, p50 / p95)", "",
                      "| query | " + " | ".join(modes) + " | hits: postvault / notmuch / mu |",
                      "|---|" + "---:|" * len(modes) + "---|"]
            for q in query_set():
                cells = []
                for mode in modes:
                    r = search["modes"][mode].get(q.name)
                    if r is None:
                        cells.append("n/a")
                    elif r.get("error"):
                        cells.append("error")
                    else:
                        cells.append(f"{_num(r['p50_ms'])} / {_num(r['p95_ms'])}")
                pv_total = (search["modes"].get("postvault api", {}).get(q.name) or {}).get("total")
                counts = search.get("hit_counts", {}).get(q.name, {})
                lines.append(f"| {q.name} | " + " | ".join(cells) +
                             f" | {_num(pv_total, '{:,}')} / {_num(counts.get('notmuch'), '{:,}')} / {_num(counts.get('mu'), '{:,}')} |")
            pooled = search.get("pooled", {})
            lines.append("| **pooled (comparable queries)** | " + " | ".join(
                f"**{_num(pooled.get(m, {}).get('p50_ms'))} / {_num(pooled.get(m, {}).get('p95_ms'))}**" for m in modes) + " | |")
            ratio_cli = _ratio(pooled.get("postvault cli", {}).get("p95_ms"), pooled.get("notmuch cli", {}).get("p95_ms"))
            ratio_api = _ratio(pooled.get("postvault api", {}).get("p95_ms"), pooled.get("notmuch bindings", {}).get("p95_ms"))
            lines += ["", f"p95 ratios: postvault cli ÷ notmuch cli = {_num(ratio_cli, '{}')}; "
                          f"postvault api ÷ notmuch bindings = {_num(ratio_api, '{}')}.", ""]
            if search.get("startup_p50_ms"):
                lines += ["CLI start-up floor (p50, no search): " + "; ".join(
                    f"`{k}` {v} ms" for k, v in search["startup_p50_ms"].items()) + ".", ""]
            errors = [f"{mode} {name}: {r['error']}" for mode, per in search["modes"].items()
                      for name, r in per.items() if r.get("error")] + search.get("errors", [])
            if errors:
                lines += ["Search errors:", ""] + [f"- {e}" for e in errors] + [""]
    lines += ["## Queries", "", "| name | what | postvault | notmuch | mu |", "|---|---|---|---|---|"]
    for q in query_set():
        lines.append(f"| {q.name} | {q.what} | `{q.postvault}` | {f'`{q.notmuch}`' if q.notmuch else 'n/a'} | "
                     f"{f'`{q.mu}`' if q.mu else 'n/a'} |")
    lines += ["", "See bench/README.md for what is measured and the caveats.", ""]
    return "\n".join(lines)


def print_table(results: dict) -> None:
    try:
        from rich.console import Console
        from rich.markdown import Markdown

        Console(width=200).print(Markdown(render_markdown(results)))
    except ImportError:
        print(render_markdown(results))


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    # The scale-out profile (PostgreSQL, S3, OpenSearch, Celery) has options of its own: bench/scale_out.py.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--profile", default="embedded")
    if pre.parse_known_args(argv)[0].profile == "scale-out":
        # Run as its own program, not imported: scale_out imports this module for the query
        # set and the measuring helpers, and the two must not import each other.
        args = sys.argv[1:] if argv is None else argv
        os.execv(sys.executable, [sys.executable, str(BENCH / "scale_out.py"), *args])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated corpus sizes (default 10000,100000)")
    parser.add_argument("--corpus", default="generated",
                        help="comma-separated: generated (the --sizes corpora, default) and/or spamassassin "
                             "(the 6,046 SpamAssassin messages alone, one run, run first)")
    parser.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    parser.add_argument("--only", default=",".join(TOOLS), help="comma-separated subset of postvault,notmuch,mu")
    parser.add_argument("--peer-sizes", default="", metavar="N,...",
                        help="run notmuch and mu only at these sizes (default: every size); postvault runs at all")
    parser.add_argument("--profile", default="embedded", choices=("embedded", "scale-out"),
                        help="embedded (default; this help) or scale-out: see `--profile scale-out --help`")
    parser.add_argument("--keep", action="store_true", help="keep each run's data dirs (postvault, notmuch, mu)")
    parser.add_argument("--repeat", type=int, default=20, help="timed repeats per query, in-process modes")
    parser.add_argument("--repeat-subprocess", type=int, default=10, help="timed repeats per query, subprocess modes")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--no-spamassassin", action="store_true", help="generated messages only")
    parser.add_argument("--corpus-dir", type=Path, default=None, help="corpus cache (default $POSTVAULT_BENCH_DIR or /tmp/postvault-bench)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where runs write their data (default: the same)")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds allowed per ingest")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    parser.add_argument("--name", default=None, help="results file stem (default <date>-<profile>)")
    parser.add_argument("--render", type=Path, default=None, metavar="RESULTS.json",
                        help="only re-render the tables (and the .md beside it) from a results file")
    parser.add_argument("--postvault-setting", action="append", default=[], metavar="POSTVAULT_KEY=VALUE",
                        help="a postvault setting for its import and searches, e.g. POSTVAULT_EXTRACTION_MEMO_BYTES=0 (repeatable)")
    args = parser.parse_args(argv)
    for setting in args.postvault_setting:
        key, _, value = setting.partition("=")
        if not key.startswith("POSTVAULT_") or not _:
            parser.error(f"--postvault-setting wants POSTVAULT_KEY=VALUE, not {setting!r}")
        POSTVAULT_SETTINGS[key] = value
    if args.render:
        results = json.loads(args.render.read_text())
        results["targets"] = evaluate(results)
        args.render.with_suffix(".md").write_text(render_markdown(results))
        print_table(results)
        return 0

    if args.profile != "embedded":
        parser.error("--profile scale-out is not implemented yet (PostgreSQL + S3 + OpenSearch + Celery comes later)")
    only = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = sorted(set(only) - set(TOOLS))
    if unknown:
        parser.error(f"--only: unknown tool(s) {', '.join(unknown)}; choose from {', '.join(TOOLS)}")
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    corpora = [c.strip() for c in args.corpus.split(",") if c.strip()]
    if not corpora or set(corpora) - {"generated", corpus.SPAM_ASSASSIN_CORPUS}:
        parser.error(f"--corpus: choose generated and/or {corpus.SPAM_ASSASSIN_CORPUS}, not {args.corpus!r}")
    if "generated" not in corpora:
        sizes = []
    missing = []
    for module in ("psutil", "fpdf", "docx", "openpyxl", "PIL"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        print(f"bench: missing Python module(s) {', '.join(missing)}: run .venv/bin/pip install -e '.[bench]' "
              "and start this script with .venv/bin/python", file=sys.stderr)
        return 2
    try:
        tools = ensure_tools(only)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2

    import psutil

    today = dt.date.today().isoformat()
    results: dict = {
        "profile": args.profile, "date": today, "seed": args.seed, "sizes": sizes, "only": only,
        "repeat": args.repeat, "repeat_subprocess": args.repeat_subprocess,
        "host": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                 "platform": platform.platform(), "python": platform.python_version()},
        "versions": tool_versions(tools), "queries": [asdict(q) for q in query_set()], "runs": [],
    }
    started = time.perf_counter()
    try:
        runs = ([corpus.SPAM_ASSASSIN_CORPUS] if corpus.SPAM_ASSASSIN_CORPUS in corpora else []) + sizes
        for n in runs:
            try:
                results["runs"].append(run_size(n, args, tools, only))
            except BenchError as error:
                print(f"bench: N={n}: {error}", file=sys.stderr)
                results["runs"].append({"n": n, "error": str(error), "ingest": {}})
    finally:
        for work in _REMOVE_AT_EXIT:
            shutil.rmtree(work, ignore_errors=True)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["targets"] = evaluate(results)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"{today}-{args.profile}"
    (args.results_dir / f"{stem}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (args.results_dir / f"{stem}.md").write_text(render_markdown(results))
    print_table(results)
    print(f"bench: results in {args.results_dir / (stem + '.json')} and .md ({results['total_seconds']} s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
