"""ALTER TABLE, one subcommand at a time: what loses data, what waits on rows, what rewrites, what opens access."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType as T
from pglast.enums import ConstrType

from coldcopy.migrations.risk.reader import Reader, name, pg_bool, qualified

SAFE = {T.AT_CookedColumnDefault, T.AT_DropNotNull, T.AT_SetStatistics, T.AT_SetOptions, T.AT_ResetOptions,
        T.AT_SetStorage, T.AT_SetCompression, T.AT_ValidateConstraint, T.AT_ClusterOn, T.AT_DropCluster,
        T.AT_ForceRowSecurity, T.AT_EnableTrig, T.AT_EnableAlwaysTrig, T.AT_EnableTrigAll, T.AT_EnableTrigUser,
        T.AT_AlterConstraint, T.AT_GenericOptions, T.AT_EnableRule, T.AT_EnableAlwaysRule}
REWRITES = {T.AT_SetLogged: "SET LOGGED", T.AT_SetTableSpace: "SET TABLESPACE", T.AT_SetAccessMethod:
            "SET ACCESS METHOD"}
# ENABLE REPLICA: fires only when session_replication_role = replica, that is never for the application
DISABLES = {T.AT_DisableTrig, T.AT_DisableTrigAll, T.AT_DisableTrigUser, T.AT_DisableRule, T.AT_EnableReplicaTrig,
            T.AT_EnableReplicaRule}
CHECKED = {ConstrType.CONSTR_CHECK: "CHECK", ConstrType.CONSTR_UNIQUE: "UNIQUE", ConstrType.CONSTR_PRIMARY:
           "PRIMARY KEY", ConstrType.CONSTR_FOREIGN: "FOREIGN KEY", ConstrType.CONSTR_EXCLUSION: "EXCLUDE"}
# a view's options that keep what the API reads through it in bounds; only setting these to on keeps them
VIEW_GUARDS = {"security_invoker", "security_barrier", "check_option"}
BREAKS_WRITES = {T.AT_DropIdentity: "drops the identity of", T.AT_SetIdentity: "changes the identity sequence of"}


def alter_table(r: Reader, node: ast.AlterTableStmt, where: str, source: str) -> None:
    table, rows = name(node.relation), r.holds_rows(node.relation)
    key = qualified(node.relation)
    for cmd in node.cmds or ():
        sub = cmd.subtype
        if sub in SAFE:
            continue
        if sub == T.AT_EnableRowSecurity:
            if not where:  # inside code that may not run (a DO block's IF, a function): no credit
                r.rls.add(key)
        elif sub == T.AT_AddColumn:
            if not cmd.missing_ok:  # ADD COLUMN IF NOT EXISTS may add nothing: an UPDATE of it is no backfill
                r.added.add((key, cmd.def_.colname))
            add_column(r, cmd.def_, table, rows, where)
        elif sub == T.AT_DropColumn:
            r.grade.worsen("destructive", f"{where}drops column {cmd.name} of {table}")
        elif sub == T.AT_AlterColumnType:
            r.grade.worsen("destructive", f"{where}changes the type of {table}.{cmd.name} (a narrower type loses "
                                          "values; most changes rewrite the table)")
        elif sub == T.AT_AddConstraint:
            constraint(r, cmd.def_, table, rows, where, new_table=("TABLE", key, "") in r.made)
        elif sub == T.AT_SetNotNull:
            if rows:
                r.grade.worsen("data-dependent", f"{where}SET NOT NULL on {table}.{cmd.name}")
        elif sub == T.AT_DropConstraint:
            r.grade.worsen("destructive", f"{where}ALTER TABLE {table} DROP CONSTRAINT {cmd.name} (what it guaranteed "
                                          "stops; one of the same name made again need not guarantee it)")
        elif sub == T.AT_ColumnDefault:
            if cmd.def_ is None:
                r.grade.worsen("destructive", f"{where}drops the default of {table}.{cmd.name} (inserts relying on "
                                              "it fail)")
            elif ("TABLE", key, "") not in r.made:
                r.grade.worsen("data-dependent", f"{where}changes the default of {table}.{cmd.name} (what inserts "
                                                 "relying on it write)")
        elif sub == T.AT_AddIdentity:
            if ("TABLE", key, "") not in r.made:
                always = getattr(cmd.def_, "generated_when", "") == "a"
                r.grade.worsen("destructive" if always else "data-dependent",
                               f"{where}makes {table}.{cmd.name} an identity" + (
                                   " GENERATED ALWAYS (inserts giving it a value fail)" if always else ""))
        elif sub in BREAKS_WRITES:
            r.grade.worsen("destructive", f"{where}{BREAKS_WRITES[sub]} {table}.{cmd.name} (new keys may collide, "
                                          "run out, or inserts fail)")
        elif sub == T.AT_ReplicaIdentity:
            if getattr(cmd.def_, "identity_type", "") == "n":
                r.grade.worsen("destructive", f"{where}REPLICA IDENTITY NOTHING on {table} (UPDATE and DELETE fail "
                                              "while it is published)")
        elif sub in (T.AT_DisableRowSecurity, T.AT_NoForceRowSecurity):
            what = "DISABLE ROW LEVEL SECURITY" if sub == T.AT_DisableRowSecurity else "NO FORCE ROW LEVEL SECURITY"
            r.grade.worsen("destructive", f"{where}{what} on {table}")
            r.grade.secure(f"{where}{what} on {table}")
        elif sub in DISABLES:
            r.grade.secure(f"{where}disables {'rule' if 'Rule' in sub.name else 'trigger'} "
                           f"{cmd.name or 'ALL'} on {table}: what it enforces or records stops")
        elif sub == T.AT_ChangeOwner:
            r.grade.secure(f"{where}{table} owned by {cmd.newowner.rolename or cmd.newowner.roletype.name}")
        elif sub in (T.AT_SetRelOptions, T.AT_ResetRelOptions, T.AT_ReplaceRelOptions):
            options = {o.defname: o.arg for o in cmd.def_ or ()}
            loosened = sorted(o for o in set(options) & VIEW_GUARDS if sub != T.AT_SetRelOptions or (
                pg_bool(options[o]) is not True if o != "check_option" else
                str(getattr(options[o], "sval", "")).lower() not in ("local", "cascaded")))
            if loosened:
                r.grade.secure(f"{where}{table}: {', '.join(loosened)} loosened (what the API reads or writes "
                               "through it widens)")
        elif sub == T.AT_AttachPartition:
            r.grade.secure(f"{where}attaches a partition to {table}: its rows become readable through {table}'s "
                           "policies and grants")
            if rows:
                r.grade.worsen("data-dependent", f"{where}attaches a partition to {table} (its rows are checked)")
        elif sub in (T.AT_DetachPartition, T.AT_DetachPartitionFinalize):
            r.grade.worsen("destructive", f"{where}detaches a partition of {table} (its rows leave {table})")
        elif sub == T.AT_SetUnLogged:
            r.grade.worsen("destructive", f"{where}SET UNLOGGED: {table}'s rows are lost in a crash")
        elif sub in REWRITES:
            if rows:
                r.grade.worsen("blocking", f"{where}{REWRITES[sub]} rewrites {table} under ACCESS EXCLUSIVE")
        elif sub in (T.AT_AddIndex, T.AT_AddIndexConstraint):
            if rows:
                r.grade.worsen("data-dependent", f"{where}adds an index constraint to {table}")
        else:
            r.grade.worsen("ungraded", f"{where}ALTER TABLE {table} {sub.name.removeprefix('AT_')}: not graded")


def add_column(r: Reader, column: ast.ColumnDef, table: str, rows: bool, where: str) -> None:
    kinds = {c.contype for c in column.constraints or ()}
    if not rows:
        return
    filled = kinds & {ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED}
    if (ConstrType.CONSTR_NOTNULL in kinds or column.is_not_null) and not filled:
        r.grade.worsen("data-dependent", f"{where}a NOT NULL column without a default on {table} "
                                         f"({column.colname})")
    if kinds & {ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED}:
        r.grade.worsen("blocking", f"{where}{column.colname} filled for every row: rewrites {table}")
    for c in column.constraints or ():
        if c.contype in CHECKED:
            constraint(r, c, table, rows, where)


def constraint(r: Reader, c: ast.Constraint, table: str, rows: bool, where: str, *, new_table: bool = False) -> None:
    if c.contype not in CHECKED:
        return
    if not c.skip_validation and rows:
        r.grade.worsen("data-dependent", f"{where}adds {CHECKED[c.contype]} to {table}")
    elif c.skip_validation and not new_table:
        r.grade.worsen("data-dependent", f"{where}adds {CHECKED[c.contype]} NOT VALID to {table} (every new write "
                                         "must satisfy it)")
