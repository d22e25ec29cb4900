"""Reads a migration file the way PostgreSQL will (libpg_query, through pglast): every statement, the bodies of the
functions and DO blocks it makes or runs, and the code it calls. Comments, literals and dollar quotes are the
parser's business, so nothing hides in them; what it cannot read is *ungraded*, never *safe*."""

from __future__ import annotations

from pglast import ast

from coldcopy.migrations.risk.functions import Functions
from coldcopy.migrations.risk.grade import Grade

MAX_DEPTH = 6  # calls into calls into calls: beyond this, ungraded


class Reader:
    def __init__(self, grade: Grade, populated: set[str] | None, functions: Functions) -> None:
        self.grade, self.populated, self.functions = grade, populated, functions
        self.dropped: dict[tuple[str, str, str], str] = {}
        self.made: set[tuple[str, str, str]] = set()
        self.made_functions: set[str] = set()  # graded where they are made
        self.followed: set[str] = set()
        self.depth = 0
        # relations made in a schema the Data API serves (Supabase grants anon and authenticated ALL on them by
        # default privileges), and what the file does about it: row level security enabled, API roles revoked
        self.exposed: dict[str, str] = {}
        self.rls: set[str] = set()
        self.revoked: set[tuple[str, str]] = set()
        self.added: set[tuple[str, str]] = set()  # (table, column) added by the file: an UPDATE of it backfills

    def text(self, text: str, where: str = "") -> None:
        """Every statement of ``text`` (a file, a function body, an EXECUTE's string)."""
        from pglast import parse_sql
        from pglast.parser import ParseError

        try:
            statements = parse_sql(text)
        except ParseError as e:
            self.grade.worsen("ungraded", f"{where}does not parse ({e}): read it whole")
            return
        for s in statements:  # pglast's locations count characters, not bytes
            self.statement(s.stmt, where, text[s.stmt_location:s.stmt_location + s.stmt_len] if s.stmt_len
                           else text[s.stmt_location:])

    def statement(self, node: ast.Node, where: str = "", source: str = "") -> None:
        from coldcopy.migrations.risk import bodies, statements

        kind = type(node).__name__
        rule = statements.RULES.get(kind)
        if rule is None and kind not in statements.SAFE:
            self.grade.worsen("ungraded", f"{where}a {kind} statement, which the grader does not read")
        elif rule is not None:
            rule(self, node, where, source)
        for cte in walk(node, bodies.OWN_BODY):  # a data-modifying WITH runs whatever the outer statement is
            if isinstance(cte, ast.CommonTableExpr) and not isinstance(cte.ctequery, ast.SelectStmt):
                self.statement(cte.ctequery, f"{where}WITH {cte.ctename}: ")
        bodies.calls(self, node, where)

    def holds_rows(self, relation: ast.RangeVar | None) -> bool:
        """Whether the table holds rows on the target (not known: counted as if it does)."""
        if self.populated is None or relation is None:
            return True
        bare = relation.relname
        return f"{relation.schemaname or 'public'}.{bare}" in self.populated or bare in self.populated

    def deeper(self, key: str) -> bool:
        """Follow into ``key`` (a function's body) once, not past :data:`MAX_DEPTH`."""
        if key in self.followed:
            return False
        self.followed.add(key)
        return True

    def settle(self) -> None:
        """Dropped objects made again in the file under the same name are replaced, not lost."""
        for key, statement in self.dropped.items():
            if key not in self.made:
                self.grade.worsen("destructive", f"drops a {key[0].lower()} not made again: {statement}")
                if key[0] == "POLICY":
                    self.grade.secure(f"drops policy {key[1]} on {key[2]}")
            elif key[0] in ("POLICY", "TRIGGER"):
                self.grade.secure(f"replaces {key[0].lower()} {key[1]} on {key[2]}: what it enforced may change")
        for relation, kind in self.exposed.items():
            if (relation in self.rls and kind == "table") or all((relation, r) in self.revoked
                                                                 for r in ("anon", "authenticated")):
                continue
            self.grade.secure(f"{kind} {relation} in an API schema without row level security: anon and "
                              "authenticated hold ALL on it (Supabase's default privileges) unless revoked")


def walk(node, prune: frozenset[str] = frozenset()):
    """Every node under ``node`` (itself included), not entering nodes whose type is in ``prune``."""
    if isinstance(node, (list, tuple)):
        for item in node:
            yield from walk(item, prune)
    elif isinstance(node, ast.Node):
        if type(node).__name__ in prune:
            return
        yield node
        for attr in node.__slots__:
            yield from walk(getattr(node, attr, None), prune)


def name(parts) -> str:
    """``schema.name`` of a list of String nodes, a RangeVar, an ObjectWithArgs or a TypeName."""
    if isinstance(parts, ast.RangeVar):
        return f"{parts.schemaname}.{parts.relname}" if parts.schemaname else parts.relname
    if isinstance(parts, ast.ObjectWithArgs):
        parts = parts.objname
    elif isinstance(parts, ast.TypeName):
        parts = parts.names
    elif isinstance(parts, ast.String):
        return parts.sval
    return ".".join(p.sval for p in parts or () if isinstance(p, ast.String))


def qualified(parts) -> str:
    """``schema.name`` as PostgreSQL keeps it (the parser folds unquoted names, keeps quoted ones), ``public``
    when the statement names no schema (the migrations' path)."""
    full = (parts if isinstance(parts, str) else name(parts)).replace('"', "")
    return full if "." in full else f"public.{full}"


def pg_bool(arg) -> bool | None:
    """A reloption's value as PostgreSQL reads a boolean (true, yes, on, 1 and their prefixes), None if unsure."""
    text = str(getattr(arg, "sval", getattr(arg, "boolval", getattr(arg, "ival", arg)))).strip().lower()
    if text in ("1", "on") or (text and any(w.startswith(text) for w in ("true", "yes"))):
        return True
    if text in ("0", "off", "of") or (text and any(w.startswith(text) for w in ("false", "no"))):
        return False
    return None
