"""Incremental summaries against full refreshes of the same definitions, the capture's cost to the application,
and the daily verify's time.

1. at each of ``--scales``: after 0.1 %, 1 % and 10 % of email_events changed, every incremental summary applied
   incrementally vs the same definitions refreshed as materialized views (``REFRESH … CONCURRENTLY``, what
   the refresh jobs did before), alternating which goes first, ``--runs`` each. Two kinds of change:
   *arrivals*, new events of the last hour for the messages of 5 % of the campaigns (those sending now: the
   application's steady state); *mixed*, half such new events, four tenths updates of random events of any age
   (type, campaign or a day earlier) and a tenth deletes (the worst case);
2. the load bench's workload (``--clients`` through PgBouncer, 10 s rounds) with the capture triggers installed
   and dropped, alternating, p99 of each;
3. the daily verify (apply, then EXCEPT ALL both ways on the same snapshot) of all of them.

    make bench            # or: .venv/bin/python -m bench.incremental [--scales 8,32,96 --runs 3]
    .venv/bin/python -m bench.incremental --table
"""

from __future__ import annotations

import argparse
import time

import psycopg
from psycopg import sql

from bench import common, incremental_report
from bench.incremental_load import trigger_cost
from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
from coldcopy.refresh.incremental.summaries import SUMMARIES
from coldcopy.testing import local_env

table = incremental_report.table  # bench/readme.py reads every bench module's table()
FRACTIONS = (0.001, 0.01, 0.1)
FIXED_ROWS = incremental_report.FIXED_ROWS  # the same changed rows at every scale: is the cost flat in the data?
PATTERNS = incremental_report.PATTERNS  # new events of the last hour only / the mix of the module's docstring


def create_baseline(conn) -> dict[str, str]:
    """The summaries' definitions as materialized views in ``bench_full`` (unique index on the summary's key, filled):
    what a full refresh of each costs. Returns summary → its baseline view."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS bench_full")
    baseline = {}
    for name, summary in SUMMARIES.items():
        view = sql.Identifier("bench_full", summary.table)
        conn.execute(sql.SQL("CREATE MATERIALIZED VIEW IF NOT EXISTS {} AS SELECT * FROM {}").format(
            view, sql.Identifier(summary.schema, f"{summary.table}_definition")))
        conn.execute(sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(f"{summary.table}_key"), view, sql.SQL(", ").join(map(sql.Identifier, summary.key))))
        baseline[name] = f"bench_full.{summary.table}"
    return baseline


def change(conn, fraction: float, pattern: str = "mixed") -> int:
    """Change ``fraction`` of email_events in ``pattern`` (the module's docstring); returns the rows written."""
    total = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = 'email_events'::regclass").fetchone()[0]
    if total <= 0:
        total = conn.execute("SELECT count(*) FROM email_events").fetchone()[0]
    n = max(1, int(total * fraction))
    pct = min(100.0, 100.0 * n / total * 1.2)
    if pattern == "arrivals":  # the campaigns sending right now: 5 % of them, their messages' new events
        written = conn.execute(
            "INSERT INTO email_events (workspace_id, message_id, campaign_id, lead_id, email_account_id, event_type, "
            "occurred_at, metadata) SELECT workspace_id, message_id, campaign_id, lead_id, email_account_id, "
            "event_type, now() - random() * interval '1 hour', '{\"bench\": true}' FROM email_events "
            "CROSS JOIN generate_series(1, 4) "
            "WHERE campaign_id IN (SELECT id FROM campaigns ORDER BY random() LIMIT (SELECT greatest(1, count(*) / 20) "
            "FROM campaigns)) ORDER BY random() LIMIT %s", (n,)).rowcount
        conn.execute("ANALYZE email_events")
        return written + change_signals(conn, fraction, pattern)
    written = conn.execute(
        "INSERT INTO email_events (workspace_id, message_id, campaign_id, lead_id, email_account_id, event_type, "
        "occurred_at, metadata) SELECT workspace_id, message_id, campaign_id, lead_id, email_account_id, event_type, "
        "now() - random() * interval '1 hour', '{\"bench\": true}' FROM email_events TABLESAMPLE BERNOULLI (%s) "
        "LIMIT %s",
        (pct / 2, n // 2)).rowcount
    written += conn.execute(
        "UPDATE email_events SET event_type = CASE WHEN random() < 0.5 THEN 'opened' ELSE 'clicked' END, "
        "campaign_id = CASE WHEN random() < 0.2 THEN (SELECT id FROM campaigns LIMIT 1) ELSE campaign_id END, "
        "occurred_at = CASE WHEN random() < 0.2 AND occurred_at > now() - interval '300 days' "
        "THEN occurred_at - interval '1 day' ELSE occurred_at END "
        "WHERE (id, occurred_at) IN (SELECT id, occurred_at FROM email_events TABLESAMPLE BERNOULLI (%s) LIMIT %s)",
        (pct * 0.4, n * 4 // 10)).rowcount
    written += conn.execute(
        "DELETE FROM email_events WHERE (id, occurred_at) IN "
        "(SELECT id, occurred_at FROM email_events TABLESAMPLE BERNOULLI (%s) LIMIT %s)",
        (pct * 0.1, n // 10)).rowcount
    conn.execute("ANALYZE email_events")
    return written + change_signals(conn, fraction, pattern)


def change_signals(conn, fraction: float, pattern: str) -> int:
    """The same ``fraction`` of intent_signals (lead_intent_summary's source): new signals of now (arrivals), or
    half new, four tenths moved in time and strength, a tenth deleted (mixed). Returns the rows written."""
    n = max(1, int(conn.execute("SELECT count(*) FROM intent_signals").fetchone()[0] * fraction))
    new = n if pattern == "arrivals" else n // 2
    written = conn.execute(
        "INSERT INTO intent_signals (workspace_id, lead_id, signal_type, strength, detected_at, payload) SELECT "
        "workspace_id, lead_id, signal_type, strength, now() - random() * interval '1 hour', '{\"bench\": true}' "
        "FROM intent_signals ORDER BY random() LIMIT %s", (new,)).rowcount
    if pattern == "mixed":
        written += conn.execute(
            "UPDATE intent_signals SET strength = strength + 1, detected_at = detected_at - interval '1 day' "
            "WHERE id IN (SELECT id FROM intent_signals ORDER BY random() LIMIT %s)", (n * 4 // 10,)).rowcount
        written += conn.execute("DELETE FROM intent_signals WHERE id IN (SELECT id FROM intent_signals "
                                "ORDER BY random() LIMIT %s)", (n // 10,)).rowcount
    return written


def apply_all(conn, *, prune: bool = False) -> dict[str, float]:
    seconds = {}
    for name in SUMMARIES:
        began = time.perf_counter()
        maintainer = SummaryMaintainer(conn, name)
        maintainer.apply()
        if prune:
            maintainer.prune()
        seconds[name] = time.perf_counter() - began
    return seconds


# What an apply churns: the aggregate states, multiplicities, per-message rows, delta tables and the summaries.
CHURNED = ("SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
           "c.relkind = 'r' AND ((n.nspname = 'coldcopy_ops' AND c.relname ~ '^ivm_(agg|mult|msg|delta)_') OR "
           "(n.nspname = 'analytics' AND c.relkind = 'r'))")


def refresh_all(conn, baseline: dict[str, str]) -> dict[str, float]:
    seconds = {}
    for name, view in baseline.items():
        began = time.perf_counter()
        conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(sql.SQL(view)))
        seconds[name] = time.perf_counter() - began
    return seconds


def clock_move(conn, runs: int) -> dict:
    """The apply of every summary the first time after a midnight, with no data change: the day windows drop a
    day (the state's clock set a day back before each run; the first day of the window has its groups)."""
    seconds = []
    for _ in range(runs):
        conn.execute("UPDATE coldcopy_ops.ivm_state SET clock_at = clock_at - interval '1 day'")
        seconds.append(sum(apply_all(conn).values()))
    return common.spread(seconds, 3)


def helper_bytes(conn) -> dict:
    """The helper tables' size (delta tables after a prune, aggregate states, multiplicities, per-message rows)
    against email_events' (tables and their indexes): as the bench's churn left them, vacuumed as autovacuum
    would (the files keep the room the pruned deltas and replaced rows freed, for the next ones), and compacted
    (VACUUM FULL, bench only: what they hold)."""
    for name in SUMMARIES:
        SummaryMaintainer(conn, name).prune()
    helpers = ("SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
               "n.nspname = 'coldcopy_ops' AND c.relkind = 'r' AND c.relname ~ '^ivm_(agg|mult|msg|delta)_'")
    size = ("SELECT (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = "
            "c.relnamespace WHERE n.nspname = 'coldcopy_ops' AND c.relkind = 'r' AND c.relname ~ "
            "'^ivm_(agg|mult|msg|delta)_'), (SELECT sum(pg_total_relation_size(relid)) FROM "
            "pg_partition_tree('public.email_events'))")
    tables = [t for (t,) in conn.execute(helpers).fetchall()]
    for table in tables:
        conn.execute(sql.SQL("VACUUM {}").format(sql.SQL(table)))
    churned, events = (int(v) for v in conn.execute(size).fetchone())
    for table in tables:
        conn.execute(sql.SQL("VACUUM FULL {}").format(sql.SQL(table)))
    compact = int(conn.execute(size).fetchone()[0])
    return {"helpers": churned, "helpers_compact": compact, "email_events": events,
            "share": round(churned / events, 3), "share_compact": round(compact / events, 3)}


def compare(conn, baseline: dict[str, str], events: int, fraction: float, pattern: str, runs: int) -> dict:
    """Incremental vs full after the same kind of change, alternating; totals and per-summary medians."""
    per_view: dict[str, dict[str, list[float]]] = {n: {"incremental": [], "full": []} for n in SUMMARIES}

    def settle() -> None:
        """Untimed: the rows a change inserted go again (the data keeps its size from run to run), the summaries
        catch up (and prune, as the refresh jobs do), so the next incremental run pays only its own change; and
        the tables they churned are vacuumed, as autovacuum does between hourly refreshes (back to back, a 10 %
        run's dead rows made the next runs' index lookups 2-3x slower, a cost no hourly refresh pays)."""
        conn.execute("DELETE FROM email_events WHERE metadata ? 'bench'")
        conn.execute("DELETE FROM intent_signals WHERE payload ? 'bench'")
        apply_all(conn, prune=True)
        for (table,) in conn.execute(CHURNED).fetchall():
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.SQL(table)))

    def incremental() -> float:
        change(conn, fraction, pattern)
        seconds = apply_all(conn, prune=True)  # the refresh job's apply and its prune
        for name, s in seconds.items():
            per_view[name]["incremental"].append(s)
        settle()
        return sum(seconds.values())

    def full() -> float:
        change(conn, fraction, pattern)
        seconds = refresh_all(conn, baseline)
        for name, s in seconds.items():
            per_view[name]["full"].append(s)
        settle()
        return sum(seconds.values())

    measured = common.alternating(runs, {"incremental": incremental, "full": full})
    return {"pattern": pattern, "fraction": fraction, "changed_rows": int(events * fraction),
            "incremental_s": common.spread(measured["incremental"]), "full_s": common.spread(measured["full"]),
            "per_view": {name: {kind: round(sorted(v)[len(v) // 2], 3) for kind, v in kinds.items()}
                         for name, kinds in per_view.items()}}


def at_scale(server: str, scale: int, runs: int, fractions: tuple[float, ...] = FRACTIONS) -> dict:
    with common.bench_database(server, scale, "ivm") as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        apply_all(conn)  # the first build
        baseline = create_baseline(conn)
        events = conn.execute("SELECT count(*) FROM email_events").fetchone()[0]
        per_fraction = {}
        for pattern in PATTERNS:
            for fraction in (*fractions, FIXED_ROWS / events):
                label = f"{pattern} {fraction}" if fraction in fractions else f"{pattern} {FIXED_ROWS} rows"
                per_fraction[label] = compare(conn, baseline, events, fraction, pattern, runs)
                print(scale, label, per_fraction[label]["incremental_s"]["median"],
                      per_fraction[label]["full_s"]["median"], flush=True)
        clock = clock_move(conn, runs)
        sizes = helper_bytes(conn)
        verify = {}
        for name in SUMMARIES:
            verified = SummaryMaintainer(conn, name).verify(repair=False)
            assert verified.equal, verified
            verify[name] = {"ms": verified.duration_ms, "rows": verified.rows}
        return {"email_events": events, "fractions": per_fraction, "verify": verify, "clock_move_s": clock,
                "helper_bytes": sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="8,32,96")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runs-at-96", type=int, default=2, help="runs at scales of 96 and more (each ~2 min)")
    parser.add_argument("--fractions-at-96", default=",".join(map(str, FRACTIONS)),
                        help="the changes measured at scales of 96 and more (each full refresh there takes minutes)")
    parser.add_argument("--load-scale", type=int, default=32)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--load-rounds", type=int, default=4)
    parser.add_argument("--merge", action="store_true", help="keep the scales on file this run does not measure")
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md table and exit")
    args = parser.parse_args()
    if args.table:
        print(incremental_report.table(common.load_results("incremental")))
        return
    server = local_env.admin_dsn()
    scales = [int(s) for s in args.scales.split(",") if s.strip()]  # --scales '': the capture's cost only
    # Written after each scale and after the load figure, so that a run stopped part-way keeps what it measured;
    # --merge keeps the scales (and the load figure) on file that this run does not measure again.
    on_file = common.load_results("incremental") if args.merge and (common.RESULTS / "incremental.json").exists() \
        else {}
    results = {"scales": dict(on_file.get("scales", {})), **({"trigger_cost": on_file["trigger_cost"]}
                                                            if "trigger_cost" in on_file else {})}
    settings = {**on_file.get("settings", {}), "fractions": list(FRACTIONS), "order": "alternating", "pruned": True}

    def save() -> None:
        settings["scales"] = sorted(int(k) for k in results["scales"])
        common.write_results("incremental", settings, results, server, echo=False)

    for scale in scales:
        runs = args.runs if scale < 96 else args.runs_at_96
        fractions = FRACTIONS if scale < 96 else tuple(float(f) for f in args.fractions_at_96.split(","))
        results["scales"][str(scale)] = {**at_scale(server, scale, runs, fractions), "runs": runs}
        save()
    if args.load_rounds:
        results["trigger_cost"] = trigger_cost(server, args.load_scale, args.clients, args.load_rounds)
        settings.update(load_scale=args.load_scale, clients=args.clients, load_rounds=args.load_rounds)
        save()
    print(incremental_report.table(common.load_results("incremental")))

if __name__ == "__main__":
    main()
