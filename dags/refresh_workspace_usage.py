"""
# refresh_workspace_usage — daily at 02:00 UTC

Refreshes `analytics.workspace_usage` (members, leads, active campaigns, e-mails sent this month and in
the last 30 days against the plan's quota), read by billing and the workspace dashboard.

- **Schedule**: daily at 02:00 UTC, the quiet hour. **Deadline**: finished within 2 h of being queued.
- The view depends on the clock (this month, last 30 days), so every scheduled run refreshes; backfilled
  days that a newer refresh already covers skip. Decisions are in `coldcopy_ops.mv_refresh_log`.
- Concurrent refresh, readers never blocked. `force: true` refreshes regardless. Pool `coldcopy_db_heavy`.

Backfill steps and the symptom table below are shared by the four refresh DAGs: Airflow shows them from
`coldcopy.refresh.dag.RUNBOOK`, written once.

Design, the stock-tools runbook and the measured figures: `docs/refresh.md` in the repository.
"""

from coldcopy.refresh.dag import build_refresh_dag

dag = build_refresh_dag(dag_id="refresh_workspace_usage", doc_md=__doc__)
