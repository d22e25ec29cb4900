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


def _int(value: int) -> bytes:  # the archive's integer: a sign byte, then four bytes, little-endian
    return bytes([value < 0]) + abs(value).to_bytes(4, "little")


def _str(value: bytes | None) -> bytes:
    return _int(-1) if value is None else _int(len(value)) + value


def archive(dump_id: int) -> bytes:
    """A minimal -Z0 archive of version 1.14: one TABLE DATA entry, ``dump_id``, its block right after the TOC."""
    head = b"PGDMP" + bytes([1, 14, 0, 4, 8, 1]) + _int(0) + _int(0) * 7 + _str(b"db") + _str(b"15") * 2
    entry = (_int(dump_id) + _int(1) + _str(b"0") + _str(b"0") + _str(b"notes") + _str(b"TABLE DATA") + _int(3)
             + _str(b"") * 7 + _str(b"false") + _str(None) + bytes([offsets._POS_NOT_SET]) + bytes(8))
    return head + _int(1) + entry + bytes([offsets._BLK_DATA]) + _int(abs(dump_id)) + _str(b"1\tx\n") + _int(0)


def test_a_negative_dump_id_leaves_the_file_alone(tmp_path):
    """Before: ``OverflowError`` (a negative id cannot be written as the block header it looks for)."""
    (tmp_path / "fine.dump").write_bytes(archive(5))
    assert offsets.add_offsets(str(tmp_path / "fine.dump")) == 1
    (tmp_path / "negative.dump").write_bytes(archive(-5))
    assert offsets.add_offsets(str(tmp_path / "negative.dump")) == 0
    assert (tmp_path / "negative.dump").read_bytes() == archive(-5)
