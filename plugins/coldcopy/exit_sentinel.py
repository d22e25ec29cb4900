"""A finished task reported at once, not up to ``[workers] min_heartbeat_interval`` later (issue 41, 9).

Airflow's supervisor learns that a task process ended by reading its sockets (stdin, stdout, stderr: the task
process's fds 0–2) until each is closed, then checking once whether the process has exited
(``supervisor.py`` ``_monitor_subprocess``). The kernel closes a process's descriptors *before* it becomes a
zombie, so that check can fall in between; with no socket left to wait on, the supervisor then sleeps out
``min_heartbeat_interval`` (1 s here, 5 s by default) with the task — and its pool slot — still "running".
``bench/skips.py`` measured it: 5 of 12 refresh skips took 1.3 s instead of 0.3 s.

The sentinel closes that gap: at the start of every supervised task (:func:`on_starting`, a listener the
plugin registers) the task process starts a tiny process that holds copies of fds 0–2, a pidfd of the task and
nothing else, and that exits once the pidfd says the task has exited — all its threads, so it can be reaped. The
supervisor's last end-of-file then comes from the sentinel's exit, and its exit check finds the task. The
sentinel is a fresh interpreter (``exec``), so it keeps none of the task's memory; it ignores the signals a task
handles, and dies with a process-group SIGKILL. Linux 5.3+ (pidfds); a process not under a supervisor (sockets on
0–2), such as ``dag.test()``, gets none. It reads and writes nothing.
"""

from __future__ import annotations

import os
import signal
import stat
import sys

from airflow.listeners import hookimpl

# waits for the task's pidfd (fd 3) to say it exited, then exits: its fds 0–2 close after the task's
SENTINEL = "import select; select.select([3], [], [])  # coldcopy exit sentinel"


def supervised() -> bool:
    """Whether this process's fds 0–2 are the supervisor's sockets (a task process under Airflow's supervisor)."""
    try:
        return all(stat.S_ISSOCK(os.fstat(fd).st_mode) for fd in (0, 1, 2))
    except OSError:
        return False


def start() -> int | None:
    """Start the sentinel of this process; returns its pid (None where it does not apply)."""
    if not sys.platform.startswith("linux") or not supervised():
        return None
    try:
        task = os.pidfd_open(os.getpid())  # readable once the whole process has exited (every thread)
    except (AttributeError, OSError):
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(task)
        return None
    if pid:
        os.close(task)
        return pid
    try:  # the sentinel: fds 0–2 and the task's pidfd, in an interpreter of its own
        if task != 3:
            os.dup2(task, 3)
        os.set_inheritable(3, True)  # pidfd_open's descriptor is close-on-exec, as dup2 onto itself leaves it
        os.closerange(4, os.sysconf("SC_OPEN_MAX"))
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(number, signal.SIG_IGN)  # kept across exec: the task's signals are not the sentinel's
        os.execv(sys.executable, [sys.executable, "-S", "-I", "-c", SENTINEL])
    finally:
        os._exit(0)


@hookimpl
def on_starting(component) -> None:
    """In a task process (Airflow calls this with a ``TaskRunnerMarker`` there), start its sentinel."""
    if type(component).__name__ == "TaskRunnerMarker":
        start()
