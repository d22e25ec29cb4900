"""One restore drill: a second of the last day restored on the verification server, checked, measured.

Steps, each timed (the RTO's split): the base backup downloaded and bound to its signed manifest; decrypted
and restored (``pg_restore --jobs``); its rows checked against the manifest; the change archive replayed up to
the second; the result checked against the archive (:mod:`coldcopy.pitr.drills.expected`); the erasure ledger
re-applied. The scratch database is dropped whatever happens, and the drill — passed or failed — is recorded
in the live database (:mod:`coldcopy.pitr.drills.record`) before a failure is raised.

Never on the live server: ``verify_admin_dsn`` reaching ``live_dsn``'s server is refused before anything is
made (:func:`coldcopy.scratch.same_server`). See docs/backups.md ("Restore drills").
"""

from __future__ import annotations

import logging
import os
import random
import time
from datetime import UTC, datetime, timedelta
from functools import cache

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from coldcopy import scratch as scratch_dbs
from coldcopy import verify_roles
from coldcopy.failure_reasons import reason_of
from coldcopy.pitr import chain as chains
from coldcopy.pitr import recovery
from coldcopy.pitr.drills import checks, record
from coldcopy.pitr.drills.expected import SAMPLE_ONE_IN, Expectation
from coldcopy.pitr.pgoutput import lsn_int
from coldcopy.pitr.snapshot import Snapshot

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)


class DrillError(RuntimeError):
    """The drill failed: no restore could be made, or the restored database is not what the archive holds."""


class RpoWatch:
    """Achieved RPO at ``until``: had the primary been lost then, the commits before it that were in no segment
    yet (their segment was written after ``until``) were lost; the oldest one's age is the RPO."""

    def __init__(self, until: datetime) -> None:
        self.until, self.oldest, self.at_risk = until, None, 0

    def add(self, segment: dict, transaction: dict) -> None:
        if datetime.fromisoformat(segment["created_at"]) > self.until:
            self.at_risk += 1
            self.oldest = self.oldest or datetime.fromisoformat(transaction["commit_time"])

    @property
    def rpo_s(self) -> float:
        return (self.until - self.oldest).total_seconds() if self.oldest else 0.0


class RestoreDrill:
    """:param runner: the backups' :class:`~coldcopy.backups.BackupRunner` (bucket, passphrase, keyring).
    :param live_dsn: the live database (its archive anchor; the drill's record).
    :param verify_admin_dsn: the verification server's maintenance database (the scratch copy is made there).
    :param reapply: ``(manifest, dsn)`` → the erasure ledger re-applied to ``dsn`` (what every restore does).
    :param migrate: ``dsn`` → what the replay calls for a migration marker
        (:func:`coldcopy.migrations.marker_applier.marker_applier`).
    """

    def __init__(self, runner, live_dsn: str, verify_admin_dsn: str, *, reapply, migrate, jobs: int = 1,
                 budget_s: float = record.DEFAULT_BUDGET_S, ttl: timedelta | None = None,
                 sample_one_in: int = SAMPLE_ONE_IN) -> None:
        self.runner, self.live_dsn, self.verify_admin_dsn, self.reapply = runner, live_dsn, verify_admin_dsn, reapply
        self.migrate = migrate
        self.jobs, self.budget_s, self.ttl, self.sample_one_in = jobs, budget_s, ttl, sample_one_in

    # which second --------------------------------------------------------------------------------------------
    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The seconds a drill may pick: within the last day, after the oldest base backup the newest chain
        extends, before the archive's newest point."""
        now = now or datetime.now(UTC)
        bucket, keys = self.runner.bucket, self.runner.keyring
        names, refused = chains.list_chains(bucket), {}
        if not names:
            raise DrillError("no change archive in the bucket: a drill restores as of a second (change_archive)")
        # the newest chain whose head verifies: a planted, unsigned or forged one is skipped and named
        chain = next(filter(None, (chains.load_trusted(bucket, n, keys, refused) for n in reversed(names))), None)
        if chain is None:
            raise DrillError("no change archive chain in the bucket has a head that verifies"
                             + chains.refused_note(refused))
        # a drill proves the archive whole: a segment lost from the bucket (against the live database's record,
        # or a break inside the chain) fails it, never moves it to a second before the loss
        # (a manifest that does not verify, planted by a bucket writer without keys, is skipped, not a gap; a
        # segment whose manifest is there and its object not is a loss all the same; so is a newer chain whose
        # head was deleted, which the live database's record still names)
        good = chain.consistent_prefix()
        since = good[-1]["seq"] if good else (chain.pruned or {}).get("through_seq", 0)
        after = [s["seq"] for s in chain.segments if s["seq"] > since]
        anchor = recovery.read_anchor(self.live_dsn)
        lost = [s["seq"] for s in good if s["object_key"] not in chain.objects]
        gap = chain.anchor_gap(anchor) or (after and (
            f"the chain {chain.name} has a gap after segment {since} (segment {after[0]} follows): a restore past "
            "it is impossible")) or (lost and (
            f"the chain {chain.name} lacks the objects of segments {', '.join(map(str, lost[:10]))} (their signed "
            "manifests are there: deleted from the bucket?)")) or (
            anchor and anchor["chain"] > chain.name and (
                f"the database records chain {anchor['chain']} at segment {anchor['seq']}, and the bucket's newest "
                f"chain whose head verifies is {chain.name} (chain {anchor['chain']} deleted?)"))
        if gap:
            raise DrillError(gap)
        backups = [datetime.fromisoformat(m["pitr"]["snapshot_time"]) for _, _, m in self.runner.database_backups()
                   if m.get("pitr") and m["database"] == chain.head["database"]
                   and lsn_int(m["pitr"]["lsn"]) >= chain.start_lsn]
        if not backups:
            raise DrillError(f"no whole-database backup extends the change archive {chain.name}: take one")
        earliest = max(now - WINDOW, min(backups)).replace(microsecond=0) + timedelta(seconds=1)
        latest = recovery.newest_point(bucket, chain, keys).replace(microsecond=0) - timedelta(seconds=1)
        if latest < earliest:
            raise DrillError(f"the change archive {chain.name} holds no whole second after its base backup yet "
                             f"(base backup {min(backups):%Y-%m-%dT%H:%M:%SZ}, newest point {latest:%H:%M:%SZ})")
        return earliest, latest

    def pick(self, rng: random.Random | None = None) -> datetime:
        earliest, latest = self.window()
        return earliest + timedelta(seconds=(rng or random.SystemRandom()).randint(
            0, int((latest - earliest).total_seconds())))

    def reachable(self, as_of: datetime, row: dict) -> datetime:
        """``as_of``, or the newest second the archive reaches when ``as_of`` is past it (a second that was not
        drained yet: the drill moves, says so, and does not fail); before the window, an error naming it."""
        if as_of > datetime.now(UTC):
            raise DrillError(f"as_of {as_of:%Y-%m-%dT%H:%M:%SZ} is in the future: give a past second, or none for a "
                             "random one")
        try:
            earliest, latest = self.window()
        except DrillError:
            return as_of  # the restore itself says what is wrong with the archive, more precisely
        if as_of > latest:
            log.warning("restore drill: as_of %s is past the newest second the change archive holds; drilling as "
                        "of %s instead", f"{as_of:%Y-%m-%dT%H:%M:%SZ}", f"{latest:%Y-%m-%dT%H:%M:%SZ}")
            row["as_of_requested"] = as_of
            return latest
        if as_of < earliest:
            raise DrillError(f"as_of {as_of:%Y-%m-%dT%H:%M:%SZ} is before the seconds a drill can reach "
                             f"({earliest:%Y-%m-%dT%H:%M:%SZ} to {latest:%Y-%m-%dT%H:%M:%SZ}): give one of "
                             "those, or none for a random one")
        return as_of

    # the drill ----------------------------------------------------------------------------------------------
    def run(self, as_of: datetime | None = None) -> dict:
        """Drill once (as of ``as_of``, else a random second of :meth:`window`); the recorded row. A failed
        drill is recorded, then raised (:class:`DrillError`, or what stopped it)."""
        params = conninfo_to_dict(self.verify_admin_dsn)
        row: dict = {"started_at": datetime.now(UTC), "jobs": self.jobs, "budget_s": self.budget_s,
                     "verify_server": f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"}
        began = time.monotonic()
        failure: BaseException | None = None
        try:
            self._refuse_live()
            row["as_of"] = as_of = self.reachable(as_of, row) if as_of else self.pick()
            self._drill(as_of, row)
        except Exception as error:  # noqa: BLE001 - recorded, then raised
            failure = error
        if row.get("as_of_requested"):
            row["checks"] = {**(row.get("checks") or {}), "as_of_requested": row["as_of_requested"].isoformat(),
                             "as_of_moved_to": row["as_of"].isoformat()}
        row["finished_at"] = datetime.now(UTC)
        row["outcome"] = "failed" if failure else "passed"
        row["error"] = reason_of(failure)[:2000] if failure else None
        if not failure:
            row["rto_s"] = sum(row.get(p) or 0.0 for p in ("download_s", "restore_s", "replay_s", "verify_s",
                                                           "erasures_s"))
        with psycopg.connect(self.live_dsn, autocommit=True) as live:
            row["id"] = record.save(live, row)
        log.info("restore drill %s as of %s in %.1f s: %s", row["outcome"], row.get("as_of"),
                 time.monotonic() - began, row["error"] or f"RTO {row['rto_s']:.1f} s, RPO {row['rpo_s']:.1f} s")
        if failure:
            raise failure
        return row

    def _refuse_live(self) -> None:
        from coldcopy.scratch import same_server

        with psycopg.connect(self.live_dsn, autocommit=True) as live:
            if same_server(live, self.verify_admin_dsn):
                raise DrillError("the verification server is the live database's own server: a drill never "
                                 "runs there (it restores a whole copy of production beside it); point "
                                 "coldcopy_verify_db at a server of its own")

    def _drill(self, as_of: datetime, row: dict) -> None:
        runner = self.runner
        plan = recovery.plan(runner, as_of, recovery.read_anchor(self.live_dsn))
        row.update(backup_key=plan.backup_key, chain=plan.chain.name, segments=len(plan.segments),
                   bytes=plan.backup["byte_size"] + sum(s["byte_size"] for s in plan.segments))
        name = f"coldcopy_drill_{datetime.now(UTC):%Y%m%d%H%M%S}_{os.getpid()}"
        verify_roles.prepare(self.live_dsn, self.verify_admin_dsn)  # the roles the backup's grants name, NOLOGIN
        with psycopg.connect(self.verify_admin_dsn, autocommit=True) as admin:
            scratch_dbs.sweep(admin)
            scratch_dbs.create(admin, name, "drill", self.ttl)
        dsn = make_conninfo(self.verify_admin_dsn, dbname=name)
        # the first segment is fetched, bound and decrypted while the base backup restores, as in a recovery
        segments = recovery.ReadAhead(runner, plan.segments)
        try:
            runner.restore(plan.backup_key, dsn, manifest=plan.backup, jobs=self.jobs)
            row["download_s"] = runner.timings["download_s"]
            row["restore_s"] = runner.timings["total_s"] - runner.timings["download_s"]
            started = time.monotonic()
            with psycopg.connect(dsn) as conn:
                base = checks.table_counts(conn)
            if differ := checks.against_manifest(base, plan.backup):
                raise DrillError(f"the base backup {plan.backup_key} restored other row counts than its manifest "
                                 f"(manifest, restored): {differ}")
            row["verify_s"] = time.monotonic() - started
            with psycopg.connect(dsn, autocommit=True) as lookup:
                expectation = Expectation(Snapshot.parse(plan.backup["pitr"]["snapshot"]),
                                          cache(lambda table: _primary_key(lookup, table)), self.sample_one_in)
                rpo = RpoWatch(plan.until)

                def observe(segment: dict, transaction: dict) -> None:
                    expectation.add(transaction)
                    rpo.add(segment, transaction)

                started = time.monotonic()
                replayed = recovery.replay(runner, plan, dsn, observe=observe, jobs=self.jobs, segments=segments,
                                           migrate=self.migrate(dsn))
                row["replay_s"] = time.monotonic() - started
            row.update(rpo_s=rpo.rpo_s, at_risk_transactions=rpo.at_risk,
                       changes_replayed=sum(replayed["changes"].values()))
            started = time.monotonic()
            with psycopg.connect(dsn) as conn:
                found = checks.against_archive(conn, expectation, base)
            row["verify_s"] += time.monotonic() - started
            row["rows"] = found["rows"]
            row["checks"] = {"tables": found["counts"], "sampled": found["sampled"],
                             "sampled_keys": found["sampled_keys"], "sample_one_in": self.sample_one_in,
                             "transactions": expectation.transactions, "problems": found["problems"],
                             "timings": {k: round(v, 3) for k, v in runner.timings.items()},
                             "chain_heads_refused": plan.refused}
            if found["problems"]:
                raise DrillError(f"the restore as of {as_of:%Y-%m-%dT%H:%M:%SZ} differs from the archive: "
                                 + "; ".join(found["problems"])[:1500])
            started = time.monotonic()
            _, problems = self.reapply(plan.backup, dsn)
            row["erasures_s"] = time.monotonic() - started
            row["checks"]["ledger_problems"] = problems
        finally:
            segments.close()
            with psycopg.connect(self.verify_admin_dsn, autocommit=True) as admin:
                scratch_dbs.drop(admin, name)


def _primary_key(conn: psycopg.Connection, table: str) -> list[str]:
    from coldcopy.safe_names import UnknownRelation

    try:
        return checks.primary_key(conn, table)
    except UnknownRelation:
        return []
