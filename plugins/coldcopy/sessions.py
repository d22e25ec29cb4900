"""What the running task has on the server (backends) and as child processes, so ``on_kill`` can stop it.

A task killed from the UI (or past its ``execution_timeout``) must not leave its REFRESH, VACUUM FULL,
REINDEX, COPY or pg_dump running on the server until ``statement_timeout``. Every connection the hook
opens and every child process we start is recorded here; :func:`stop_all` cancels the backends (only if
the pid still belongs to the same backend: pids are reused) and kills the children.

Children stay in the task's process group, so a supervisor that kills the group reaches them too.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading

log = logging.getLogger(__name__)

_lock = threading.Lock()
_backends: dict[int, object] = {}  # backend pid -> its backend_start (identifies it despite pid reuse)
_children: list[subprocess.Popen] = []
_client_names: set[str] = set()  # application_name of each client program's connection
_counter = 0


def track_connection(conn) -> None:
    """Record the backend of a just-opened psycopg connection."""
    pid, started = conn.execute(
        "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
    if not conn.autocommit:
        conn.rollback()  # leave the connection as it came: no transaction opened by us
    with _lock:
        _backends[pid] = started


def client_application_name(program: str) -> str:
    """A unique ``application_name`` for a client program's connection: killing the program does not end a
    backend that is waiting (for a lock, say), so :func:`stop_all` terminates backends by this name."""
    global _counter
    with _lock:
        _counter += 1
        name = f"coldcopy:{program}:{os.getpid()}:{_counter}"
        _client_names.add(name)
    return name


def popen(argv: list[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` whose process :func:`stop_all` kills."""
    process = subprocess.Popen(argv, **kwargs)
    with _lock:
        _children[:] = [p for p in _children if p.poll() is None] + [process]
    return process


def stop_all(dsn: str) -> tuple[int, int]:
    """Kill the recorded child processes and cancel the recorded backends still running (over a new
    connection to ``dsn``); returns ``(backends cancelled, children killed)``."""
    import psycopg

    with _lock:
        children, backends, client_names = list(_children), dict(_backends), sorted(_client_names)
    killed = 0
    for process in children:
        if process.poll() is None:
            process.kill()
            killed += 1
    cancelled = 0
    if backends or client_names:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            cancelled += conn.execute(
                "SELECT count(*) FILTER (WHERE CASE WHEN pid <> pg_backend_pid() THEN pg_terminate_backend(pid) END) "
                "FROM pg_stat_activity WHERE application_name = ANY(%s)", (client_names,)).fetchone()[0]
            for pid, started in backends.items():
                # pg_terminate_backend: a cancelled query inside a long transaction (REPEATABLE READ export,
                # the backup's snapshot) would otherwise leave the session and its snapshot behind.
                # CASE, not AND: the planner may evaluate WHERE conditions in any order.
                cancelled += conn.execute(
                    "SELECT count(*) FILTER (WHERE CASE WHEN backend_start = %s AND pid <> pg_backend_pid() "
                    "THEN pg_terminate_backend(pid) END) FROM pg_stat_activity WHERE pid = %s",
                    (started, pid)).fetchone()[0]
    for process in children:
        process.wait()
    log.warning("on_kill: %d backend(s) terminated, %d child process(es) killed", cancelled, killed)
    return cancelled, killed
