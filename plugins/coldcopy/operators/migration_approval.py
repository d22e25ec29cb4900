"""The approvals of ``coldcopy_migrations`` (issue 44): ``approve`` (one of the approvers, shown each file's risk,
measurements, SQL and the schema drift it touches), ``approve_second`` (a second, different approver, asked only
when a pending file calls for one), and :func:`check_approved`, which each apply task runs: the approvals the file's
risk calls for, each sealed from its HITL record (:mod:`coldcopy.operators.approval`), distinct people.

Approvals by risk (:mod:`coldcopy.migrations.risk`): *safe* one approver; *blocking* or *data-dependent* one who
is not the file's author when the file names one; *destructive* or security-relevant two distinct approvers. What
a file calls for is decided from its own text at apply time, never from XCom a ``user``-role account can write.
"""

from __future__ import annotations

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.migrations import Migration, Status
from coldcopy.migrations.risk import grade as risk
from coldcopy.operators import approval
from coldcopy.operators.migration_base import APPLY, APPLY_PHASE_1, BaseMigrationOperator
from coldcopy.run_notes import skip

SECOND_TASK_ID = "approve_second"
APPROVE = "approve"  # the second approver's answer: the first's decision, concurred
ACCEPT_DRIFT = "apply, accepting the drift"


def grades(op: BaseMigrationOperator, migrations: list[Migration]):
    """Each file's risk, data-dependence judged on the target's tables that hold rows."""
    from coldcopy.migrations import risk

    graded = op.graded(migrations)
    for g, m in zip(graded, migrations, strict=True):
        g.reasons += risk.squawk(m.read())[:6]
    return graded


class MigrationApprovalOperator(approval.ApprovalGate, BaseMigrationOperator):
    """The ``approve`` task: the target, each pending file's risk grade and reasons, the rehearsal's table, the
    schema drift (what the pending files touch of it must be accepted), each file's SQL and the plan, put to the
    users of ``coldcopy_migration_approvers``: *apply*, *apply phase 1 only* or *reject* (also the answer after
    24 h); *apply, accepting the drift* instead of *apply* when the pending files touch drifted objects. Not asked
    in a dry run, with nothing pending, or on a target without data."""

    def __init__(self, *, approvers_variable: str = "coldcopy_migration_approvers", **kwargs) -> None:
        super().__init__(approvers_variable=approvers_variable, options=[APPLY, APPLY_PHASE_1, approval.REJECT],
                         **kwargs)

    def not_needed(self, context: Context) -> str | None:
        if self.dry_run(context):
            return "dry run: nothing is applied"
        if not (pending := self.pending()):
            return "nothing pending"
        if not self.holds_data():
            return f"the target holds no data: {len(pending)} file(s) build an empty database"
        return None

    def describe(self, context: Context) -> tuple[str, str, dict]:
        from psycopg import sql

        from coldcopy.migrations import approval_body

        ti = context["ti"]
        plan = ti.xcom_pull(task_ids="plan") or []
        rehearsed = ti.xcom_pull(task_ids="rehearse") or {}
        with self.hook().get_conn() as conn:
            database, size = conn.execute(
                sql.SQL("SELECT current_database(), pg_size_pretty(pg_database_size(current_database()))")).fetchone()
        pending = [e for e in plan if e.get("status") == Status.PENDING.value]
        phases = sorted({e["phase"] for e in pending})
        by_name = {m.file_name: m for m in self.migrations()}
        files = [by_name[e["file"]].loaded() for e in pending if e["file"] in by_name]  # read once: shown = sealed
        graded = grades(self, files)
        drift = self.drift(files)
        first = ACCEPT_DRIFT if drift.get("touched") else APPLY
        # Only choices that differ: "phase 1 only" when phase 1 has pending files and a later phase has too (and
        # no drift must be accepted first).
        self.options = [first, APPLY_PHASE_1, approval.REJECT] if phases[:1] == [1] and len(phases) > 1 \
            and first == APPLY else [first, approval.REJECT]
        lines = [f"**Target:** database `{database}` ({size}); **{len(pending)} pending file(s)** in phases "
                 f"{', '.join(str(p) for p in phases)}.", "", *approval_body.risk_section(graded)]
        lines += self._rehearsal_lines(rehearsed)
        lines += approval_body.drift_section(drift)
        lines += approval_body.sql_section(files, rehearsed)
        lines += ["**Plan** (ours · the Supabase CLI's history):", "", "| file | phase | status | supabase cli |",
                  "|---|---|---|---|"]
        lines += [f"| {e['file']} | {e['phase']} | {e['status']} | {e.get('supabase_cli') or 'not recorded'} |"
                  for e in plan if e.get("status") != Status.APPLIED.value]
        lines += ["", f"*{first}*: every pending file, phase by phase." + (
            " *apply phase 1 only*: the later phases are skipped in this run." if APPLY_PHASE_1 in self.options
            else "") + " *reject* (or no answer within 24 h): nothing is applied; say why in the comment."]
        if any(g.approvals > 1 for g in graded):
            lines += ["", "A second approver (another person) is asked next: a file above needs two."]
        shown = {m.file_name: m.checksum for m in files}  # the bytes whose SQL the body shows, not XCom's word
        facts = {"files": {e["file"]: shown.get(e["file"], e["checksum"]) for e in pending},
                 "grades": {g.file: g.grade for g in graded}, "drift_touched": drift.get("touched") or [],
                 "verify": {m.file_name: m.verify_checksum for m in files if m.verify_checksum}}
        return f"Apply {len(pending)} migration(s) to {database}?", "\n".join(lines), facts

    @staticmethod
    def _rehearsal_lines(rehearsed: dict) -> list[str]:
        if rehearsed.get("files"):
            lines = [f"**Dress rehearsal** on a restored copy of `{rehearsed.get('backup')}` (locks sampled from "
                     "`pg_locks` every 5 ms; 🔴 = ACCESS EXCLUSIVE on a table the application's top statements use):",
                     "", rehearsed.get("table", ""), ""]
            if "hot_tables" in rehearsed and rehearsed["hot_tables"] is None:
                lines += ["⚠️ **Which tables the application would queue on is unknown**: pg_stat_statements is not "
                          "installed on the target, so no lock is marked 🔴; judge the locks above yourself.", ""]
        elif rehearsed.get("not_rehearsed"):
            lines = [f"⚠️ **Not rehearsed**: {rehearsed['not_rehearsed']}. Set up `coldcopy_verify_db` "
                     "(docs/migrations.md) to see what each file does before approving it.", ""]
        else:
            lines = ["**No rehearsal** ran in this run (see the `rehearse` task's log).", ""]
        if cluster := rehearsed.get("cluster_statements"):
            lines += ["⚠️ **Statements acting on the whole cluster** (roles, databases, settings, slots, other "
                      "sessions: not contained by any scratch copy):", ""]
            lines += [f"- `{file}`: `{statement}`" for file, found in sorted(cluster.items()) for statement in found]
            lines += [""]
        return lines


class SecondApprovalOperator(approval.ApprovalGate, BaseMigrationOperator):
    """The ``approve_second`` task: when a pending file is destructive or security-relevant (or blocking or
    data-dependent and the first approver is its author), another of the approvers — not the first — is asked to
    concur (*approve*) or *reject*. Passes without asking otherwise."""

    def __init__(self, *, approvers_variable: str = "coldcopy_migration_approvers", **kwargs) -> None:
        super().__init__(approvers_variable=approvers_variable, options=[APPROVE, approval.REJECT], **kwargs)

    def _first(self, context: Context) -> dict | None:
        return approval.decision(context, approval.APPROVAL_TASK_ID)

    def not_needed(self, context: Context) -> str | None:
        first = self._first(context)
        if first is None or first.get("decision") == approval.NOT_NEEDED:
            return "no first approval was needed"
        pending = self.pending()
        if not any(needs_second(g, first) for g in self.graded(pending)):  # squawk adds reasons, not approvers
            return "every pending file needs one approver"
        return None

    def who_may_answer(self, context: Context) -> list[dict]:
        first = self._first(context)
        others = [u for u in approval.approvers(self.approvers_variable) if u["id"] != first.get("by_id")]
        if not others:
            raise AirflowFailException(f"a pending file needs a second approver and {self.approvers_variable} names "
                                       f"only {first.get('by')}: add another person to the Variable and trigger "
                                       "again; nothing was applied")
        return others

    def describe(self, context: Context) -> tuple[str, str, dict]:
        first = self._first(context)
        request = first.get("request") or {}
        needing = [f for f, grade in (request.get("grades") or {}).items() if grade in risk.TWO_PEOPLE]
        body = (f"**{first.get('by')}** chose *{first.get('decision')}* at {first.get('at')}"
                f"{': ' + first['comment'] if first.get('comment') else ''}. A pending file needs a second person "
                f"({', '.join(needing) or 'security-relevant or authored by the first approver'}); the full question "
                f"is the `approve` task's. *approve* applies as {first.get('by')} chose; *reject* applies nothing.")
        return f"Second approval: apply {len(request.get('files') or {})} migration(s)?", body, request


def needs_second(grade, first: dict) -> bool:
    return grade.approvals > 1 or (grade.grade in ("blocking", "data-dependent") and grade.author is not None
                                   and grade.author == first.get("by_id"))


def check_approved(op, context: Context, migration: Migration, runner) -> None:
    """Apply nothing the people the file's risk calls for did not approve: the ``approve`` gate said *apply* (or
    *apply phase 1 only* for a phase-1 file), or that no approval was needed (an empty target); a file calling for
    a second person has ``approve_second``'s *approve* from another approver, shown the same files; a pending
    file touching drifted objects was approved *accepting the drift*; and a file the rehearsal ran is still the
    bytes it ran."""
    if runner.plan([migration])[0].status is not Status.PENDING:
        return  # applied already: apply() skips it (or refuses it, changed)
    decided = approval.decision(context)
    choice = (decided or {}).get("decision")
    if choice not in (APPLY, ACCEPT_DRIFT, APPLY_PHASE_1, approval.NOT_NEEDED):
        raise AirflowFailException(f"{migration.file_name}: not approved in this run (no "
                                   f"'{approval.APPROVAL_TASK_ID}' decision to apply): nothing is applied to the "
                                   "target without one")
    if choice == APPLY_PHASE_1 and migration.phase != 1:
        skip(context, f"{migration.file_name}: approved for phase 1 only")
    held = op.holds_data()
    if choice == approval.NOT_NEEDED:
        if held:  # decided again now: the gate's answer may be stale (tasks cleared since)
            raise AirflowFailException(
                f"{migration.file_name}: the gate found no data to protect ({decided.get('reason')}), and the "
                f"target now holds data ({', '.join(held[:3])}…): trigger a new run so a person approves it")
        return
    shown = (decided.get("request") or {}).get("files") or {}
    rehearsed = {f["file"]: f.get("checksum") for f in
                 ((context["ti"].xcom_pull(task_ids="rehearse") or {}).get("files") or [])}
    if shown.get(migration.file_name) != migration.checksum or \
            rehearsed.get(migration.file_name, migration.checksum) != migration.checksum:
        raise AirflowFailException(f"{migration.file_name} is not the file that was rehearsed and approved in "
                                   "this run (added or changed on disk since): trigger a new run so it is")
    if ((decided.get("request") or {}).get("verify") or {}).get(migration.file_name) != migration.verify_checksum:
        raise AirflowFailException(f"{migration.verify_path.name} is not the verify file that was approved in this "
                                   "run (added, changed or removed since): trigger a new run so it is")
    if (decided.get("request") or {}).get("drift_touched") and choice != ACCEPT_DRIFT:
        raise AirflowFailException(f"{migration.file_name}: the pending files touch drifted objects and the approver "
                                   f"did not accept the drift: nothing is applied")
    [graded] = op.graded([migration], held)
    if not needs_second(graded, decided):
        return
    second = approval.decision(context, SECOND_TASK_ID)
    why = f"{migration.file_name} is {graded.grade}" + (" and security-relevant" if graded.security else "") + \
        (f" and {decided.get('by')} wrote it" if graded.author == decided.get("by_id") else "")
    if second is None or second.get("decision") != APPROVE:
        raise AirflowFailException(f"{why}: it needs a second approver's 'approve' in this run "
                                   f"('{SECOND_TASK_ID}'), and there is none: nothing is applied")
    if second.get("by_id") == decided.get("by_id"):
        raise AirflowFailException(f"{why}: its second approval is by {second.get('by')}, not another person: "
                                   "nothing is applied")
    if ((second.get("request") or {}).get("files") or {}).get(migration.file_name) != migration.checksum:
        raise AirflowFailException(f"{migration.file_name}: the second approver was not shown this file: nothing "
                                   "is applied")
