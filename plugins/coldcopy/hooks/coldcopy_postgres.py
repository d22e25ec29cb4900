"""The hook for the ColdCopy database: the ``coldcopy_db`` connection and its session settings."""

from __future__ import annotations

import functools
import ipaddress
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from airflow.providers.postgres.hooks.postgres import PostgresHook

from coldcopy.connections import DB_CONN_ID

NONCE_SETTING = "coldcopy.session_nonce"
_TLS_MODES = ("require", "verify-ca", "verify-full")


class InsecureConnectionError(RuntimeError):
    """A connection to a non-loopback host would not be encrypted while TLS is required."""


def require_tls(params: dict) -> None:
    """With ``require_tls`` in the connection's extra (or ``COLDCOPY_REQUIRE_TLS=1``), refuse any ``sslmode``
    weaker than ``require`` for a host that is not loopback (a Unix socket or 127.0.0.1 carries no network).
    The flag itself is not a libpq setting and is removed."""
    import os

    required = str(params.pop("require_tls", os.environ.get("COLDCOPY_REQUIRE_TLS", ""))).lower() in ("1", "true")
    host = str(params.get("host") or "")
    if not required or not host or host.startswith("/") or host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    mode = params.get("sslmode") or os.environ.get("PGSSLMODE") or "prefer"
    if mode not in _TLS_MODES:
        raise InsecureConnectionError(f"{host}: TLS is required (require_tls) but sslmode is {mode!r}; set "
                                      "sslmode to require, verify-ca or verify-full in the connection's extra")


# Extra keys that are ColdCopy's own settings, never libpq's (README "Connections", docs/backups.md).
OWN_EXTRAS = {
    "cores": "the verify server's cores: pg_restore --jobs and the drill's replay connections",
    "require_tls": "refuse an sslmode weaker than require to a non-loopback host",
}


class UnknownExtraError(ValueError):
    """A connection's extra holds a key that is neither a libpq setting, the provider's, nor ours."""


@functools.cache
def libpq_keywords() -> frozenset[str]:
    """Every connection keyword the libpq in use knows (``PQconndefaults``), e.g. ``sslmode``, ``options``."""
    from psycopg import pq

    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())


def libpq_extras(conn_id: str, extra: dict, provider_keys) -> dict:
    """The extra's libpq settings alone. Our own keys (:data:`OWN_EXTRAS`) and the provider's (``cursor``,
    ``iam``…) are left out; any other key is refused by name: a misspelt ``sslmode`` passed on would fail in
    libpq only after retries, and one dropped silently could connect without TLS."""
    unknown = sorted(set(extra) - libpq_keywords() - set(OWN_EXTRAS) - set(provider_keys))
    if unknown:
        raise UnknownExtraError(
            f"connection {conn_id!r}: extra key(s) {', '.join(map(repr, unknown))} are neither libpq connection "
            f"settings (e.g. sslmode, sslrootcert, options, connect_timeout) nor ColdCopy's own "
            f"({', '.join(sorted(OWN_EXTRAS))}): fix or remove them in the connection's Extra")
    return {k: v for k, v in extra.items() if k in libpq_keywords()}


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
        # The extra's ``options`` reach the server merged with ours (libpq_params), through the provider's options;
        # our own keys never reach libpq (get_conn refuses unknown ones first, through libpq_params).
        self.ignored_extra_options = {*self.ignored_extra_options, "options", *OWN_EXTRAS}

    def libpq_params(self, dbname: str | None = None, *, nonce: str | None = None) -> dict[str, str]:
        """The connection's libpq settings, its extra included (``sslmode``, ``sslrootcert``, ``options``…),
        as :meth:`get_conn` passes them: every other path (backups, client programs) starts from these."""
        conn = self.connection  # looked up once per hook; get_conn() uses the same
        params = {"host": conn.host, "port": conn.port, "user": conn.login, "password": conn.password,
                  "dbname": dbname or self.database or conn.schema}
        params.update(libpq_extras(self.postgres_conn_id, conn.extra_dejson, type(self).ignored_extra_options))
        # The session settings travel as startup parameters, so every connection (the provider's, backups' from
        # the DSN) starts with them; client programs get their own application_name (coldcopy.kill_targets).
        params.setdefault("application_name", self.application_name[:63])
        params["require_tls"] = conn.extra_dejson.get("require_tls", "")
        params["options"] = (f"{conn.extra_dejson.get('options', '')} "
                             f"-c statement_timeout={self.statement_timeout}"
                             + (f" -c {NONCE_SETTING}={nonce}" if nonce else "")).strip()
        require_tls(params)
        return {k: str(v) for k, v in params.items() if v not in (None, "")}

    def dsn(self, dbname: str | None = None) -> str:
        """libpq connection string of the connection (extras included), optionally of another database."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(**self.libpq_params(dbname))

    def get_conn(self):
        """The provider's connection, recorded so the task's ``on_kill`` can stop what it runs."""
        from coldcopy import kill_targets

        nonce = uuid.uuid4().hex
        # The name on-call reads in pg_stat_activity (and on_kill's fallback), as a startup setting: the provider's
        # get_conn passes options but no application_name of its own, which left these sessions unnamed.
        name = self.application_name[:63].replace("\\", "\\\\").replace(" ", "\\ ")
        self.options = f"{self.libpq_params(nonce=nonce)['options']} -c application_name={name}"
        conn = super().get_conn()
        kill_targets.track_connection(conn)
        try:
            self.ensure_direct_session(conn, nonce)
        except Exception:
            conn.close()
            raise
        return conn

    def ensure_direct_session(self, conn, nonce: str) -> None:
        """Refuse a connection whose startup settings did not arrive: a transaction-pooling PgBouncer (or
        Supavisor) in between drops them, and would also break what ops jobs rely on — session advisory locks,
        ``SET``, ``VACUUM`` and ``… CONCURRENTLY`` outside transactions. The proof is a random nonce sent as a
        startup setting of this very connection (a role default of the same ``statement_timeout`` proved
        nothing)."""
        arrived, port = conn.execute(
            "SELECT coalesce(current_setting(%s, true) = %s, false), inet_server_port()",
            (NONCE_SETTING, nonce)).fetchone()
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
