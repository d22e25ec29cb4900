"""
# refresh_email_deliverability — every 2 hours

Refreshes `analytics.email_deliverability` (bounce and complaint rates per sending account and day) and
`analytics.daily_workspace_activity` (from 301: daily event counts per workspace, the same events over the
same 90-day window, so one pass of the cache serves both).

- **Schedule**: every 2 hours at :00 UTC. **Deadline**: finished within 40 min of being queued, else alert.
- Both views depend on the clock (a rolling 90-day window), so they refresh every run unless a newer
  refresh already covers the run's interval (backfills); see `coldcopy_ops.mv_refresh_log`.
- Concurrent refresh, readers never blocked. `force: true` refreshes regardless. Pool `coldcopy_db_heavy`.

Backfill steps and the symptom table below are shared by the four refresh DAGs: Airflow shows them from
`coldcopy.refresh.dag.RUNBOOK`, written once.

Design, the stock-tools runbook and the measured figures: `docs/refresh.md` in the repository.
"""

from coldcopy.refresh.dag import build_refresh_dag

dag = build_refresh_dag(dag_id="refresh_email_deliverability", doc_md=__doc__)
