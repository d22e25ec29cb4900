"""What the partition steps share: the parent, the archive layout, a month."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PARENT = "public.email_events"
ARCHIVE_PREFIX = "archive/email_events"
DETACH_LOCK = f"coldcopy: detach from {PARENT}"  # the job lock (coldcopy.job_locks) serializing detaches
# Order-independent fingerprint of a partition's row versions (see the module docstring), with the range of
# occurred_at the manifest records: one scan of three columns.
ROW_VERSIONS_SQL = ("SELECT count(*), coalesce(sum(hashint8extended(id, xmin::text::bigint)), 0)::text, "
                    "min(occurred_at), max(occurred_at) FROM {}")
COPY_OUT_SQL = "COPY (SELECT * FROM {} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)"


class ArchiveError(RuntimeError):
    """A month could not be archived, verified, dropped or restored; the message says which and why."""


@dataclass(frozen=True)
class Partition:
    name: str
    range_start: datetime
    range_end: datetime
    detach_pending: bool = False

    @property
    def month(self) -> str:
        return self.range_start.strftime("%Y-%m")

    @property
    def object_key(self) -> str:
        return f"{ARCHIVE_PREFIX}/{self.range_start:%Y/%m}/{self.name}.csv.gz.gpg"

    def owns(self, key: str) -> bool:
        """Whether ``key`` is one of this month's archive objects (the first export, or a rewrite of it)."""
        return (key.startswith(f"{ARCHIVE_PREFIX}/{self.range_start:%Y/%m}/{self.name}.")
                and key.endswith(".csv.gz.gpg") and "/" not in key.rsplit("/", 1)[1])

    @property
    def manifest_key(self) -> str:
        return f"{ARCHIVE_PREFIX}/{self.range_start:%Y/%m}/manifest.json"


def month_lock(conn, name: str):
    """One month's export, verification and detach, one run at a time (coldcopy.job_locks: no other login can
    take it); the other run polls, holding no snapshot."""
    from coldcopy import job_locks

    return job_locks.held(job_locks.connect_like(conn), f"coldcopy archive:{name}", wait_s=None,
                          what=f"another run's archive of {name}")
