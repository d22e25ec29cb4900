"""
# refresh_lead_engagement — every 6 hours

Refreshes `analytics.lead_engagement` (per-lead opens, clicks, replies and engagement score) and
`analytics.lead_intent_summary` (from 301: per-lead intent signals; lead scoring reads both together).

- **Schedule**: every 6 hours (00, 06, 12, 18 UTC). **Deadline**: finished within 1 h of being queued.
- Both are incremental summaries: a run recomputes the leads whose events or signals changed since the last
  apply, and, for `lead_intent_summary` (a rolling 90-day window), the leads with a signal that aged out of it
  since then; nothing changed and nothing aged out is a skip. Backfilled runs whose interval a newer refresh
  covers skip. Every decision is in `coldcopy_ops.mv_refresh_log`.
- Concurrent refresh, readers never blocked. `force: true` refreshes regardless. Pool `coldcopy_db_heavy`.

Backfill steps and the symptom table below are shared by the four refresh DAGs: Airflow shows them from
`coldcopy.refresh.dag.RUNBOOK`, written once.

Design, the stock-tools runbook and the measured figures: `docs/refresh.md` in the repository.
"""

from coldcopy.refresh.dag import build_refresh_dag

dag = build_refresh_dag(dag_id="refresh_lead_engagement", doc_md=__doc__)
