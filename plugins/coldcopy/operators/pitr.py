"""Operators of ``change_archive`` and ``change_archive_setup`` (see :mod:`coldcopy.pitr`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.humanize import duration
from coldcopy.operators.base import ColdCopyOperator
from coldcopy.run_notes import note


class BasePitrOperator(ColdCopyOperator):
    """Shared parts: the database (``conn_id``: a direct connection, a role with ``REPLICATION``), the bucket and
    the backups' passphrase, as :class:`ColdCopyOperator` declares them."""


class ChangeArchiveOperator(BasePitrOperator):
    """Keep the ``coldcopy_pitr`` slot drained into Spaces until just before the next hourly run starts.

    One long task per hour (``max_active_runs=1``): a drain every ``every_s`` seconds holds the recovery
    point within a minute, and ending ``stop_before_s`` before the next run is due hands over cleanly — the
    slot itself refuses a second reader, and the next run starts where the slot stands. A task that starts
    late (after a pause) drains the backlog once, then runs to its hour's end.

    :param conn_id: a *direct* connection (not the transaction pooler) as a role with ``REPLICATION``.
    """

    template_fields: Sequence[str] = ("every_s", "run_for_s")
    ui_color = "#e2eef3"
    default_execution_timeout = timedelta(minutes=75)
    default_statement_timeout = "10min"

    def __init__(self, *, every_s: float | str = 5.0, stop_before_s: float = 20.0, run_for_s: float | str = 0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.every_s, self.stop_before_s, self.run_for_s = every_s, stop_before_s, run_for_s

    def archiver(self):
        from coldcopy.backups import backup_passphrase
        from coldcopy.pitr.archiver import ChangeArchiver

        return ChangeArchiver(self.hook().dsn(), self.bucket(), backup_passphrase(self.key_conn_id),
                              keyring=self.keyring())

    def execute(self, context: Context) -> dict:
        from coldcopy.pitr.chain import ChainError
        from coldcopy.pitr.setup import SetupError

        start = context.get("logical_date") or datetime.now(UTC)
        end = start + timedelta(hours=1) - timedelta(seconds=self.stop_before_s)
        seconds = max((end - datetime.now(UTC)).total_seconds(), 0.0)
        if float(self.run_for_s or 0) > 0:  # a run triggered by hand (a demo, a test): this long only
            seconds = min(seconds, float(self.run_for_s)) if context.get("logical_date") else float(self.run_for_s)
        until = time.monotonic() + seconds
        try:
            drained = self.archiver().run(until=until, every_s=float(self.every_s))
        except (ChainError, SetupError) as error:
            raise AirflowFailException(str(error)) from error  # a retry cannot mend either: a person must
        lags = [d.lag_s for d in drained if d.lag_s is not None]
        result = {"segments": len(drained), "transactions": sum(d.transactions for d in drained),
                  "changes": sum(d.changes for d in drained), "max_lag_s": round(max(lags), 1) if lags else None,
                  "last_segment": drained[-1].seq if drained else None}
        self.say(context, f"change archive: {result['segments']} segment(s), {result['transactions']:,} "
                          f"transaction(s), {result['changes']:,} change(s)" +
                 (f"; the oldest commit archived {duration(result['max_lag_s'])} after it happened"
                  if result["max_lag_s"] is not None else ""))
        return result


class ChangeArchiveSetupOperator(BasePitrOperator):
    """Show (``dry_run``) or apply what the change archive needs: the publication of every keyed application
    table (partitions through their root) and the logical replication slot, which starts a chain."""

    template_fields: Sequence[str] = ("dry_run",)

    def __init__(self, *, dry_run: bool | str = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dry_run = dry_run

    def execute(self, context: Context) -> dict:
        import psycopg

        from coldcopy.pitr.setup import Setup, SetupError

        dry_run = str(self.dry_run).lower() in ("true", "1")
        with psycopg.connect(self.hook().dsn(), autocommit=True) as conn:
            setup = Setup(conn, lock_retry=self.lock_policy())
            plan = setup.plan()
            for statement in plan.statements:
                self.log.info("%s: %s", "would run" if dry_run else "runs", statement)
            for problem in plan.problems:
                self.log.error("problem: %s", problem)
            if plan.problems:  # a dry run is run to find these: it fails too, naming them (issue 41)
                raise AirflowFailException(("dry run: nothing changed; " if dry_run else "") + f"{len(plan.problems)} "
                                           "problem(s) stop the setup: " + "; ".join(plan.problems))
            if dry_run:
                self.say(context, f"dry run: {len(plan.tables)} table(s) to publish, {len(plan.statements)} "
                                  "statement(s), no problem; nothing changed")
                note(context, f"dry run: nothing applied — {len(plan.statements)} statement(s) would run, "
                              f"{len(plan.tables)} table(s) published; no problem found")
                return {"dry_run": True, "statements": plan.statements, "problems": []}
        archiver = ChangeArchiveOperator.archiver(self)
        try:
            archiver.drain_once()  # creates what is missing, starts the chain, archives what is there
        except SetupError as error:
            raise AirflowFailException(str(error)) from error
        self.say(context, f"change archive set up: {len(plan.statements)} statement(s) run, "
                          f"{len(plan.tables)} table(s) published, first segment archived")
        return {"dry_run": False, "statements": plan.statements, "problems": []}
