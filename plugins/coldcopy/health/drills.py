"""The restore drills (``restore_drill``, :mod:`coldcopy.pitr.drills`): the newest, the trend, the budget."""

from __future__ import annotations

from coldcopy.health.results import Context, Result, iso
from coldcopy.humanize import duration, when

TREND = 30  # drills shown on the health page
SUCCESS_WITHIN_HOURS = 36  # no passed drill for this long pages (include/prometheus/rules.yml)


def restore_drill(c: Context) -> Result:
    if not c.has_table("coldcopy_ops.restore_drills"):
        return Result("restore_drill", "warning", "no restore drill recorded yet: nobody knows how long a recovery "
                      "takes (restore_drill needs coldcopy_verify_db, docs/backups.md)", None, "s")
    rows = c.rows("SELECT finished_at, as_of, outcome, error, rto_s, rpo_s, budget_s, download_s, restore_s, "
                  "replay_s, verify_s, erasures_s, bytes, rows, jobs FROM coldcopy_ops.restore_drills "
                  "ORDER BY finished_at DESC LIMIT %s", (TREND,))
    newest = rows[0]
    passed = next((r for r in rows if r["outcome"] == "passed"), None)
    recent = c.one("SELECT now() - make_interval(hours => %s) AS t", (SUCCESS_WITHIN_HOURS,))["t"]
    details = {"drills": [iso(dict(r)) for r in reversed(rows)]}
    rto = passed["rto_s"] if passed else None
    if newest["outcome"] == "failed":
        of = f" (as of {when(newest['as_of'])})" if newest["as_of"] else ""
        return Result("restore_drill", "breach", f"the newest drill{of} failed: {(newest['error'] or '')[:200]}",
                      rto, "s", details)
    if passed is None or passed["finished_at"] < recent:
        return Result("restore_drill", "breach", f"no drill passed in {SUCCESS_WITHIN_HOURS} h", rto, "s", details)
    # The page's formats (coldcopy.humanize), so the summary says what the value column and the table say.
    summary = (f"RTO {duration(rto)} (budget {duration(passed['budget_s'])}), RPO {duration(passed['rpo_s'])}, "
               f"as of {when(passed['as_of'])}")
    if passed["budget_s"] is not None and rto > passed["budget_s"]:
        return Result("restore_drill", "breach", f"over the RTO budget: {summary}", rto, "s", details)
    return Result("restore_drill", "ok", summary, rto, "s", details)
