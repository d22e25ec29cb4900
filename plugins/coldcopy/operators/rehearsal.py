"""The ``rehearse`` task of ``coldcopy_migrations``: the pending files applied to a restored copy of the newest
verified backup first (see :mod:`coldcopy.migrations.rehearsal`)."""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.operators.migrations import BaseMigrationOperator


class RehearseMigrationsOperator(BaseMigrationOperator):
    """Restore the newest verified backup into a scratch database on ``coldcopy_verify_db``'s server, apply every
    pending file there the same way, and report per file its duration, locks, rewrites, WAL and the hot tables
    the application would queue on; the scratch database is dropped whatever happens. A file failing in the
    rehearsal fails the run before anything touches the target.

    Never on the live server: a pending file is SQL nobody approved yet, and what it does to the cluster (roles,
    their settings, databases, ``ALTER SYSTEM``, slots) is not undone by dropping the scratch database. Without
    ``coldcopy_verify_db``, or with one that reaches ``coldcopy_db``'s own server, nothing is rehearsed and the
    approval question says so.

    A target without data (a fresh database) needs no rehearsal. ``skip_rehearsal`` is for an empty or
    disposable target only: it is refused when the target holds data.
    """

    template_fields: Sequence[str] = ("skip_rehearsal",)

    def __init__(self, *, skip_rehearsal: bool | str = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.skip_rehearsal = skip_rehearsal

    def execute(self, context: Context) -> dict:
        from coldcopy.backups import BackupRunner, backup_passphrase
        from coldcopy.migrations import cluster_statements, rehearsal
        from coldcopy.migrations.scratch_copy import ScratchCopy

        pending = self.pending()
        if not pending:
            self.say(context, "nothing pending: nothing to rehearse")
            return {"files": []}
        populated = self.holds_data()
        if str(self.skip_rehearsal).lower() in ("true", "1"):
            if populated:
                raise AirflowFailException(f"skip_rehearsal is for an empty or disposable target; this one holds "
                                           f"data ({', '.join(populated[:5])}{'…' if len(populated) > 5 else ''})")
            self.say(context, "rehearsal skipped (skip_rehearsal, the target holds no data)")
            return {"files": [], "skipped": True}
        if not populated:
            self.say(context, f"the target holds no data: {len(pending)} pending file(s) apply to it as they would "
                              "to a scratch copy; nothing to rehearse")
            return {"files": [], "empty_target": True}
        server, why_not = self.own_verify_server("the rehearsal")
        cluster = {m.file_name: found for m in pending if (found := cluster_statements(m.read()))}
        if server is None:
            self.say(context, f"not rehearsed: {why_not}")
            return {"files": [], "not_rehearsed": why_not, "cluster_statements": cluster}
        runner = BackupRunner(self.hook().dsn(), self.bucket(), backup_passphrase(self.key_conn_id),
                              keyring=self.keyring())
        with self.hook().get_conn() as live:
            hot = rehearsal.hot_tables(live)
        copy = ScratchCopy(runner, server, self.execution_timeout)
        with copy as scratch:
            results = rehearsal.rehearse(scratch, pending, hot=hot, lock_retry=self.lock_policy())
        report = rehearsal.table(results, hot_known=hot is not None)
        self.log.info("rehearsal on %s (restored from %s):\n%s", copy.name, copy.backup_key, report)
        if failed := [r for r in results if r.error]:
            raise AirflowFailException(f"{failed[0].file} failed in the rehearsal, nothing was applied: "
                                       f"{failed[0].error}")
        self.say(context, f"rehearsed {len(results)} file(s) on a copy of {copy.backup_key}: " +
                 "; ".join(r.summary() for r in results)[:600])
        # hot_tables None: pg_stat_statements is not installed, which tables the application uses is not known
        return {"backup": copy.backup_key, "hot_tables": None if hot is None else sorted(hot),
                "files": [r.as_dict() for r in results], "table": report, "cluster_statements": cluster}
