"""What the rehearsal measured for a file (locks held, tables rewritten), and squawk's findings where they fit."""

from __future__ import annotations

import json
import shutil
import subprocess

from coldcopy.migrations.risk.grade import Grade

BLOCKING_MS = 1000.0
BLOCKING_LOCKS = ("AccessExclusiveLock", "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock")
# squawk rules the runner itself answers: every statement runs under lock_timeout and statement_timeout (retried),
# and a failed file rolls back (a part of a non-transactional one resumes)
SQUAWK_HANDLED = {"require-lock-timeout", "require-statement-timeout", "prefer-robust-stmts"}


def add_rehearsal(grade: Grade, rehearsed: dict | None, hot: set[str] | None) -> None:
    """What the rehearsal measured for the file (its entry of the ``rehearse`` task's result)."""
    if not rehearsed:
        return
    for lock in rehearsed.get("locks", []):
        on_hot = hot is None or lock.get("relation") in hot
        if lock.get("mode") in BLOCKING_LOCKS and on_hot and (lock.get("held_ms") or 0) > BLOCKING_MS:
            grade.worsen("blocking", f"{lock['mode']} held {lock['held_ms']:.0f} ms on {lock['relation']} "
                                     "in the rehearsal")
    for relation, rows in (rehearsed.get("rewritten") or {}).items():
        grade.worsen("blocking", f"rewrote {relation} ({rows:,} rows) in the rehearsal")


def squawk(text: str) -> list[str]:
    """squawk's rule names and messages for ``text`` (empty when squawk is not installed)."""
    import sys
    from pathlib import Path

    beside = Path(sys.executable).parent / "squawk"  # the virtualenv's, where PATH does not name it
    binary = shutil.which("squawk") or (str(beside) if beside.exists() else None)
    if binary is None:
        return []
    done = subprocess.run([binary, "--reporter", "json", "--stdin-filepath", "migration.sql"], input=text,
                          capture_output=True, text=True, timeout=60)
    try:
        return sorted({f"squawk {f['rule_name']}: {f['message']}" for f in json.loads(done.stdout or "[]")
                       if f["rule_name"] not in SQUAWK_HANDLED})
    except (ValueError, KeyError, TypeError):
        return []
