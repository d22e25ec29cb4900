"""Each pending migration file graded by risk from facts (issue 44): its statements as PostgreSQL parses them, the
code it makes and calls, and what the rehearsal measured where it ran.

Grades, worst first (:data:`GRADES`):

* **destructive** — DROP TABLE / COLUMN / SCHEMA / … (or anything with CASCADE), TRUNCATE, a column's type changed,
  DELETE or UPDATE without a WHERE naming a column, MERGE … DELETE, a rename or a move to another schema, a policy
  dropped and not made again, row level security disabled or no longer forced, a partition detached;
* **ungraded** — what the grader cannot read: EXECUTE of SQL built at run time, a call into a function it cannot
  see (or a built-in with effects), a body in a language other than SQL and PL/pgSQL, a statement of a kind it does
  not know. Two people read it, as for *destructive*;
* **blocking** — the rehearsal measured ACCESS EXCLUSIVE or SHARE held on a hot table for longer than
  :data:`BLOCKING_MS`, or a table rewritten; an index built or dropped without CONCURRENTLY; REFRESH, REINDEX,
  CLUSTER, VACUUM FULL, LOCK;
* **data-dependent** — ADD UNIQUE / PRIMARY KEY / FOREIGN KEY / CHECK / EXCLUDE without NOT VALID, SET NOT NULL, a
  NOT NULL column without a default, a unique index, an attached partition — on a table that holds rows; a DELETE
  with a WHERE;
* **safe** — none of these.

A function's body is graded as if it ran, and so is a DO block's; a call into a function the target has is graded
by its definition (``pg_get_functiondef``), so a call into an existing function that deletes is what it does.

Apart from the grade, a file is **security-relevant** when it grants to ``anon``, ``authenticated`` or PUBLIC (also
by default privileges), makes, alters or drops a policy, disables or un-forces row level security, disables a
trigger, makes a SECURITY DEFINER function without ``SET search_path = pg_catalog, pg_temp`` or changes a function's
search_path, makes a view in an API schema without ``security_invoker``, changes an owner or a role, or switches
role.

Approvals (:attr:`Grade.approvals`): *safe* one approver; *blocking* or *data-dependent* one who is not the file's
author (``-- coldcopy:author <user>``, when it says); *destructive*, *ungraded* or security-relevant two distinct
approvers. The count depends only on the file's text (checksummed) and the target's catalog, never on XCom.
"""

from __future__ import annotations

import re

from coldcopy.migrations.risk.functions import Functions
from coldcopy.migrations.risk.grade import GRADES, Grade, worst
from coldcopy.migrations.risk.rehearsal import BLOCKING_LOCKS, BLOCKING_MS, add_rehearsal, squawk

__all__ = ["BLOCKING_LOCKS", "BLOCKING_MS", "Functions", "GRADES", "Grade", "add_rehearsal", "grade_text", "squawk",
           "worst"]
_AUTHOR = re.compile(r"^-- coldcopy:author\s+(\S+)", re.M)


def grade_text(file: str, text: str, *, populated: set[str] | None = None,
               functions: Functions | None = None) -> Grade:
    """The grade of ``text``. ``populated``: the tables (``schema.table`` or bare names) holding rows, None when not
    known (then every data-dependent statement counts); ``functions``: the target's (:meth:`Functions.from_conn`),
    None to know only common built-ins (every other call is then *ungraded*)."""
    from coldcopy.migrations.risk.reader import Reader

    grade = Grade(file, author=(m.group(1) if (m := _AUTHOR.search(text)) else None))
    reader = Reader(grade, populated, functions or Functions())
    reader.text(text)
    reader.settle()
    return grade
