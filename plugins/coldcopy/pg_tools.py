"""PostgreSQL client programs (pg_dump, pg_restore, psql) matching the server's major version.

pg_dump refuses a server newer than itself, so the version-specific Debian directory is tried first, then
the programs bundled with the embedded server (``pgserver``), then PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from coldcopy import kill_targets

# What a child process may see of ours: nothing else (the parent can hold every AIRFLOW_CONN_* secret). libpq's
# TLS settings pass (PGSSLMODE, PGSSLROOTCERT…): TLS set through the environment reaches psycopg, so it must
# reach pg_dump and pg_restore too.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "GNUPGHOME")
_PASSED_PREFIXES = ("PGSSL", "PGGSS", "PGREQUIRE")


def minimal_env(**extra: str) -> dict[str, str]:
    """The environment of every child process we start: locale, paths, libpq's TLS settings, and ``extra``."""
    passed = {k: v for k, v in os.environ.items() if k in _PASSED_ENV or k.startswith(_PASSED_PREFIXES)}
    return {**passed, **extra}


def client_popen(argv: list[str], dsn: str, **popen_kwargs) -> subprocess.Popen:
    """Start a client program (pg_dump, pg_restore, psql) on ``dsn``: every libpq setting of the DSN
    (``sslmode`` and the rest) in ``--dbname``, the password alone in PGPASSWORD of a minimal environment
    (never in argv, where ``ps`` shows it)."""
    params = conninfo_to_dict(dsn)
    params["application_name"] = kill_targets.client_application_name(Path(argv[0]).name, dsn)
    password = params.pop("password", None)
    env = minimal_env(**({"PGPASSWORD": password} if password else {}))
    return kill_targets.popen([*argv, f"--dbname={make_conninfo(**params)}"], env=env, **popen_kwargs)


def client_major(program: str) -> int:
    output = subprocess.run([program, "--version"], check=True, capture_output=True, text=True).stdout
    return int(re.search(r"\(PostgreSQL\)\s+(\d+)", output).group(1))


def _candidates(name: str, server_major: int):
    """Where ``name`` may be, in order; the embedded server's bundle is looked at last, and only then imported
    (importing ``pgserver`` warns about XDG_RUNTIME_DIR: it must not appear in every backup's log)."""
    yield Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")
    if found := shutil.which(name):
        yield Path(found)
    try:
        pgserver = import_pgserver()
    except ImportError:
        return
    yield Path(pgserver.__file__).parent / "pginstall" / "bin" / name


def import_pgserver():
    """The embedded server's package, without the RuntimeDirWarning (XDG_RUNTIME_DIR unset: platformdirs falls
    back to /tmp) its import prints on a server or in a container: noise in every log and ``make`` output."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver
    return pgserver


def pg_program(name: str, server_major: int) -> str:
    """Path of ``name`` whose major version is at least ``server_major``."""
    tried = []
    for candidate in _candidates(name, server_major):
        tried.append(candidate)
        if candidate.exists() and client_major(str(candidate)) >= server_major:
            return str(candidate)
    raise FileNotFoundError(f"no {name} of PostgreSQL {server_major} or newer (looked in {tried})")
