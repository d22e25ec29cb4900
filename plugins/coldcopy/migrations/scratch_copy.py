"""The rehearsal's copy of production: a scratch database on the verify server holding the newest verified backup,
dropped whatever happened."""

from __future__ import annotations

import psycopg


class ScratchCopy:
    """A scratch database on ``admin_dsn``'s server holding the newest verified backup; dropped on exit,
    whatever happened (``with ScratchCopy(runner, admin_dsn) as dsn``)."""

    def __init__(self, runner, admin_dsn: str, ttl=None) -> None:
        import os
        from datetime import UTC, datetime

        self.runner, self.admin_dsn, self.ttl = runner, admin_dsn, ttl
        self.name = f"coldcopy_rehearsal_{datetime.now(UTC):%Y%m%d%H%M%S}_{os.getpid()}"
        self.backup_key: str | None = None

    def __enter__(self) -> str:
        from coldcopy import scratch, verify_roles

        verify_roles.prepare(self.runner.dsn, self.admin_dsn)  # the roles the backup's grants name, NOLOGIN
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            scratch.sweep(admin)  # what a killed rehearsal (or verification, restore) left, once expired
            scratch.create(admin, self.name, "rehearsal", self.ttl)  # closed to PUBLIC from the start
        dsn = psycopg.conninfo.make_conninfo(self.admin_dsn, dbname=self.name)
        try:
            self.backup_key, manifest = self.runner.newest_verified()
            self.runner.restore(self.backup_key, dsn, manifest=manifest, jobs=self.runner.restore_jobs)
        except BaseException:
            self.__exit__()
            raise
        return dsn

    def __exit__(self, *exc) -> None:
        from coldcopy import scratch

        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            scratch.drop(admin, self.name)
