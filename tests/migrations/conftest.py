"""Fixtures of tests/migrations: migrations_dag."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def migrations_dag(airflow_db, coldcopy_conn):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "coldcopy_migrations.py"))
    assert not bag.import_errors
    return bag.get_dag("coldcopy_migrations")
