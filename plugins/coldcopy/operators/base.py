"""The base of every ColdCopy operator: a time limit fitting the job and an ``on_kill`` that stops it."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import BaseOperator, Context

from coldcopy import DB_CONN_ID, KEY_CONN_ID
from coldcopy.object_store import SPACES_CONN_ID, Bucket


class ColdCopyOperator(BaseOperator):
    """Gives every task an ``execution_timeout`` (``default_execution_timeout`` of its class unless set) and an
    ``on_kill`` that terminates the task's backends and kills its child processes (:mod:`coldcopy.sessions`),
    so nothing it started keeps running on the server after the task is killed or times out.

    Subclasses set ``self.conn_id`` (the database), ``spaces_conn_id`` and ``key_conn_id`` (bucket and backup key,
    for :meth:`bucket`;
    manifests are signed with :meth:`keyring`), and ``lock_timeout_ms`` / ``lock_attempts`` for :meth:`lock_policy`.
    """

    default_execution_timeout = timedelta(hours=1)
    default_statement_timeout = "15min"
    conn_id: str = DB_CONN_ID
    spaces_conn_id: str = SPACES_CONN_ID
    key_conn_id: str = KEY_CONN_ID
    manifest_key_conn_id: str = "coldcopy_manifest_key"
    lock_timeout_ms: int = 2000
    lock_attempts: int = 6

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("execution_timeout", self.default_execution_timeout)
        super().__init__(**kwargs)

    def say(self, context: Context, line: str) -> None:
        """The task's one result line: logged, and kept in XCom (``result``) for whoever reads the run later."""
        self.log.info("%s", line)
        ti = context.get("ti") if hasattr(context, "get") else None
        if ti is not None:
            ti.xcom_push(key="result", value=line)

    def hook(self, *, statement_timeout: str | None = None):
        """The database hook, its sessions named ``coldcopy:<dag>.<task>`` in ``pg_stat_activity``."""
        from coldcopy.hooks.coldcopy_postgres import ColdCopyPostgresHook

        return ColdCopyPostgresHook(postgres_conn_id=self.conn_id,
                                    statement_timeout=statement_timeout or self.default_statement_timeout,
                                    application_name=f"coldcopy:{self.dag_id}.{self.task_id}")

    def lock_policy(self):
        """Lock retries from the operator's ``lock_timeout_ms`` and ``lock_attempts``."""
        from coldcopy.lock_retries import LockRetryPolicy

        return LockRetryPolicy.growing(self.lock_timeout_ms, self.lock_attempts)

    def bucket(self):
        """The bucket of the ``spaces_conn_id`` connection (``coldcopy_spaces``)."""
        return Bucket.from_connection(self.spaces_conn_id)

    def keyring(self):
        """The keys that sign and authenticate manifests and ledger entries (connection ``coldcopy_manifest_key``)."""
        from coldcopy import manifests

        return manifests.keyring(self.manifest_key_conn_id)

    def on_kill(self) -> None:
        from coldcopy import sessions

        sessions.stop_all(self.hook().dsn())
