"""A refresh of an incremental summary, as the refresh DAGs run it: same decisions, same log as a materialized
view's (:mod:`coldcopy.refresh.views`), but costing the groups that changed."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import psycopg

from coldcopy.failure_reasons import reason_of
from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.refresh.incremental.maintainer import SummaryBusy, SummaryMaintainer
from coldcopy.refresh.runs import RefreshOutcome, RefreshRun, covered, last_refresh, log_outcome
from coldcopy.steps import step

log = logging.getLogger(__name__)

# A summary busy (another session holding its apply) for longer than this fails its refresh: something holds
# it (a stuck or forgotten session), its captured keys pile up, and skipping on would hide it.
BUSY_LIMIT = timedelta(hours=1)
_BUSY_NOTE = "its apply covers this run"


class SummaryStuck(RuntimeError):
    """The summary has been busy across refreshes for longer than the limit."""


class IncrementalRefresher:
    """Refreshes the summary ``view`` on the autocommit connection ``conn``.

    A run whose interval a newer refresh covers skips (backfills cost one refresh); otherwise the pending
    changes are applied (``force``: rebuilt from the definition). No changed group, or another session
    applying it, is a skip with its reason — until the summary has been busy for more than ``busy_limit``
    (counted from the first of the consecutive busy skips logged): then the refresh fails (:class:`SummaryStuck`).
    """

    def __init__(self, conn: psycopg.Connection, view: str, *, lock_retry: LockRetryPolicy = LockRetryPolicy(),
                 statement_timeout: str = "30min", force: bool = False, busy_limit: timedelta = BUSY_LIMIT) -> None:
        self.conn, self.view, self.force, self.busy_limit = conn, view, force, busy_limit
        self.maintainer = SummaryMaintainer(conn, view, lock_retry=lock_retry, statement_timeout=statement_timeout)

    def run(self, run: RefreshRun) -> RefreshOutcome:
        from coldcopy import ops_schema

        ops_schema.ensure(self.conn, "refresh_tracking")
        started = time.monotonic()
        started_at = self.conn.execute("SELECT clock_timestamp()").fetchone()[0]
        snapshot = None
        try:
            reason = covered(last_refresh(self.conn, self.view), run)
            if reason:
                outcome = RefreshOutcome(self.view, "skipped", reason)
            else:
                try:
                    applied = self.maintainer.apply(force=self.force)
                except SummaryBusy as busy:
                    self._not_stuck(busy)
                    outcome = RefreshOutcome(self.view, "skipped", f"{busy}: {_BUSY_NOTE}")
                else:
                    snapshot = applied.snapshot
                    action = "skipped" if applied.mode == "incremental" and applied.groups == 0 else "refreshed"
                    outcome = RefreshOutcome(self.view, action, applied.reason, applied.mode,
                                             applied.groups if applied.mode == "rebuild" else None)
                    if action == "skipped":
                        outcome.mode = None
                        outcome.reason = "no source change since the last apply (watermark advanced)"
        except Exception as error:
            log_outcome(self.conn, run, started_at, started,
                        RefreshOutcome(self.view, "failed", reason_of(error)[:2000]), None)
            raise
        step("refresh.applied")  # the summary and its watermark committed; the run's log not yet written
        log_outcome(self.conn, run, started_at, started, outcome, snapshot)
        step("refresh.logged")
        pruned = self.maintainer.prune()
        step("refresh.pruned")
        log.info("%s: %s (%s) in %d ms — %s; %d captured keys pruned", self.view, outcome.action,
                 outcome.mode or "-", outcome.duration_ms, outcome.reason, pruned)
        return outcome

    def _not_stuck(self, busy: SummaryBusy) -> None:
        """Raise :class:`SummaryStuck` when the busy skips logged since the last apply (or other skip) began more
        than ``busy_limit`` ago; failures in between do not end the run, so each refresh past the limit fails."""
        since, stuck = self.conn.execute(
            "SELECT min(started_at), min(started_at) < clock_timestamp() - %s FROM coldcopy_ops.mv_refresh_log "
            "WHERE view_name = %s AND action = 'skipped' AND reason LIKE %s AND started_at > coalesce((SELECT "
            "max(started_at) FROM coldcopy_ops.mv_refresh_log WHERE view_name = %s AND action <> 'failed' AND NOT "
            "(action = 'skipped' AND reason LIKE %s)), '-infinity')",
            (self.busy_limit, self.view, f"%{_BUSY_NOTE}", self.view, f"%{_BUSY_NOTE}")).fetchone()
        if stuck:
            raise SummaryStuck(f"{busy}, and has been since {since.isoformat()} (longer than {self.busy_limit}): "
                               "a session holds its apply (pg_stat_activity: a long transaction of the ops role); "
                               "its captured keys pile up until it ends")
