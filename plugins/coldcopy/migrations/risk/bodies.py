"""Code a migration makes or runs: function bodies (SQL and PL/pgSQL, graded as if they ran: the file puts code on
the target that will), DO blocks, EXECUTE strings, and every function or operator a statement names — run now, or
later through a default, a view, a policy or a trigger."""

from __future__ import annotations

import re

from pglast import ast

from coldcopy.migrations.risk.reader import MAX_DEPTH, Reader, name, qualified, walk

OWN_BODY = frozenset({"CreateFunctionStmt"})  # graded by create_function, not as the statement's own calls
DYNAMIC = ("PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors", "PLpgSQL_stmt_open", "PLpgSQL_stmt_return_query")
DYNAMIC_NAME = "coldcopy_dynamic_name"  # what format()'s %I stands for: a name the grader cannot know
_ASSIGN = re.compile(r"^\s*[\w.\"\[\]]+\s*:?=\s*", re.S)
_PLACEHOLDER = re.compile(r"%(\d+\$)?([IL])")  # the only conversions read: no width, no flags, no %s


def _options(node) -> dict:
    items = getattr(node, "options", None) or getattr(node, "actions", None) or getattr(node, "args", None) or ()
    return {o.defname: o.arg for o in items}


def _fixed_path(setting) -> bool:
    return isinstance(setting, ast.VariableSetStmt) and (setting.name or "").lower() == "search_path" and \
        setting.kind.name == "VAR_SET_VALUE" and [getattr(a.val, "sval", None) for a in setting.args or ()] == \
        ["pg_catalog", "pg_temp"]


def _last_path(items) -> ast.VariableSetStmt | None:
    """The search_path setting that wins: the last one named (``SET … SET …``)."""
    paths = [o.arg for o in items or () if o.defname == "set" and isinstance(o.arg, ast.VariableSetStmt)
             and ((o.arg.name or "").lower() == "search_path" or o.arg.kind.name == "VAR_RESET_ALL")]
    return paths[-1] if paths else None


def create_function(r: Reader, node: ast.CreateFunctionStmt, where: str, source: str) -> None:
    from coldcopy.migrations.risk.statements import signature

    function = qualified(node.funcname)
    if function.startswith("pg_temp."):
        r.grade.worsen("ungraded", f"{where}makes temporary function {function}")
    args = signature(p.argType for p in node.parameters or () if p.mode.name in ("FUNC_PARAM_IN",
                     "FUNC_PARAM_INOUT", "FUNC_PARAM_VARIADIC", "FUNC_PARAM_DEFAULT"))
    if r.depth == 0:  # made by the file, not a definition read to follow a call
        r.made.add(("PROCEDURE" if node.is_procedure else "FUNCTION", function, args))
        if r.functions.definitions(*function.split(".", 1)) is not None:
            r.grade.secure(f"{where}{'replaces' if node.replace else 'overloads'} {function}, which the target has: "
                           "every policy, trigger, default and caller of it may run the new one")
    r.made_functions.add(function)
    options = _options(node)
    language = getattr(options.get("language"), "sval", "sql").lower()
    definer = getattr(options.get("security"), "boolval", False)
    path = _last_path(node.options)
    if definer and not _fixed_path(path):
        r.grade.secure(f"{where}{function}: a SECURITY DEFINER function without SET search_path = pg_catalog, "
                       "pg_temp")
    elif path is not None and not _fixed_path(path):
        r.grade.worsen("ungraded", f"{where}{function} sets its own search_path: the names in it resolve otherwise "
                                   "than the grader reads them")
    elif definer and function.split(".", 1)[0] in ("public", "graphql_public") and r.depth == 0:
        r.grade.secure(f"{where}{function}: a SECURITY DEFINER function in an API schema (EXECUTE is PUBLIC's by "
                       "default: anon may call it through the API)")
    settings(r, node.options, where)
    inside = f"{where}function {function}: "
    calls(r, node.parameters, inside)  # parameter defaults run at every call
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
    function = qualified(node.func)
    last = _last_path(node.actions)
    if last is not None and not _fixed_path(last):
        r.grade.secure(f"{where}{function}: its search_path changed ({' '.join(source.split())[:80]})")
    if getattr(_options(node).get("security"), "boolval", False):
        r.grade.secure(f"{where}{function} made SECURITY DEFINER: it runs with its owner's rights"
                       + ("" if _fixed_path(last) else ", without SET search_path = pg_catalog, pg_temp"))
    settings(r, node.actions, where)


def settings(r: Reader, items, where: str) -> None:
    """A function's own settings other than its search_path, read as SET statements (standard_conforming_strings
    off would make the server read its body otherwise than the grader)."""
    from coldcopy.migrations.risk.statements import setting

    for item in items or ():
        if item.defname == "set" and isinstance(item.arg, ast.VariableSetStmt) and \
                (item.arg.name or "").lower() != "search_path" and item.arg.kind.name != "VAR_RESET_ALL":
            setting(r, item.arg, where, "")


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
    """Every SQL statement and expression of a PL/pgSQL tree; an EXECUTE's string read when it can be."""
    if isinstance(node, list):
        for item in node:
            _plpgsql_node(r, item, where)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in DYNAMIC and isinstance(value, dict) and ("dynquery" in value or key != "PLpgSQL_stmt_open"
                                                                and "query" in value):
                field = "dynquery" if "dynquery" in value else "query"
                dynamic(r, value[field]["PLpgSQL_expr"]["query"], where)
                _plpgsql_node(r, {k: v for k, v in value.items() if k != field}, where)  # body, USING, …
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
    """EXECUTE of a literal, or of format() of a literal whose only conversions are plain %I and %L: read (a name
    from %I is one the grader cannot know: as a grantee, the worst); anything else is built at run time."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    r.text("SELECT " + expression_text, where)  # the calls that build it run too
    try:
        value = parse_sql("SELECT " + expression_text)[0].stmt.targetList[0].val
    except (ParseError, AttributeError, IndexError, TypeError):
        value = None
    if isinstance(value, ast.A_Const) and isinstance(value.val, ast.String):
        return r.text(value.val.sval, f"{where}EXECUTE: ")
    if isinstance(value, ast.FuncCall) and name(value.funcname) in ("format", "pg_catalog.format") and value.args \
            and isinstance(value.args[0], ast.A_Const) and isinstance(value.args[0].val, ast.String):
        template = value.args[0].val.sval.replace("%%", "")
        if "%" not in _PLACEHOLDER.sub("", template):
            filled = _PLACEHOLDER.sub(lambda m: DYNAMIC_NAME if m.group(2) == "I" else "'dynamic'",
                                      value.args[0].val.sval.replace("%%", "%"))
            return r.text(filled, f"{where}EXECUTE format: ")
    r.grade.worsen("ungraded", f"{where}EXECUTE of SQL built at run time ({' '.join(expression_text.split())[:80]})")


def trigger(r: Reader, node: ast.CreateTrigStmt, where: str, source: str) -> None:
    table = qualified(node.relation)
    r.made.add(("TRIGGER", node.trigname, table))
    if node.replace:
        r.grade.secure(f"{where}replaces trigger {node.trigname} on {table}: what it enforced or recorded may stop")
    elif ("TABLE", table, "") not in r.made:
        r.grade.secure(f"{where}a new trigger {node.trigname} on {table}, which the target has: it runs on every "
                       "write (and may change or discard it)")
    _call(r, [p.sval for p in node.funcname], f"{where}trigger {node.trigname} runs ")


def calls(r: Reader, node, where: str) -> None:
    """Each function and operator the statement names — run now, or later through a default, a view, a policy,
    an index expression: a harmless built-in, one this file makes (graded there), one the target has (graded by its
    definition), or code the grader cannot read."""
    for found in walk(node, OWN_BODY):
        if isinstance(found, ast.FuncCall):
            _call(r, [p.sval for p in found.funcname], where)
        elif isinstance(found, (ast.A_Expr, ast.SubLink)) and (names := getattr(found, "name", None)
                                                                  or getattr(found, "operName", None)):
            operator = name(names)
            if operator.split(".")[-1] in r.functions.operators:
                r.grade.worsen("ungraded", f"{where}operator {operator} runs a function of the target's own")
        elif type(found).__name__.startswith("Json") or type(found).__name__ == "MergeSupportFunc":
            r.grade.worsen("ungraded", f"{where}SQL/JSON syntax newer than PostgreSQL 15 "
                                       f"({type(found).__name__}): PostgreSQL 15 reads it as a call of a function "
                                       "of that name")


def _call(r: Reader, parts: list[str], where: str) -> None:
    schema, function = (parts[-2] if len(parts) > 1 else None), parts[-1]
    key = f"{schema or 'public'}.{function}"
    known = r.functions.definitions(schema, function)
    if known is None and (r.functions.harmless(schema, function) or key in r.made_functions):
        return  # a built-in no function of public shadows, or one the file makes (and the target has no other)
    if not known or r.depth >= MAX_DEPTH:
        r.grade.worsen("ungraded", f"{where}calls {key}(), whose effect the grader cannot read")
    elif r.deeper(key):
        r.depth += 1
        for language, definition in known:
            if definition:
                r.text(definition, f"{where}calls {key}() → ")
            else:
                r.grade.worsen("ungraded", f"{where}calls {key}() (LANGUAGE {language})")
        r.depth -= 1
