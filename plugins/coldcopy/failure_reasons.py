"""What a failure says to the person on call: its reason in plain words (no row values: PostgreSQL's DETAIL and
CONTEXT lines can quote them) and the next step, by what the error says. Used by the alerts
(:mod:`coldcopy.alerts`) and by every log or record that keeps a reason."""

from __future__ import annotations

import re


def plain_reason(error: BaseException | None) -> str:
    """What an on-call engineer reads in a page: the error's first line, no Python class name (the class only
    when the message is empty, in words); PostgreSQL's DETAIL/CONTEXT lines can quote row values."""
    if error is None:
        return "no exception recorded (killed, timed out or marked failed)"
    lines = str(error).strip().splitlines()
    if lines and lines[0].strip():
        return lines[0].strip()
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", type(error).__name__).lower()


# What to do next, by what the error says (the first match); the DAG's runbook (its Docs tab) otherwise.
_NEXT_STEPS = (
    (r"lock timeout|canceling statement due to lock", "application traffic held a lock longer than the job may "
     "wait; the task retried. If it repeats, db_health's blocking-queries check names the holder"),
    (r"connection refused|could not connect|server closed the connection|terminating connection",
     "the database did not answer: check the server and the connection's host/port, then clear the task"),
    (r"no .*connection|connection .* (is not|isn't) (set|configured|defined)|conn_id .* isn't defined",
     "add the connection named in the message (Admin → Connections; the README's Connections table says how), "
     "then clear the task"),
    (r"statement timeout|canceling statement due to statement", "the statement ran past its timeout: look for "
     "what the database was busy with (db_health), then clear the task or raise the operator's statement_timeout"),
    (r"no space left|disk full", "the worker's disk is full: free the spool directory, then clear the task"),
    (r"signature|manifest|refus", "an object in the bucket failed its check and was not used: see the log for its "
     "key; the runbook's 'trust' section says how to tell tampering from a rotated key"),
)


def next_step(error: BaseException | None, dag_id: str | None) -> str:
    """The next step for a failure: the error's own ``next_step`` when it has one, else by its message."""
    if error is not None and getattr(error, "next_step", None):
        return str(error.next_step)
    text = str(error or "").lower()
    for pattern, step in _NEXT_STEPS:
        if re.search(pattern, text):
            return step
    return f"open the log below, then the {dag_id or 'DAG'} runbook (the DAG's Docs tab) for what to do"


def reason_of(error: BaseException | None) -> str:
    """The error's class and first line: PostgreSQL's DETAIL/CONTEXT lines can quote row values."""
    if error is None:
        return "no exception recorded (killed, timed out or marked failed)"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
