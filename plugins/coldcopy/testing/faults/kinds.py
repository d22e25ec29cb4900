"""The faults a trial inflicts on a job's first run (issue 45): SIGKILL at a named step or a random instant, the
database server restarted mid-run, two runs at once (a scheduler's double start after a failover), the spool's
filesystem full, the bucket failing (:mod:`coldcopy.testing.faults.bucket`). Each returns whether the run was cut
short and what it left that no later run may leave."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SPOOL_BYTES = 512 * 1024  # the full filesystem: smaller than any backup the jobs spool


def inflict(campaign, job, env: dict, kind: str, target: str) -> tuple[list[int], list[str]]:
    """The exit codes of the first run (both runs, for ``double``) and what they left that no run may leave."""
    if kind == "step":
        return [campaign.finish(campaign.start(job, {**env, "COLDCOPY_KILL_AT": target}))[0]], []
    if kind == "instant":
        return [campaign.finish(campaign.start(job, env), delay=_seconds(target))[0]], []
    if kind == "restart":
        child = campaign.start(job, env)
        time.sleep(_seconds(target))
        if child.poll() is None:
            campaign.restart()  # pg_ctl restart -m fast: every session terminated, the server back in a second
        return [campaign.finish(child)[0]], []
    if kind == "double":
        first, second = campaign.start(job, env), campaign.start(job, env)
        return [campaign.finish(first)[0], campaign.finish(second)[0]], []
    if kind == "disk_full":
        with small_filesystem() as spool:
            code = campaign.finish(campaign.start(job, {**env, "TMPDIR": str(spool)}))[0]
            left = [p.name for p in spool.iterdir()]
        return [code], [f"spool: {len(left)} file(s) left on the full filesystem: {', '.join(left[:3])}"] if left \
            else []
    if kind == "bucket":  # the bucket fails under the first run (the retry and the next run see it well again)
        campaign.proxy.arm_target(target)
        try:
            code = campaign.finish(campaign.start(job, env))[0]
        finally:
            campaign.injected = campaign.proxy.disarm()
        return [code], []
    raise ValueError(f"unknown fault kind {kind!r}")


def _seconds(target: str) -> float:
    return float(target.rstrip("s"))


@contextmanager
def small_filesystem() -> Iterator[Path]:
    """A tmpfs of :data:`SPOOL_BYTES`, mounted for the one run (the machine's root may mount; nothing is skipped
    when it cannot: the campaign fails)."""
    path = Path(tempfile.mkdtemp(prefix="coldcopy-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SPOOL_BYTES},mode=0700", "tmpfs", str(path)], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True, capture_output=True)
        os.rmdir(path)
