"""A scratch database (a verification's, a rehearsal's, a quarantine) is never open to PUBLIC, not even between
its CREATE and the REVOKE (issue 40, 11): a session opened then kept production's rows in reach afterwards."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from coldcopy import scratch


class Watched:
    """``admin`` whose every statement is followed by an attempt to connect to ``database`` as ``probe``, a
    login with nothing but PUBLIC's rights: :attr:`opened` lists the statements after which it got in."""

    def __init__(self, admin: psycopg.Connection, admin_dsn: str, database: str, probe: str) -> None:
        self.admin, self.opened = admin, []
        self.probe_dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=database, user=probe)
        self.database = database

    def execute(self, query, *args, **kwargs):
        result = self.admin.execute(query, *args, **kwargs)
        if self.admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone():
            try:
                with psycopg.connect(self.probe_dsn, connect_timeout=5):
                    self.opened.append(query.as_string(self.admin) if hasattr(query, "as_string") else query)
            except psycopg.OperationalError:
                pass
        return result

    def __getattr__(self, name):
        return getattr(self.admin, name)


def test_a_scratch_database_is_never_open_to_public(admin_dsn):
    """Before: right after ``CREATE DATABASE`` a login with PUBLIC's rights connected (and could have stayed)."""
    name, probe = f"coldcopy_scratch_{uuid.uuid4().hex[:8]}", f"cc_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(probe)))
        try:
            watched = Watched(admin, admin_dsn, name, probe)
            scratch.create(watched, name, "verify")
            assert watched.opened == [], watched.opened
            with psycopg.connect(psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)) as owner:
                assert owner.execute("SELECT current_database()").fetchone() == (name,)  # its maker gets in
            [entry] = [e for e in scratch.leftovers(admin) if e["database"] == name]
            assert not entry["public_connect"] and not entry["expired"]
        finally:
            scratch.drop(admin, name)
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(probe)))
