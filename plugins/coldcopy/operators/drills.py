"""The ``drill`` task of ``restore_drill`` (see :mod:`coldcopy.pitr.drills`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.operators.backups import MAX_JOBS, BaseBackupOperator


class RestoreDrillOperator(BaseBackupOperator):
    """Restore the database as of a second of the last day on ``coldcopy_verify_db``'s server, check it against
    the archive, measure RTO (by phase) and achieved RPO, record it in ``coldcopy_ops.restore_drills``.

    :param as_of: the second (UTC, ``2026-12-04T03:00:05Z``); empty: a random one of the last 24 h.
    :param jobs: ``pg_restore --jobs`` and the replay's lanes, at most :data:`MAX_JOBS`; 0: the verify
        connection's extra ``cores``, else this worker's cores (capped the same).
    ``verify_conn_id`` (the verification server) is required here, and never the live database's server.
    """

    template_fields: Sequence[str] = ("as_of", "jobs")
    ui_color = "#e8e2f3"
    default_execution_timeout = timedelta(hours=3)  # three times the default RTO budget

    def __init__(self, *, as_of: str = "", jobs: int | str = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.as_of, self.jobs = as_of, jobs

    def restore_jobs(self, connection) -> int:
        if jobs := self.checked_jobs(self.jobs):
            return jobs
        cores = (connection.extra_dejson or {}).get("cores")
        return max(1, min(int(cores) if cores else (os.cpu_count() or 2), MAX_JOBS))

    def execute(self, context: Context) -> dict:
        from airflow.sdk import Variable

        from coldcopy import alerts, optional_connection
        from coldcopy.backups import BackupError
        from coldcopy.crypto import UntrustedObject
        from coldcopy.hooks.coldcopy_postgres import ColdCopyPostgresHook
        from coldcopy.humanize import duration, size
        from coldcopy.manifests import ManifestRejected
        from coldcopy.migrations.marker_applier import MigrationNotInCheckout, marker_applier
        from coldcopy.operators.restore import RestoreFromSpacesOperator
        from coldcopy.pitr.bulk import LanesWaited
        from coldcopy.pitr.chain import ChainError
        from coldcopy.pitr.drills import record
        from coldcopy.pitr.drills.drill import DrillError, RestoreDrill
        from coldcopy.pitr.recovery import RecoveryError, parse_as_of
        from coldcopy.pitr.replay import ReplayError
        from coldcopy.verify_roles import MissingRoles

        connection = optional_connection(self.verify_conn_id)
        if connection is None:
            raise AirflowFailException(f"no {self.verify_conn_id} connection: a restore drill runs only on a "
                                       "verification server of its own, never beside the live database")
        try:
            as_of = parse_as_of(self.as_of) if (self.as_of or "").strip() else None
        except RecoveryError as error:
            raise AirflowFailException(str(error)) from error
        budget = float(Variable.get(record.BUDGET_VARIABLE, default=record.DEFAULT_BUDGET_S))
        runner = self.runner()
        runner.restore_jobs = jobs = self.restore_jobs(connection)
        drill = RestoreDrill(
            runner, self.hook().dsn(), ColdCopyPostgresHook(postgres_conn_id=self.verify_conn_id).dsn(
                dbname="postgres"),
            reapply=lambda manifest, dsn: RestoreFromSpacesOperator.reapply_erasures(runner, manifest, dsn),
            migrate=marker_applier,
            jobs=jobs, budget_s=budget, ttl=self.execution_timeout)
        try:
            row = drill.run(as_of)
        except (DrillError, RecoveryError, ChainError, UntrustedObject, BackupError, ManifestRejected, ReplayError,
                MigrationNotInCheckout, LanesWaited, MissingRoles) as error:
            # recorded; a retry would not mend the archive or the replay (S3 or network trouble is retried)
            raise AirflowFailException(str(error)) from error
        if refused := row["checks"].get("chain_heads_refused"):
            alerts.send_for_task(context, f"restore drill skipped {len(refused)} change archive chain head(s) that do "
                                 f"not verify (planted or forged?): {', '.join(refused)[:800]}",
                                 kind="threshold_breached")
        over = f"; over the RTO budget of {duration(budget)}" if row["rto_s"] > budget else ""
        self.say(context, f"drill as of {row['as_of']:%Y-%m-%d %H:%M:%S} UTC passed: RTO {duration(row['rto_s'])} "
                          f"(download {duration(row['download_s'])}, restore {duration(row['restore_s'])} with "
                          f"{jobs} job(s), replay {duration(row['replay_s'])}, checks {duration(row['verify_s'])}, "
                          f"erasures {duration(row['erasures_s'])}), RPO {duration(row['rpo_s'])}; "
                          f"{size(row['bytes'])}, {row['rows']:,} rows, {row['changes_replayed']:,} changes "
                          f"replayed, {row['checks']['sampled_keys']:,} sampled keys equal{over}")
        return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items() if k != "checks"}
