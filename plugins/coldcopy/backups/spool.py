"""The private spool a restore works in, which a killed task leaves no plaintext in.

A parallel restore needs the decrypted dump as a seekable file (``pg_restore --jobs``). Named, it outlived a
task killed with SIGKILL (Airflow's kill after the grace period, the OOM killer, a lost node: no ``finally``
runs), readable by anyone who can read the disk, with no key. So the plaintext goes into a file that has no
name from the start (:func:`nameless`: ``O_TMPFILE``, else a file unlinked while still empty): the kernel
frees it when the last process holding it exits, whatever kills them. pg_restore and its workers reach it
through ``/proc/self/fd/<n>`` (the descriptor is handed down; each worker's open of that path is a file
position of its own, as with a named file).

What else a restore writes (the bound ciphertext, the ``-L`` list, a schema-only dump) goes into a work
directory of its own (:func:`workdir`), held with a lock for the restore's life; every restore first sweeps the
work directories whose lock nobody holds any more (:func:`sweep`): those of killed tasks. Directories of an
older release (``tmp…/restore.dump``: named plaintext) are swept once older than a task may run.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "coldcopy-restore-"
LOCK = ".lock"
LEGACY_AFTER_S = 6 * 3600  # coldcopy.scratch.DEFAULT_TTL: no task of an older release runs longer
_UNLOCKED_GRACE_S = 60  # a directory made a moment ago, not locked yet


@contextmanager
def workdir(directory: str | None = None) -> Iterator[Path]:
    """A private work directory in ``directory`` (the system's temporary directory by default), locked while
    in use and removed on exit; the stale ones are swept first."""
    base = Path(directory or tempfile.gettempdir())
    sweep(base)
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    lock = os.open(path / f"{LOCK}.new", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.rename(path / f"{LOCK}.new", path / LOCK)  # a sweep finds the lock only once it is held
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(lock)


def nameless(directory: Path) -> int:
    """A read-write descriptor of a new, empty file in ``directory`` that no name leads to (closed by the
    caller; its space is freed when every process holding it has closed it)."""
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except (AttributeError, OSError):  # a filesystem without O_TMPFILE: named only while it is empty
        fd, name = tempfile.mkstemp(dir=directory)
        os.unlink(name)
        return fd



@contextmanager
def plaintext(directory: Path | None) -> Iterator[int | None]:
    """A :func:`nameless` file in ``directory``, its descriptor closed on exit; ``None`` without a directory."""
    fd = None if directory is None else nameless(directory)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)

def path_of(fd: int) -> str:
    """What a process that holds ``fd`` (this one, or a child it was handed to) opens it by."""
    return f"/proc/self/fd/{fd}"


def sweep(base: Path, *, now: float | None = None) -> list[str]:
    """Remove the work directories in ``base`` whose task is gone (their lock is free), and an older release's
    directories holding a named plaintext dump, once older than :data:`LEGACY_AFTER_S`; returns their names."""
    now = now or time.time()
    swept = []
    for entry in sorted(base.glob(f"{PREFIX}*")):
        try:
            lock = os.open(entry / LOCK, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            stale = _age(entry, now) > _UNLOCKED_GRACE_S  # killed between making it and locking it
        except OSError:
            continue
        else:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                stale = True
            except BlockingIOError:
                stale = False  # its task is running
            finally:
                os.close(lock)
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            swept.append(entry.name)
    for dump in base.glob("tmp*/restore.dump"):  # named plaintext of an older release
        if _age(dump, now) > LEGACY_AFTER_S:
            shutil.rmtree(dump.parent, ignore_errors=True)
            swept.append(dump.parent.name)
    if swept:
        log.warning("swept the spool %s of what killed restores left: %s", base, ", ".join(swept))
    return swept


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
