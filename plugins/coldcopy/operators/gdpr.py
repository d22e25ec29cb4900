"""Operators of ``gdpr_requests`` and ``gdpr_retention`` (see :mod:`coldcopy.gdpr`)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from datetime import timedelta

from airflow.sdk import Context

from coldcopy.operators.base import ColdCopyOperator
from coldcopy.run_notes import skip


class BaseGdprOperator(ColdCopyOperator):
    """Shared parts: the database, the bucket, and the key that signs the erasure ledger.

    ``spaces_conn_id`` (exports, ledger, retention archives) and ``key_conn_id`` are :class:`ColdCopyOperator`'s;
    the ledger is signed with ``manifest_key_conn_id``.
    """

    ui_color = "#eef1fb"
    default_execution_timeout = timedelta(hours=1)
    default_statement_timeout = "15min"

    @contextmanager
    def gdpr(self):
        from coldcopy.gdpr import Gdpr, subject_pepper
        from coldcopy.refresh.erasures import Dashboards

        with self.hook().session() as conn:
            yield Gdpr(conn, lock_retry=self.lock_policy(), keyring=self.keyring(), passphrase=self.passphrase(),
                       pepper=subject_pepper(), dashboards=Dashboards)

    def passphrase(self) -> str | None:
        """The backup passphrase (retention archives are encrypted like the backups), when configured."""
        from coldcopy import optional_connection

        connection = optional_connection(self.key_conn_id)
        return connection.password if connection else None


class PendingRequestsOperator(BaseGdprOperator):
    """The verified access, portability and erasure requests to process (``received`` ones wait for a person).
    First, housekeeping every run: exports past their 7 days are deleted, and the erasure ledger's database
    and bucket copies are cross-checked (an entry missing from the bucket is published again; any problem
    alerts once per run), and a column that looks personal but is in no rule of the personal-data map alerts."""

    def execute(self, context: Context) -> list[str]:
        from coldcopy import alerts

        bucket = self.bucket()
        with self.gdpr() as gdpr:
            from coldcopy.gdpr import unregistered_columns

            expired = gdpr.delete_expired_exports(bucket)
            problems = gdpr.check_ledger(bucket)
            pending = gdpr.pending()
            unknown = unregistered_columns(gdpr.conn)
        if unknown:
            alerts.send_for_task(context, f"{len(unknown)} column(s) that look personal are in no GDPR rule: "
                                 f"{', '.join(unknown)[:600]} (add them to PERSONAL_COLUMNS_REGISTRY)",
                                 kind="threshold_breached", columns=unknown[:50])
        if problems:
            alerts.send_for_task(context, f"erasure ledger: {len(problems)} problem(s): {'; '.join(problems)[:800]}",
                                 kind="threshold_breached", problems=problems[:20])
        self.say(context, f"{len(pending)} request(s) to process; {len(expired)} expired export(s) deleted; "
                          f"erasure ledger: {len(problems) or 'no'} problem(s)")
        return pending


class HandleRequestOperator(BaseGdprOperator):
    """Carry out one request (mapped: one task instance per request). On failure the request stays
    ``in_progress`` with the reason in its notes, and the task's last failure alerts.

    :param request_id: ``data_subject_requests.id``.
    """

    template_fields: Sequence[str] = ("request_id",)

    def __init__(self, *, request_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.request_id = request_id

    def execute(self, context: Context) -> dict:
        from coldcopy.failure_reasons import reason_of

        bucket = self.bucket()
        with self.gdpr() as gdpr:
            try:
                result = gdpr.handle(self.request_id, bucket, run_id=context["run_id"])
            except Exception as error:
                gdpr.record_failure(self.request_id, reason_of(error))
                raise
        result.pop("passphrase", None)
        self.say(context, f"request {self.request_id} ({result['type']}): {result['note'].split(';')[0]}")
        return {"request_id": self.request_id, "type": result["type"]}


class RequestDeadlinesOperator(BaseGdprOperator):
    """Alert (``threshold_breached``) once per request per day when an open request is due within 3 days."""

    def execute(self, context: Context) -> int:
        from coldcopy import alerts

        with self.gdpr() as gdpr:
            due = gdpr.due_soon()
        for request in due:
            alerts.send_for_task(
                context, f"data subject request {request['id']} ({request['request_type']}, {request['status']}) is "
                         f"due {request['due_at']:%Y-%m-%d %H:%M} UTC (GDPR Art. 12(3): one month)",
                kind="threshold_breached", request_id=str(request["id"]), workspace_id=str(request["workspace_id"]))
        self.say(context, f"{len(due)} open request(s) due within 3 days: alerted" if due else
                 "no open request is due within 3 days")
        return len(due)


class RetentionPoliciesOperator(BaseGdprOperator):
    """Every retention policy (one mapped task each applies it)."""

    def execute(self, context: Context) -> list[str]:
        with self.gdpr() as gdpr:
            policies = [str(r) for (r,) in gdpr.conn.execute(
                "SELECT id FROM public.data_retention_policies ORDER BY workspace_id, table_name")]
        self.say(context, f"retention policies to apply: {len(policies)}")
        return policies


class ApplyRetentionOperator(BaseGdprOperator):
    """Apply one retention policy in batches. A policy naming a missing or non-tenant table is reported
    (logged, ``coldcopy_ops.retention_log``) and skipped, never executed.

    :param policy_id: ``data_retention_policies.id``.
    """

    template_fields: Sequence[str] = ("policy_id",)
    default_execution_timeout = timedelta(hours=2)

    def __init__(self, *, policy_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.policy_id = policy_id

    def execute(self, context: Context) -> dict:
        from coldcopy.gdpr import GdprError

        bucket = self.bucket()
        with self.gdpr() as gdpr:
            policy = gdpr.policy(self.policy_id)
            try:
                result = gdpr.apply_retention(policy, bucket)
            except GdprError as error:
                from coldcopy import alerts

                gdpr.log_retention(policy, "skipped", detail=str(error))
                self.log.warning("policy %s skipped: %s", self.policy_id, error)
                alerts.send_for_task(context, f"retention policy skipped: {error}", kind="threshold_breached",
                                     policy_id=self.policy_id)
                skip(context, f"policy {self.policy_id} skipped: {error}")
            gdpr.log_retention(policy, "done", **result)
        self.say(context, f"policy {self.policy_id} ({policy['action']} of {policy['table_name']} older than "
                          f"{policy['retain_for']}): {result['rows']:,} rows in {result['batches']} batch(es)")
        return result


class ExpiredSupportCopiesOperator(BaseGdprOperator):
    """Drop the support copies (one workspace restored into a schema of the live database) past their expiry,
    14 days after ``restore_from_spaces`` made them (:mod:`coldcopy.support_copies`)."""

    def execute(self, context: Context) -> list[str]:
        from coldcopy import support_copies

        with self.hook().session() as conn:
            dropped = support_copies.sweep(conn, self.lock_policy())
            left = support_copies.active(conn)
        self.say(context, (f"dropped expired support copies: {', '.join(dropped)}" if dropped
                           else "no support copy has expired") + f"; {len(left)} left")
        return dropped
