"""The fault campaign (issue 45): the step markers are off and free unless armed, kill at the named step when armed;
the invariant checker finds what a fault leaves (a row lost, an object without its manifest, an upload left open,
a scratch database open to PUBLIC, an INVALID index); and a seeded sample of the campaign — every named step
boundary of every job killed once, and a random instant each — finds no violation."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime

import psycopg
import pytest

from coldcopy import scratch
from coldcopy.testing import local_env, servers
from coldcopy.testing.faults import JOBS, Campaign, invariants

pytestmark = pytest.mark.integration

STEP = "import coldcopy.steps as s; s.step('demo.first'); s.step('demo.second'); s.step('demo.second'); print('done')"


def _run(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COLDCOPY_")}
    return subprocess.run([sys.executable, "-c", STEP], env={**clean, **env}, capture_output=True, text=True,
                          timeout=60)


def test_a_step_does_nothing_unless_armed_and_kills_where_armed(tmp_path):
    assert _run().stdout.strip() == "done"
    trace = tmp_path / "steps"
    assert _run(COLDCOPY_STEP_TRACE=str(trace)).returncode == 0
    assert trace.read_text().split() == ["demo.first", "demo.second", "demo.second"]
    assert _run(COLDCOPY_KILL_AT="demo.second#2").returncode == -9  # the second time, not the first
    assert _run(COLDCOPY_KILL_AT="demo.third").stdout.strip() == "done"


@pytest.fixture(scope="module")
def cluster():
    cluster = servers.ThrowawayCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def campaign(cluster, s3_endpoint):
    with Campaign(cluster.dsn, s3_endpoint.url, seed=45, restart=cluster.restart) as campaign:
        yield campaign


def test_the_checker_finds_what_a_fault_leaves(campaign, cluster):
    """Each planted leftover is a violation: the checker could fail."""
    job = JOBS["backup"]
    ctx, bucket_name, database = campaign._setup(job)
    since = datetime.now(UTC)
    try:
        before = invariants.reference("rows", ctx.dsn)
        bucket = campaign._bucket(bucket_name)
        assert invariants.violations("rows", ctx.dsn, before, bucket, ctx.keyring(), cluster.dsn, since) == []
        with psycopg.connect(ctx.dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM public.leads WHERE id = (SELECT id FROM public.leads ORDER BY id LIMIT 1)")
            conn.execute("CREATE TABLE public.fault_t (v int); INSERT INTO public.fault_t VALUES (1), (1)")
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("CREATE UNIQUE INDEX CONCURRENTLY fault_once ON public.fault_t (v)")
        bucket.put("backups/daily/2026/12/08/x-20261208T000000Z.dump.zst.gpg", b"orphan")
        bucket.client.create_multipart_upload(Bucket=bucket_name, Key="archive/email_events/2025/01/x.csv.gz.gpg")
        with psycopg.connect(cluster.dsn, autocommit=True) as admin:
            scratch.create(admin, "coldcopy_verify_planted", "verify")
            admin.execute("GRANT CONNECT ON DATABASE coldcopy_verify_planted TO PUBLIC")
        found = invariants.violations("rows", ctx.dsn, before, bucket, ctx.keyring(), cluster.dsn, since)
        assert any(v.startswith("rows: public.leads") for v in found), found
        assert any("has no manifest" in v for v in found), found
        assert any("left open" in v for v in found), found
        assert any("open to PUBLIC" in v for v in found), found
        assert any("INVALID index" in v for v in found), found
    finally:
        campaign._teardown(database, bucket_name)
        local_env.drop_database(cluster.dsn, "coldcopy_verify_planted")


def test_a_seeded_sample_of_the_campaign_finds_no_violation(campaign):
    """Every named step boundary of the first five jobs killed once, a random instant, a server restart and two runs
    at once each, the backup's spool filesystem full, three of the bucket's faults; for the later jobs their most
    telling boundary and a bucket fault. Each rerun finishes the job and the checker finds nothing (``make bench``
    runs the whole campaign, every boundary of every job: bench/faults.py; tests/faults/test_bucket.py has each
    bucket fault)."""
    first = ["backup", "partition_rotation", "refresh", "gdpr", "migrations"]
    faults = {"backup": ("reset",), "partition_rotation": ("truncate",), "gdpr": ("503",)}
    trials = campaign.run(first, extra=0, instants=1, bucket_faults=faults, log=lambda line: None)
    for job, kind, target in (("gdpr_retention", "step", "gdpr_retention.manifest_written#1"),
                              ("restore", "step", "restore.renamed#1"),
                              ("maintenance", "step", "maintenance.reindex#1"),
                              ("refresh_rebuild", "step", "refresh.applied#2"),
                              ("gdpr_retention", "bucket", "slowdown * 0+20")):
        trials.append(asdict(campaign.trial(JOBS[job], kind, target, clean_s=1.0)))
    assert {t["kind"] for t in trials} == {"step", "instant", "restart", "double", "disk_full", "bucket"}
    assert {t["job"] for t in trials} == set(JOBS)
    bucket = [t for t in trials if t["kind"] == "bucket"]
    assert sum(t["injected"] > 0 for t in bucket) >= 3, bucket  # the faults fell on requests the jobs made
    killed_steps = {t["target"].split("#")[0] for t in trials if t["kind"] == "step" and t["killed"]}
    assert {"backup.manifest_written", "partition.detached", "migration.part_ran", "refresh.applied",
            "gdpr.rows_erased", "gdpr_retention.manifest_written", "restore.renamed", "maintenance.reindex"} <= \
        killed_steps, killed_steps
    bad = [(t["job"], t["kind"], t["target"], t["rerun_error"], t["violations"]) for t in trials
           if not t["rerun_ok"] or t["violations"]]
    assert bad == [], bad
