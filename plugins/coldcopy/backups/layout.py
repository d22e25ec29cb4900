"""What the backup steps share: the key layout, retention classes, errors, the passphrase, a pipeline of
processes."""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg import sql

from coldcopy import safe_names
from coldcopy.connections import KEY_CONN_ID

log = logging.getLogger(__name__)


PREFIX = "backups"
RETENTION = {"standard": timedelta(days=30), "compliance": timedelta(days=365)}
ORPHAN_AFTER = timedelta(hours=6)  # an object this old without its manifest is a failed backup's leftover
_KEY = re.compile(r"^backups/(?P<cls>standard|compliance)/\d{4}/\d{2}/\d{2}/(?P<name>[^/]+)-(?P<stamp>\d{8}T\d{6}Z)"
                  r"\.dump\.zst\.gpg$")


class BackupError(RuntimeError):
    """A backup, verification or restore failed; the message says which step and why."""


def _relation(conn: psycopg.Connection, table: str) -> sql.Identifier:
    """``table``, a name from a manifest or a DAG param, as the catalog spells it (:class:`BackupError` if none)."""
    try:
        return safe_names.relation(conn, table)
    except safe_names.UnknownRelation as error:
        raise BackupError(str(error)) from error


def _count(conn: psycopg.Connection, table: str) -> int:
    """Rows of ``table``: checked against the catalog first."""
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_relation(conn, table))).fetchone()[0]


def backup_passphrase(conn_id: str = KEY_CONN_ID) -> str:
    from airflow.sdk import BaseHook

    password = BaseHook.get_connection(conn_id).password
    if not password:
        raise BackupError(f"connection {conn_id} has no password: it is the backup encryption passphrase")
    return password


class _Pipeline:
    """Processes piped one into the next: drains their stderr, and says which failed and why."""

    def __init__(self, stages: dict[str, subprocess.Popen]) -> None:
        self.stages = stages
        self.errors: dict[str, bytes] = {}
        self.readers = [threading.Thread(target=self._drain, args=(name, process), daemon=True)
                        for name, process in stages.items()]
        for reader in self.readers:
            reader.start()

    def _drain(self, name: str, process: subprocess.Popen) -> None:
        with process.stderr:  # closed once read: no pipe left to the garbage collector (ResourceWarning)
            self.errors[name] = process.stderr.read()

    def failures(self) -> str | None:
        """Wait for every stage; ``None`` when all exited 0, else what each failed one said."""
        codes = {name: process.wait() for name, process in self.stages.items()}
        for reader in self.readers:
            reader.join()
        def said(name: str) -> str:
            return self.errors.get(name, b"").decode(errors="replace").strip()

        def broken_pipe(name: str) -> bool:
            return codes[name] == -13 or "Broken pipe" in said(name)

        order = list(self.stages)
        failed = {name: code for name, code in codes.items() if code != 0}
        if codes[order[-1]] == 0:  # the consumer succeeded and stopped reading (pg_restore -L): no failure
            failed = {name: code for name, code in failed.items() if not broken_pipe(name)}
        if not failed:
            return None
        # The furthest downstream failure is the cause; a stage before it that then failed writing into it
        # (broken pipe, SIGPIPE) is only its consequence, left out. Before, gpg's "Broken pipe" came first and
        # pg_restore's reason last, cut off.
        cause = max(failed, key=order.index)

        shown = [cause] + [n for n in failed if n != cause and not (order.index(n) < order.index(cause)
                                                                    and broken_pipe(n))]
        return "; ".join(f"{name} exited {failed[name]}: {said(name)[:500]}" for name in shown)

    def kill(self) -> None:
        for process in self.stages.values():
            if process.poll() is None:
                process.kill()


@dataclass(frozen=True)
class BackupResult:
    object_key: str
    manifest: dict
    parts_stored_s: float | None = None  # until the endpoint had every part (MultipartUpload.parts_stored_s)
    completion_s: float | None = None  # the endpoint's CompleteMultipartUpload
