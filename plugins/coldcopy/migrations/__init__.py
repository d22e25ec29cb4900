"""Phased schema migrations: what a migration file is, and finding them.

A migration is ``sql/migrations/NNN_name.sql``; its version NNN also gives its phase (1xx core,
2xx performance, 3xx advanced). Files named the Supabase CLI's way
(``supabase/migrations/<14-digit timestamp>_name.sql``) are a second source: phase 4 (``supabase``), after
the runbook's, in timestamp order. This module is imported when DAG files are parsed, so it stays light (no
database driver); :mod:`coldcopy.migrations.runner` applies the files.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from coldcopy import MIGRATIONS_DIR, SUPABASE_MIGRATIONS_DIR

PHASE_NAMES = {1: "core", 2: "performance", 3: "advanced"}  # the runbook's files
CLI_PHASE = 4
ALL_PHASES = {**PHASE_NAMES, CLI_PHASE: "supabase"}
_FILE_NAME = re.compile(r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+)\.sql$")
_CLI_FILE_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>[A-Za-z0-9_-]+)\.sql$")
# Statements PostgreSQL refuses inside a transaction block.
# ``-- coldcopy:reissues <sha256>``: this file replaces an earlier text of itself, with that checksum, which did
# the same where it could apply (e.g. 203 made safe for Supabase's non-superuser postgres): a database that
# applied the earlier text counts as having applied this one, and its history takes the new checksum.
_REISSUES = re.compile(r"^-- coldcopy:reissues ([0-9a-f]{64})\b", re.M)
_NON_TRANSACTIONAL = re.compile(
    r"\b(?:CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY"
    r"|DROP\s+INDEX\s+CONCURRENTLY"
    r"|REINDEX\b[^;]*?\bCONCURRENTLY"
    r"|DETACH\s+PARTITION\b[^;]*?\b(?:CONCURRENTLY|FINALIZE)"
    r"|VACUUM\b|(?:CREATE|DROP)\s+(?:DATABASE|TABLESPACE)\b|ALTER\s+SYSTEM\b)",
    re.IGNORECASE,
)


class MigrationError(RuntimeError):
    """A migration that cannot or must not be applied; the message names the file."""


class Status(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    CHANGED = "changed"  # applied, but the file on disk no longer matches the recorded checksum


def strip_sql_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", " ", re.sub(r"--[^\n]*", " ", text), flags=re.DOTALL)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    # The file's bytes once :meth:`loaded`: what is checked is then what is applied, whatever the disk says later.
    content: bytes | None = field(default=None, compare=False, repr=False)
    # Its verify file's (``NNN_name.verify.sql``), b"" when it has none, once loaded.
    verify_content: bytes | None = field(default=None, compare=False, repr=False)

    def loaded(self) -> Migration:
        """This migration with its bytes read once: checksum, statements and the SQL applied all come from that
        buffer (a file changed on disk between the approval check and the apply, across a lock wait, is not the
        one that runs); its verify file's likewise."""
        if self.content is not None:
            return self
        verify = self.verify_path.read_bytes() if self.verify_path.exists() else b""
        return replace(self, content=self.path.read_bytes(), verify_content=verify)

    @property
    def verify_path(self) -> Path:
        """``NNN_name.verify.sql`` beside the file: queries that must return no row once it applied."""
        return self.path.with_name(f"{self.path.stem}.verify.sql")

    def verify_text(self) -> str:
        raw = self.verify_content if self.verify_content is not None else (
            self.verify_path.read_bytes() if self.verify_path.exists() else b"")
        return raw.decode("utf-8")

    @property
    def verify_checksum(self) -> str | None:
        """sha256 of the verify file (None without one): approved with the file, since it runs with its rights."""
        text = self.verify_text()
        return hashlib.sha256(text.encode()).hexdigest() if text else None

    @property
    def phase(self) -> int:
        return CLI_PHASE if self.version >= 10**13 else self.version // 100

    @property
    def file_name(self) -> str:
        return self.path.name

    def read(self) -> str:
        raw = self.content if self.content is not None else self.path.read_bytes()
        return raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text() reads it

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.content if self.content is not None else self.path.read_bytes()).hexdigest()

    @property
    def reissues(self) -> frozenset[str]:
        """Checksums of the earlier texts this file replaces (see ``_REISSUES``)."""
        return frozenset(_REISSUES.findall(self.read()))

    @property
    def transactional(self) -> bool:
        return not _NON_TRANSACTIONAL.search(strip_sql_comments(self.read()))

    def statements(self) -> list[str]:
        """The file split into statements, for running outside a transaction block."""
        import sqlparse

        return [s for s in sqlparse.split(self.read()) if strip_sql_comments(s).strip(" \n\t;")]

    def parts(self) -> list[Part]:
        """A file PostgreSQL cannot run in one transaction, in the parts it is applied (and recorded) as: each
        run of consecutive statements that can share a transaction is one transactional part, and each
        statement that cannot (``CREATE INDEX CONCURRENTLY``…) is a part of its own; the file's order is kept,
        so a statement that needs an index built before it still finds it. A transactional file is one part."""
        if self.transactional:
            return [Part(0, self.read(), True, 1)]
        parts: list[Part] = []
        run: list[str] = []

        def close_run() -> None:
            if run:
                parts.append(Part(len(parts), "\n".join(run), True, len(run)))
                run.clear()

        for statement in self.statements():
            if _NON_TRANSACTIONAL.search(strip_sql_comments(statement)):
                close_run()
                parts.append(Part(len(parts), statement, False, 1))
            else:
                run.append(statement)
        close_run()
        return parts


@dataclass(frozen=True)
class Part:
    """One part of a migration file: applied in one go and recorded in ``coldcopy_ops.schema_migration_parts``,
    so a retry resumes at the first part not recorded."""

    index: int
    sql: str
    transactional: bool
    statements: int

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    def describe(self) -> str:
        if self.transactional:
            return f"part {self.index} ({self.statements} statement(s) in one transaction)"
        return f"part {self.index} ({' '.join(strip_sql_comments(self.sql).split())[:80]})"


def discover_migrations(directory: Path = MIGRATIONS_DIR,
                        cli_directory: Path | None = SUPABASE_MIGRATIONS_DIR) -> list[Migration]:
    """Every migration in ``directory`` in version order, then the Supabase CLI's in ``cli_directory`` (when it
    exists) in timestamp order; anything else in either is an error, not ignored."""
    migrations: dict[int, Migration] = {}
    if cli_directory is not None and Path(cli_directory).is_dir():
        for path in sorted(Path(cli_directory).iterdir()):
            match = _CLI_FILE_NAME.match(path.name)
            if not match:
                raise MigrationError(f"{path}: not a Supabase CLI migration name (<14-digit timestamp>_name.sql)")
            migrations[int(match["version"])] = Migration(int(match["version"]), match["name"], path)
    for path in sorted(Path(directory).iterdir()):
        if path.name.endswith(".verify.sql"):  # a file's verify queries: beside a file of that name
            if not path.with_name(path.name.replace(".verify.sql", ".sql")).exists():
                raise MigrationError(f"{path.name}: a verify file with no migration {path.name[:-11]}.sql beside it")
            continue
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: not a migration file name (expected NNN_lowercase_name.sql)")
        version = int(match["version"])
        if version // 100 not in PHASE_NAMES:
            raise MigrationError(f"{path.name}: version {version} is in no phase {sorted(PHASE_NAMES)}")
        if version in migrations:
            raise MigrationError(f"{path.name}: version {version} also used by {migrations[version].file_name}")
        migrations[version] = Migration(version, match["name"], path)
    return [migrations[v] for v in sorted(migrations)]


@dataclass(frozen=True)
class PlanEntry:
    migration: Migration
    status: Status
    cli: str = ""  # the Supabase CLI's history: recorded, differs, absent ("" when the target has none)

    def describe(self) -> str:
        mode = "transactional" if self.migration.transactional else "outside a transaction"
        cli = f"  supabase cli: {self.cli:8}" if self.cli else ""
        return f"{self.migration.file_name:45} phase {self.migration.phase}  {self.status.value:8}{cli} {mode}"


# Statements whose effect is on the cluster, not the database: a scratch database dropped does not undo them.
_CLUSTER = re.compile(
    r"\b(?:CREATE|ALTER|DROP)\s+(?:ROLE|USER|GROUP|DATABASE|TABLESPACE|SUBSCRIPTION)\b|\bALTER\s+SYSTEM\b"
    r"|\bGRANT\s+(?!(?:ALL|SELECT|INSERT|UPDATE|DELETE|TRUNCATE|REFERENCES|TRIGGER|USAGE|EXECUTE|CREATE|CONNECT"
    r"|TEMP|TEMPORARY|MAINTAIN)\b)[\w\s,\"]+?\bTO\b"
    r"|\bpg_(?:create_(?:logical|physical)_replication_slot|drop_replication_slot|terminate_backend"
    r"|cancel_backend|reload_conf|rotate_logfile)\b|\bdblink\w*\s*\(|\bCOPY\b[^;]*\bPROGRAM\b",
    re.IGNORECASE)


def cluster_statements(text: str) -> list[str]:
    """The statements of a migration file that act on the cluster (roles and their grants or settings,
    databases, tablespaces, ALTER SYSTEM, replication slots, other sessions, dblink, COPY … PROGRAM), each
    shortened to a line: shown to the approver, since no rehearsal on a scratch database contains them."""
    import sqlparse

    found = []
    for statement in sqlparse.split(text):
        flat = " ".join(strip_sql_comments(statement).split())
        if flat and _CLUSTER.search(flat):
            found.append(flat[:160])
    return found

