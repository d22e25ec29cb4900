"""The base of every ColdCopy operator: a time limit fitting the job and an ``on_kill`` that stops it."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import BaseOperator, Context

from coldcopy.connections import DB_CONN_ID, KEY_CONN_ID, MANIFEST_KEY_CONN_ID, VERIFY_CONN_ID
from coldcopy.object_store import SPACES_CONN_ID, Bucket


class ColdCopyOperator(BaseOperator):
    """Gives every task an ``execution_timeout`` (``default_execution_timeout`` of its class unless set) and an
    ``on_kill`` that terminates the task's backends and kills its child processes (:mod:`coldcopy.kill_targets`),
    so nothing it started keeps running on the server after the task is killed or times out.

    The parameters every wing shares are declared here once (as Airflow's ``AwsBaseOperator`` does); a wing
    changes a default by a class attribute, a DAG per task by the keyword:

    :param conn_id: the target database (``coldcopy_db``).
    :param spaces_conn_id: the bucket (aws connection, ``coldcopy_spaces``), for :meth:`bucket`.
    :param key_conn_id: the connection whose password is the backup passphrase (``coldcopy_backup_key``).
    :param manifest_key_conn_id: the key that signs manifests and ledger entries, for :meth:`keyring`.
    :param verify_conn_id: a server of its own for rehearsals, restore verification and drills.
    :param lock_timeout_ms: ``lock_timeout`` of the first attempt of a locking step (grows on retries), and
    :param lock_attempts: attempts before a lock timeout gives up, both for :meth:`lock_policy`.
    """

    default_execution_timeout = timedelta(hours=1)
    default_statement_timeout = "15min"
    conn_id: str = DB_CONN_ID
    spaces_conn_id: str = SPACES_CONN_ID
    key_conn_id: str = KEY_CONN_ID
    manifest_key_conn_id: str = MANIFEST_KEY_CONN_ID
    verify_conn_id: str = VERIFY_CONN_ID
    lock_timeout_ms: int = 2000
    lock_attempts: int = 6

    def __init__(self, *, conn_id: str | None = None, spaces_conn_id: str | None = None,
                 key_conn_id: str | None = None, manifest_key_conn_id: str | None = None,
                 verify_conn_id: str | None = None, lock_timeout_ms: int | None = None,
                 lock_attempts: int | None = None, **kwargs) -> None:
        kwargs.setdefault("execution_timeout", self.default_execution_timeout)
        super().__init__(**kwargs)
        for name, value in (("conn_id", conn_id), ("spaces_conn_id", spaces_conn_id), ("key_conn_id", key_conn_id),
                            ("manifest_key_conn_id", manifest_key_conn_id), ("verify_conn_id", verify_conn_id),
                            ("lock_timeout_ms", lock_timeout_ms), ("lock_attempts", lock_attempts)):
            if value is not None:
                setattr(self, name, value)

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

    def own_verify_server(self, what: str) -> tuple[str | None, str | None]:
        """(``verify_conn_id``'s admin DSN, None) when it is a server of its own, else (None, why ``what`` does not
        run): on the live server a scratch database's roles, grants, ALTER SYSTEM or slots would stay behind."""
        from coldcopy import optional_connection, scratch
        from coldcopy.hooks.coldcopy_postgres import ColdCopyPostgresHook

        if optional_connection(self.verify_conn_id) is None:
            return None, (f"no {self.verify_conn_id} connection: {what} runs only on a server of its own "
                          "(on the live one a pending file's roles, grants, ALTER SYSTEM or slots would stay "
                          "behind before anyone approved them)")
        dsn = ColdCopyPostgresHook(postgres_conn_id=self.verify_conn_id).dsn(dbname="postgres")
        with self.hook().get_conn() as live:
            if scratch.same_server(live, dsn):
                return None, f"{self.verify_conn_id} reaches {self.conn_id}'s own server: {what} runs only on " \
                             "a server of its own"
        return dsn, None

    def on_kill(self) -> None:
        from coldcopy import kill_targets

        kill_targets.stop_all(self.hook().dsn())
