"""The incremental summaries (coldcopy.refresh.incremental): the last daily verify of each, and the captured keys
waiting."""

from __future__ import annotations

from coldcopy.health.results import Context, Result, iso

# Captured keys not yet applied past which the refreshes are falling behind (an apply's cost grows with them).
BACKLOG_WARNING = 1_000_000
VERIFY_WITHIN_HOURS = 36


def summaries(c: Context) -> Result:
    if not c.has_table("coldcopy_ops.ivm_state"):
        return Result("summaries", "ok", "no incremental summary built yet", 0, "keys")
    rows = c.rows("""
        SELECT s.summary, s.applied_at, s.rebuilt_at, v.verified_at, v.missing_rows, v.extra_rows
        FROM coldcopy_ops.ivm_state s
        LEFT JOIN LATERAL (SELECT * FROM coldcopy_ops.ivm_verifications v WHERE v.summary = s.summary
                           ORDER BY verified_at DESC LIMIT 1) v ON true ORDER BY 1""")
    horizon = c.one("SELECT min(pg_snapshot_xmin(watermark)) AS x FROM coldcopy_ops.ivm_state")["x"]
    backlog = c.one("SELECT count(*) AS n FROM coldcopy_ops.ivm_delta_email_events WHERE txid >= %s",
                    (horizon,))["n"] if horizon is not None else 0
    stale = c.one("SELECT now() - make_interval(hours => %s) AS t", (VERIFY_WITHIN_HOURS,))["t"]
    differed = [r["summary"] for r in rows if (r["missing_rows"] or 0) + (r["extra_rows"] or 0) > 0
                and r["verified_at"] >= stale]
    unverified = [r["summary"] for r in rows if r["verified_at"] is None or r["verified_at"] < stale]
    problems = [f"differed from its definition at the last verify (repaired): {', '.join(differed)}" if differed
                else "", f"{backlog:,} captured keys not applied yet" if backlog > BACKLOG_WARNING else ""]
    problems = [p for p in problems if p]
    details = {"summaries": [iso(dict(r)) for r in rows], "pending_email_events_keys": backlog}
    if problems:
        return Result("summaries", "warning", "; ".join(problems) + " (docs/refresh.md)", backlog, "keys", details)
    # Not yet verified is no problem (a new summary, before the first daily verify): said, not alerted.
    verified = f"; not verified in {VERIFY_WITHIN_HOURS} h: {', '.join(unverified)}" if unverified else \
        f", each verified equal to its definition within {VERIFY_WITHIN_HOURS} h"
    return Result("summaries", "ok", f"{len(rows)} summaries{verified}; {backlog:,} captured keys pending",
                  backlog, "keys", details)
