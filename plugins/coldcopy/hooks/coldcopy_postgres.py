"""The hook for the ColdCopy database: the ``coldcopy_db`` connection and its session settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.providers.postgres.hooks.postgres import PostgresHook

from coldcopy import DB_CONN_ID


class ColdCopyPostgresHook(PostgresHook):
    """:class:`PostgresHook` bound to ``coldcopy_db`` that opens sessions tagged for ``pg_stat_activity``.

    :param application_name: shown in ``pg_stat_activity`` so on-call can tell our sessions apart.
    :param statement_timeout: default ceiling for every statement of the session (PostgreSQL syntax).
    """

    conn_name_attr = "postgres_conn_id"
    default_conn_name = DB_CONN_ID
    hook_name = "ColdCopy PostgreSQL"

    def __init__(
        self,
        *args,
        application_name: str = "coldcopy-ops",
        statement_timeout: str = "15min",
        **kwargs,
    ) -> None:
        kwargs.setdefault("postgres_conn_id", DB_CONN_ID)
        super().__init__(*args, **kwargs)
        self.application_name = application_name
        self.statement_timeout = statement_timeout

    def libpq_params(self, dbname: str | None = None) -> dict[str, str]:
        """The connection's libpq settings, its extra included (``sslmode``, ``sslrootcert``, ``options``…),
        as :meth:`get_conn` passes them: every other path (backups, client programs) starts from these."""
        conn = self.get_connection(self.postgres_conn_id)
        params = {"host": conn.host, "port": conn.port, "user": conn.login, "password": conn.password,
                  "dbname": dbname or self.database or conn.schema}
        params.update({k: v for k, v in conn.extra_dejson.items() if k not in self.ignored_extra_options})
        # The session settings travel as startup parameters, so connections made from the DSN (backups) get
        # them too; client programs get their own application_name (coldcopy.sessions).
        params.setdefault("application_name", self.application_name[:63])
        params["options"] = f"{params.get('options', '')} -c statement_timeout={self.statement_timeout}".strip()
        return {k: str(v) for k, v in params.items() if v not in (None, "")}

    def dsn(self, dbname: str | None = None) -> str:
        """libpq connection string of the connection (extras included), optionally of another database."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(**self.libpq_params(dbname))

    def get_conn(self):
        """The provider's connection, recorded so the task's ``on_kill`` can stop what it runs."""
        from coldcopy import sessions

        conn = super().get_conn()
        sessions.track_connection(conn)
        return conn

    @contextmanager
    def session(self, *, autocommit: bool = True) -> Iterator:
        """A connection with the session settings applied, closed on exit.

        Autocommit by default: callers open transactions explicitly (``with conn.transaction():``) and
        statements that cannot run in a transaction block (VACUUM, ... CONCURRENTLY) just work.
        """
        conn = self.get_conn()
        try:
            conn.autocommit = True
            conn.execute("SELECT set_config('application_name', %s, false)", (self.application_name[:63],))
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (self.statement_timeout,))
            conn.autocommit = autocommit
            yield conn
        finally:
            conn.close()
