"""The operator of ``restore_from_spaces`` (see :mod:`coldcopy.backups` and, for ``as_of``, :mod:`coldcopy.pitr`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.operators import approval
from coldcopy.operators.backups import BaseBackupOperator
from coldcopy.steps import step

RESTORE = "restore"


class RestoreFromSpacesOperator(BaseBackupOperator):
    """Restore a backup (``latest``, a ``YYYY-MM-DD`` date, or an object key) into ``target_database``.

    A whole-database restore goes into a *quarantine* database first (``<target>__restoring``): the object is
    bound to its signed manifest before any byte is restored, every erasure of the ledger since the backup is
    re-applied, and only then is the quarantine renamed to the target. Any failure drops the quarantine: no
    one is ever handed a database that still holds an erased person or an unverified byte. The target must be
    missing or empty; the live database of ``conn_id`` (lost and recreated empty) only with the run's ``approve``
    gate (:class:`RestoreApprovalOperator`) having said *restore* to this very backup. With ``tables``, only their
    rows are restored into a target that has the schema (then erasures are re-applied in place).

    With ``as_of`` (``2026-11-29T16:00:05Z``, UTC, whole seconds) the newest base backup before it is restored
    and the change archive replayed up to the last transaction committed within that second
    (:mod:`coldcopy.pitr.recovery`); ``backup`` is then ignored. An ``as_of`` the archive cannot reach is refused
    with the nearest point it can, before anything is created.

    With ``workspace_id``, only that workspace's rows (every tenant table, its ``workspaces`` row, the users
    they refer to) are kept (:mod:`coldcopy.pitr.workspace`): in ``target_database``, or, with
    ``target_schema``, copied into that new schema of the ``conn_id`` database for support to copy back from
    (the restored database is a scratch one then, dropped afterwards).
    """

    template_fields: Sequence[str] = ("backup", "target_database", "tables", "as_of", "workspace_id",
                                      "target_schema", "jobs")

    def __init__(self, *, backup: str, target_database: str, tables: list[str] | str | None = None,
                 as_of: str | None = None, workspace_id: str | None = None, target_schema: str | None = None,
                 jobs: int | str = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.backup, self.target_database, self.jobs = backup, target_database, jobs
        self.tables, self.as_of = tables, as_of
        self.workspace_id, self.target_schema = workspace_id, target_schema
        self.recovery = self.workspace = None

    def execute(self, context: Context) -> dict:
        from coldcopy import alerts
        from coldcopy.backups import BackupError

        tables = [t for t in (self.tables or []) if t] if not isinstance(self.tables, str) else (
            [t.strip() for t in self.tables.split(",") if t.strip()])
        schema = self._workspace_request(tables)
        target = (self.target_database or "").strip() if not schema else \
            f"coldcopy_ws_{self.workspace[:8]}_{context['ti'].try_number if 'ti' in context else 0}"
        if not target:
            raise AirflowFailException("target_database is required")
        if len(target) > 52:
            raise AirflowFailException(f"target_database {target!r}: at most 52 characters (the quarantine's name "
                                       "adds a suffix within PostgreSQL's 63)")
        decided = approval.decision(context)
        live = self.is_live(target)
        if live and (decided or {}).get("decision") != RESTORE:
            raise AirflowFailException(f"refusing to restore into the live database {target!r} without an approval "
                                       f"(the run's '{approval.APPROVAL_TASK_ID}' task, answered 'restore')")
        runner = self.runner()
        if jobs := self.checked_jobs(self.jobs):  # 0: one per core; 1: no parallel restore, one replay lane
            runner.restore_jobs = jobs
        try:
            key, manifest = self.chosen_backup(runner)
            if live and (decided.get("request") or {}).get("backup") != key:
                raise AirflowFailException(
                    f"the approval was for {decided.get('request', {}).get('backup')}, and the backup to restore is "
                    f"now {key}: trigger a new run so this one is approved")
            if runner.skipped:
                alerts.send_for_task(context, f"restore passed over {len(runner.skipped)} backup(s) with a refused "
                                     f"manifest: {'; '.join(runner.skipped)[:800]}", kind="threshold_breached")
            if self.recovery and self.recovery.refused:
                alerts.send_for_task(context, f"restore skipped {len(self.recovery.refused)} change archive chain "
                                     f"head(s) that do not verify: {', '.join(self.recovery.refused)[:800]}",
                                     kind="threshold_breached")
            if tables:
                erasures, problems = self.restore_tables(runner, key, manifest, target, tables)
            elif schema:
                erasures, problems = self.restore_database(runner, key, manifest, target)
                copied = self.copy_workspace(target, schema, key)
            else:
                erasures, problems = self.restore_database(runner, key, manifest, target)
        except BackupError as error:
            self.fail_for_good(error)
        if problems:
            alerts.send_for_task(context, f"erasure ledger: {len(problems)} problem(s) while restoring {key} (every "
                                 f"valid erasure was applied): {'; '.join(problems)[:800]}",
                                 kind="threshold_breached", problems=problems[:20])
        self.say(context, f"restored {key} into {target}" + (f" (tables {', '.join(tables)})" if tables else "") +
                 (f" as of {self.recovery.describe()['as_of']}" if self.recovery else "") +
                 (f", workspace {self.workspace} copied into {schema} ({sum(copied.values()):,} rows)" if schema
                  else "") + f"; {len(erasures)} erasure(s) re-applied")
        result = {"object_key": key, "target_database": None if schema else target, "tables": tables,
                  "erasures_reapplied": len(erasures), "as_of": self.recovery.describe()["as_of"] if self.recovery
                  else None, "workspace_id": self.workspace}
        if schema:
            result.update(target_schema=schema, rows=sum(copied.values()))
        return result

    def is_live(self, target: str) -> bool:
        """Whether ``target`` is the database of ``conn_id`` (the live one), as the server names it: a connection
        without a database name connects to libpq's default (the login's name), which a comparison with the
        connection's ``schema`` field alone took for "not live"."""
        with self.hook().get_conn() as conn:
            return target == conn.execute("SELECT current_database()").fetchone()[0]

    def chosen_backup(self, runner) -> tuple[str, dict]:
        """Object key and verified manifest of what this run restores: the base backup of ``as_of``'s recovery
        plan, or ``backup`` resolved. Refuses an ``as_of`` the archive cannot reach."""
        if (self.as_of or "").strip():
            from coldcopy.pitr import recovery

            try:
                self.recovery = recovery.plan(runner, recovery.parse_as_of(self.as_of),
                                              anchor=recovery.read_anchor(self.hook().dsn()))
            except recovery.RecoveryError as error:
                raise AirflowFailException(str(error)) from error
            self.log.info("as of %s: base backup %s, then segments %s of chain %s", self.as_of,
                          self.recovery.backup_key, self.recovery.describe()["segments"], self.recovery.chain.name)
            return self.recovery.backup_key, self.recovery.backup
        return runner.resolve(self.backup)

    def _workspace_request(self, tables: list[str]) -> str | None:
        """Validate ``workspace_id`` / ``target_schema`` before anything is created; the schema, if any."""
        from coldcopy.pitr.workspace import WorkspaceError, schema_name, workspace_uuid

        if not (self.workspace_id or "").strip():
            if (self.target_schema or "").strip():
                raise AirflowFailException("target_schema is for one workspace: set workspace_id too")
            return None
        if tables:
            raise AirflowFailException("workspace_id and tables do not combine: a workspace takes every tenant table")
        try:
            self.workspace = workspace_uuid(self.workspace_id)
            if not (self.target_schema or "").strip():
                return None
            with self.hook().get_conn() as conn:
                return schema_name(conn, self.target_schema)
        except WorkspaceError as error:
            raise AirflowFailException(str(error)) from error

    def copy_workspace(self, scratch: str, schema: str, key: str) -> dict[str, int]:
        """The workspace's rows from the restored scratch database into ``schema`` (a registered support copy,
        which erasures reach and ``gdpr_retention`` drops when it expires); the scratch is dropped."""
        from coldcopy import scratch as scratch_dbs
        from coldcopy.pitr.workspace import copy_into_schema

        try:
            origin = f"{key} as of {self.recovery.describe()['as_of']}" if self.recovery else key
            copied = copy_into_schema(self.hook().dsn(dbname=scratch), self.hook().dsn(), schema,
                                      workspace_id=self.workspace, origin=origin)
        finally:
            with self._admin() as admin:
                scratch_dbs.drop(admin, scratch)
        self.log.info("workspace %s: %d rows of %d tables in schema %s", self.workspace, sum(copied.values()),
                      len(copied), schema)
        return copied

    def _admin(self):
        import psycopg

        return psycopg.connect(self.hook().dsn(dbname="postgres"), autocommit=True)

    def restore_tables(self, runner, key: str, manifest: dict, target: str, tables: list[str]):
        with self._admin() as admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchone():
                raise AirflowFailException(f"{target!r} does not exist: a table restore needs its schema")
        target_dsn = self.hook().dsn(dbname=target)
        try:
            runner.restore(key, target_dsn, tables=tables, manifest=manifest)
            self.replay(runner, target_dsn, tables)
        finally:  # loaded and replayed with triggers off: no capture saw it (coldcopy.refresh.incremental)
            self._summaries_rebuild(target_dsn, tables)
        return self.reapply_erasures(runner, manifest, target_dsn)

    def _summaries_rebuild(self, target_dsn: str, tables: list[str]) -> None:
        import psycopg

        from coldcopy.refresh.incremental import capture

        with psycopg.connect(target_dsn, autocommit=True) as conn:
            if due := capture.note_lost(conn, tables, f"table restore of {', '.join(tables)}"):
                self.log.info("summaries reading the restored tables rebuild on their next refresh: %s",
                              ", ".join(due))

    def replay(self, runner, target_dsn: str, tables: list[str] | None = None, jobs: int = 1,
               segments=None) -> None:
        """The change archive up to ``as_of`` (nothing without it); ``jobs`` connections for a private target;
        ``segments`` already being read (:class:`coldcopy.pitr.recovery.ReadAhead`)."""
        if self.recovery is None:
            return
        from coldcopy.migrations.marker_applier import marker_applier
        from coldcopy.pitr import recovery

        report = recovery.replay(runner, self.recovery, target_dsn, tables=tables, jobs=jobs, segments=segments,
                                 migrate=marker_applier(target_dsn))
        self.log.info("replayed %d transaction(s) up to %s (%d already in the base backup); changes %s",
                      report["transactions_replayed"], report["last_commit_replayed"],
                      report["transactions_in_base_backup"], report["changes"])

    def restore_database(self, runner, key: str, manifest: dict, target: str):
        import psycopg
        from psycopg import sql

        from coldcopy import scratch as scratch_dbs
        from coldcopy.backups import restored_mark

        quarantine = f"{target}__restoring"
        what = restored_mark.mark(key, self.as_of, self.workspace)
        with self._admin() as admin:
            exists = admin.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                                   (target,)).fetchone()
            if exists and restored_mark.read(exists[0]) == what:  # an earlier try of this very restore finished
                self.log.info("%s was restored from %s by an earlier try, which was cut short after its hand-over",
                              target, key)
                return {}, []
            if exists:
                with psycopg.connect(self.hook().dsn(dbname=target)) as conn:
                    populated = conn.execute(
                        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                        "AND n.nspname NOT LIKE 'pg_toast%'").fetchone()[0]
                if populated:  # pg_restore --clean cannot replace partitioned tables: never half-overwrite
                    raise AirflowFailException(
                        f"{target!r} has {populated} tables: a whole-database restore goes into an empty database "
                        "only. Restore into a new database and point the application at it (docs/backups.md), "
                        "or drop and recreate this one first")
            # A quarantine left by a killed try is ours to replace: it was never handed over. Created closed to
            # PUBLIC and labelled with its expiry: a SIGKILL leaves nothing the next sweep does not take.
            scratch_dbs.sweep(admin)
            scratch_dbs.drop(admin, quarantine)
            scratch_dbs.create(admin, quarantine, "workspace" if self.target_schema else "quarantine",
                               self.execution_timeout)
        from coldcopy.pitr.recovery import ReadAhead

        # the first segment is fetched, bound and decrypted while the base backup restores
        segments = ReadAhead(runner, self.recovery.segments if self.recovery else [])
        try:
            quarantine_dsn = self.hook().dsn(dbname=quarantine)
            runner.restore(key, quarantine_dsn, manifest=manifest, jobs=runner.restore_jobs)
            step("restore.loaded")  # the quarantine holds the backup's rows, erased people among them
            self.replay(runner, quarantine_dsn, jobs=runner.restore_jobs, segments=segments)
            erasures, problems = self.reapply_erasures(runner, manifest, quarantine_dsn)
            step("restore.erasures_reapplied")
            if self.workspace:
                from coldcopy.pitr.workspace import WorkspaceError, keep_only

                try:
                    keep_only(quarantine_dsn, self.workspace)
                except WorkspaceError as error:
                    raise AirflowFailException(str(error)) from error
            with self._admin() as admin:
                if exists:
                    admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(target)))  # empty (checked)
                # renamed and handed over in one transaction: a try cut short between the two left a whole
                # target the next try refused (populated) and no one had opened
                with admin.transaction():
                    admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(quarantine),
                                                                                   sql.Identifier(target)))
                    step("restore.renamed")  # not committed: still the quarantine, closed to PUBLIC
                    if not self.target_schema:  # a workspace's scratch stays closed until copied and dropped
                        scratch_dbs.hand_over(admin, target)
                        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                            sql.Identifier(target), sql.Literal(json.dumps(what))))
                step("restore.handed_over")
        except BaseException:
            with self._admin() as admin:
                scratch_dbs.drop(admin, quarantine)
            raise
        finally:
            segments.close()
        return erasures, problems

    @staticmethod
    def reapply_erasures(runner, manifest: dict, target_dsn: str) -> tuple[dict, list[str]]:
        """Backups are immutable: every erasure since the backup began (the *bound* manifest's start, so an
        older object under a newer key cannot move the date) is applied again before hand-over."""
        from datetime import datetime

        from coldcopy.gdpr import reapply_after_restore, subject_pepper
        from coldcopy.refresh.erasures import Dashboards

        since = datetime.fromisoformat(manifest["started_at"]) - timedelta(hours=1)  # clock margin
        return reapply_after_restore(target_dsn, runner.bucket, runner.keyring, since,
                                     subject_pepper(), Dashboards)
