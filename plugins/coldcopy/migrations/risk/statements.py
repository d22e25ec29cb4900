"""What each kind of statement does to the target, graded (issue 44). A kind in neither :data:`RULES` nor
:data:`SAFE` is *ungraded*: two people read it."""

from __future__ import annotations

from pglast import ast
from pglast.enums import ConstrType, DropBehavior, ObjectType

from coldcopy.migrations.risk import alter_table, bodies
from coldcopy.migrations.risk.reader import Reader, name, pg_bool, qualified, walk

API_ROLES = ("anon", "authenticated", bodies.DYNAMIC_NAME)  # a name format()'s %I fills: the worst case
EXPOSED = (None, "public", "graphql_public")  # the schemas the Data API serves (unqualified: public)
SAFE = frozenset("""CreateSeqStmt CommentStmt CreateEnumStmt CreateStatsStmt AlterStatsStmt
NotifyStmt ListenStmt UnlistenStmt CheckPointStmt DiscardStmt ConstraintsSetStmt DeallocateStmt
DeclareCursorStmt FetchStmt ClosePortalStmt CallStmt
""".split())
# settings a migration may change without the grader reading it otherwise (standard_conforming_strings changes how
# the server reads a body, search_path which function a name is, the timeouts what the runner guarantees)
HARMLESS_SETTINGS = {"client_min_messages", "application_name", "maintenance_work_mem", "work_mem",
                     "check_function_bodies", "max_parallel_maintenance_workers", "timezone"}
UNDOING = {"TRANS_STMT_ROLLBACK", "TRANS_STMT_ROLLBACK_TO", "TRANS_STMT_PREPARE", "TRANS_STMT_COMMIT_PREPARED",
           "TRANS_STMT_ROLLBACK_PREPARED"}
# dropped and made again in the same file: a replacement, not a loss
REPLACEABLE = {ObjectType.OBJECT_VIEW: "VIEW", ObjectType.OBJECT_MATVIEW: "MATERIALIZED VIEW",
               ObjectType.OBJECT_FUNCTION: "FUNCTION", ObjectType.OBJECT_PROCEDURE: "PROCEDURE",
               ObjectType.OBJECT_ROUTINE: "FUNCTION", ObjectType.OBJECT_TYPE: "TYPE",
               ObjectType.OBJECT_POLICY: "POLICY", ObjectType.OBJECT_TRIGGER: "TRIGGER",
               ObjectType.OBJECT_AGGREGATE: "AGGREGATE"}
LOOSE = {ObjectType.OBJECT_INDEX, ObjectType.OBJECT_STATISTIC_EXT}  # dropping loses no row


def _kind(objtype) -> str:
    return objtype.name.removeprefix("OBJECT_").replace("_", " ").lower()


def drop(r: Reader, node: ast.DropStmt, where: str, source: str) -> None:
    names = [name(o) for o in node.objects or ()]
    shown = " ".join(source.split())[:100] or f"DROP {_kind(node.removeType)} {', '.join(names)}"
    if node.behavior == DropBehavior.DROP_CASCADE:
        r.grade.worsen("destructive", f"{where}{shown}: CASCADE also drops what depends on it, which the file "
                                      "does not name")
    if node.removeType in REPLACEABLE:
        for o in node.objects or ():
            parts = [p.sval for p in o] if isinstance(o, (list, tuple)) else name(o).split(".")
            if node.removeType in (ObjectType.OBJECT_POLICY, ObjectType.OBJECT_TRIGGER):
                key = (REPLACEABLE[node.removeType], parts[-1], qualified(".".join(parts[:-1])))
            elif isinstance(o, ast.ObjectWithArgs):  # a function: made again only with the same argument types
                key = (REPLACEABLE[node.removeType], qualified(".".join(parts)),
                       "(unspecified)" if o.args_unspecified else signature(t for t in o.objargs or ()))
            else:
                key = (REPLACEABLE[node.removeType], qualified(".".join(parts)), "")
            r.dropped.setdefault(key, shown)
    elif node.removeType == ObjectType.OBJECT_INDEX and (unique := [n for n in names if qualified(n) in
                                                                    r.functions.unique_indexes]):
        r.grade.worsen("destructive", f"{where}drops unique index {', '.join(unique)} (duplicates may enter; ON "
                                      "CONFLICT on it fails)")
    elif node.removeType in LOOSE:
        if not node.concurrent and node.removeType == ObjectType.OBJECT_INDEX:
            r.grade.worsen("blocking", f"{where}{shown} without CONCURRENTLY (its table's readers and writers wait)")
    else:
        r.grade.worsen("destructive", f"{where}drops {_kind(node.removeType)} {', '.join(names)}")
        if node.removeType == ObjectType.OBJECT_POLICY:
            r.grade.secure(f"{where}{shown}")


def signature(types) -> str:
    return "(" + ", ".join(name(t) for t in types) + ")"


def _rows(r: Reader, node, where: str, what: str, relation) -> None:
    """A DELETE loses rows, whatever its WHERE, and so does an UPDATE of a column the file did not add (its values
    are overwritten: which rows, no grader can tell from the text, ``WHERE id IS NOT NULL`` is all of them); an
    UPDATE of columns the file added is a backfill."""
    where_clause = node.whereClause
    if where_clause is None or not any(isinstance(n, ast.ColumnRef) for n in walk(where_clause)):
        r.grade.worsen("destructive", f"{where}{what} {name(relation)} without a WHERE that names a column")
    elif what == "DELETE FROM":
        r.grade.worsen("destructive", f"{where}deletes rows of {name(relation)}")
    else:
        overwrite(r, relation, node.targetList, where, "UPDATE")


def overwrite(r: Reader, relation, targets, where: str, what: str) -> None:
    table = qualified(relation)
    columns = sorted({t.name or "" for t in targets or ()} - {c for t, c in r.added if t == table})
    if columns:
        r.grade.worsen("destructive", f"{where}{what} overwrites {', '.join(columns)} of {name(relation)} (the old "
                                      "values are gone)")
    else:
        r.grade.worsen("data-dependent", f"{where}{what} backfills columns the file adds to {name(relation)}")


def merge(r: Reader, node: ast.MergeStmt, where: str, source: str) -> None:
    from pglast.enums import CmdType

    for clause in node.mergeWhenClauses or ():
        if clause.commandType == CmdType.CMD_DELETE:
            r.grade.worsen("destructive", f"{where}MERGE deletes rows of {name(node.relation)}")
        elif clause.commandType == CmdType.CMD_UPDATE:
            overwrite(r, node.relation, clause.targetList, where, "MERGE")


def insert(r: Reader, node: ast.InsertStmt, where: str, source: str) -> None:
    conflict = node.onConflictClause
    if conflict is not None and conflict.action.name == "ONCONFLICT_UPDATE":
        overwrite(r, node.relation, conflict.targetList, where, "an upsert")


def index(r: Reader, node: ast.IndexStmt, where: str, source: str) -> None:
    if node.unique and r.holds_rows(node.relation):
        r.grade.worsen("data-dependent", f"{where}a unique index on {name(node.relation)} (fails on duplicates)")
    if not node.concurrent and r.holds_rows(node.relation):
        r.grade.worsen("blocking", f"{where}an index built without CONCURRENTLY on {name(node.relation)} "
                                   "(writes wait)")


def view(r: Reader, node: ast.ViewStmt, where: str, source: str) -> None:
    if temporary(r, node.view, where):
        return
    r.made.add(("VIEW", qualified(node.view), ""))
    invoker = any(o.defname == "security_invoker" and (o.arg is None or pg_bool(o.arg)) for o in node.options or ())
    if node.view.schemaname in EXPOSED and not invoker:
        r.grade.secure(f"{where}view {name(node.view)} without security_invoker: the API reads through it with its "
                       "owner's rights, past row level security")


def grant(r: Reader, node: ast.GrantStmt, where: str, source: str, prefix: str = "") -> None:
    if not node.is_grant:
        if node.privileges or node.grant_option or where:
            return  # some privileges, the grant option, or inside code that may not run: no credit
        for target in node.objects or () if node.targtype.name == "ACL_TARGET_OBJECT" else ():
            for grantee in node.grantees or ():
                if isinstance(target, ast.RangeVar) and grantee.rolename:
                    r.revoked.add((qualified(target), grantee.rolename.lower()))
        return
    to = [g.rolename or "PUBLIC" for g in node.grantees or ()
          if g.rolename in API_ROLES or g.roletype.name == "ROLESPEC_PUBLIC"]
    if to:
        what = ", ".join(p.priv_name for p in node.privileges or ()) or "ALL"
        r.grade.secure(f"{where}{prefix}grants {what} to {', '.join(to)}")


def default_privileges(r: Reader, node: ast.AlterDefaultPrivilegesStmt, where: str, source: str) -> None:
    grant(r, node.action, where, source, "default privileges: every future object ")


def policy(r: Reader, node, where: str, source: str) -> None:
    table = name(node.table)
    if isinstance(node, ast.CreatePolicyStmt):
        r.made.add(("POLICY", node.policy_name, qualified(node.table)))
    roles = ", ".join(g.rolename or "PUBLIC" for g in node.roles or ()) or "PUBLIC"
    verb = "creates" if isinstance(node, ast.CreatePolicyStmt) else "alters"
    r.grade.secure(f"{where}{verb} policy {node.policy_name} on {table} (to {roles})")


def role(r: Reader, node, where: str, source: str) -> None:
    r.grade.secure(f"{where}{' '.join(source.split())[:100] or type(node).__name__}: a role's rights change")
    if isinstance(node, (ast.DropRoleStmt, ast.DropOwnedStmt)):
        r.grade.worsen("destructive", f"{where}{' '.join(source.split())[:100]}")


def rename(r: Reader, node: ast.RenameStmt, where: str, source: str) -> None:
    if node.renameType == ObjectType.OBJECT_ROLE:
        return role(r, node, where, source)
    if node.renameType in (ObjectType.OBJECT_TABCONSTRAINT, ObjectType.OBJECT_TRIGGER, ObjectType.OBJECT_POLICY,
                           ObjectType.OBJECT_STATISTIC_EXT):
        return  # ALTER INDEX / SEQUENCE … RENAME also renames a table: graded as one
    r.grade.worsen("destructive", f"{where}renames {_kind(node.renameType)} "
                                  f"{name(node.relation) if node.relation else name(node.object)} to "
                                  f"{node.newname} (what reads the old name breaks)")


def moved(r: Reader, node: ast.AlterObjectSchemaStmt, where: str, source: str) -> None:
    r.grade.worsen("destructive", f"{where}moves {_kind(node.objectType)} to schema {node.newschema} (what reads the "
                                  "old name breaks)")


def setting(r: Reader, node: ast.VariableSetStmt, where: str, source: str) -> None:
    shown = " ".join(source.split())[:100] or f"SET {node.name}"
    if (node.name or "").lower() in ("role", "session_authorization", "session_replication_role") \
            and node.kind.name != "VAR_RESET":
        r.grade.secure(f"{where}{shown}: what follows runs otherwise")
    elif (node.name or "").lower() not in HARMLESS_SETTINGS:
        r.grade.worsen("ungraded", f"{where}{shown}: the grader reads the file with the server's settings (a "
                                   "search_path names other functions, standard_conforming_strings reads bodies "
                                   "otherwise, a timeout undoes the runner's)")


def transaction(r: Reader, node: ast.TransactionStmt, where: str, source: str) -> None:
    if node.kind.name in UNDOING:
        r.grade.worsen("ungraded", f"{where}{' '.join(source.split())[:80]}: undoes part of the file, so what stays "
                                   "cannot be read from it")


def select(r: Reader, node: ast.SelectStmt, where: str, source: str) -> None:
    if node.intoClause is not None and not temporary(r, node.intoClause.rel, where):  # SELECT … INTO: a table
        r.made.add(("TABLE", qualified(node.intoClause.rel), ""))
        exposed(r, node.intoClause.rel, "table")


def blocking(what: str):
    def rule(r: Reader, node, where: str, source: str) -> None:
        if not getattr(node, "concurrent", False) and not any(
                getattr(p, "defname", "") == "concurrently" for p in getattr(node, "params", None) or ()):
            r.grade.worsen("blocking", f"{where}{' '.join(source.split())[:100] or what}: {what}")
    return rule


def vacuum(r: Reader, node: ast.VacuumStmt, where: str, source: str) -> None:
    if any(o.defname == "full" for o in node.options or ()):
        r.grade.worsen("blocking", f"{where}VACUUM FULL rewrites its tables under ACCESS EXCLUSIVE")


def exposed(r: Reader, relation: ast.RangeVar, kind: str) -> None:
    if relation.schemaname in EXPOSED and relation.relpersistence != "t":
        r.exposed[qualified(relation)] = kind


def temporary(r: Reader, relation: ast.RangeVar, where: str) -> bool:
    """A temporary relation: unqualified names reach it before public's, so what the file names unqualified
    can no longer be told."""
    if relation.relpersistence == "t" or relation.schemaname == "pg_temp":
        r.grade.worsen("ungraded", f"{where}makes temporary {name(relation)}: unqualified names reach it first")
        return True
    return False


def create_table(r: Reader, node: ast.CreateStmt, where: str, source: str) -> None:
    if temporary(r, node.relation, where):
        return
    r.made.add(("TABLE", qualified(node.relation), ""))
    exposed(r, node.relation, "table")
    if node.partbound is not None and any(isinstance(c, ast.Constraint) and c.contype == ConstrType.CONSTR_CHECK
                                          for c in walk(node.tableElts)):
        r.grade.worsen("data-dependent", f"{where}a partition of {name(node.inhRelations[0])} with a CHECK")


def create_table_as(r: Reader, node: ast.CreateTableAsStmt, where: str, source: str) -> None:
    kind = "materialized view" if node.objtype == ObjectType.OBJECT_MATVIEW else "table"
    if temporary(r, node.into.rel, where):
        return
    r.made.add(("MATERIALIZED VIEW" if kind == "materialized view" else "TABLE", qualified(node.into.rel), ""))
    exposed(r, node.into.rel, kind)


def sequence(r: Reader, node: ast.AlterSeqStmt, where: str, source: str) -> None:
    if changed := sorted(o.defname for o in node.options or () if o.defname not in ("cache", "owned_by")):
        r.grade.worsen("destructive", f"{where}changes {', '.join(changed)} of {name(node.sequence)} (new keys "
                                      "may collide with rows, or run out)")


def enum(r: Reader, node: ast.AlterEnumStmt, where: str, source: str) -> None:
    if node.oldVal:
        r.grade.worsen("destructive", f"{where}renames value {node.oldVal!r} of {name(node.typeName)} (stored "
                                      "values and what compares with the old one change)")


def schema(r: Reader, node: ast.CreateSchemaStmt, where: str, source: str) -> None:
    if node.authrole is not None:
        r.grade.secure(f"{where}schema {node.schemaname or ''} owned by "
                       f"{node.authrole.rolename or node.authrole.roletype.name}")
    for element in node.schemaElts or ():
        r.statement(element, where)


def truncate(r: Reader, node, where, source):
    r.grade.worsen("destructive", f"{where}TRUNCATE {', '.join(name(t) for t in node.relations)}")


RULES = {
    "DropStmt": drop, "MergeStmt": merge, "IndexStmt": index, "ViewStmt": view, "GrantStmt": grant,
    "AlterDefaultPrivilegesStmt": default_privileges, "CreatePolicyStmt": policy, "AlterPolicyStmt": policy,
    "TruncateStmt": truncate,
    "DeleteStmt": lambda r, n, w, s: _rows(r, n, w, "DELETE FROM", n.relation),
    "UpdateStmt": lambda r, n, w, s: _rows(r, n, w, "UPDATE", n.relation), "InsertStmt": insert,
    "AlterSeqStmt": sequence, "AlterEnumStmt": enum, "CreateTableAsStmt": create_table_as,
    "ExplainStmt": lambda r, n, w, s: r.statement(n.query, w + "EXPLAIN: "),
    "PrepareStmt": lambda r, n, w, s: r.statement(n.query, w + "PREPARE: "),
    "CreateSchemaStmt": schema,
    "CreateStmt": create_table, "RenameStmt": rename, "AlterObjectSchemaStmt": moved, "VariableSetStmt": setting,
    "ReindexStmt": blocking("REINDEX without CONCURRENTLY: the table's writers wait"),
    "RefreshMatViewStmt": blocking("REFRESH without CONCURRENTLY: its readers wait"),
    "ClusterStmt": blocking("CLUSTER rewrites the table under ACCESS EXCLUSIVE"),
    "LockStmt": lambda r, n, w, s: r.grade.worsen("blocking", f"{w}{' '.join(s.split())[:100] or 'LOCK TABLE'}"),
    "VacuumStmt": vacuum, "AlterTableStmt": alter_table.alter_table, "TransactionStmt": transaction,
    "SelectStmt": select,
    "CreateFunctionStmt": bodies.create_function, "AlterFunctionStmt": bodies.alter_function,
    "DoStmt": bodies.do_block, "CreateTrigStmt": bodies.trigger,
    "AlterOwnerStmt": lambda r, n, w, s: r.grade.secure(f"{w}{' '.join(s.split())[:100] or 'OWNER TO'}: a new owner"),
    **{k: role for k in ("CreateRoleStmt", "AlterRoleStmt", "AlterRoleSetStmt", "DropRoleStmt", "GrantRoleStmt",
                         "ReassignOwnedStmt", "DropOwnedStmt")},
    "CompositeTypeStmt": lambda r, n, w, s: r.made.add(("TYPE", qualified(n.typevar), "")),
    "CreateEnumStmt": lambda r, n, w, s: r.made.add(("TYPE", qualified(n.typeName), "")),
    "CreateDomainStmt": lambda r, n, w, s: r.made.add(("TYPE", qualified(n.domainname), "")),
}
