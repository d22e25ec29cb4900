"""Named step boundaries (issue 45): every point where a job changes state calls :func:`step` with the step's
name, ``<job>.<what is now done>``. In production it does nothing: the environment is read once, at import, and
with neither variable set :func:`step` returns at its first line.

The fault campaign (:mod:`coldcopy.testing.faults`) arms it in the job's own process:

* ``COLDCOPY_STEP_TRACE=<file>``: each step reached is appended to ``file`` (one name per line) — the job lists
  its own boundaries by running once;
* ``COLDCOPY_KILL_AT=<name>`` or ``<name>#<n>``: at that step (its ``n``-th time), the process — and its whole
  process group when it leads one (pg_dump, zstd, gpg with it), as an evicted worker's would — is SIGKILLed: no
  ``finally``, no ``except``, no ``on_kill`` runs.
"""

from __future__ import annotations

import os
import signal

_KILL_AT = os.environ.get("COLDCOPY_KILL_AT") or None
_TRACE = os.environ.get("COLDCOPY_STEP_TRACE") or None
_seen: dict[str, int] = {}


def step(name: str) -> None:
    """The job has just finished ``name`` (a state change another run would find)."""
    if _KILL_AT is None and _TRACE is None:
        return
    count = _seen[name] = _seen.get(name, 0) + 1
    if _TRACE is not None:
        fd = os.open(_TRACE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{name}\n".encode())
        finally:
            os.close(fd)
    if _KILL_AT in (name, f"{name}#{count}"):
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
