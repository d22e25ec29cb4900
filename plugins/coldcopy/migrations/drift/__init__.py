"""Schema drift: whether the live schema is still what its applied migration files built (issue 44).

    report = drift.find(live_dsn, verify_admin_dsn, discover_migrations())
    report.differences   # Difference per object: missing / extra / changed, security-relevant or not
    report.breaches      # the security-relevant ones (RLS off or not forced, a policy added or loosened, …)

The expected schema is built on the verify server (:mod:`.expected`); the live database sees catalog reads only
(:mod:`.catalog`); :mod:`.compare` names each difference and the SQL to either side; :mod:`.adopt` writes a
migration file that makes the files build what live holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg

from coldcopy.migrations.drift.catalog import EXCLUDED_SCHEMAS, SchemaObject
from coldcopy.migrations.drift.compare import Difference, compare

__all__ = ["EXCLUDED_SCHEMAS", "Difference", "DriftReport", "SchemaObject", "compare", "find"]


@dataclass
class DriftReport:
    differences: list[Difference]
    files: list[str]  # the applied files the expected schema was built from
    expected_s: float  # building it, on the verify server
    live_s: float  # reading live's catalog
    objects: int = 0  # live's objects compared
    notes: list[str] = field(default_factory=list)

    @property
    def breaches(self) -> list[Difference]:
        return [d for d in self.differences if d.security]

    def touching(self, tables: set[str]) -> list[Difference]:
        """The differences on ``tables`` (schema-qualified) or their columns, indexes, policies, grants."""
        return [d for d in self.differences if d.table in tables or d.name in tables]

    def summary(self) -> str:
        if not self.differences:
            return f"no drift: {self.objects} objects as {len(self.files)} applied file(s) build them"
        return (f"{len(self.differences)} object(s) drifted ({len(self.breaches)} security-relevant): " +
                "; ".join(f"{d.kind} {d.name} {d.change}" + (f" [{d.security}]" if d.security else "")
                          for d in self.differences[:8]) + ("…" if len(self.differences) > 8 else ""))

    def as_dict(self) -> dict:
        return {"differences": [d.as_dict() for d in self.differences], "files": self.files,
                "expected_s": self.expected_s, "live_s": self.live_s, "objects": self.objects,
                "breaches": len(self.breaches), "summary": self.summary()}


def find(live_dsn: str, verify_admin_dsn: str, migrations) -> DriftReport:
    """Build the expected schema on the verify server, read live's catalog, compare."""
    from coldcopy.migrations.drift import catalog, expected

    built = expected.build(live_dsn, verify_admin_dsn, migrations)
    began = time.monotonic()
    with psycopg.connect(live_dsn, autocommit=True) as live:
        objects = catalog.read(live)
    live_s = round(time.monotonic() - began, 3)
    return DriftReport(compare(built.objects, objects), built.files, built.seconds, live_s, len(objects))
