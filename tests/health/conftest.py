"""Fixtures of tests/health: checker, stat_statements_cluster."""

from __future__ import annotations

import psycopg
import pytest

from coldcopy.testing import servers
from tests.support.health import Checker


@pytest.fixture
def checker(migrated_db):
    made = []

    def make(dsn: str = migrated_db, **thresholds) -> Checker:
        made.append(Checker(dsn, **thresholds))
        return made[-1]

    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="module")
def stat_statements_cluster():
    cluster = servers.ThrowawayCluster({"shared_preload_libraries": "pg_stat_statements"}).start()
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    yield cluster
    cluster.stop()
