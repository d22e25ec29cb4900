"""A finished task reported at once, not up to ``[workers] min_heartbeat_interval`` later (issue 41, 9).

Airflow's supervisor learns that a task process ended by reading its sockets (stdin, stdout, stderr: the task
process's fds 0–2) until each is closed, then checking once whether the process has exited
(``supervisor.py`` ``_monitor_subprocess``). The kernel closes a process's descriptors *before* it becomes a
zombie, so that check can fall in between; with no socket left to wait on, the supervisor then sleeps out
``min_heartbeat_interval`` (1 s here, 5 s by default) with the task — and its pool slot — still "running".
``bench/skips.py`` measured it: 5 of 12 refresh skips took 1.3 s instead of 0.3 s.

The sentinel closes that gap: at the start of every supervised task (:func:`on_starting`, a listener the
plugin registers) the task process forks a tiny child that holds copies of fds 0–2 and nothing else, and that
the kernel kills when the task process dies (``PR_SET_PDEATHSIG``, sent as the process is made a zombie). The
supervisor's last end-of-file then comes from the sentinel's death, after the task process can be reaped, and
its exit check finds it. Linux only; a task not under a supervisor (sockets on 0–2), such as ``dag.test()``,
gets none. Nothing else changes: the sentinel reads and writes nothing, and dies with its task however that
ends (a SIGKILL included).
"""

from __future__ import annotations

import ctypes
import os
import signal
import stat
import sys

from airflow.listeners import hookimpl

PR_SET_PDEATHSIG = 1


def supervised() -> bool:
    """Whether this process's fds 0–2 are the supervisor's sockets (a task process under Airflow's supervisor)."""
    try:
        return all(stat.S_ISSOCK(os.fstat(fd).st_mode) for fd in (0, 1, 2))
    except OSError:
        return False


def start() -> int | None:
    """Fork the sentinel of this process; returns its pid (None where it does not apply)."""
    if not sys.platform.startswith("linux") or not supervised():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:  # the sentinel: nothing but fds 0–2, until its task process dies
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the task died before the signal was armed
            os._exit(0)
        os.closerange(3, 1 << 16)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(number, signal.SIG_IGN)  # the task's own handlers are not the sentinel's
        while True:
            signal.pause()
    finally:
        os._exit(0)


@hookimpl
def on_starting(component) -> None:
    """In a task process (Airflow calls this with a ``TaskRunnerMarker`` there), start its sentinel."""
    if type(component).__name__ == "TaskRunnerMarker":
        start()
