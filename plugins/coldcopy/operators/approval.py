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

The decision is the task's XCom (``{"decision", "by", "by_id", "comment", "at", "request", "dag_id", "run_id",
"gate", "approvers_variable"}``, the request being the facts shown: files and checksums, the backup's key),
**sealed**: signed with ``coldcopy_manifest_key`` as a document of type ``approval`` (:func:`seal`). Airflow lets
any ``user``-role account write a task's XCom and set its state through the REST API, so nothing in XCom proves
who decided unless it is signed by a key no REST user holds; only the gate's own ``execute_complete`` (run on
the worker with the triggerer's event, i.e. the HITL record the ``hitlDetails`` endpoint wrote for an assigned
user) seals one. The steps after the gate check it themselves (:func:`decision`): the seal verifies, it was made
for this DAG, run and gate, and the approver is still in the approvers Variable; a DAG that leaves the gate out,
a decision forged or copied from another run, or a gate marked *success* by hand applies or restores nothing,
and nothing else than what was shown is.
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
ASKED = "asked"  # the sealed facts kept across the wait; never a decision
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


SEAL_TYPE = "approval"


def seal(ti, record: dict, approvers_variable: str, keys=None) -> dict:
    """``record`` (decision, by, by_id, comment, at, request) bound to ``ti``'s DAG, run and gate and to the
    approvers Variable, signed with the manifest key: the XCom value :func:`decision` accepts."""
    from coldcopy import manifests

    body = {**record, "dag_id": ti.dag_id, "run_id": ti.run_id, "gate": ti.task_id,
            "approvers_variable": approvers_variable}
    return json.loads(manifests.dump(body, keys or manifests.keyring(), type=SEAL_TYPE))


def unseal(ti, value, task_id: str, *, what: str) -> dict:
    """The sealed document ``value`` once its signature verifies and it is bound to ``ti``'s DAG and run and to
    the gate ``task_id``. :raises AirflowFailException: it is not (forged, edited, copied from another run)."""
    from coldcopy import manifests

    where = f"the '{task_id}' {what} of run {ti.run_id}"
    try:
        document = manifests.load(json.dumps(value).encode(), manifests.keyring(), where=where, type=SEAL_TYPE)
    except manifests.ManifestRejected as error:
        raise AirflowFailException(f"{error} (not sealed by the gate: written by hand through the REST API?); "
                                   "nothing is done on it") from None
    bound = (document.get("dag_id"), document.get("run_id"), document.get("gate"))
    if bound != (ti.dag_id, ti.run_id, task_id) or not isinstance(document.get("decision"), str):
        raise AirflowFailException(f"{where} was sealed for {'/'.join(map(str, bound))}, not this run's gate "
                                   "(copied from another run?); nothing is done on it")
    return document


def decision(context: Context, task_id: str = APPROVAL_TASK_ID) -> dict | None:
    """The gate's decision in this run, or None when there was no gate or it gave none (no XCom: the gate left
    out, or marked *success* by hand without running).

    :raises AirflowFailException: a decision that is not the gate's own: unsealed or edited (written through the
        REST API), sealed for another DAG, run or gate (copied), or by a user no longer in the approvers
        Variable. Nothing is applied or restored on it.
    """
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is None:
        return None
    value = ti.xcom_pull(task_ids=task_id)
    if value is None:
        return None
    if isinstance(value, dict) and value.get("decision") == NOT_NEEDED and "signature" not in value:
        # Anyone could write this; it grants nothing: each step decides "not needed" again (empty target,
        # nothing pending, not the live database) and refuses when it no longer holds.
        return {"decision": NOT_NEEDED, "reason": str(value.get("reason") or "")[:300]}
    document = unseal(ti, value, task_id, what="decision")
    if document["decision"] not in (NOT_NEEDED, ASKED):
        allowed = {u["id"] for u in approvers(document.get("approvers_variable") or "")}
        if document.get("by_id") not in allowed:
            raise AirflowFailException(f"the '{task_id}' decision of run {ti.run_id}: {document.get('by')!r} is "
                                       f"not (or no longer) one of the approvers in "
                                       f"{document.get('approvers_variable')}; nothing is done on it")
    elif document["decision"] == ASKED:
        raise AirflowFailException(f"the '{task_id}' gate of run {ti.run_id} asked and was not answered (its state "
                                   "set by hand?); nothing is done without an answer")
    return document


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

    def who_may_answer(self, context: Context) -> list[dict[str, str]]:
        """The HITL users asked: the approvers Variable's (a second approval leaves the first approver out)."""
        return approvers(self.approvers_variable)

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
            # Not sealed (no key needed on a fresh install): every step decides "not needed" again itself.
            return {"decision": NOT_NEEDED, "reason": reason}
        self.assigned_users = self.who_may_answer(context)
        self.subject, self.body, facts = self.describe(context)
        # Kept across the wait (not cleared on resume), sealed: a REST user can write this XCom key too.
        context["ti"].xcom_push(key="request", value=seal(context["ti"], {"decision": ASKED, "request": facts},
                                                          self.approvers_variable))
        self.log.info("asking %s (answer within %s, else rejected):\n%s\n%s",
                      ", ".join(u["id"] for u in self.assigned_users), self.response_timeout, self.subject, self.body)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict:
        if event.get("error_type") == "timeout" or (event.get("timedout") and not event.get("responded_by_user")):
            raise AirflowFailException(f"no answer within {self.response_timeout}: rejected; nothing was changed")
        result = super().execute_complete(context, event)
        chosen = result["chosen_options"][0]
        user = result.get("responded_by_user") or {}
        by = user.get("name") or user.get("id") or "?"
        comment = ((result.get("params_input") or {}).get("comment") or "").strip()
        if chosen == REJECT:
            raise AirflowFailException(f"rejected by {by}{': ' + comment if comment else ''}; nothing was changed")
        at = result.get("responded_at")
        self.say(context, f"{by} chose {chosen!r}{f' ({comment})' if comment else ''}")
        record = {"decision": chosen, "by": by, "by_id": user.get("id"), "comment": comment,
                  "at": at.isoformat() if hasattr(at, "isoformat") else at,
                  "request": unseal(context["ti"], context["ti"].xcom_pull(task_ids=self.task_id, key="request"),
                                    self.task_id, what="question")["request"]}
        return seal(context["ti"], record, self.approvers_variable)
