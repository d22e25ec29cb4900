"""Each pending migration file graded by risk from facts (issue 44): its statements, and what the rehearsal measured
where it ran.

Grades, worst first (:data:`GRADES`):

* **destructive** — DROP TABLE / COLUMN / SCHEMA / VIEW / FUNCTION, TRUNCATE, a column's type changed, DELETE or
  UPDATE without WHERE, a policy dropped, row level security disabled or no longer forced;
* **blocking** — the rehearsal measured ACCESS EXCLUSIVE or SHARE held on a table the application uses (its hot
  tables) for longer than :data:`BLOCKING_MS`, or a table rewritten; an index built without CONCURRENTLY;
* **data-dependent** — ADD UNIQUE / PRIMARY KEY / FOREIGN KEY / CHECK without NOT VALID, SET NOT NULL, a NOT NULL
  column added without a default — on a table that holds rows (live's catalog estimate);
* **safe** — none of these.

Apart from the grade, a file is **security-relevant** when it grants to ``anon``, ``authenticated`` or PUBLIC,
creates or alters a policy, disables or un-forces row level security, or makes a SECURITY DEFINER function
without ``SET search_path = pg_catalog, pg_temp``.

Approvals follow (:func:`approvals_needed`): *safe* one approver; *blocking* or *data-dependent* one who is not
the file's author (``-- coldcopy:author <user>`` in the file, when it says); *destructive* or security-relevant two
distinct approvers. The count depends only on the file's text (checksummed), never on the rehearsal's XCom, which a
``user``-role account could rewrite. squawk's findings (``make lint``'s linter) are added as reasons when its
binary is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field

GRADES = ("destructive", "blocking", "data-dependent", "safe")
BLOCKING_MS = 1000.0
BLOCKING_LOCKS = ("AccessExclusiveLock", "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock")
# squawk rules the runner itself answers: every statement runs under lock_timeout and statement_timeout (retried),
# and a failed file rolls back (a part of a non-transactional one resumes)
SQUAWK_HANDLED = {"require-lock-timeout", "require-statement-timeout", "prefer-robust-stmts"}
_AUTHOR = re.compile(r"^-- coldcopy:author\s+(\S+)", re.M)
_TABLE = r"(?:ONLY\s+)?((?:\"[^\"]+\"|\w+)(?:\.(?:\"[^\"]+\"|\w+))?)"

DESTRUCTIVE = [
    (re.compile(r"^DROP\s+(TABLE|SCHEMA|SEQUENCE)\b", re.I), "drops a {0}"),
    (re.compile(r"^ALTER\s+TABLE\b.*\bDROP\s+(?:COLUMN\s+)?(?!CONSTRAINT\b|DEFAULT\b|NOT\b|IDENTITY\b|EXPRESSION\b)"
                r"(?:IF\s+EXISTS\s+)?(\"?\w+\"?)", re.I), "drops column {0}"),
    (re.compile(r"^TRUNCATE\b", re.I), "TRUNCATE"),
    (re.compile(r"^ALTER\s+TABLE\b.*\bALTER\s+(?:COLUMN\s+)?\"?\w+\"?\s+(?:SET\s+DATA\s+)?TYPE\b", re.I),
     "changes a column's type"),
    (re.compile(r"^(DELETE\s+FROM|UPDATE)\b(?!.*\bWHERE\b)", re.I), "{0} without WHERE"),
    (re.compile(r"^ALTER\s+TABLE\b.*\b(DISABLE\s+ROW\s+LEVEL\s+SECURITY|NO\s+FORCE\s+ROW\s+LEVEL\s+SECURITY)", re.I),
     "{0}"),
]
DATA_DEPENDENT = [
    (re.compile(r"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?" + _TABLE + r".*\bADD\s+(?:CONSTRAINT\s+\S+\s+)?"
                r"(UNIQUE|PRIMARY\s+KEY|FOREIGN\s+KEY|CHECK)\b(?!.*\bNOT\s+VALID\b)", re.I), "adds {1} to {0}"),
    (re.compile(r"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?" + _TABLE + r".*\bSET\s+NOT\s+NULL\b", re.I),
     "SET NOT NULL on {0}"),
    (re.compile(r"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?" + _TABLE + r".*\bADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
                r"\"?\w+\"?\s+[^,]*\bNOT\s+NULL\b(?![^,]*\bDEFAULT\b)", re.I),
     "a NOT NULL column without a default on {0}"),
]
SECURITY = [
    (re.compile(r"^GRANT\b.*\bTO\b.*\b(anon|authenticated|PUBLIC)\b", re.I), "grants to {0}"),
    (re.compile(r"^(CREATE|ALTER)\s+POLICY\b", re.I), "{0} POLICY"),
    (re.compile(r"^ALTER\s+TABLE\b.*\b(DISABLE\s+ROW\s+LEVEL\s+SECURITY|NO\s+FORCE\s+ROW\s+LEVEL\s+SECURITY)", re.I),
     "{0}"),
]
# Dropped, then made again in the same file under the same name: a replacement (a view, a function, a policy made
# idempotent by DROP … IF EXISTS; CREATE …), not a loss; dropped and not made again: destructive.
_KINDS = r"(VIEW|MATERIALIZED\s+VIEW|FUNCTION|PROCEDURE|TYPE|POLICY|TRIGGER)"
_NAME = r"((?:\"[^\"]+\"|\w+)(?:\.(?:\"[^\"]+\"|\w+))?)(?:\s+ON\s+" + _TABLE + r")?"
_DROPS = re.compile(r"^DROP\s+" + _KINDS + r"\s+(?:IF\s+EXISTS\s+)?" + _NAME, re.I)
_MAKES = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?" + _KINDS + r"\s+(?:IF\s+NOT\s+EXISTS\s+)?"
                    + _NAME, re.I)
_DEFINER = re.compile(r"\bSECURITY\s+DEFINER\b", re.I)
_FIXED_PATH = re.compile(r"\bSET\s+search_path\s*(?:=|TO)\s*pg_catalog\s*,\s*pg_temp\b", re.I)
_INDEX = re.compile(r"^CREATE\s+(?:UNIQUE\s+)?INDEX\b(?!\s+CONCURRENTLY)(?:\s+IF\s+NOT\s+EXISTS)?\s*\S*\s+ON\s+"
                    + _TABLE, re.I)


@dataclass
class Grade:
    file: str
    grade: str = "safe"
    reasons: list[str] = field(default_factory=list)
    security: list[str] = field(default_factory=list)
    author: str | None = None

    def worsen(self, grade: str, reason: str) -> None:
        if GRADES.index(grade) < GRADES.index(self.grade):
            self.grade = grade
        self.reasons.append(f"{grade}: {reason}")

    @property
    def approvals(self) -> int:
        return 2 if self.grade == "destructive" or self.security else 1

    def as_dict(self) -> dict:
        return {"file": self.file, "grade": self.grade, "reasons": self.reasons, "security": self.security,
                "author": self.author, "approvals": self.approvals}


def _flat(statement: str) -> str:
    from coldcopy.migrations import strip_sql_comments

    return " ".join(strip_sql_comments(statement).split())


def grade_text(file: str, text: str, *, populated: set[str] | None = None) -> Grade:
    """The grade of ``text`` from its statements alone; ``populated``: the tables (``schema.table`` or bare names)
    holding rows, None when not known (then every data-dependent statement counts)."""
    import sqlparse

    grade = Grade(file, author=(m.group(1) if (m := _AUTHOR.search(text)) else None))
    dropped, made = {}, set()
    for statement in sqlparse.split(text):
        flat = _flat(statement)
        if not flat:
            continue
        if m := _DROPS.search(flat):
            dropped.setdefault(_object(m), flat[:100])
        if m := _MAKES.search(flat):
            made.add(_object(m))
        for pattern, reason in DESTRUCTIVE:
            if m := pattern.search(flat):
                grade.worsen("destructive", reason.format(*(" ".join(g.split()) if g else g for g in m.groups())))
        for pattern, reason in DATA_DEPENDENT:
            if (m := pattern.search(flat)) and (populated is None or _known(m.group(1), populated)):
                grade.worsen("data-dependent", reason.format(*m.groups()))
        if (m := _INDEX.search(flat)) and (populated is None or _known(m.group(1), populated)):
            grade.worsen("blocking", f"an index built without CONCURRENTLY on {m.group(1)} (writes wait)")
        for pattern, reason in SECURITY:
            if m := pattern.search(flat):
                grade.security.append(reason.format(*m.groups()))
        if _DEFINER.search(flat) and not _FIXED_PATH.search(flat):
            grade.security.append("a SECURITY DEFINER function without SET search_path = pg_catalog, pg_temp")
    for key, statement in dropped.items():
        if key not in made:
            grade.worsen("destructive", f"drops a {key[0].lower()} not made again: {statement}")
        elif key[0] == "POLICY":
            grade.security.append(f"replaces policy {key[1]} on {key[2]}")
    grade.reasons, grade.security = list(dict.fromkeys(grade.reasons)), list(dict.fromkeys(grade.security))
    return grade


def _object(m: re.Match) -> tuple[str, str, str]:
    kind, name, table = m.group(1), m.group(2), m.group(3) or ""
    bare = lambda n: n.replace('"', "").split(".")[-1].lower()  # noqa: E731 - schema left out: public by default
    kind = " ".join(kind.upper().split())
    return kind, bare(name), bare(table) if kind == "POLICY" else ""  # a trigger's table comes after its events


def _known(table: str, populated: set[str]) -> bool:
    bare = table.replace('"', "")
    return bare in populated or f"public.{bare}" in populated or bare.split(".")[-1] in populated


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
