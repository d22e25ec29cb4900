"""Data offsets for a custom-format archive that was written to a pipe, so ``pg_restore --jobs`` seeks.

``pg_dump -Fc`` writes where each table's data starts into the table of contents only when its output is a
file it can seek back into; a backup streams (``pg_dump | zstd | gpg``), so every entry says "position not
set" and each ``pg_restore --jobs`` worker finds its table by reading the archive's block headers from the
last one it saw (``bench/restore.py``: 15.2 s against 11.3 s for the same archive written to a file, scale 32).
Once the bound object is decrypted into a file, :func:`add_offsets` finds each data block and writes its
position into the entry, as ``pg_dump -f`` would have: the result is that archive, byte for byte.

Only the layout it knows is touched: an uncompressed (``-Z0``) archive of version 1.14 (PostgreSQL 12–15)
without large objects, blocks in the order of the table of contents. COPY's text output holds no NUL
byte, so five zero bytes (a chunk length of 0) followed by the next block's header occur only where a block
ends. Anything else leaves the file as it was (``pg_restore`` then scans, as before), and ``pg_restore``
itself refuses a block whose id is not the entry's.
"""

from __future__ import annotations

import logging
import mmap
from dataclasses import dataclass

log = logging.getLogger(__name__)

_MAGIC = b"PGDMP"
_VERSIONS = {(1, 14)}  # PostgreSQL 12 to 15: the head and entry layout read below
_POS_NOT_SET, _POS_SET = 1, 2
_BLK_DATA = 1
_END_OF_DATA = b"\x00" * 5  # a chunk length of 0: sign byte and four zero bytes


class Unsupported(ValueError):
    """Not an archive whose layout this module knows: left as it is."""


@dataclass
class _Reader:
    buf: mmap.mmap
    pos: int = 0
    int_size: int = 4

    def byte(self) -> int:
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def int(self) -> int:
        sign = self.byte()
        value = int.from_bytes(self.buf[self.pos:self.pos + self.int_size], "little")
        self.pos += self.int_size
        return -value if sign else value

    def str(self) -> bytes | None:
        length = self.int()
        if length < 0:
            return None
        value = self.buf[self.pos:self.pos + length]
        self.pos += length
        return value


def _entries(reader: _Reader) -> tuple[list[tuple[int, int]], int]:
    """The head and table of contents: ``[(dumpId, position of its offset field)]`` of the entries with data,
    in order, and where the data blocks begin (right after the table of contents)."""
    if reader.buf[:5] != _MAGIC:
        raise Unsupported("not a custom-format archive")
    reader.pos = 5
    version = (reader.byte(), reader.byte())
    reader.byte()  # revision
    reader.int_size, off_size, fmt = reader.byte(), reader.byte(), reader.byte()
    if version not in _VERSIONS or fmt != 1 or reader.int_size < 4 or off_size != 8:
        raise Unsupported(f"archive version {version[0]}.{version[1]}, format {fmt}")
    if reader.int() != 0:
        raise Unsupported("compressed archive")
    for _ in range(7):  # the creation time
        reader.int()
    for _ in range(3):  # database name, server and pg_dump versions
        reader.str()
    with_data = []
    for _ in range(reader.int()):
        dump_id, had_dumper = reader.int(), reader.int()
        desc = [reader.str() for _ in range(4)][3]  # tableoid, oid, tag, desc
        reader.int()  # section
        for _ in range(7):  # definition, drop, copy statements, schema, tablespace, table AM, owner
            reader.str()
        reader.str()  # "with oids"
        while reader.str() is not None:  # dependencies
            pass
        if desc in (b"BLOBS", b"BLOB", b"LARGE OBJECTS"):
            raise Unsupported("large objects")
        if dump_id <= 0:  # pg_dump numbers its entries from 1: no block header to look for
            raise Unsupported(f"an entry with the dump id {dump_id}")
        position, state = reader.pos, reader.byte()
        reader.pos += off_size
        if had_dumper and state == _POS_NOT_SET:
            with_data.append((dump_id, position))
        elif had_dumper:
            raise Unsupported("offsets already set")
    return with_data, reader.pos


def add_offsets(path: str) -> int:
    """Write each data block's position into its entry of the archive at ``path``; the entries patched (0
    when the layout is not one this module knows, or nothing needed it)."""
    with open(path, "r+b") as file, mmap.mmap(file.fileno(), 0) as buf:
        reader = _Reader(buf)
        try:
            with_data, data_start = _entries(reader)
            found, searched_from = [], data_start
            for index, (dump_id, field) in enumerate(with_data):
                header = bytes([_BLK_DATA, 0]) + dump_id.to_bytes(reader.int_size, "little")
                if index == 0:
                    block = data_start if buf[data_start:data_start + len(header)] == header else -1
                else:
                    at = buf.find(_END_OF_DATA + header, searched_from)
                    block = at + len(_END_OF_DATA) if at >= 0 else -1
                if block < 0:
                    raise Unsupported(f"no data block of entry {dump_id} where the order says")
                found.append((field, block))
                searched_from = block + len(header)
        except (Unsupported, IndexError) as error:
            log.info("%s: data offsets left unset (%s); pg_restore scans for them", path, error)
            return 0
        for field, block in found:
            buf[field:field + 9] = bytes([_POS_SET]) + block.to_bytes(8, "little")
        buf.flush()
    return len(found)
