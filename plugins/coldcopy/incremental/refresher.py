"""A refresh of an incremental summary, as the refresh DAGs run it: same decisions, same log as a materialized
view's (:mod:`coldcopy.refresh`), but costing the groups that changed."""

from __future__ import annotations

import logging
import time

import psycopg

from coldcopy.alerts import reason_of
from coldcopy.incremental.maintainer import SummaryBusy, SummaryMaintainer
from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.refresh_runs import RefreshOutcome, RefreshRun, covered, last_refresh, log_outcome

log = logging.getLogger(__name__)


class IncrementalRefresher:
    """Refreshes the summary ``view`` on the autocommit connection ``conn``.

    A run whose interval a newer refresh covers skips (backfills cost one refresh); otherwise the pending
    changes are applied (``force``: rebuilt from the definition). No changed group, or another session
    applying it, is a skip with its reason.
    """

    def __init__(self, conn: psycopg.Connection, view: str, *, lock_retry: LockRetryPolicy = LockRetryPolicy(),
                 statement_timeout: str = "30min", force: bool = False) -> None:
        self.conn, self.view, self.force = conn, view, force
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
                    outcome = RefreshOutcome(self.view, "skipped", f"{busy}: its apply covers this run")
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
        log_outcome(self.conn, run, started_at, started, outcome, snapshot)
        pruned = self.maintainer.prune()
        log.info("%s: %s (%s) in %d ms — %s; %d captured keys pruned", self.view, outcome.action,
                 outcome.mode or "-", outcome.duration_ms, outcome.reason, pruned)
        return outcome
