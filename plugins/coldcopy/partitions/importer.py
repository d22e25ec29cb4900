"""A month back from its archive, bound before anything is committed, then attached."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from coldcopy import safe_names
from coldcopy.change_tracking import mirror_capture
from coldcopy.erased_rows import drop_erased_rows
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout
from coldcopy.object_store import Bucket
from coldcopy.partitions.layout import ARCHIVE_PREFIX, PARENT, ArchiveError, Partition
from coldcopy.partitions.signed import SignedManifests
from coldcopy.partitions.state import ArchiveState
from coldcopy.partitions.streams import object_problems, read_back

log = logging.getLogger(__name__)


class Importer:
    """A month back from its archive, bound before anything is committed, then attached."""

    def __init__(self, conn: psycopg.Connection, state: ArchiveState, signed: SignedManifests, passphrase: str,
                 lock_retry: LockRetryPolicy) -> None:
        self.conn, self.state, self.signed = conn, state, signed
        self.passphrase, self.lock_retry = passphrase, lock_retry

    def restore(self, month: datetime, bucket: Bucket, *, hold: timedelta = timedelta(days=30),
                restored_by: str | None = None) -> dict:
        """Load a month back from its archive into a new table, verify it, and attach it, held there for
        ``hold`` (rotation leaves it alone until then). Returns the manifest."""
        start = self.state.month_start(0, month)
        partition = Partition(
            self.conn.execute("SELECT app.email_events_partition_name(%s)", (start,)).fetchone()[0],
            start, self.state.month_start(1, month))
        if any(p.name == partition.name for p in self.state.partitions()):
            raise ArchiveError(f"{partition.name} is attached: nothing to restore")
        if safe_names.exists(self.conn, f"public.{partition.name}"):
            raise ArchiveError(f"{partition.name} exists detached (in its grace period): re-attach it instead: "
                               f"ALTER TABLE email_events ATTACH PARTITION {partition.name} FOR VALUES FROM "
                               f"('{partition.range_start.isoformat()}') TO ('{partition.range_end.isoformat()}')")
        if not bucket.exists(partition.manifest_key):
            raise ArchiveError(f"no archive for {partition.month} under "
                               f"{bucket.uri}/{partition.manifest_key.rsplit('/', 1)[0]}/: "
                               f"{archived_months_hint(bucket, partition.month)}")
        manifest = self.signed.read(partition, bucket)
        table = sql.Identifier(partition.name)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in manifest["columns"])
        with self.conn.transaction():
            self.conn.execute(sql.SQL("CREATE TABLE public.{} (LIKE public.email_events INCLUDING DEFAULTS "
                                      "INCLUDING CONSTRAINTS INCLUDING STORAGE)").format(table))
            with self.conn.cursor() as cur:
                with cur.copy(sql.SQL("COPY public.{} ({}) FROM STDIN WITH (FORMAT csv, HEADER)").format(
                        table, columns)) as copy:
                    read = read_back(bucket, manifest["object_key"], self.passphrase, into=copy.write)
                loaded = cur.rowcount
            # Bound before anything is committed: the bytes COPY parsed are kept only if they are the signed ones.
            problems = object_problems(manifest, read)
            if loaded != manifest["rows"]:
                problems.append(f"loaded {loaded} rows, manifest says {manifest['rows']}")
            if problems:
                raise ArchiveError(f"{partition.name}: not restored (rolled back): " + "; ".join(problems))
            erased = self._drop_erased(partition.name)
            fingerprint = self.state.row_versions(partition.name)
        self._attach(partition)
        # Recorded also when this database never archived the month itself.
        self.state.set_state(partition, manifest, "restored", fingerprint=fingerprint)
        self.conn.execute("UPDATE coldcopy_ops.partition_archive SET restored_by = %s, held_until = now() + %s, "
                          "erased_rows = %s WHERE partition_name = %s", (restored_by, hold, erased, partition.name))
        log.info("restored %s: %d rows", partition.name, manifest["rows"])
        return manifest

    def _drop_erased(self, table: str) -> int:
        """Rows of subjects erased since the month was archived (the GDPR erasure ledger) never come back."""
        if not self.conn.execute("SELECT to_regclass('coldcopy_ops.erasure_ledger') IS NOT NULL").fetchone()[0]:
            return 0
        erased = drop_erased_rows(self.conn, f"public.{table}")
        if erased:
            log.info("%s: %d rows of erased subjects left out of the restore", table, erased)
        return erased

    def _attach(self, partition: Partition) -> None:
        def attach() -> None:
            self.conn.execute(
                sql.SQL("ALTER TABLE public.email_events ATTACH PARTITION public.{} FOR VALUES FROM ({}) TO ({})")
                .format(sql.Identifier(partition.name), sql.Literal(partition.range_start),
                        sql.Literal(partition.range_end)))
            mirror_capture(self.conn, PARENT, f"public.{partition.name}", counted=False)
            self.state.record_parent_change(partition.name)

        under_lock_timeout(self.conn, attach, self.lock_retry, what=f"attach of {partition.name}")


def archived_months_hint(bucket: Bucket, month: str, nearest: int = 6) -> str:
    """What to do instead: the archived months nearest to ``month`` (names from the bucket: shown, never used
    as SQL; a month is restorable only once its signed manifest verifies)."""
    months = sorted({f"{m[1]}-{m[2]}" for key in bucket.list_keys(f"{ARCHIVE_PREFIX}/")
                     if (m := _MANIFEST_KEY.fullmatch(key[len(ARCHIVE_PREFIX) + 1:]))})
    if not months:
        return "the bucket holds no archived month at all (partition_maintenance archives months past 12)"
    closest = sorted(months, key=lambda m: abs(_month_number(m) - _month_number(month)))[:nearest]
    return f"archived months nearest to it: {', '.join(sorted(closest))} (of {len(months)}); trigger " \
           f"partition_restore with one of them as month"


_MANIFEST_KEY = re.compile(r"(\d{4})/(\d{2})/manifest\.json")


def _month_number(month: str) -> int:
    year, number = month.split("-")
    return int(year) * 12 + int(number)
