"""What anchoring the change archive in the database costs (issue 31, 2): drain time and archive lag with and
without the archiver's cross-check of the bucket against ``coldcopy_ops.change_archive`` (``check_anchor``),
under the load of bench/load.py.

Set up as bench/pitr.py (a throwaway ``wal_level=logical`` cluster holding a copy of the ``--scale`` database,
``--clients`` pgbench clients through PgBouncer), then phases of ``--seconds``, alternating: the archiver
**without** the cross-check (``check_anchor`` replaced by a no-op, as before the anchor) and **with** it
(today's). Each phase starts a new slot and chain; per phase: every drain's duration, the lag of every
archived transaction (commit → segment verified, slot advanced), and the workload's TPS and p99.

    .venv/bin/python -m bench.pitr_anchor [--scale 32 --clients 100 --seconds 30 --rounds 2]
    .venv/bin/python -m bench.pitr_anchor --table
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import psycopg

from bench import common
from bench.pitr import PASSPHRASE, load_phase, loaded
from coldcopy.pitr.archiver import ChangeArchiver
from coldcopy.pitr.setup import Setup


class TimedArchiver(ChangeArchiver):
    """The archiver, each drain timed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.drain_s: list[float] = []  # drains that archived a segment

    def drain_once(self):
        started = time.perf_counter()
        drained = super().drain_once()
        if drained.seq is not None:
            self.drain_s.append(time.perf_counter() - started)
        return drained


class UnanchoredArchiver(TimedArchiver):
    """The archiver as it was before the anchor: the bucket's chain extended without asking the database."""

    def check_anchor(self, conn, chain) -> None:
        return None


def _pct(values: list[float], p: float) -> float | None:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * len(values)))], 3) if values else None


def phase(kind: type[TimedArchiver], dsn: str, bucket, bouncer, password: str, clients: int, seconds: int) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        Setup(conn).drop_slot()
    archiver = kind(dsn, bucket, PASSPHRASE, keyring=common.KEYRING)
    archiver.drain_once()  # a new slot, a new chain
    archiver.drain_s.clear()
    drained: list = []
    drainer = threading.Thread(target=lambda: drained.extend(
        archiver.run(until=time.monotonic() + seconds + 8, every_s=5.0)))
    drainer.start()
    summary = load_phase(bouncer, psycopg.conninfo.conninfo_to_dict(dsn)["dbname"], password, clients, seconds)
    drainer.join()
    lags = [x for d in drained for x in d.lags_s]
    busy = archiver.drain_s
    return {**summary, "segments": len(drained),
            "drain_p50_s": _pct(busy, 0.5), "drain_p99_s": _pct(busy, 0.99), "drain_max_s": _pct(busy, 1.0),
            "lag_p50_s": _pct(lags, 0.5), "lag_p99_s": _pct(lags, 0.99), "lag_max_s": _pct(lags, 1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=32)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("pitr_anchor")))
        return
    phases: dict[str, list[dict]] = {"without": [], "with": []}
    with loaded(args.scale, args.clients, "pitr_anchor") as setup:
        def run(name: str, kind: type[TimedArchiver]):
            def one() -> float:
                phases[name].append(phase(kind, setup.dsn, setup.bucket, setup.bouncer, setup.password, args.clients,
                                          args.seconds))
                print(json.dumps({name: phases[name][-1]}), flush=True)
                return 0.0
            return one

        common.alternating(args.rounds, {"without": run("without", UnanchoredArchiver),
                                         "with": run("with", TimedArchiver)})
    common.write_results("pitr_anchor", vars(args), {"email_events": setup.events, "phases": phases}, setup.server)


def table(results: dict) -> str:
    settings, phases = results["settings"], results["phases"]
    w, o = phases["with"], phases["without"]

    def med(rows: list[dict], key: str) -> float:
        values = [r[key] for r in rows if r.get(key) is not None]
        return round(statistics.median(values), 2) if values else float("nan")

    lines = [
        f"| scale {settings['scale']} ({results['email_events']:,} email_events), {settings['clients']} clients "
        f"through PgBouncer, {settings['seconds']} s phases, {settings['rounds']} rounds alternating (medians) | "
        "without the cross-check | with it (today) |",
        "|---|---|---|",
        f"| drain time p50 / p99, s (drains that archived a segment) | {med(o, 'drain_p50_s')} / "
        f"{med(o, 'drain_p99_s')} | {med(w, 'drain_p50_s')} / {med(w, 'drain_p99_s')} |",
        f"| archive lag p50 / p99 / max, s | {med(o, 'lag_p50_s')} / {med(o, 'lag_p99_s')} / {med(o, 'lag_max_s')} "
        f"| {med(w, 'lag_p50_s')} / {med(w, 'lag_p99_s')} / {med(w, 'lag_max_s')} "
        f"({med(w, 'lag_p99_s') / med(o, 'lag_p99_s'):.2f}× p99; goal ≤ 1.10×) |",
        f"| workload TPS / p99 ms | {med(o, 'tps'):,} / {med(o, 'p99_ms')} | {med(w, 'tps'):,} / {med(w, 'p99_ms')} |",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
