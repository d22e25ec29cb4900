"""The dispatcher above both refreshers: a summary maintained incrementally (:mod:`coldcopy.refresh.incremental`) or
a materialized view (:mod:`coldcopy.refresh.views`)."""

from __future__ import annotations

import psycopg

from coldcopy import safe_names
from coldcopy.refresh.incremental.refresher import IncrementalRefresher
from coldcopy.refresh.incremental.summaries import SUMMARIES
from coldcopy.refresh.views import MaterializedViewRefresher


def refresher_for(conn: psycopg.Connection, view: str, **options):
    """The refresher of ``view``: an incremental summary's (:mod:`coldcopy.refresh.incremental`) or a materialized
    view's; both take ``lock_retry``, ``statement_timeout`` and ``force`` and have ``run(RefreshRun)``."""
    if view in SUMMARIES and safe_names.exists(conn, f"{view}_definition"):
        return IncrementalRefresher(conn, view, **options)
    return MaterializedViewRefresher(conn, view, **options)
