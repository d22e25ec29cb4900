"""The exit sentinel (issue 41, 9): the supervisor's last end-of-file comes only once the task process can be
reaped, so its one exit check after it never misses and sleeps out ``min_heartbeat_interval``. Played here as
Airflow's supervisor plays it: a socket on the task's fds 0–2, read to EOF, then one ``waitpid(WNOHANG)``."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time

from coldcopy import exit_sentinel


def a_task(with_sentinel: bool, threads: int = 0) -> tuple[int, socket.socket]:
    """A child whose fds 0–2 are one end of a socket pair (as the supervisor's task process), ending at once."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            for fd in (0, 1, 2):
                os.dup2(theirs.fileno(), fd)
            theirs.close()
            if with_sentinel:
                exit_sentinel.start()
            for _ in range(threads):  # a task's threads (a backup's pipeline, a partition's gzip) outlive main's exit
                threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
            time.sleep(0.15)  # the task runs on: its sentinel is up and waiting before it ends
            ballast = bytearray(8 << 20)  # memory to unmap: a task's exit takes a moment
            del ballast
        finally:
            os._exit(0)
    theirs.close()
    return pid, ours


def reaped_at_eof(with_sentinel: bool, threads: int = 0) -> bool:
    pid, sock = a_task(with_sentinel, threads)
    try:
        while True:
            select.select([sock], [], [], 10)
            if not sock.recv(4096):
                break
        done, _ = os.waitpid(pid, os.WNOHANG)  # the supervisor's one check after the last EOF
        if not done:
            os.waitpid(pid, 0)
        return done == pid
    finally:
        sock.close()


def test_a_process_not_under_a_supervisor_gets_no_sentinel():
    """``dag.test()``, the demo, a shell: fds 0–2 are no sockets, and no process is forked."""
    probe = "from coldcopy import exit_sentinel; print(exit_sentinel.supervised(), exit_sentinel.start())"
    ran = subprocess.run([sys.executable, "-c", probe], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         check=True)
    assert ran.stdout.split() == ["False", "None"]


def test_the_last_eof_comes_once_the_task_can_be_reaped_and_no_sentinel_outlives_its_task():
    """Without the sentinel the same check found the task still running after its last EOF in 56 of 100 tries on
    this machine (the supervisor then sleeps out min_heartbeat_interval); with it, never — threads included (a
    sentinel killed by PR_SET_PDEATHSIG when the main thread exited missed 20 of 60 with one thread left)."""
    assert all(reaped_at_eof(with_sentinel=True) for _ in range(20))
    assert all(reaped_at_eof(with_sentinel=True, threads=2) for _ in range(20))  # every thread gone first
    time.sleep(0.2)
    mine = str(os.getpid())
    orphans = [p for p in os.listdir("/proc") if p.isdigit() and _parent_of(p) == mine]
    assert orphans == []  # every sentinel died with its task (none left as this process's child)


def _parent_of(pid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[1]
    except OSError:
        return None
