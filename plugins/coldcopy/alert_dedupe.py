"""One page per mistake (issue 41): a task failure whose DAG and error were already paged within
:data:`WINDOW` is logged, not sent again — nine check tasks failing on one bad threshold Variable, or a catch-up
run failing as the scheduled run before it did, page once.

The record is ``coldcopy_ops.alert_sent`` in ``coldcopy_db`` (``sql/ops/alerts.sql``): one atomic
``INSERT … ON CONFLICT … WHERE sent_at < now() - window`` decides, so tasks failing at the same moment on
different workers cannot both page. When the database cannot be reached (often the very failure being paged)
the alert is sent: a duplicate page is better than a lost one.
"""

from __future__ import annotations

import logging
from datetime import timedelta

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)


def key(kind: str, dag_id: str | None, error: str) -> str:
    return f"{kind}|{dag_id or ''}|{error}"[:2000]


def first_in_window(dedupe_key: str, *, run_id: str | None = None, task_id: str | None = None,
                    window: timedelta = WINDOW) -> bool:
    """Whether to send: True, and recorded, unless the same key was sent within ``window`` (then the repeat is
    counted). True as well when ``coldcopy_db`` is not configured or cannot be reached."""
    from coldcopy import optional_connection
    from coldcopy.connections import DB_CONN_ID

    if optional_connection(DB_CONN_ID) is None:
        return True
    try:
        import psycopg

        from coldcopy import ops_schema
        from coldcopy.hooks.coldcopy_postgres import ColdCopyPostgresHook

        dsn = ColdCopyPostgresHook(application_name="coldcopy:alerts", statement_timeout="10s").dsn()
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            ops_schema.ensure(conn, "alerts")
            sent = conn.execute(
                "INSERT INTO coldcopy_ops.alert_sent AS a (dedupe_key, sent_at, run_id, task_id) "
                "VALUES (%s, now(), %s, %s) ON CONFLICT (dedupe_key) DO UPDATE SET sent_at = now(), "
                "run_id = EXCLUDED.run_id, task_id = EXCLUDED.task_id, repeats = 0 "
                "WHERE a.sent_at < now() - %s RETURNING true", (dedupe_key, run_id, task_id, window)).fetchone()
            if sent:
                return True
            first = conn.execute(
                "UPDATE coldcopy_ops.alert_sent SET repeats = repeats + 1 WHERE dedupe_key = %s "
                "RETURNING sent_at, run_id, task_id, repeats", (dedupe_key,)).fetchone()
    except Exception:  # noqa: BLE001 - deciding must never cost the page
        log.warning("could not check whether this alert was already sent; sending it", exc_info=True)
        return True
    log.warning("ALERT not sent again: the same error was paged at %s (run %s, task %s); %d repeat(s) muted "
                "within %s", *first, WINDOW)
    return False
