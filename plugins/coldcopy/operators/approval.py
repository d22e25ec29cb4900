"""A person's approval before a step that cannot be taken back: applying migrations to ``coldcopy_db``, restoring
over its live database.

:class:`ApprovalGate` is the standard provider's :class:`~airflow.providers.standard.operators.hitl.HITLOperator`
(in Airflow 3.3 the waiting task holds no worker slot) with what every gate here needs:

* the approvers are the users named in an Airflow Variable, read when the task runs (``["alice", "bob"]`` or
  ``[{"id": "alice", "name": "Alice"}]``; the id is the auth manager's user id, the user name with the simple
  auth manager); a missing or empty Variable fails the task rather than letting anyone answer;
* no answer within ``response_timeout`` (24 h) is a rejection (``defaults=["reject"]``);
* a rejection (or the timeout) fails the run for good (``AirflowFailException``: an answer is not retried),
  naming who rejected and their comment; a transient error before the question is asked is retried;
* :meth:`ApprovalGate.not_needed` lets a subclass pass without asking (dry run, nothing to do, empty target),
  saying why in the log and in XCom.

The decision is the task's XCom (``{"decision", "by", "comment", "at", "request"}``, the request being the facts
shown: files and checksums, the backup's key); the steps after the gate check it themselves (:func:`decision`),
so a DAG that leaves the gate out cannot apply or restore anything, and nothing else than what was shown is.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Context, Param
from airflow.sdk.exceptions import AirflowFailException

APPROVAL_TASK_ID = "approve"
REJECT = "reject"
NOT_NEEDED = "not needed"
DEFAULT_RESPONSE_TIMEOUT = timedelta(hours=24)


def approvers(variable: str) -> list[dict[str, str]]:
    """The users of the Variable ``variable`` as HITL users (``{"id", "name"}``); refuses a missing, empty or
    malformed Variable with the fix."""
    from airflow.sdk import Variable

    how = (f'set the Airflow Variable {variable} to a JSON list of the user names who may approve, e.g. '
           f'["alice", "bob"] (airflow variables set {variable} \'["alice"]\')')
    raw = Variable.get(variable, default=None)
    if raw in (None, ""):
        raise AirflowFailException(f"nobody may approve this: {how}")
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as error:
        raise AirflowFailException(f"Variable {variable} is not JSON ({error}): {how}") from error
    users = []
    for item in value if isinstance(value, list) else [None]:
        if isinstance(item, str) and item.strip():
            users.append({"id": item.strip(), "name": item.strip()})
        elif isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"].strip():
            users.append({"id": item["id"].strip(), "name": str(item.get("name") or item["id"]).strip()})
        else:
            raise AirflowFailException(f"Variable {variable}: {item!r} is not a user name: {how}")
    if not users:
        raise AirflowFailException(f"Variable {variable} names nobody: {how}")
    return users


def decision(context: Context, task_id: str = APPROVAL_TASK_ID) -> dict | None:
    """The gate's decision in this run (its XCom), or None when there was no gate or it gave none."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is None:
        return None
    value = ti.xcom_pull(task_ids=task_id)
    return value if isinstance(value, dict) and isinstance(value.get("decision"), str) else None


class ApprovalGate(HITLOperator):
    """Wait for one of ``approvers_variable``'s users to choose among ``options`` (the last, ``reject``, is the
    default on timeout). Subclasses build the subject and body (:meth:`describe`) and may skip the question
    (:meth:`not_needed`)."""

    ui_color = "#fff3cd"

    def __init__(self, *, approvers_variable: str, options: list[str],
                 response_timeout: timedelta = DEFAULT_RESPONSE_TIMEOUT, **kwargs) -> None:
        if options[-1] != REJECT:
            raise ValueError(f"the last option must be {REJECT!r} (the default on timeout)")
        kwargs.pop("params", None)  # the DAG's params: still in the task's context, but not questions of the form
        params = {"comment": Param("", type=["string", "null"], description="why (shown in the run's failure when "
                                                                              "rejecting)")}
        super().__init__(subject="(built when the task runs)", options=options, defaults=[REJECT],
                         response_timeout=response_timeout, params=params, **kwargs)
        self.approvers_variable = approvers_variable

    # -- what subclasses provide -------------------------------------------------------------------------------

    def not_needed(self, context: Context) -> str | None:
        """Why no approval is needed in this run (the gate passes without asking), or None to ask."""
        return None

    def describe(self, context: Context) -> tuple[str, str, dict]:
        """(subject, Markdown body, facts) of the question; the facts (what exactly is put to the approver: the
        files and their checksums, the backup's key…) are kept in XCom beside the decision, so the step after
        the gate can refuse to do anything else than what was shown."""
        raise NotImplementedError

    # -- the gate ----------------------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        reason = self.not_needed(context)
        if reason:
            self.say(context, f"no approval needed: {reason}")
            return {"decision": NOT_NEEDED, "reason": reason}
        self.assigned_users = approvers(self.approvers_variable)
        self.subject, self.body, facts = self.describe(context)
        context["ti"].xcom_push(key="request", value=facts)  # kept across the wait (not cleared on resume)
        self.log.info("asking %s (answer within %s, else rejected):\n%s\n%s",
                      ", ".join(u["id"] for u in self.assigned_users), self.response_timeout, self.subject, self.body)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict:
        if event.get("error_type") == "timeout" or (event.get("timedout") and not event.get("responded_by_user")):
            raise AirflowFailException(f"no answer within {self.response_timeout}: rejected; nothing was changed")
        result = super().execute_complete(context, event)
        chosen = result["chosen_options"][0]
        by = (result.get("responded_by_user") or {}).get("name") or "?"
        comment = ((result.get("params_input") or {}).get("comment") or "").strip()
        if chosen == REJECT:
            raise AirflowFailException(f"rejected by {by}{': ' + comment if comment else ''}; nothing was changed")
        at = result.get("responded_at")
        self.say(context, f"{by} chose {chosen!r}{f' ({comment})' if comment else ''}")
        return {"decision": chosen, "by": by, "comment": comment, "at": at.isoformat() if at else None,
                "request": context["ti"].xcom_pull(task_ids=self.task_id, key="request") or {}}
