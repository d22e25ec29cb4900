"""The base of ``coldcopy_migrations``' operators: the connection, the migrations directory, the ``dry_run`` param;
and the approval choices the gates and the apply tasks share."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from coldcopy import MIGRATIONS_DIR
from coldcopy.migrations import Migration, MigrationError, Status, discover_migrations
from coldcopy.operators.base import ColdCopyOperator

if TYPE_CHECKING:
    from coldcopy.migrations.runner import MigrationRunner

APPLY, APPLY_PHASE_1 = "apply", "apply phase 1 only"


class BaseMigrationOperator(ColdCopyOperator):
    """Shared parts: the connection, the migrations directory and the ``dry_run`` DAG param.

    :param migrations_dir: directory of ``NNN_name.sql`` files.
    :param statement_timeout: ceiling for each statement.
    """

    ui_color = "#e8f4ea"
    default_execution_timeout = timedelta(hours=1)

    def __init__(
        self,
        *,
        migrations_dir: str | Path = MIGRATIONS_DIR,
        statement_timeout: str = "15min",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.migrations_dir = Path(migrations_dir)
        self.statement_timeout = statement_timeout

    def runner(self) -> MigrationRunner:
        from coldcopy.migrations.runner import MigrationRunner

        return MigrationRunner(self.hook().get_conn, lock_retry=self.lock_policy(),
                               statement_timeout=self.statement_timeout)

    def migrations(self) -> list[Migration]:
        try:
            return discover_migrations(self.migrations_dir)
        except MigrationError as error:
            raise AirflowFailException(str(error)) from error

    @staticmethod
    def dry_run(context: Context) -> bool:
        return bool(context["params"].get("dry_run", False))

    def holds_data(self) -> list[str]:
        """The application tables of the target with at least one row."""
        from coldcopy.migrations.runner import tables_with_rows

        with self.hook().get_conn() as conn:
            return tables_with_rows(conn)

    def graded(self, migrations: list[Migration], populated: list[str] | None = None) -> list:
        """Each file's risk (:mod:`coldcopy.migrations.risk`) on this target: data-dependence judged on its tables
        that hold rows, calls into its functions judged by their definitions."""
        from coldcopy.migrations import risk

        with self.hook().get_conn() as conn:
            functions = risk.Functions.from_conn(conn)
        held = set(self.holds_data() if populated is None else populated)
        return [risk.grade_text(m.file_name, m.read(), populated=held, functions=functions) for m in migrations]

    def drift(self, pending: list[Migration]) -> dict:
        """The schema drift now (built by this task, not read from XCom), and what of it the files touch."""
        import re

        from coldcopy.migrations import drift

        server, why_not = self.own_verify_server("the drift check")
        if server is None:
            return {"unknown": why_not}
        try:
            report = drift.find(self.hook().dsn(), server, self.migrations())
        except Exception as error:  # noqa: BLE001 - shown to the approver as unknown, not a failed gate
            return {"unknown": f"the drift check failed: {str(error)[:200]}"}
        text = "\n".join(m.read() for m in pending).lower()
        touched = [f"{d.kind} {d.name}" for d in report.differences
                   if any(re.search(rf"\b{re.escape(part.replace(chr(34), '').lower())}\b", text)
                          for part in {(d.table or d.name).split(".")[-1], d.name.split(".")[-1].split("(")[0]})]
        return {"objects": report.objects, "differences": [d.as_dict() for d in report.differences],
                "touched": touched}

    def pending(self) -> list[Migration]:
        return [e.migration for e in self.runner().plan(self.migrations()) if e.status is Status.PENDING]
