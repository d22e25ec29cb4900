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

    def text(self, text: str, where: str = "") -> None:
        """Every statement of ``text`` (a file, a function body, an EXECUTE's string)."""
        from pglast import parse_sql
        from pglast.parser import ParseError

        try:
            statements = parse_sql(text)
        except ParseError as e:
            self.grade.worsen("ungraded", f"{where}does not parse ({e}): read it whole")
            return
        raw = text.encode()
        for s in statements:
            end = s.stmt_location + s.stmt_len if s.stmt_len else len(raw)
            self.statement(s.stmt, where, raw[s.stmt_location:end].decode(errors="replace"))

    def statement(self, node: ast.Node, where: str = "", source: str = "") -> None:
        from coldcopy.migrations.risk import bodies, statements

        kind = type(node).__name__
        rule = statements.RULES.get(kind)
        if rule is None and kind not in statements.SAFE:
            self.grade.worsen("ungraded", f"{where}a {kind} statement, which the grader does not read")
        elif rule is not None:
            rule(self, node, where, source)
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
            elif key[0] == "POLICY":
                self.grade.secure(f"replaces policy {key[1]} on {key[2]}")


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


def bare(qualified: str) -> str:
    return qualified.replace('"', "").split(".")[-1].lower()
