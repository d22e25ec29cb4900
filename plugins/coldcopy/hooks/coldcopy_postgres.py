"""The hook for the ColdCopy database: the ``coldcopy_db`` connection and its session settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.providers.postgres.hooks.postgres import PostgresHook

from coldcopy import DB_CONN_ID


class PoolerConnectionError(RuntimeError):
    """The connection reaches PostgreSQL through a transaction-pooling proxy: ops jobs cannot run there."""


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
        # The extra's ``options`` reach the server merged with ours (libpq_params), through the provider's options.
        self.ignored_extra_options = {*self.ignored_extra_options, "options"}

    def libpq_params(self, dbname: str | None = None) -> dict[str, str]:
        """The connection's libpq settings, its extra included (``sslmode``, ``sslrootcert``, ``options``…),
        as :meth:`get_conn` passes them: every other path (backups, client programs) starts from these."""
        conn = self.connection  # looked up once per hook; get_conn() uses the same
        params = {"host": conn.host, "port": conn.port, "user": conn.login, "password": conn.password,
                  "dbname": dbname or self.database or conn.schema}
        params.update({k: v for k, v in conn.extra_dejson.items() if k not in self.ignored_extra_options})
        # The session settings travel as startup parameters, so every connection (the provider's, backups' from
        # the DSN) starts with them; client programs get their own application_name (coldcopy.sessions).
        params.setdefault("application_name", self.application_name[:63])
        params["options"] = (f"{conn.extra_dejson.get('options', '')} "
                             f"-c statement_timeout={self.statement_timeout}").strip()
        return {k: str(v) for k, v in params.items() if v not in (None, "")}

    def dsn(self, dbname: str | None = None) -> str:
        """libpq connection string of the connection (extras included), optionally of another database."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(**self.libpq_params(dbname))

    def get_conn(self):
        """The provider's connection, recorded so the task's ``on_kill`` can stop what it runs."""
        from coldcopy import sessions

        self.options = self.libpq_params()["options"]
        conn = super().get_conn()
        sessions.track_connection(conn)
        try:
            self.ensure_direct_session(conn)
        except Exception:
            conn.close()
            raise
        return conn

    def ensure_direct_session(self, conn) -> None:
        """Refuse a connection whose startup settings did not arrive: a transaction-pooling PgBouncer (or
        Supavisor) in between drops them, and would also break what ops jobs rely on — session advisory locks,
        ``SET``, ``VACUUM`` and ``… CONCURRENTLY`` outside transactions."""
        arrived, port = conn.execute(
            "SELECT (SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout') "
            "= extract(epoch FROM %s::interval) * 1000, inet_server_port()", (self.statement_timeout,)).fetchone()
        if not conn.autocommit:
            conn.rollback()
        if not arrived:
            params = self.libpq_params()
            raise PoolerConnectionError(
                f"connection {self.postgres_conn_id!r} ({params.get('host')}:{params.get('port', 5432)}, server port "
                f"{port}) does not keep session settings: it goes through a transaction-pooling proxy (PgBouncer, "
                "Supavisor). Ops jobs need a direct or session-mode connection (session advisory locks, SET, VACUUM "
                "and … CONCURRENTLY outside transactions): point it at the database itself (Supabase: the direct "
                "connection on port 5432, not the pooler on 6543)")

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
