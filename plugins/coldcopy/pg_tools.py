"""PostgreSQL client programs (pg_dump, pg_restore, psql) matching the server's major version.

pg_dump refuses a server newer than itself, so the version-specific Debian directory is tried first, then
the programs bundled with the embedded server (``pgserver``), then PATH.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path


def client_major(program: str) -> int:
    output = subprocess.run([program, "--version"], check=True, capture_output=True, text=True).stdout
    return int(re.search(r"\(PostgreSQL\)\s+(\d+)", output).group(1))


def pg_program(name: str, server_major: int) -> str:
    """Path of ``name`` whose major version is at least ``server_major``."""
    candidates = [Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")]
    try:
        import pgserver

        candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)
    except ImportError:
        pass
    if found := shutil.which(name):
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.exists() and client_major(str(candidate)) >= server_major:
            return str(candidate)
    raise FileNotFoundError(f"no {name} of PostgreSQL {server_major} or newer (looked in {candidates})")
