"""A restore killed with SIGKILL leaves no plaintext in the spool (issue 40, 5), and what it leaves is swept.

Before: the parallel restore decrypted the whole dump into ``<spool>/tmp…/restore.dump``; a task killed while
pg_restore ran on it (Airflow's kill after the grace period, OOM, node loss) left it there, readable with no
key, and nothing swept the spool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coldcopy.backups import BackupRunner, spool
from tests.backups.test_parallel_restore import every_row
from tests.conftest import KEYRING, MANIFEST_SECRET, ROOT

RESTORE = """
import sys
from coldcopy import manifests
from coldcopy.backups import BackupRunner
from coldcopy.object_store import Bucket
key, target, spool_dir, passphrase, secret = sys.argv[1:]
runner = BackupRunner(target, Bucket.from_connection(), passphrase, spool_dir=spool_dir,
                      keyring=manifests.Keyring.from_secret(secret))
runner.restore(key, target, jobs=2)
"""


def descendants(pid: int) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found.append((child, (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ")
                              .decode(errors="replace")))
            except OSError:
                continue
            todo.append(child)
    return found


def plaintext_dumps(directory: Path) -> list[Path]:
    """Every file under ``directory`` that starts as a custom-format archive does."""
    found = []
    for path in directory.rglob("*"):
        try:
            if path.is_file() and path.open("rb").read(5) == b"PGDMP":
                found.append(path)
        except OSError:
            continue
    return found


def test_a_restore_killed_mid_way_leaves_no_plaintext_and_the_next_one_sweeps(generated_db, new_database, spaces,
                                                                              backup_key, tmp_path):
    runner = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING)
    key = runner.backup().object_key
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    # Under load the restore may finish between seeing pg_restore and the kill, or be killed in its very last
    # instants, its work directory already removed by its own cleanup (a killed task with nothing left: seen on
    # CI): either way nothing was interrupted mid-way, so try again.
    for _ in range(5):
        task = subprocess.Popen([sys.executable, "-c", RESTORE, key, new_database(), str(spool_dir), backup_key,
                                 MANIFEST_SECRET], cwd=ROOT, start_new_session=True, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while not any("pg_restore" in line for _, line in descendants(task.pid)):  # decrypted: pg_restore reads
                assert task.poll() is None, task.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "no pg_restore started"
                time.sleep(0.01)
            os.kill(task.pid, signal.SIGKILL)  # the task: no finally, no atexit
            task.wait()
            assert plaintext_dumps(spool_dir) == []
        finally:
            try:
                os.killpg(task.pid, signal.SIGKILL)  # what it started, as the worker's end of the task would
            except ProcessLookupError:
                pass
        time.sleep(0.2)
        if task.returncode == -signal.SIGKILL and any(spool_dir.iterdir()):
            break
    assert task.returncode == -signal.SIGKILL, "the restore finished before it could be killed, five times"
    assert plaintext_dumps(spool_dir) == []
    left = sorted(p.name for p in spool_dir.iterdir())
    assert left and all(name.startswith(spool.PREFIX) for name in left), left  # the killed task's work directory

    restored = new_database()
    runner = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING, spool_dir=str(spool_dir))
    runner.restore(key, restored, jobs=2)  # through /proc/self/fd: pg_restore --jobs reads the nameless file
    rows, source = every_row(restored), every_row(generated_db)
    source["coldcopy_ops.backup_log"] = rows["coldcopy_ops.backup_log"] = []  # the backup's row came after it
    assert runner.timings["offsets"] >= 20 and rows == source
    assert list(spool_dir.iterdir()) == []  # the killed task's directory swept, its own removed


def test_the_sweep_leaves_a_running_restores_directory_and_takes_an_old_releases_plaintext(tmp_path):
    with spool.workdir(str(tmp_path)) as running:
        (running / "restore.list").write_text("1; 2 3 TABLE public t postgres\n")
        legacy = tmp_path / "tmpabc123"
        legacy.mkdir()
        (legacy / "restore.dump").write_bytes(b"PGDMP plaintext of an older release")
        assert spool.sweep(tmp_path) == []  # the legacy file is recent: its task may still run
        os.utime(legacy / "restore.dump", (0, time.time() - spool.LEGACY_AFTER_S - 1))
        assert spool.sweep(tmp_path) == ["tmpabc123"] and running.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="Linux")
def test_the_plaintext_file_has_no_name(tmp_path):
    fd = spool.nameless(tmp_path)
    try:
        os.write(fd, b"PGDMP")
        assert list(tmp_path.iterdir()) == [] and Path(spool.path_of(fd)).read_bytes() == b"PGDMP"
    finally:
        os.close(fd)
