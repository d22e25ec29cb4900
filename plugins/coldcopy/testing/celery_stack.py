"""The CeleryExecutor's parts of :class:`coldcopy.testing.airflow_stack.AirflowStack`: Debian's ``redis-server``
as the broker (a password, nothing kept on disk), workers with a hostname each, draining one, killing one."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

from coldcopy.testing.local_env import port_in_use

DEFAULT_QUEUE = "default"  # [operators] default_queue, which the stack leaves as it is


class StackError(RuntimeError):
    """The stack could not start or do what was asked (its logs say why)."""


def signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class CeleryParts:
    """Mixed into :class:`~coldcopy.testing.airflow_stack.AirflowStack` (its ``home``, ``processes``, ``_spawn``,
    ``env``, ``worker_names`` and ``worker_concurrency``)."""

    def start_redis(self) -> None:
        """Debian's redis-server on a free loopback port, nothing kept on disk: the Celery broker."""
        import shutil

        from coldcopy.testing.local_env import free_port

        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server is missing: apt-get install redis-server (make system-deps)")
        self.redis_port = free_port()
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        # A password, as in docker-compose.yaml: every queued message carries a task's workload token. In a
        # file only this user reads, not argv.
        self.redis_password = secrets.token_hex(16)
        conf = self.home / "redis.conf"
        conf.touch(mode=0o600)
        conf.write_text(f"requirepass {self.redis_password}\n")
        self._spawn("redis", [binary, str(conf), "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save",
                              "", "--appendonly", "no"], os.environ.copy())
        deadline = time.monotonic() + 20
        while not port_in_use(self.redis_port):
            if time.monotonic() > deadline or self.processes["redis"].poll() is not None:
                raise StackError(f"redis-server did not start; see {self.home / 'logs' / 'redis.log'}")
            time.sleep(0.1)

    def start_worker(self, name: str) -> subprocess.Popen:
        """A Celery worker named ``name`` (its task instances' hostname), with a log server port of its own."""
        from coldcopy.testing.local_env import free_port

        env = {**self.env(), "COLDCOPY_WORKER_NAME": name,
               "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        return self._spawn(name, [sys.executable, "-m", "airflow", "celery", "worker", "--celery-hostname",
                                  f"{name}@%h", "--concurrency", str(self.worker_concurrency)], env)

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker's whole process group (the worker, its pool, the task supervisors and tasks)."""
        signal_group(self.processes[name], signal.SIGKILL)
        self.processes.pop(name).wait()

    @property
    def broker_url(self) -> str:
        """The Celery broker: the stack's redis-server, with its password."""
        return f"redis://:{self.redis_password}@127.0.0.1:{self.redis_port}/0"

    def consume(self, name: str, on: bool) -> None:
        """Worker ``name`` takes tasks from the default queue (``on``) or stops taking new ones, finishing what
        it holds (Celery's ``add_consumer`` / ``cancel_consumer``: how a worker is drained). A broadcast through
        the broker from this process, returning once the worker replied; a subprocess importing Airflow's Celery
        app took 1.9 s a call on an idle machine, more under load, in which the worker still took tasks. Raises
        :class:`StackError` unless the worker confirmed."""
        from celery import Celery

        app = Celery(broker=self.broker_url)
        try:
            command = app.control.add_consumer if on else app.control.cancel_consumer
            replies = command(DEFAULT_QUEUE, reply=True, timeout=10,
                              destination=[f"{name}@{socket.gethostname()}"])
        finally:
            app.close()
        if not replies or not all("ok" in answer for reply in replies for answer in reply.values()):
            raise StackError(f"{name}: {'add' if on else 'cancel'}_consumer not confirmed: {replies}")

    def workers_ready(self) -> bool:
        """Every Celery worker answered ``celery inspect ping`` (True without Celery)."""
        if not self.worker_names:
            return True
        done = subprocess.run(
            [sys.executable, "-c", "from airflow.providers.celery.executors.celery_executor import app; "
             "import json; print(json.dumps(sorted((app.control.inspect(timeout=2).ping() or {}))))"],
            env=self.env(), capture_output=True, text=True)
        answered = done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else "[]"
        return all(any(n.startswith(f"{name}@") for n in json.loads(answered)) for name in self.worker_names)



def worker_hostname() -> str:
    """``[core] hostname_callable`` of the Celery workers: the worker's name (COLDCOPY_WORKER_NAME), so task
    instances say which worker ran them; the machine's name elsewhere."""
    import socket

    return os.environ.get("COLDCOPY_WORKER_NAME") or socket.getfqdn()
