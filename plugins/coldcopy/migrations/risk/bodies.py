"""Code a migration makes or runs: function bodies (SQL and PL/pgSQL, graded as if they ran: the file puts code on
the target that will), DO blocks, EXECUTE strings, and the calls a statement makes into the target's functions."""

from __future__ import annotations

import re

from pglast import ast

from coldcopy.migrations.risk.reader import MAX_DEPTH, Reader, bare, name, walk

# nodes whose expressions do not run when the statement does
NOT_RUN = frozenset("""CreateFunctionStmt AlterFunctionStmt ViewStmt CreatePolicyStmt AlterPolicyStmt CreateTrigStmt
CreateStmt CreateDomainStmt RuleStmt CommentStmt DoStmt""".split())
DYNAMIC = ("PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors")
_ASSIGN = re.compile(r"^\s*[\w.\"\[\]]+\s*:?=\s*", re.S)
_FORMAT = re.compile(r"%(\d+\$)?-?\d*([sIL%])")


def _options(node) -> dict:
    items = getattr(node, "options", None) or getattr(node, "actions", None) or getattr(node, "args", None) or ()
    return {o.defname: o.arg for o in items}


def _fixed_path(setting) -> bool:
    return isinstance(setting, ast.VariableSetStmt) and (setting.name or "").lower() == "search_path" and \
        setting.kind.name == "VAR_SET_VALUE" and [getattr(a.val, "sval", None) for a in setting.args or ()] == \
        ["pg_catalog", "pg_temp"]


def create_function(r: Reader, node: ast.CreateFunctionStmt, where: str, source: str) -> None:
    qualified = name(node.funcname)
    key = qualified if "." in qualified else f"public.{qualified}"
    r.made.add(("PROCEDURE" if node.is_procedure else "FUNCTION", bare(qualified), ""))
    r.made_functions.add(key.lower())
    options = _options(node)
    language = getattr(options.get("language"), "sval", "sql").lower()
    paths = [o.arg for o in node.options or () if o.defname == "set"]
    if getattr(options.get("security"), "boolval", False) and not any(_fixed_path(p) for p in paths):
        r.grade.secure(f"{where}{qualified}: a SECURITY DEFINER function without SET search_path = pg_catalog, "
                       "pg_temp")
    inside = f"{where}function {qualified}: "
    if node.sql_body is not None:
        for statement in _atomic(node.sql_body):
            r.statement(statement, inside)
    elif language == "sql":
        body = options.get("as")
        r.text(body[0].sval if isinstance(body, (list, tuple)) else getattr(body, "sval", ""), inside)
    elif language == "plpgsql":
        plpgsql(r, source, inside)
    else:
        r.grade.worsen("ungraded", f"{inside}LANGUAGE {language}, whose body the grader does not read")


def _atomic(body) -> list:
    """The statements of a BEGIN ATOMIC body (a list, or a list of lists)."""
    out = []
    for item in body if isinstance(body, (list, tuple)) else (body,):
        out.extend(_atomic(item) if isinstance(item, (list, tuple)) else [item] if item is not None else [])
    return out


def alter_function(r: Reader, node: ast.AlterFunctionStmt, where: str, source: str) -> None:
    qualified = name(node.func)
    settings = [a.arg for a in node.actions or () if a.defname == "set"]
    for s in settings:
        if (s.name or "").lower() == "search_path" and not _fixed_path(s) or s.kind.name == "VAR_RESET_ALL":
            r.grade.secure(f"{where}{qualified}: its search_path changed ({' '.join(source.split())[:80]})")
    if getattr(_options(node).get("security"), "boolval", False) and not any(_fixed_path(s) for s in settings):
        r.grade.secure(f"{where}{qualified} made SECURITY DEFINER without SET search_path = pg_catalog, pg_temp")


def do_block(r: Reader, node: ast.DoStmt, where: str, source: str) -> None:
    options = _options(node)
    language = getattr(options.get("language"), "sval", "plpgsql").lower()
    body = getattr(options.get("as"), "sval", "")
    if language != "plpgsql":
        r.grade.worsen("ungraded", f"{where}a DO block in LANGUAGE {language}")
        return
    tag = "$cc_risk$"
    while tag in body:
        tag = tag[:-1] + "x$"
    plpgsql(r, f"CREATE FUNCTION pg_temp.coldcopy_do() RETURNS void LANGUAGE plpgsql AS {tag}{body}{tag}",
            f"{where}DO block: ")


def plpgsql(r: Reader, definition: str, where: str) -> None:
    from pglast import parse_plpgsql
    from pglast.parser import ParseError

    try:
        tree = parse_plpgsql(definition)
    except ParseError as e:
        r.grade.worsen("ungraded", f"{where}PL/pgSQL that does not parse ({e})")
        return
    _plpgsql_node(r, tree, where)


def _plpgsql_node(r: Reader, node, where: str) -> None:
    if isinstance(node, list):
        for item in node:
            _plpgsql_node(r, item, where)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in DYNAMIC or (isinstance(value, dict) and "dynquery" in value):
                query = value.get("query") or value.get("dynquery")
                dynamic(r, query["PLpgSQL_expr"]["query"], where)
            elif key == "PLpgSQL_expr":
                expression(r, value.get("query", ""), value.get("parseMode", 0), where)
            else:
                _plpgsql_node(r, value, where)


def expression(r: Reader, query: str, mode: int, where: str) -> None:
    """A PL/pgSQL statement (mode 0) or expression (an assignment's right side) as the SQL it runs."""
    if mode == 0:
        r.text(query, where)
    else:
        r.text("SELECT " + (_ASSIGN.sub("", query, count=1) if mode >= 3 else query), where)


def dynamic(r: Reader, expression_text: str, where: str) -> None:
    """EXECUTE of a literal, or of format() of a literal with %I and %L only: read; anything else is built at run
    time, which no grader can read."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    try:
        value = parse_sql("SELECT " + expression_text)[0].stmt.targetList[0].val
    except (ParseError, AttributeError, IndexError, TypeError):
        value = None
    if isinstance(value, ast.A_Const) and isinstance(value.val, ast.String):
        return r.text(value.val.sval, f"{where}EXECUTE: ")
    if isinstance(value, ast.FuncCall) and name(value.funcname) in ("format", "pg_catalog.format") and value.args \
            and isinstance(value.args[0], ast.A_Const) and isinstance(value.args[0].val, ast.String):
        template = value.args[0].val.sval
        if all(m.group(2) != "s" for m in _FORMAT.finditer(template)):
            filled = _FORMAT.sub(lambda m: {"I": "dynamic_name", "L": "'dynamic'", "%": "%"}[m.group(2)], template)
            return r.text(filled, f"{where}EXECUTE format: ")
    r.grade.worsen("ungraded", f"{where}EXECUTE of SQL built at run time ({' '.join(expression_text.split())[:80]})")


def trigger(r: Reader, node: ast.CreateTrigStmt, where: str, source: str) -> None:
    r.made.add(("TRIGGER", bare(node.trigname), bare(node.relation.relname)))


def calls(r: Reader, node, where: str) -> None:
    """Each function the statement calls when it runs: a harmless built-in, one this file makes (graded there), one
    the target has (graded by its definition), or code the grader cannot read."""
    for call in walk(node, NOT_RUN):
        if not isinstance(call, ast.FuncCall):
            continue
        parts = [p.sval for p in call.funcname]
        schema, function = (parts[-2] if len(parts) > 1 else None), parts[-1]
        qualified = f"{schema or 'public'}.{function}".lower()
        if r.functions.harmless(schema, function) or qualified in r.made_functions:
            continue
        definitions = r.functions.definitions(schema, function)
        if not definitions or r.depth >= MAX_DEPTH:
            r.grade.worsen("ungraded", f"{where}calls {qualified}(), whose effect the grader cannot read")
        elif r.deeper(qualified):
            r.depth += 1
            for language, definition in definitions:
                if definition:
                    r.text(definition, f"{where}calls {qualified}() → ")
                else:
                    r.grade.worsen("ungraded", f"{where}calls {qualified}() (LANGUAGE {language})")
            r.depth -= 1
