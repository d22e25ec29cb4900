"""A failed pipeline says why first (issue 32): when pg_restore stopped, gpg and zstd then fail writing into it
("Broken pipe", SIGPIPE). Before, the report began with gpg's broken pipe and pg_restore's reason came last,
cut off."""

from __future__ import annotations

import subprocess
import sys

from coldcopy.backups.layout import _Pipeline


def test_the_cause_comes_first_and_the_broken_pipes_before_it_are_left_out():
    writer = ("import sys\ntry:\n    while True: sys.stdout.buffer.write(b'x' * 65536)\n"
              "except BrokenPipeError:\n    sys.stderr.write('gpg: error writing to -: Broken pipe\\n'); sys.exit(2)\n")
    gpg = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    zstd = subprocess.Popen(["cat"], stdin=gpg.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    gpg.stdout.close()
    restore = subprocess.Popen(["sh", "-c", "head -c 10 >/dev/null; echo 'pg_restore: error: permission denied to "
                                "create extension' >&2; exit 1"], stdin=zstd.stdout, stderr=subprocess.PIPE)
    zstd.stdout.close()
    report = _Pipeline({"gpg": gpg, "zstd": zstd, "pg_restore": restore}).failures()
    assert report.startswith("pg_restore exited 1: pg_restore: error: permission denied to create extension"), report
    assert "Broken pipe" not in report and "gpg" not in report, report
