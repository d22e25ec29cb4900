"""Dashboard refreshes: the dispatcher (:mod:`~coldcopy.refresh.dispatch`) above both refreshers — the
materialized views' (:mod:`~coldcopy.refresh.views`) and the incremental summaries'
(:mod:`~coldcopy.refresh.incremental`) — the refresh log both write (:mod:`~coldcopy.refresh.runs`), the refresh
DAGs' jobs (:mod:`~coldcopy.refresh_schedule`) and their factory (:mod:`~coldcopy.refresh.dag`). Light: the DAG files
import this package; the refreshers load only inside a task. The runbook: docs/refresh.md.
"""
