"""The fault campaign (issue 45): each job run in a child process and SIGKILLed — at each named step boundary it
reports (:mod:`coldcopy.steps`) and at seeded random instants — then run again unarmed, then its next scheduled
run's part, then the one invariant checker (:mod:`coldcopy.testing.faults.invariants`). Seeded: the same seed
kills at the same places."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from coldcopy.testing import local_env
from coldcopy.testing.faults import invariants, kinds
from coldcopy.testing.faults.bucket import FAULTS, READ_TIMEOUT_S, FaultyBucket
from coldcopy.testing.faults.jobs import CONTEXT_ENV, JOBS, Context, Job

ROOT = Path(__file__).resolve().parents[4]
TIMEOUT_S = 600


@dataclass
class Trial:
    job: str
    kind: str  # step, instant (SIGKILLed), restart (the server), double (two runs at once), disk_full (the spool)
    target: str  # the step (name#n) or the delay
    killed: bool = False  # the first run was cut short (False: it finished before the fault fell, or got past it)
    rerun_ok: bool = False
    rerun_error: str = ""
    violations: list[str] = field(default_factory=list)
    left: int = 0  # objects and databases the checker found left behind
    injected: int = 0  # bucket faults: the requests that got one (0: the run made no matching request)
    clean_s: float = 0.0
    rerun_s: float = 0.0


class Campaign:
    def __init__(self, server: str, endpoint: str, *, seed: int, scale: int = 1,
                 restart: Callable[[], None] | None = None) -> None:
        """``restart``: restarts ``server`` (a throwaway cluster's :meth:`restart`), for the restart faults."""
        self.server, self.endpoint, self.scale, self.restart = server, endpoint, scale, restart
        self.random = random.Random(seed)
        self.secret = f"fault campaign manifests {uuid.uuid4().hex}"  # made per campaign: no secret in the repo
        self.passphrase = f"fault campaign passphrase {uuid.uuid4().hex}"
        self.pepper = f"fault campaign pepper {uuid.uuid4().hex}"
        self.templates: dict[str, str] = {}
        self.expected_schema: dict | None = None

    # the databases trials start from
    def __enter__(self) -> Campaign:
        from coldcopy.migrations import discover_migrations
        from coldcopy.migrations.runner import MigrationRunner
        from coldcopy.testing import generate_data

        stamp = uuid.uuid4().hex[:8]
        local_env.create_database(self.server, f"cc_faults_empty_{stamp}")
        generated = local_env.create_database(self.server, f"cc_faults_generated_{stamp}")
        MigrationRunner(lambda: psycopg.connect(generated)).apply_all(discover_migrations(), applied_by="faults")
        generate_data.generate(generated, scale=self.scale)
        with psycopg.connect(generated, autocommit=True) as conn:  # the summaries applied once, as in production
            from coldcopy.refresh.dispatch import refresher_for
            from coldcopy.refresh.runs import RefreshRun
            from coldcopy.refresh_schedule import REFRESH_JOBS

            for view in [v for refresh in REFRESH_JOBS.values() for v in refresh.views]:
                refresher_for(conn, view).run(RefreshRun(run_id="faults_template"))
        self.templates = {"empty": f"cc_faults_empty_{stamp}", "generated": f"cc_faults_generated_{stamp}"}
        self.expected_schema = invariants.schema(generated)
        self.proxy = FaultyBucket(self.endpoint).__enter__()  # every job's bucket: passes through until armed
        return self

    def __exit__(self, *exc) -> None:
        if hasattr(self, "proxy"):
            self.proxy.__exit__(*exc)
        for name in self.templates.values():
            local_env.drop_database(self.server, name)

    # one run of a job
    def _env(self, ctx: Context, bucket: str, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COLDCOPY_")}
        spaces = json.loads(local_env.spaces_connection(self.proxy.url, bucket))
        spaces["extra"]["config_kwargs"] = {"read_timeout": READ_TIMEOUT_S, "connect_timeout": READ_TIMEOUT_S}
        secret = lambda value: json.dumps({"conn_type": "generic", "password": value})  # noqa: E731
        env.update({CONTEXT_ENV: ctx.to_env(), "AIRFLOW_CONN_COLDCOPY_SPACES": json.dumps(spaces),
                    "AIRFLOW_CONN_COLDCOPY_DB": local_env.airflow_connection(ctx.dsn),
                    "AIRFLOW_CONN_COLDCOPY_BACKUP_KEY": secret(ctx.passphrase),
                    "AIRFLOW_CONN_COLDCOPY_MANIFEST_KEY": secret(ctx.manifest_secret),
                    "AIRFLOW_CONN_COLDCOPY_SUBJECT_PEPPER": secret(ctx.pepper), **extra})
        return env

    def start(self, job: Job, env: dict, phase: str | None = None) -> subprocess.Popen:
        args = [sys.executable, "-m", "coldcopy.testing.faults.child", job.name] + ([phase] if phase else [])
        child = subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        child.started = time.perf_counter()
        return child

    def finish(self, child: subprocess.Popen, *, delay: float | None = None) -> tuple[int, float, str]:
        """Wait for ``child`` (SIGKILLing its process group after ``delay``): exit code, seconds, stderr."""
        if delay is not None:
            try:
                child.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)  # the worker evicted: its children with it
        try:
            _, stderr = child.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            _, stderr = child.communicate()
            stderr += f"\n(timed out after {TIMEOUT_S} s)"
        return child.returncode, time.perf_counter() - child.started, stderr

    def _child(self, job: Job, env: dict, *, phase: str | None = None) -> tuple[int, float, str]:
        return self.finish(self.start(job, env, phase))

    def _setup(self, job: Job) -> tuple[Context, str, str]:
        name = f"cc_fault_{uuid.uuid4().hex[:10]}"
        dsn = local_env.create_database(self.server, name, template=self.templates[job.template])
        bucket = f"faults-{uuid.uuid4().hex[:10]}"
        self._bucket(bucket).client.create_bucket(Bucket=bucket)
        return Context(dsn, self.server, self.passphrase, self.secret, self.pepper), bucket, name

    def _bucket(self, name: str):
        """The checker's own client of bucket ``name`` (the jobs use the ``coldcopy_spaces`` connection)."""
        import boto3

        from coldcopy.object_store import Bucket

        if not hasattr(self, "_client"):
            self._client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                        aws_access_key_id="local-key-id", aws_secret_access_key="local-secret")
        return Bucket(self._client, name)

    def _teardown(self, database: str, bucket: str) -> None:
        local_env.drop_database(self.server, database)
        local_env.drop_database(self.server, f"{database}_restored")
        store = self._bucket(bucket)
        for key in store.list_keys(""):
            store.delete(key)
        for upload in store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            store.client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        store.client.delete_bucket(Bucket=bucket)

    def _prepare(self, job: Job, env: dict) -> None:
        if job.prepare is not None:
            code, _, stderr = self._child(job, env, phase="--prepare")
            if code != 0:
                raise RuntimeError(f"{job.name}: preparing a trial failed: {stderr[-2000:]}")

    def steps(self, job: Job) -> tuple[list[str], float]:
        """The step boundaries one clean run of ``job`` passes, in order (``name#n``), and its duration; the
        bucket requests it made are counted (:attr:`requests`)."""
        ctx, bucket, database = self._setup(job)
        self._prepare(job, self._env(ctx, bucket))
        with tempfile.NamedTemporaryFile("r", suffix=".steps") as trace:
            before = self.proxy.requests
            code, seconds, stderr = self._child(job, self._env(ctx, bucket, COLDCOPY_STEP_TRACE=trace.name))
            self.requests = self.proxy.requests - before
            names = trace.read().split()
        self._teardown(database, bucket)
        if code != 0:
            raise RuntimeError(f"{job.name}: a clean run failed: {stderr[-2000:]}")
        seen: dict[str, int] = {}
        ordered = []
        for name in names:
            seen[name] = seen.get(name, 0) + 1
            ordered.append(f"{name}#{seen[name]}")
        return ordered, seconds

    def trial(self, job: Job, kind: str, target: str, clean_s: float) -> Trial:
        trial = Trial(job.name, kind, target, clean_s=round(clean_s, 2))
        ctx, bucket, database = self._setup(job)
        since = datetime.now(UTC)
        spool = Path(tempfile.mkdtemp(prefix="coldcopy-trial-"))  # the worker's temporary directory, for this trial
        try:
            env = self._env(ctx, bucket, TMPDIR=str(spool))
            self._prepare(job, env)
            before = self.expected_schema if job.invariant == "schema" else invariants.reference(job.invariant,
                                                                                               ctx.dsn)
            self.injected = []
            codes, left = kinds.inflict(self, job, env, kind, target)
            trial.injected = len(self.injected)
            trial.killed = any(c != 0 for c in codes) and (kind != "bucket" or trial.injected > 0)
            if job.once and 0 in codes:  # a one-shot job (a restore) that finished: nothing for a rerun to do
                trial.rerun_ok = True
            else:
                code, trial.rerun_s, stderr = self._child(job, env)
                trial.rerun_s = round(trial.rerun_s, 2)
                trial.rerun_ok = code == 0
                trial.rerun_error = "" if trial.rerun_ok else stderr.strip().splitlines()[-1][:300] if stderr \
                    else f"exit {code}"
            if job.next_day is not None:
                self._child(job, env, phase="--next-day")
            left += [f"spool: {p.name} left in the worker's temporary directory after the rerun"
                     for p in spool.iterdir()]
            trial.violations = left + invariants.violations(job.invariant, ctx.dsn, before, self._bucket(bucket),
                                                            ctx.keyring(), self.server, since, ctx.passphrase)
            trial.left = sum(v.startswith(("bucket:", "server:", "spool:")) for v in trial.violations)
        finally:
            self._teardown(database, bucket)
            shutil.rmtree(spool, ignore_errors=True)
        return trial

    def plan(self, job: Job, steps: list[str], clean_s: float, *, extra: int, instants: int,
             others: bool = True, bucket: int = 0, faults: tuple[str, ...] = FAULTS) -> list[tuple[str, str]]:
        """Every step name's first time, ``extra`` other times drawn from the rest, ``instants`` random delays
        within a clean run's duration; and (``others``) a server restart at one, two runs at once, and for a job
        that spools, its filesystem full; for a job using the bucket, each of ``faults`` once and ``bucket`` more,
        on a request drawn from those a clean run makes (a failing minute: 20 in a row)."""
        first = [s for s in steps if s.endswith("#1")]
        rest = [s for s in steps if not s.endswith("#1")]
        chosen = first + self.random.sample(rest, min(extra, len(rest)))
        delay = lambda: f"{self.random.uniform(0.3, max(clean_s, 0.6)):.2f}s"  # noqa: E731
        planned = [("step", s) for s in chosen] + [("instant", delay()) for _ in range(instants)]
        if job.methods:
            for fault in list(faults) + [self.random.choice(FAULTS) for _ in range(bucket)]:
                method = "GET" if fault == "truncate" else self.random.choice(job.methods)
                count = 20 if fault in ("503", "slowdown") and self.random.random() < 0.3 else 1
                after = self.random.randrange(max(1, getattr(self, "requests", 1) // len(job.methods)))
                planned.append(("bucket", f"{fault} {method} {after}+{count}"))
        if others:
            planned += [("restart", delay())] if self.restart is not None else []
            planned += [("double", "two runs")] + ([("disk_full", f"{kinds.SPOOL_BYTES // 1024} kB")]
                                                   if job.spools else [])
        return planned

    def run(self, jobs: list[str] | None = None, *, extra: int = 0, instants: int = 0, others: bool = True,
            bucket: int = 0, bucket_faults: dict[str, tuple[str, ...]] | None = None, log=print) -> list[dict]:
        """``bucket_faults``: per job, the bucket's faults each tried once (every one by default)."""
        trials = []
        for name in jobs or list(JOBS):
            job = JOBS[name]
            steps, clean_s = self.steps(job)
            for kind, target in self.plan(job, steps, clean_s, extra=extra, instants=instants, others=others,
                                              bucket=bucket, faults=(bucket_faults or {}).get(name, FAULTS)):
                trial = self.trial(job, kind, target, clean_s)
                log(f"{trial.job} {trial.kind} {trial.target}: killed={trial.killed} rerun_ok={trial.rerun_ok} "
                    f"{trial.rerun_error} violations={trial.violations}")
                trials.append(asdict(trial))
        return trials
