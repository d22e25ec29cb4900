"""A complete local Airflow 3.3 — api-server, scheduler, dag-processor, triggerer, and the LocalExecutor or the
CeleryExecutor (Debian's ``redis-server`` as broker and ``workers`` Celery workers, each with a hostname of its
own) — as child processes, for `make airflow` and the end-to-end tests.

:class:`AirflowStack` owns the processes: each runs in a process group of its own (LocalExecutor's workers
and the api-server's workers included), its output goes to ``<home>/logs/<component>.log``, and
:meth:`AirflowStack.stop` ends every group it started and nothing else. Metadata lives in PostgreSQL
(backfill creation is refused on SQLite under concurrent access).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from coldcopy import REPO_ROOT
from coldcopy.testing.celery_stack import DEFAULT_QUEUE, CeleryParts, StackError, signal_group, worker_hostname
from coldcopy.testing.local_env import port_in_use

__all__ = ["DEFAULT_QUEUE", "AirflowStack", "StackError", "worker_hostname"]

ROOT = REPO_ROOT
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN_USER = "admin"
MIN_HEARTBEAT_INTERVAL_S = 1


def sqlalchemy_url(dsn: str) -> str:
    """Airflow's ``sql_alchemy_conn`` for a libpq DSN (URI or key=value; Unix-socket hosts too)."""
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy.engine import URL

    params = conninfo_to_dict(dsn)
    host = params.get("host", "localhost")
    on_socket = host.startswith("/")
    return URL.create(
        "postgresql+psycopg2", username=params.get("user"), password=params.get("password") or None,
        host=None if on_socket else host, port=None if on_socket else int(params.get("port", 5432)),
        database=params.get("dbname"), query={"host": host} if on_socket else {},
    ).render_as_string(hide_password=False)


def _write_private(path: Path, text: str, mode: int) -> None:
    """``text`` into ``path``, readable by its owner only from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)


class AirflowStack(CeleryParts):
    """The four Airflow components on loopback, sharing one environment.

    :param home: AIRFLOW_HOME (config, logs, generated secrets); created if missing.
    :param metadata_dsn: libpq DSN of Airflow's metadata database (PostgreSQL).
    :param connections: ``{"COLDCOPY_DB": json_or_uri, ...}``, exported as ``AIRFLOW_CONN_<ID>``.
    :param port: the api-server's port (the UI and REST API).
    :param dags_folder: defaults to the repository's dags/.
    :param parallelism: task slots of the LocalExecutor (a few: this is a small machine).
    :param extra_env: further ``AIRFLOW__…`` settings (tests shorten intervals).
    :param users: simple auth manager users and their roles (the admin always); each gets a generated password.
    :param executor: ``LocalExecutor`` or ``CeleryExecutor``.
    :param workers: Celery workers (CeleryExecutor), named ``worker-a``, ``worker-b``… (their task instances'
        hostname), each with ``worker_concurrency`` slots and a log server port of its own.
    """

    def __init__(self, home: Path, metadata_dsn: str, connections: dict[str, str], *, port: int = 8080,
                 dags_folder: Path | None = None, parallelism: int = 4, extra_env: dict[str, str] | None = None,
                 users: dict[str, str] | None = None, executor: str = "LocalExecutor", workers: int = 2,
                 worker_concurrency: int = 2):
        if executor not in ("LocalExecutor", "CeleryExecutor"):
            raise ValueError(f"executor {executor!r}: LocalExecutor or CeleryExecutor")
        self.home = Path(home).resolve()
        self.metadata_dsn = metadata_dsn
        self.connections = connections
        self.port = port
        self.dags_folder = Path(dags_folder or ROOT / "dags").resolve()
        self.parallelism = parallelism
        self.extra_env = extra_env or {}
        self.users = {ADMIN_USER: "admin", **(users or {})}
        self.executor, self.worker_concurrency = executor, worker_concurrency
        self.worker_names = [f"worker-{chr(ord('a') + i)}" for i in range(workers)] if executor == "CeleryExecutor" \
            else []
        self.redis_port: int | None = None
        self.redis_password: str | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self.url = f"http://127.0.0.1:{port}"

    # -- configuration -----------------------------------------------------------------------------

    def secret(self, name: str) -> str:
        """A random secret generated once per home and kept there (never in the repository)."""
        path = self.home / f".{name}"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    @property
    def admin_password(self) -> str:
        return self.password(ADMIN_USER)

    def password(self, user: str) -> str:
        return json.loads(self.passwords_file.read_text())[user]

    def env(self) -> dict[str, str]:
        """The environment of every component and CLI call: the parent's, minus other AIRFLOW settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in self.users.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(self.metadata_dsn),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": self.secret("api_secret_key"),
            "AIRFLOW__API_AUTH__JWT_SECRET": self.secret("jwt_secret"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
            # The supervisor notices a task's exit up to min_heartbeat_interval late (5 s by default); a skipped
            # task is reported only then, holding its pool slot: 1 s bounds it (docs/airflow.md, bench/skips.py).
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": str(MIN_HEARTBEAT_INTERVAL_S),
        })
        if self.executor == "CeleryExecutor":
            env.update({
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy_url(self.metadata_dsn).replace(
                    "postgresql+psycopg2", "postgresql"),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                # Each worker's task instances carry its name (COLDCOPY_WORKER_NAME), not the machine's.
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "coldcopy.testing.celery_stack.worker_hostname",
            })
        env.update({f"AIRFLOW_CONN_{conn_id.upper()}": value for conn_id, value in self.connections.items()})
        env.update(self.extra_env)
        return env

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the ``airflow`` CLI against this stack."""
        result = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env(), capture_output=True,
                                text=True)
        if check and result.returncode != 0:
            raise StackError(f"airflow {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    @property
    def cli(self) -> Path:
        """``<home>/bin/airflow``: the ``airflow`` CLI against this stack, from any shell (:meth:`write_cli`)."""
        return self.home / "bin" / "airflow"

    def write_cli(self) -> Path:
        """Write what reaches this stack from a shell: ``<home>/airflow.env`` (its settings, to ``source``) and
        the wrapper :attr:`cli`, which drops the shell's own ``AIRFLOW*`` settings, sources that file and runs
        this venv's ``airflow``. Without them ``airflow`` read ``airflow.cfg``'s SQLite: another database. Both
        owner-only (they hold the connections' secrets, like the home's other files)."""
        import shlex

        settings = {k: v for k, v in self.env().items() if k.startswith("AIRFLOW") or k in self.extra_env}
        env_file = self.home / "airflow.env"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(settings.items()))
        _write_private(env_file, f"# written by make airflow: `. {env_file}` reaches this stack\n{exports}", 0o600)
        self.cli.parent.mkdir(exist_ok=True)
        _write_private(self.cli, f"""#!/bin/sh
# The airflow CLI against the stack of {self.home} (written by make airflow; any shell, any directory).
for name in $(env | sed -n 's/^\\(AIRFLOW[A-Za-z0-9_]*\\)=.*/\\1/p'); do unset "$name"; done
. {shlex.quote(str(env_file))}
exec {shlex.quote(sys.executable)} -m airflow "$@"
""", 0o700)
        return self.cli

    # -- lifecycle ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Migrate the metadata database, create the heavy pool, and the admin password on first use."""
        from coldcopy.dag_defaults import HEAVY_POOL, HEAVY_POOL_DESCRIPTION, HEAVY_POOL_SLOTS

        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        passwords = json.loads(self.passwords_file.read_text()) if self.passwords_file.exists() else {}
        if set(self.users) - set(passwords):
            passwords.update({u: secrets.token_urlsafe(12) for u in self.users if u not in passwords})
            self.passwords_file.write_text(json.dumps(passwords))
            self.passwords_file.chmod(0o600)
        self.airflow("db", "migrate")
        # Without the pool, every heavy task stays "scheduled" for ever and only the scheduler log says why.
        self.airflow("pools", "set", HEAVY_POOL, str(HEAVY_POOL_SLOTS), HEAVY_POOL_DESCRIPTION)

    def start(self, timeout_s: float = 180) -> AirflowStack:
        if port_in_use(self.port):
            raise StackError(f"port {self.port} is in use: stop what listens there, or choose another port "
                             f"(AIRFLOW_PORT=8081 make airflow)")
        if self.executor == "CeleryExecutor":
            self.start_redis()
        self.prepare()
        self.write_cli()
        env = self.env()
        for component in COMPONENTS:
            self._spawn(component, [sys.executable, "-m", "airflow", component], env)
        for name in self.worker_names:
            self.start_worker(name)
        self.wait_healthy(timeout_s)
        return self

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.home / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.processes[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home)
        log.close()
        return self.processes[name]

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for component, process in self.processes.items():
                if process.poll() is not None:
                    self.stop()
                    raise StackError(f"{component} exited with {process.returncode}; see "
                                     f"{self.home / 'logs' / (component + '.log')}")
            try:
                health = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
                if all(health.get(c, {}).get("status") == "healthy"
                       for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")) and self.workers_ready():
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1)
        self.stop()
        raise StackError(f"Airflow was not healthy within {timeout_s:.0f} s; logs in {self.home / 'logs'}")

    def stop(self, grace_s: float = 20) -> None:
        """SIGTERM every component's process group, then SIGKILL what is left after ``grace_s``."""
        for process in self.processes.values():
            signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            signal_group(process, signal.SIGKILL)
            process.wait()
        self.processes.clear()

    # -- REST API ----------------------------------------------------------------------------------

    def client(self, user: str = ADMIN_USER) -> httpx.Client:
        """An ``httpx.Client`` on the REST API, logged in as ``user`` (a JWT from ``/auth/token``)."""
        token = httpx.post(f"{self.url}/auth/token", json={"username": user, "password": self.password(user)},
                           timeout=30)
        token.raise_for_status()
        return httpx.Client(base_url=f"{self.url}/api/v2", timeout=60,
                            headers={"Authorization": f"Bearer {token.json()['access_token']}"})
