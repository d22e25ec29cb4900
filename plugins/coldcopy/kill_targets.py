"""What the running task has on the server (backends) and as child processes, so ``on_kill`` can stop it.

A task killed from the UI (or past its ``execution_timeout``) must not leave its REFRESH, VACUUM FULL,
REINDEX, COPY or pg_dump running on the server until ``statement_timeout``. Every connection the hook
opens and every child process we start is recorded here; :func:`stop_all` cancels the backends (only if
the pid still belongs to the same backend: pids are reused) and kills the children.

Children stay in the task's process group, so a supervisor that kills the group reaches them too.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import uuid

log = logging.getLogger(__name__)

# Writers (any thread) replace these immutable snapshots under _lock; stop_all, which runs in on_kill's signal
# handler, only reads the current snapshot and takes no lock: a handler that interrupted the very thread
# holding a lock would wait for it forever.
_lock = threading.Lock()
_backends: tuple[tuple[int, object], ...] = ()  # (backend pid, its backend_start): identifies it despite pid reuse
_children: tuple[subprocess.Popen, ...] = ()
_client_names: frozenset[str] = frozenset()  # application_name of each client program's connection
_servers: frozenset[str] = frozenset()  # DSNs of other servers a client program was started on (verification)
_counter = 0
# Unique per process, not only per pid: containers (Celery workers) reuse the same pids.
_PROCESS = uuid.uuid4().hex[:20]


def track_connection(conn) -> None:
    """Record the backend of a just-opened psycopg connection."""
    global _backends
    pid, started = conn.execute(
        "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
    if not conn.autocommit:
        conn.rollback()  # leave the connection as it came: no transaction opened by us
    with _lock:
        _backends = (*_backends, (pid, started))


def client_application_name(program: str, dsn: str | None = None) -> str:
    """A unique ``application_name`` for a client program's connection: killing the program does not end a
    backend that is waiting (for a lock, say), so :func:`stop_all` terminates backends by this name, on the
    server of ``dsn`` too when it is another one (a verification server)."""
    global _counter, _client_names, _servers
    with _lock:
        _counter += 1
        name = f"coldcopy:{program}:{_PROCESS}:{_counter}"[:63]
        _client_names = _client_names | {name}
        if dsn:
            _servers = _servers | {dsn}
    return name


def popen(argv: list[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` whose process :func:`stop_all` kills."""
    global _children
    process = subprocess.Popen(argv, **kwargs)
    with _lock:
        _children = (*(p for p in _children if p.poll() is None), process)
    return process


def _terminate_named(dsn: str, names: list[str]) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        return conn.execute(
            "SELECT count(*) FILTER (WHERE CASE WHEN pid <> pg_backend_pid() THEN pg_terminate_backend(pid) END) "
            "FROM pg_stat_activity WHERE application_name = ANY(%s)", (names,)).fetchone()[0]


def stop_all(dsn: str) -> tuple[int, int]:
    """Kill the recorded child processes and cancel the recorded backends still running (over a new
    connection to ``dsn``, and to every other server a client program ran on); returns ``(backends cancelled,
    children killed)``. Takes no lock (see above)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    children, backends, client_names, servers = _children, _backends, sorted(_client_names), _servers
    killed = 0
    for process in children:
        if process.poll() is None:
            process.kill()
            killed += 1
    cancelled = 0
    if backends or client_names:
        cancelled += _terminate_named(dsn, client_names)
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            for pid, started in backends:
                # pg_terminate_backend: a cancelled query inside a long transaction (REPEATABLE READ export,
                # the backup's snapshot) would otherwise leave the session and its snapshot behind.
                # CASE, not AND: the planner may evaluate WHERE conditions in any order.
                cancelled += conn.execute(
                    "SELECT count(*) FILTER (WHERE CASE WHEN backend_start = %s AND pid <> pg_backend_pid() "
                    "THEN pg_terminate_backend(pid) END) FROM pg_stat_activity WHERE pid = %s",
                    (started, pid)).fetchone()[0]
        main = conninfo_to_dict(dsn)
        for other in servers:
            where = conninfo_to_dict(other)
            if (where.get("host"), where.get("port")) == (main.get("host"), main.get("port")):
                continue
            try:
                cancelled += _terminate_named(psycopg.conninfo.make_conninfo(other, dbname="postgres"), client_names)
            except psycopg.Error:
                log.exception("on_kill: could not reach %s:%s", where.get("host"), where.get("port"))
    for process in children:
        process.wait()
    log.warning("on_kill: %d backend(s) terminated, %d child process(es) killed", cancelled, killed)
    return cancelled, killed
