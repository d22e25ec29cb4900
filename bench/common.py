"""What every benchmark shares, so each script measures only its own subject.

* :func:`template_database` — a migrated database filled by ``generate_data`` at one scale, built once and kept
  as a template (keyed by the migrations, the generator and the day, since the data is dated from today);
  :func:`bench_database` clones it per measurement and drops the clone afterwards. The generator's time is
  kept with the template (:func:`generator_seconds`).
* :func:`spread` — min / median / max of a noisy figure; :func:`alternating` — runs the variants in turn,
  changing which goes first every round, so no variant is always second.
* :class:`PeakRss` — peak resident memory of a whole process tree (the process and every child it starts),
  sampled while it runs.
* :func:`s3_endpoint` — moto's S3 server in a process of its own (as a real endpoint is elsewhere: in-process
  it would take the measured code's CPU and GIL).
* :func:`write_results` — ``bench/results/<name>.json`` with the settings the figures came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

import psutil  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from coldcopy import manifests  # noqa: E402
from coldcopy.testing import generate_data, local_env  # noqa: E402

KEYRING = manifests.Keyring.from_secret("bench manifest signing secret, 32+ characters")
PEPPER = "bench subject pepper, 32+ characters"
PASSPHRASE = "bench archive passphrase"


def _data_fingerprint() -> str:
    digest = hashlib.sha256(datetime.now(UTC).strftime("%Y-%m-%d").encode())
    generator = ROOT / "plugins" / "coldcopy" / "testing" / "generate_data.py"
    for path in sorted((ROOT / "sql" / "migrations").glob("*.sql")) + [generator]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


def template_database(server: str, scale: int) -> str:
    """Name of the template database at ``scale``, built (migrated + generated) if this day has none yet."""
    name = f"cc_bench_tpl_s{scale}_{_data_fingerprint()}"
    with psycopg.connect(server, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        stale = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s",
                             (f"cc_bench_tpl_s{scale}_%", name)).fetchall()
    for (old,) in stale:
        local_env.drop_database(server, old)
    if exists:
        return name
    from coldcopy.migrations import discover_migrations
    from coldcopy.migrations.runner import MigrationRunner

    building = f"{name}_building"
    dsn = local_env.create_database(server, building, replace=True)
    MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="bench")
    started = time.perf_counter()
    counts = generate_data.generate(dsn, scale=scale)
    seconds = time.perf_counter() - started
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building), sql.Identifier(name)))
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(name), sql.Literal(json.dumps({"generate_s": round(seconds, 1), "counts": counts}))))
    return name


def template_info(server: str, scale: int) -> dict:
    """``{"generate_s": …, "counts": {…}}`` recorded when the template at ``scale`` was built."""
    name = template_database(server, scale)
    with psycopg.connect(server) as conn:
        comment = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                               (name,)).fetchone()[0]
    return json.loads(comment)


@contextmanager
def live_stack(server: str, label: str, connections: dict[str, str], **stack_options) -> Iterator:
    """A live Airflow stack (:class:`~coldcopy.testing.airflow_stack.AirflowStack`, metadata in a throwaway
    database ``cc_airflow_<label>``, a home in a scratch directory, its own port), started; yields it and stops
    it and drops its metadata afterwards, however the bench ended."""
    import tempfile

    from coldcopy.testing.airflow_stack import AirflowStack

    name = f"cc_airflow_{label}"
    with tempfile.TemporaryDirectory() as scratch:
        metadata = local_env.create_database(server, name, replace=True)
        stack = AirflowStack(Path(scratch) / "home", metadata, connections, port=local_env.free_port(),
                             **stack_options)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()
            local_env.drop_database(server, name)


@contextmanager
def scratch_database(server: str, label: str, template: str | None = None) -> Iterator[str]:
    """A new database (a copy of ``template``, or empty); yields its DSN and drops it afterwards."""
    name = f"cc_bench_{label}_{os.getpid()}"
    dsn = local_env.create_database(server, name, template=template, replace=True)
    try:
        yield dsn
    finally:
        local_env.drop_database(server, name)


def bench_database(server: str, scale: int, label: str):
    """A fresh copy of the template at ``scale`` (:func:`scratch_database`)."""
    return scratch_database(server, f"{label}_s{scale}", template_database(server, scale))


def copy_of(server: str, dsn: str, label: str = "copy"):
    """A fresh copy of ``dsn``'s database (:func:`scratch_database`)."""
    return scratch_database(server, label, psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])


def spaces_bucket(endpoint: str, name: str):
    """The ``coldcopy_spaces`` connection's bucket, pointed at ``endpoint``, with bucket ``name`` created."""
    from coldcopy.object_store import Bucket

    os.environ["AIRFLOW_CONN_COLDCOPY_SPACES"] = local_env.spaces_connection(endpoint, name)
    bucket = Bucket.from_connection()
    if name not in [b["Name"] for b in bucket.client.list_buckets()["Buckets"]]:
        bucket.client.create_bucket(Bucket=name)
    return bucket


@contextmanager
def s3_endpoint() -> Iterator[str]:
    """URL of moto's S3 server running in its own process for the duration."""
    import subprocess

    port = local_env.free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if local_env.port_in_use(port):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


def spread(values: list[float], digits: int = 2) -> dict:
    ordered = sorted(values)
    return {"min": round(ordered[0], digits), "median": round(statistics.median(ordered), digits),
            "max": round(ordered[-1], digits), "runs": len(ordered),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], digits)}


def alternating(runs: int, variants: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """``runs`` rounds of every variant; the order is reversed every other round."""
    names = list(variants)
    results: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(runs):
        for name in names if round_number % 2 == 0 else reversed(names):
            results[name].append(variants[name]())
    return results


class PeakRss:
    """Peak summed RSS of a process and all its descendants, sampled every ``interval_s`` in a thread.

    ``with PeakRss(pid) as peak: …`` then ``peak.mb``; children that start and end between two samples are
    missed, so the interval is short and the figure a lower bound.
    """

    def __init__(self, pid: int | None = None, interval_s: float = 0.02) -> None:
        self.root = psutil.Process(pid or os.getpid())
        self.interval_s, self.peak = interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return round(self.peak / 2**20, 1)


def peak_rss_of_call(module: str, function: str, *args) -> tuple[float, float]:
    """Run ``bench/<module>.<function>(*args)`` in a fresh interpreter; returns (seconds, peak tree RSS MB)."""
    import subprocess

    code = f"import bench.{module} as m; m.{function}(*{args!r})"
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code],
                               cwd=ROOT)
    with PeakRss(process.pid) as peak:
        if process.wait():
            raise RuntimeError(f"{module}.{function}{args!r} failed with exit code {process.returncode}")
    return time.perf_counter() - started, peak.mb


def machine(dsn: str) -> dict:
    with psycopg.connect(dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    return {"cores": os.cpu_count(), "python": platform.python_version(), "postgresql": version.split()[0]}


def write_results(name: str, settings: dict, results: dict, dsn: str, *, echo: bool = True) -> dict:
    summary = {"settings": settings, "machine": machine(dsn), **results}
    (RESULTS / f"{name}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if echo:
        print(json.dumps(summary, indent=2, default=str))
    return summary


def load_results(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())
