"""The fixtures of the tests that need logical decoding (tests/pitr, tests/pitr/drills): a throwaway cluster with
``wal_level=logical`` (Supabase's setting; the shared server runs ``replica``), made once per session when a
test first asks for it."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from coldcopy.migrations import discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.testing import generate_data, local_env, servers


@pytest.fixture(scope="session")
def logical():
    """The cluster, with a migrated, generated (scale 1) template database ``coldcopy``."""
    cluster = servers.ThrowawayCluster({"wal_level": "logical", "max_replication_slots": "4"}).start()
    dsn = local_env.create_database(cluster.dsn, "coldcopy")
    MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="pytest")
    generate_data.generate(dsn, scale=1)
    cluster.template = "coldcopy"
    yield cluster
    cluster.stop()


@pytest.fixture
def pitr_db(logical):
    """A fresh copy of the template on the logical cluster; its slot (cluster-wide) is dropped afterwards."""
    name = f"pitr_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(logical.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{logical.template}"')
    yield local_env.database_dsn(logical.dsn, name)
    with psycopg.connect(logical.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE active_pid IS NOT NULL")
        admin.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")
        for (database,) in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{name}%",)):
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
