"""Restore as of a second: the newest base backup whose snapshot precedes ``as_of``, then the change archive
from that backup's LSN up to the last transaction committed within the second ``as_of`` names.

Refused with the nearest possible point, before anything is created: ``as_of`` unparseable, without a time
zone, in the future, before the oldest base backup the archive extends, after the newest verified point of
the chain, or across a gap in it. See docs/pitr.md.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from coldcopy import manifests, markers
from coldcopy.pitr import chain as chains
from coldcopy.pitr.pgoutput import lsn_int
from coldcopy.pitr.replay import Replayer
from coldcopy.pitr.snapshot import Snapshot

log = logging.getLogger(__name__)


class RecoveryError(ValueError):
    """The archive cannot give the database as of that instant; the message names the nearest one it can."""


def parse_as_of(value, now: datetime | None = None) -> datetime:
    """``as_of`` as an aware UTC datetime at second resolution (``2026-11-29T16:00:05Z``)."""
    now = now or datetime.now(UTC)
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value or "").strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise RecoveryError(f"as_of {text!r} is not a timestamp: write it in UTC, e.g. "
                                f"{now:%Y-%m-%dT%H:%M:%SZ}") from None
    if moment.tzinfo is None:
        raise RecoveryError(f"as_of {value!r} has no time zone: write it in UTC with a Z, e.g. "
                            f"{moment:%Y-%m-%dT%H:%M:%S}Z (a local time here would restore the wrong hour)")
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        raise RecoveryError(f"as_of {value!r}: whole seconds only ({moment:%Y-%m-%dT%H:%M:%SZ} includes every "
                            "transaction committed within that second)")
    if moment > now:
        raise RecoveryError(f"as_of {moment:%Y-%m-%dT%H:%M:%SZ} is in the future (now {now:%Y-%m-%dT%H:%M:%SZ})")
    return moment


def _stamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


@dataclass
class RecoveryPlan:
    as_of: datetime
    backup_key: str
    backup: dict
    chain: chains.Chain
    segments: list[dict] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # chain heads skipped: unsigned or forged (by key)

    @property
    def until(self) -> datetime:
        """Commits strictly before this are replayed: the whole second ``as_of`` names."""
        return self.as_of + timedelta(seconds=1)

    def describe(self) -> dict:
        return {"as_of": _stamp(self.as_of), "base_backup": self.backup_key,
                "base_snapshot_time": self.backup["pitr"]["snapshot_time"], "chain": self.chain.name,
                "segments": [s["seq"] for s in self.segments], "chain_heads_refused": self.refused}


def newest_point(bucket, chain: chains.Chain, keys: manifests.Keyring) -> datetime:
    """The newest instant the chain holds every commit of: its last good segment's last commit, or later when
    the drainer found the slot empty after it (the signed tip)."""
    good = chain.consistent_prefix()
    newest = datetime.fromisoformat(good[-1]["last_commit"]) if good else datetime.fromisoformat(
        chain.head["created_at"])
    # The signed tip counts when it is bound to this chain and to the last good segment: then no segment follows
    # it (a gap's later segments would be the tip's). A refused object planted beside them (a chain's problems)
    # takes nothing away (helper-13: it voided the tip, and a drill found no whole second to restore).
    key = f"{chains.PREFIX}/{chain.name}/tip.json"
    if bucket.exists(key):
        try:
            tip = manifests.load(bucket.get(key), keys, where=bucket.url(key), type="tip")
            # bound to this chain and to its newest segment: another chain's genuine tip, copied here, or
            # a tip of a segment since deleted and re-numbered, moves nothing
            bound = tip["chain"] == chain.name and tip.get("segment_hash") == (
                chains.segment_hash(good[-1]) if good else None)
            if bound and (good and tip["seq"] == good[-1]["seq"] or (not good and tip["seq"] == 0)):
                newest = max(newest, datetime.fromisoformat(tip["drained_at"]))
        except manifests.ManifestRejected as error:
            log.error("%s", error)
    return newest


def read_anchor(dsn: str) -> dict | None:
    """What the source database recorded as archived (``coldcopy_ops.change_archive``: chain, newest segment,
    its hash), or ``None`` when it cannot say (no change archive there, or the database itself is lost)."""
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            return chains.recorded_anchor(conn)
    except psycopg.OperationalError as error:
        log.warning("the source database cannot say what is archived (%s): the bucket alone decides",
                    str(error).strip().splitlines()[0])
        return None


def plan(runner, as_of: datetime, anchor: dict | None = None) -> RecoveryPlan:
    """Which base backup and which segments give the database as of ``as_of``; :class:`RecoveryError` with the
    nearest reachable instant otherwise. Reads the bucket, held to ``anchor`` (:func:`read_anchor`) when the
    source database could say what it archived: a chain shorter than that is refused past its gap, named."""
    bucket, keys = runner.bucket, runner.keyring
    backups = [(datetime.fromisoformat(m["pitr"]["snapshot_time"]), key, m)
               for _, key, m in runner.database_backups() if m.get("pitr")]
    if not backups:
        raise RecoveryError("no whole-database backup records a point in the change archive yet: the first "
                            "backup after the change archive started is the earliest point")
    until = as_of + timedelta(seconds=1)
    eligible = sorted((b for b in backups if b[0] < until), key=lambda b: b[0], reverse=True)
    if not eligible:
        oldest = min(b[0] for b in backups)
        raise RecoveryError(f"as_of {_stamp(as_of)} is before the oldest base backup the change archive extends; "
                            f"the earliest possible point is {_stamp(oldest.replace(microsecond=0))}")
    names = chains.list_chains(bucket)
    loaded: dict[str, chains.Chain | None] = {}  # each chain read once, however many backups are tried against it
    refused: dict[str, str] = {}  # a head that does not verify is skipped, named: it blocks no restore
    nearest: list[str] = []
    for _taken, key, manifest in eligible:
        backup_lsn = lsn_int(manifest["pitr"]["lsn"])
        for name in reversed(names):
            if name not in loaded:
                loaded[name] = chains.load_trusted(bucket, name, keys, refused)
            chain = loaded[name]
            if chain is None or chain.start_lsn > backup_lsn or chain.head["database"] != manifest["database"]:
                continue
            good = chain.consistent_prefix()
            reach = newest_point(bucket, chain, keys)
            gap = chain.anchor_gap(anchor)
            if gap:
                reach = min(reach, datetime.fromisoformat(good[-1]["last_commit"]) if good else
                            datetime.fromisoformat(chain.head["created_at"]))
            if until > reach:  # the second asked for is not wholly in the archive
                broken = chain.break_after()
                why = gap or (f"the chain {name} has a gap after segment {broken['seq']}" if broken is not None
                              else f"the change archive {name} holds every commit up to {reach.isoformat()}")
                nearest.append(f"{why}: the newest possible point is "
                               f"{_stamp((reach - timedelta(seconds=1)).replace(microsecond=0))}")
                break
            # the segment holding the backup's LSN, and the one before it (a transaction in the snapshot's
            # in-progress list may have committed just before the LSN was read); the snapshot filters both
            first = next((i for i, s in enumerate(good) if lsn_int(s["end_lsn"]) >= backup_lsn), len(good))
            needed = [s for s in good[max(first - 1, 0):] if datetime.fromisoformat(s["first_commit"]) < until]
            return RecoveryPlan(as_of, key, manifest, chain, needed, sorted(refused))
        else:
            nearest.append(f"no change archive chain extends backup {key}" + (
                f" (the database records chain {anchor['chain']}, which the bucket does not hold)"
                if anchor and anchor["chain"] not in names else ""))
    raise RecoveryError(f"as_of {_stamp(as_of)} cannot be reached: {nearest[0]}{chains.refused_note(refused)}")


class ReadAhead:
    """The segments' transactions, in order: each downloaded, bound to its signed manifest, decrypted and
    counted on a thread of its own, the next one while the caller applies this one (at most two segments in
    memory). The first is fetched from the start, so a caller may make this before the base restore and have
    it ready when the replay begins. Iterated once; :meth:`close` (or ``with``) cancels what is queued."""

    def __init__(self, runner, segments: list[dict]) -> None:
        self.runner, self.segments = runner, segments
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="segment-reader")
        self._queued = [self._read(0)] if segments else []

    def _read(self, index: int):
        return self._pool.submit(chains.read_segment, self.runner.bucket, self.segments[index],
                                 self.runner.passphrase)

    def __iter__(self):
        for index, segment in enumerate(self.segments):
            current = self._queued.pop(0)
            if index + 1 < len(self.segments):
                self._queued.append(self._read(index + 1))
            yield segment, current.result()

    def close(self) -> None:
        for future in self._queued:
            future.cancel()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def replay(runner, recovery: RecoveryPlan, target_dsn: str, *, tables: list[str] | None = None,
           migrate=None, observe=None, jobs: int = 1, segments: ReadAhead | None = None) -> dict:
    """Apply the plan's segments to ``target_dsn`` (the base backup restored there already); a migration
    marker is handed to ``migrate`` (:func:`coldcopy.migrations.marker_applier.marker_applier` of the target;
    ``None``: a migration in the window fails the replay). ``observe``
    (a drill's expectation) is called with ``(segment manifest, transaction)`` for every archived transaction
    committed before ``until``, in commit order, those in the base backup included. ``jobs`` > 1 (a private
    target: a drill's copy, a quarantine) applies different tables' runs on that many connections at once.
    ``segments``: the plan's segments already being read (:class:`ReadAhead`, made before the base restore)."""
    with psycopg.connect(target_dsn) as conn:
        replayer = Replayer(conn, snapshot=Snapshot.parse(recovery.backup["pitr"]["snapshot"]),
                            tables=set(tables) if tables else None, migrate=migrate,
                            connect=lambda: psycopg.connect(target_dsn), lanes=max(1, jobs))
        try:
            with segments or ReadAhead(runner, recovery.segments) as reader:
                last, archived = _apply_segments(reader, recovery, replayer, observe)
            if +archived != +replayer.applied:  # every archived change up to as_of applied, once
                raise RecoveryError(f"replay applied {sum(replayer.applied.values())} changes where the archive "
                                    f"holds {sum(archived.values())} up to {_stamp(recovery.as_of)}; the restore "
                                    "is incomplete")
            sequences = replayer.finish()
        finally:
            replayer.close()
    report = {**recovery.describe(), "transactions_replayed": replayer.transactions,
              "transactions_in_base_backup": replayer.skipped, "last_commit_replayed": last,
              "changes": {f"{t}:{op}": n for (t, op), n in sorted(replayer.applied.items())},
              "markers": replayer.markers, "foreign_markers": replayer.foreign, "sequences_set": len(sequences),
              "runs_applied_one_by_one": replayer.one_by_one}
    log.info("replayed %d transactions (%d already in the base backup) up to %s", replayer.transactions,
             replayer.skipped, last)
    return report


def _apply_segments(reader: ReadAhead, recovery: RecoveryPlan, replayer: Replayer, observe) -> tuple:
    """Every archived transaction committed before ``until`` to ``replayer``; the commit time of the last and
    the count of changes (table, op) the archive holds past the base backup's snapshot, of the replayer's
    tables."""
    if [s["object_key"] for s in reader.segments] != [s["object_key"] for s in recovery.segments]:
        raise RecoveryError("the segments being read are not the plan's")
    last, archived, until, snapshot, tables = None, Counter(), recovery.until, replayer.snapshot, replayer.tables
    for segment, transactions in reader:  # each bound to its manifest, counts equal
        for transaction in transactions:
            if datetime.fromisoformat(transaction["commit_time"]) >= until:
                return last, archived
            if observe is not None:
                observe(segment, transaction)
            if not snapshot.visible(transaction["xid"]):
                for change in transaction["changes"]:
                    if (op := change["op"]) == "M":
                        continue
                    for name in change["tables"] if op == "T" else (change.get("table"),):
                        if name != markers.TABLE and (tables is None or name in tables):
                            archived[(name, op)] += 1
            replayer.apply(transaction)
            last = transaction["commit_time"]
    return last, archived
