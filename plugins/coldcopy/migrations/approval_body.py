"""The parts of the migration approval's body that judge each pending file (issue 44): its risk grade and why, what
the rehearsal measured for it (or *unknown*, and why: never a dash), its SQL readably formatted (long files folded),
and the schema drift touching what it touches."""

from __future__ import annotations

from coldcopy.migrations.risk import Grade, worst

SQL_LINES = 40  # shown per file; the rest folded (the apply task's rendered `sql` field holds the whole file)


def risk_section(grades: list[Grade]) -> list[str]:
    if not grades:
        return []
    security = " and security-relevant" if any(g.security for g in grades) else ""
    lines = [f"**Risk: {worst(grades).grade}**{security}"
             f"; approvers needed: **{max(g.approvals for g in grades)}** (docs/migrations.md, *Risk and approvals*)",
             "", "| file | grade | approvers | why |", "|---|---|---|---|"]
    for g in grades:
        why = [*(f"**security: {s}**" for s in g.security), *g.reasons]
        author = f" (not {g.author}, its author)" if g.author and g.grade in ("blocking", "data-dependent") else ""
        lines.append(f"| {g.file} | {g.grade} | {g.approvals}{author} | {'; '.join(why[:8]) or 'nothing found'} |")
    return [*lines, ""]


def measured(file: str, rehearsed: dict) -> str:
    """What the rehearsal measured for ``file``, or why it is unknown."""
    for entry in rehearsed.get("files") or []:
        if entry.get("file") == file:
            if entry.get("error"):
                return f"failed in the rehearsal: {entry['error'][:200]}"
            locks = "; ".join(f"{lock['relation']} {lock['mode']} {lock['held_ms']:.0f} ms"
                              for lock in (entry.get("locks") or [])[:4]) or "no lock on an application table"
            rewritten = ", ".join(entry.get("rewritten") or {}) or "no table rewritten"
            return f"{entry['duration_ms'] / 1000:.1f} s; {locks}; {rewritten}"
    if rehearsed.get("not_rehearsed"):
        return f"unknown: not rehearsed ({rehearsed['not_rehearsed'][:160]})"
    if rehearsed.get("empty_target") or rehearsed.get("skipped"):
        return "unknown: not rehearsed (the target holds no data)"
    return "unknown: the rehearsal stopped before this file"


def sql_section(migrations, rehearsed: dict) -> list[str]:
    import sqlparse

    lines = ["**The files** (statements reformatted; the apply task's *Rendered Template* shows each whole):", ""]
    for m in migrations:
        text = sqlparse.format(m.read(), reindent=True, keyword_case="upper", strip_comments=False).strip()
        shown = text.splitlines()
        lines += [f"`{m.file_name}` — rehearsal: {measured(m.file_name, rehearsed)}", "", "```sql",
                  *shown[:SQL_LINES], "```"]
        if len(shown) > SQL_LINES:
            lines.append(f"*… {len(shown) - SQL_LINES} more lines folded.*")
        if verify := m.verify_text().strip():
            lines += ["", f"checked after it applies by `{m.verify_path.name}` (must return no row):", "", "```sql",
                      *verify.splitlines()[:SQL_LINES], "```"]
        lines.append("")
    return lines


def drift_section(drift: dict | None) -> list[str]:
    """The plan's drift check: what differs, and what of it the pending files touch (which refuses the run unless
    the approver accepts it)."""
    if drift is None:
        return []
    if drift.get("unknown"):
        return [f"**Schema drift: unknown** ({drift['unknown']}).", ""]
    if not drift.get("differences"):
        return [f"**Schema drift: none** ({drift.get('objects', 0)} objects as the applied files build them).", ""]
    touched = drift.get("touched") or []
    lines = [f"**Schema drift: {len(drift['differences'])} object(s)** differ from what the applied files build"
             + (f"; **{len(touched)} touched by the pending files** — *apply accepting the drift* or reject"
                if touched else "") + ":", "", "| object | change | security | touched |", "|---|---|---|---|"]
    for d in drift["differences"][:20]:
        name = f"{d['kind']} {d['name']}"
        lines.append(f"| {name} | {d['change']} {', '.join(d.get('fields') or [])} | {d.get('security') or 'no'} | "
                     f"{'yes' if name in touched else 'no'} |")
    return [*lines, ""]
