"""A note on every ColdCopy run in which every task skipped, so the runs list says so ("nothing changed since …")
instead of looking like any other success (issue 24); and on a run a task asked a note for (:func:`note`): a dry
run says "dry run: nothing applied — …" (issue 41), so it cannot be taken for an applied run.

An Airflow listener (plugins/coldcopy_run_notes_plugin.py): ``on_dag_run_success`` runs in the scheduler, on
the run it is finishing, in the scheduler's own session; the note is set on that run (Airflow's ``DagRun.note``,
what the REST API's ``PATCH …/dagRuns/{run_id}`` sets), committed with the run's state. Each skipping task
leaves its reason in XCom under :data:`SKIP_REASON_KEY` (:func:`skip`); the note joins them. A run that
already has a note (a person's) is left alone. Nothing here may fail the scheduler: errors are logged.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

SKIP_REASON_KEY = "skip_reason"
RUN_NOTE_KEY = "run_note"
NOTE_LIMIT = 1000  # dag_run_note.content


def skip(context, reason: str):
    """Raise AirflowSkipException(``reason``), the reason kept in XCom for the run's note."""
    from airflow.sdk.exceptions import AirflowSkipException

    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is not None:
        ti.xcom_push(key=SKIP_REASON_KEY, value=reason[:500])
    raise AirflowSkipException(reason)


def note(context, text: str) -> None:
    """Ask for ``text`` as the run's note when the run succeeds (a dry run: "dry run: nothing applied — …"); the
    notes of several tasks are joined. The task's log says it too."""
    log.info("run note: %s", text)
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is not None:
        ti.xcom_push(key=RUN_NOTE_KEY, value=text[:NOTE_LIMIT])


def note_for(reasons: list[str], tasks: int) -> str:
    """``nothing to do: all N task(s) skipped — reason; reason``, within the note column's limit."""
    unique = list(dict.fromkeys(r for r in reasons if r))
    text = f"nothing to do: all {tasks} task(s) skipped" + (f" — {'; '.join(unique)}" if unique else "")
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 1] + "…"


@hookimpl
def on_dag_run_success(dag_run, msg: str):
    try:
        if not dag_run.dag_id.startswith(_OUR_PREFIXES):
            return
        from sqlalchemy import inspect

        session = inspect(dag_run).session
        if session is not None:  # the scheduler: its session, which holds the run's row (another would wait on it).
            # No savepoint: the scheduler refuses any commit, a savepoint's release included ("UNEXPECTED COMMIT");
            # what runs here is two indexed SELECTs and the note's INSERT.
            _note(session, dag_run)
            return
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as own:  # a run not bound to a session (dag.test()): our own, committed at exit
            _note(own, own.get(DagRun, dag_run.id))
    except Exception:  # noqa: BLE001 - a note is never worth a scheduler error
        log.exception("could not write the run note of %s %s", dag_run.dag_id, dag_run.run_id)


def _note(session, dag_run) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    if dag_run is None or dag_run.note:
        return  # a person's note stays
    def said(key: str) -> list[str]:
        rows = session.execute(select(XComModel.value).where(
            XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id,
            XComModel.key == key)).scalars().all()
        return [v if isinstance(v, str) else XComModel.deserialize_value(_Row(v)) for v in rows]

    if asked := [text for text in dict.fromkeys(said(RUN_NOTE_KEY)) if text]:
        joined = "; ".join(asked)
        dag_run.note = joined if len(joined) <= NOTE_LIMIT else joined[: NOTE_LIMIT - 1] + "…"
        return
    states = session.execute(select(TaskInstance.state).where(
        TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)).scalars().all()
    if not states or any(state != TaskInstanceState.SKIPPED for state in states):
        return
    dag_run.note = note_for(said(SKIP_REASON_KEY), len(states))


class _Row:
    """What ``XComModel.deserialize_value`` reads: an object with ``value``."""

    def __init__(self, value) -> None:
        self.value = value


# The ColdCopy DAGs (dags/): refresh_*, db_*, partition_*, backup_*, gdpr_*, change_archive*, restore_*, coldcopy_*.
_OUR_PREFIXES = ("refresh_", "db_", "partition_", "backup_", "gdpr_", "change_archive", "restore_", "coldcopy_")
