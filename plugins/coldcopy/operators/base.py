"""The base of every ColdCopy operator: a time limit fitting the job and an ``on_kill`` that stops it."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import BaseOperator

from coldcopy import DB_CONN_ID


class ColdCopyOperator(BaseOperator):
    """Gives every task an ``execution_timeout`` (``default_execution_timeout`` of its class unless set) and an
    ``on_kill`` that terminates the task's backends and kills its child processes (:mod:`coldcopy.sessions`),
    so nothing it started keeps running on the server after the task is killed or times out.

    Subclasses set ``self.conn_id``: the database whose backends are stopped.
    """

    default_execution_timeout = timedelta(hours=1)
    conn_id: str = DB_CONN_ID

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("execution_timeout", self.default_execution_timeout)
        super().__init__(**kwargs)

    def on_kill(self) -> None:
        from coldcopy import sessions
        from coldcopy.hooks.coldcopy_postgres import ColdCopyPostgresHook

        sessions.stop_all(ColdCopyPostgresHook(postgres_conn_id=self.conn_id).dsn())
