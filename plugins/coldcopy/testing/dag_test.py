"""Running a DAG in-process with ``dag.test()`` (demo, tests), around an Airflow 3.3.2 bug with deadlines.

Airflow 3.3.2's ``dag.test()`` of a DAG that has a ``deadline`` marks the run successful and then crashes
while pruning the run's deadlines: ``dag.test()`` builds its scheduler-side DAG by round-tripping the DAG
through serialization, which leaves ``dag.deadline`` holding serialized dicts where
``DagRun.update_state`` expects the ids of ``deadline_alert`` rows, and the lookup fails with
``AttributeError: 'dict' object has no attribute 'hex'`` (the state change is rolled back with it).
The scheduler reads the DAG from the serialized-DAG table, where those ids are right.

:func:`run_dag` catches exactly that error and finishes the run the scheduler's way: it re-evaluates the
run against the DAG from the database, which marks it successful and prunes its deadlines properly.
Deadlines stay on the DAGs; nothing is patched.
"""

from __future__ import annotations

from typing import Any


def _is_deadline_pruning_bug(error: BaseException) -> bool:
    original = getattr(error, "orig", None)
    return isinstance(original, AttributeError) and "'dict' object has no attribute 'hex'" in str(original)


def run_dag(dag, *, conf: dict[str, Any] | None = None, **test_kwargs):
    """``dag.test(run_conf=conf, **test_kwargs)``; returns the finished DagRun (its state from the database)."""
    from airflow.models import DagRun
    from airflow.models.dagbag import DBDagBag
    from airflow.sdk import timezone
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.exc import StatementError

    started = timezone.utcnow()
    try:
        return dag.test(run_conf=conf, **test_kwargs)
    except StatementError as error:
        if not (dag.deadline and _is_deadline_pruning_bug(error)):
            raise
    with create_session() as session:
        dag_run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_after >= started)
            .order_by(DagRun.id.desc()).limit(1)
        ).one()
        dag_run.dag = DBDagBag().get_dag_for_run(dag_run, session=session)
        dag_run.update_state(session=session, execute_callbacks=False)
        session.flush()
        session.refresh(dag_run)
        return dag_run
