"""One place for alerts: task failures, missed deadlines and threshold breaches, for every DAG.

Delivery goes through Airflow notifiers, one per alert connection that exists:

* ``coldcopy_alerts_webhook`` (type http): JSON POSTed to the connection's URL, Slack-compatible
  (``{"text": ...}``) plus the structured ``alert``. Host may be a full URL, e.g.
  ``https://hooks.slack.com/services/…``.
* ``coldcopy_alerts_smtp`` (type smtp): an e-mail to the addresses in the extra field ``to``.

With neither configured, the alert is logged as a warning and nothing fails: an alert must never be
the reason a maintenance task fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from coldcopy import optional_connection
from coldcopy.connections import SMTP_CONN_ID, WEBHOOK_CONN_ID  # noqa: F401 - re-exported under this module's name
from coldcopy.failure_reasons import next_step, plain_reason

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Alert:
    kind: str  # task_failed | deadline_missed | threshold_breached
    summary: str
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        where = " / ".join(p for p in (self.dag_id, self.task_id, self.run_id) if p)
        text = f"[ColdCopy DB Ops] {self.kind}: {self.summary}" + (f" ({where})" if where else "")
        if self.details.get("next_step"):
            text += f"\nNext: {self.details['next_step']}"
        if self.details.get("log_url"):
            text += f"\nLog: {self.details['log_url']}"
        return text


def notifiers_on(conn_id: str, text: str, payload: dict) -> list:
    """The notifier of connection ``conn_id`` for ``text``: a webhook (http: ``{"text", **payload}`` POSTed)
    or an e-mail (smtp: to the extra's ``to``); none when the connection does not exist or has no recipient."""
    connection = optional_connection(conn_id)
    if connection is None:
        return []
    if connection.conn_type == "smtp":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        recipients = connection.extra_dejson.get("to")
        if not recipients:
            log.warning("connection %s has no 'to' in its extra: no e-mail sent", conn_id)
            return []
        return [SmtpNotifier(smtp_conn_id=conn_id, to=recipients, from_email=connection.extra_dejson.get("from_email"),
                             subject=text.splitlines()[0], html_content=f"<pre>{text}\n\n{payload}</pre>")]
    from airflow.providers.http.notifications.http import HttpNotifier

    return [HttpNotifier(http_conn_id=conn_id, json={"text": text, **payload})]


def notifiers(alert: Alert) -> list:
    """A notifier for each alert connection that exists."""
    return [*notifiers_on(WEBHOOK_CONN_ID, alert.text, {"alert": asdict(alert)}),
            *notifiers_on(SMTP_CONN_ID, alert.text, {"alert": asdict(alert)})]


def deliver(conn_id: str, text: str, payload: dict) -> None:
    """Deliver a message that must arrive (a GDPR export's link and passphrase): unlike an alert, no channel
    or a failed one raises, so the caller does not report the work done."""
    channels = notifiers_on(conn_id, text, payload)
    if not channels:
        raise RuntimeError(f"connection {conn_id} is not configured (http webhook or smtp with extra 'to'): "
                           "nowhere to deliver to")
    for notifier in channels:
        notifier.notify({})


def _channels(alert: Alert) -> list:
    channels = notifiers(alert)
    if not channels:
        log.warning("ALERT not delivered, no alert connection (%s or %s) configured: %s",
                    WEBHOOK_CONN_ID, SMTP_CONN_ID, alert.text)
    return channels


@contextmanager
def _failure_logged(notifier, alert: Alert) -> Iterator[None]:
    try:
        yield
    except Exception:  # noqa: BLE001 - a broken channel must not fail the task that raised the alert
        log.exception("alert channel %s failed for: %s", type(notifier).__name__, alert.text)


def send(alert: Alert) -> int:
    """Deliver ``alert`` on every configured channel; returns how many took it. Never raises."""
    delivered = 0
    for notifier in _channels(alert):
        with _failure_logged(notifier, alert):
            notifier.notify({})
            delivered += 1
    return delivered


async def send_async(alert: Alert) -> int:
    """:func:`send` for the triggerer's event loop."""
    delivered = 0
    for notifier in _channels(alert):
        with _failure_logged(notifier, alert):
            await notifier.async_notify({})
            delivered += 1
    return delivered


def send_for_task(context, summary: str, *, kind: str = "task_failed", **details) -> int:
    """:func:`send` an alert about the running task instance (DAG, task and run taken from ``context``)."""
    ti = context["ti"]
    return send(Alert(kind=kind, summary=summary, dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                      details=details))


def on_task_failure(context) -> None:
    """``on_failure_callback`` of every ColdCopy task: one page per DAG and error within an hour
    (:mod:`coldcopy.alert_dedupe`), however many tasks or runs fail with it."""
    from coldcopy import alert_dedupe

    ti = context["ti"]
    error = context.get("exception")
    reason = plain_reason(error)
    if not alert_dedupe.first_in_window(alert_dedupe.key("task_failed", ti.dag_id, reason), run_id=ti.run_id,
                                        task_id=ti.task_id):
        return
    send_for_task(context, f"{ti.task_id} failed for good (try {ti.try_number}): {reason}", error=reason,
                  try_number=ti.try_number, repeats_muted_for=str(alert_dedupe.WINDOW),
                  next_step=next_step(error, ti.dag_id), log_url=_log_url(ti))


def _log_url(ti) -> str | None:
    try:
        return ti.log_url
    except Exception:  # noqa: BLE001 - a test double or an unconfigured base_url: the alert goes without it
        return None


async def on_deadline_missed(*, deadline_name: str, expected: str, context: dict | None = None, **_) -> int:
    """Deadline callback; runs in the triggerer (hence importable from plugins/ and async)."""
    dag_run = (context or {}).get("dag_run", {})
    deadline = (context or {}).get("deadline", {})
    if ended_before(dag_run.get("end_date"), deadline.get("deadline_time")):
        # Deadlines are pruned only when a run succeeds: a run that failed in time still reaches here, and its
        # failure has paged already (issue 41: a deadline_missed alert for a run that had failed minutes before).
        log.info("deadline %s of run %s: the run ended (%s) before it, not paging", deadline_name,
                 dag_run.get("run_id") or dag_run.get("dag_run_id"), dag_run.get("state"))
        return 0
    if dag_run.get("run_type") == "backfill":
        # A backfill queues all its runs at once; most are merely waiting their turn. Whoever started the
        # backfill watches it in the UI (Backfills tab), so its runs never page.
        log.info("deadline %s missed by backfill run %s: not paging", deadline_name, dag_run.get("run_id"))
        return 0
    return await send_async(Alert(
        kind="deadline_missed",
        summary=f"{deadline_name}: {expected} — not finished by {deadline.get('deadline_time')}",
        dag_id=dag_run.get("dag_id"), run_id=dag_run.get("dag_run_id") or dag_run.get("run_id"),
        details={"state": dag_run.get("state"), "queued_at": dag_run.get("queued_at")},
    ))


def ended_before(end_date, deadline_time) -> bool:
    """Whether a run's ``end_date`` (ISO text or datetime, None while it runs) is at or before ``deadline_time``."""
    from datetime import datetime

    def moment(value):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
        except ValueError:  # not a time we can compare: page, as if the run had not ended in time
            return None

    if end_date is None:  # still running
        return False
    end, due = moment(end_date), moment(deadline_time)
    return end is not None and due is not None and end <= due


def deadline(interval: timedelta, expected: str):
    """The DAG run must finish within ``interval`` of being queued, or on-call is alerted.

    Measured from when the run was queued (not its logical date), so a backfill of old intervals does
    not page for every run the moment it is created.
    """
    from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference

    name = f"finish within {interval}"
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=interval,
        callback=AsyncCallback("coldcopy.alerts.on_deadline_missed",
                               kwargs={"deadline_name": name, "expected": expected}),
        name=name,
    )
