"""The shapes of the signed documents (:mod:`coldcopy.manifests` checks a document against its type's model once
its signature verifies): every field named and typed, nothing more (``extra="forbid"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Document(BaseModel):
    """A signed document's fields: nothing more (``extra="forbid"``), each of its type."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str


class PitrPoint(BaseModel):
    """A base backup's place in the change archive: replay from ``lsn``, skipping what ``snapshot`` saw."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lsn: str  # pg_current_wal_lsn() read before the dump's snapshot was taken
    snapshot: str  # pg_current_snapshot() of the dump's own transaction (xmin:xmax:xip)
    snapshot_time: str  # the server's clock in that transaction


class SafetyPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    command: str
    permissive: bool
    roles: list[str]
    using: str | None
    with_check: str | None


class SafetyTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rls: bool
    force_rls: bool
    policies: dict[str, SafetyPolicy]
    grants: dict[str, list[str]]


class SafetyFingerprint(BaseModel):
    """What matters for safety in the source (:mod:`coldcopy.backups.safety`), proven after a restore."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int
    api_roles: list[str]
    tables: dict[str, SafetyTable]


class BackupManifest(_Document):
    database: str
    database_size_bytes: int
    server_version: str
    pg_dump_version: str
    kind: Literal["database", "tables"]
    tables: list[str] | None
    row_counts: dict[str, int]
    row_counts_exact_in_dump_snapshot: bool
    object_key: str
    byte_size: int
    sha256: str
    format: str
    restore: str
    retention_class: Literal["standard", "compliance"]
    expires_after_days: int
    started_at: str
    finished_at: str
    pitr: PitrPoint | None = None  # where the change archive's replay starts (coldcopy.pitr)
    safety: SafetyFingerprint | None = None  # RLS, policies, API grants of the source; older backups: none


class ArchiveManifest(_Document):
    table: str
    partition: str
    range_start: str
    range_end: str
    rows: int
    row_versions: str
    content_sha256: str
    min_occurred_at: str | None
    max_occurred_at: str | None
    object_key: str
    byte_size: int
    sha256: str
    format: str
    columns: list[str]
    schema_version: int | None
    exported_at: str
    erased_rows: int = 0  # set by a GDPR rewrite (coldcopy.partitions.scrubber)
    scrubbed_through_seq: int | None = None
    rewritten_at: str | None = None


class LedgerEntry(_Document):
    seq: int
    prev_hash: str | None
    request_id: str
    workspace_id: str
    subject_hash: str
    id_hashes: list[str]
    erased_at: str


class RetentionArchiveManifest(_Document):
    object_key: str
    byte_size: int
    sha256: str
    rows: int
    table: str
    policy_id: str
    workspace_id: str
    format: str


class SegmentManifest(_Document):
    chain: str
    seq: int
    prev_hash: str | None  # segment_hash() of the previous segment's manifest: a missing or swapped one shows
    start_lsn: str  # the slot's confirmed position before this segment
    end_lsn: str  # the end of its last transaction's commit record
    first_commit: str
    last_commit: str
    transactions: int
    changes: int
    tables: dict[str, dict[str, int]]  # per table: inserts I, updates U, deletes D, truncates T
    object_key: str
    byte_size: int
    sha256: str
    format: str
    created_at: str


class ChainManifest(_Document):
    chain: str
    database: str
    slot: str
    publication: str
    start_lsn: str
    created_at: str


class ChainTip(_Document):
    chain: str
    seq: int  # the newest segment when the slot was last found drained
    segment_hash: str | None = None  # segment_hash() of that segment: a tip is bound to its chain's segment
    end_lsn: str
    drained_at: str  # every commit up to this time is in segments ≤ seq


class ChainPruned(_Document):
    chain: str
    through_seq: int  # segments up to this one were deleted by retention
    last_hash: str  # segment_hash() of segment through_seq: segment through_seq + 1 links to it
    end_lsn: str
    last_commit: str
    pruned_at: str


MODELS: dict[str, type[_Document]] = {"backup": BackupManifest, "archive": ArchiveManifest, "ledger": LedgerEntry,
                                      "retention_archive": RetentionArchiveManifest, "segment": SegmentManifest,
                                      "chain": ChainManifest, "tip": ChainTip,
                                      "pruned": ChainPruned}
