"""The ``approve`` task of ``restore_from_spaces``: a restore into the live database waits for a named person."""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk import Context

from coldcopy.operators import approval
from coldcopy.operators.restore import RESTORE, RestoreFromSpacesOperator


class RestoreApprovalOperator(approval.ApprovalGate, RestoreFromSpacesOperator):
    """The ``approve`` task of ``restore_from_spaces``: restoring into the live database of ``coldcopy_db`` (lost and
    recreated empty) is put to the users of the Variable ``coldcopy_restore_approvers`` (*restore* or *reject*,
    rejected after 24 h), the body naming the database, its size and tables, and the backup with its age. Any
    other target needs no approval."""

    template_fields: Sequence[str] = (*approval.ApprovalGate.template_fields,
                                      *RestoreFromSpacesOperator.template_fields)

    def __init__(self, *, approvers_variable: str = "coldcopy_restore_approvers", **kwargs) -> None:
        super().__init__(approvers_variable=approvers_variable, options=[RESTORE, approval.REJECT], **kwargs)

    def not_needed(self, context: Context) -> str | None:
        target = (self.target_database or "").strip()
        if self.is_live(target):
            return None
        return f"{target or 'the target'} is not the live database"

    def describe(self, context: Context) -> tuple[str, str, dict]:
        from datetime import UTC, datetime

        import psycopg

        from coldcopy.humanize import duration

        target = self.target_database.strip()
        try:
            with psycopg.connect(self.hook().dsn(dbname=target)) as conn:
                size, tables = conn.execute(
                    "SELECT pg_size_pretty(pg_database_size(current_database())), count(*) FILTER (WHERE "
                    "c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND "
                    "n.nspname NOT LIKE 'pg_toast%') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                ).fetchone()
            state = f"{size}, {tables} table(s)"
        except psycopg.OperationalError as error:
            state = f"cannot be opened ({str(error).strip().splitlines()[0][:120]})"
        runner = self.runner()
        key, manifest = self.chosen_backup(runner)
        taken = datetime.fromisoformat(manifest["finished_at"])
        age = duration((datetime.now(UTC) - taken).total_seconds())
        tables = self.tables if isinstance(self.tables, str) else ",".join(self.tables or [])
        body = "\n".join([
            f"**Restore into the live database `{target}`** ({state}).", "",
            f"**Backup:** `{key}`, taken {taken:%Y-%m-%d %H:%M:%S} UTC ({age} ago) from `{manifest['database']}` "
            f"({manifest['database_size_bytes'] / 2**20:,.0f} MB)"
            + (f", replayed to **{self.as_of}** from the change archive" if self.recovery else "") + ".",
            f"**Tables:** {tables}" if tables else
            f"**One workspace:** `{self.workspace_id}`" + (f", copied into schema `{self.target_schema}`"
                                                            if self.target_schema else "")
            if (self.workspace_id or "").strip() else "**Whole database** (refused by the restore itself if the "
            "target holds tables: it must have been recreated empty).", "",
            "*restore*: go ahead. *reject* (or no answer within 24 h): nothing is restored; say why in the comment."])
        return f"Restore {key.rsplit('/', 1)[-1]} into the live database {target}?", body, {"backup": key}
