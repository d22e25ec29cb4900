"""Data offsets written into a streamed archive (:mod:`coldcopy.backups.offsets`), against real pg_dump output."""

from __future__ import annotations

import subprocess

from coldcopy.backups import offsets
from coldcopy.pg_tools import pg_program
from tests.backups.test_parallel_restore import every_row

HEAD = slice(16, 51)  # the creation time in the head: the only bytes two dumps of the same data may differ in


def dump(dsn: str, path, *extra: str, streamed: bool = True) -> bytes:
    program = [pg_program("pg_dump", 15), "-Fc", *extra, "-d", dsn]
    if streamed:  # to a pipe, as a backup does: no offsets
        path.write_bytes(subprocess.run(program, check=True, capture_output=True).stdout)
    else:
        subprocess.run([*program, "-f", str(path)], check=True)
    return path.read_bytes()


def test_a_streamed_archive_becomes_the_one_pg_dump_writes_to_a_file(generated_db, new_database, tmp_path):
    streamed = dump(generated_db, tmp_path / "streamed.dump", "-Z0")
    to_file = dump(generated_db, tmp_path / "file.dump", "-Z0", streamed=False)
    assert len(streamed) == len(to_file) and streamed[51:] != to_file[51:]  # the offsets are what differs
    patched = offsets.add_offsets(str(tmp_path / "streamed.dump"))
    assert patched >= 20  # every table's data (email_events' months included)
    result = (tmp_path / "streamed.dump").read_bytes()
    assert result[:HEAD.start] + result[HEAD.stop:] == to_file[:HEAD.start] + to_file[HEAD.stop:]
    assert offsets.add_offsets(str(tmp_path / "file.dump")) == 0  # already set: left as it is
    target = new_database()
    subprocess.run([pg_program("pg_restore", 15), "--no-owner", "--exit-on-error", "--jobs=2", "-d", target,
                    str(tmp_path / "streamed.dump")], check=True, capture_output=True)
    assert every_row(target) == every_row(generated_db)


def test_a_layout_it_does_not_know_is_left_as_it_was(generated_db, tmp_path):
    compressed = dump(generated_db, tmp_path / "compressed.dump", "-Z1")
    assert offsets.add_offsets(str(tmp_path / "compressed.dump")) == 0
    assert (tmp_path / "compressed.dump").read_bytes() == compressed
    (tmp_path / "junk.dump").write_bytes(b"PGDMP" + bytes(64))
    assert offsets.add_offsets(str(tmp_path / "junk.dump")) == 0
    streamed = dump(generated_db, tmp_path / "cut.dump", "-Z0")
    (tmp_path / "cut.dump").write_bytes(streamed[:len(streamed) // 2])  # blocks missing past the middle
    assert offsets.add_offsets(str(tmp_path / "cut.dump")) == 0
    assert (tmp_path / "cut.dump").read_bytes() == streamed[:len(streamed) // 2]
