"""One migration history with the Supabase CLI: ``supabase_migrations.schema_migrations``.

The CLI (``supabase db push``, ``supabase migration list``) records each file it applies as ``version`` (the
digits before the first ``_`` of the file name), ``name`` (the rest, without ``.sql``) and ``statements`` (the
file split the CLI's way: :func:`split_statements`, a port of its ``pkg/parser.SplitAndTrim``). When a target
has that table, the migration runner records every file it applies there too, in the same transaction where
the file is transactional, and recognizes files the CLI applied: the same statements → applied (adopted into
``coldcopy_ops.schema_migrations`` with the checksum the CLI does not keep); different → changed, refused.
See docs/migrations.md.
"""

from __future__ import annotations

import re

from coldcopy import safe_names

TABLE = "supabase_migrations.schema_migrations"
_VERSION = re.compile(r"^([0-9]+)_(.*)\.sql$")  # the CLI's migrateFilePattern


def cli_version(file_name: str) -> tuple[str, str] | None:
    """``(version, name)`` as the CLI reads them from a file name, or ``None`` when it would not."""
    match = _VERSION.match(file_name)
    return (match[1], match[2]) if match else None


# -- the CLI's statement splitter (pkg/parser/token.go, state.go), state by state ----------------------------

class _Ready:
    def next(self, r: str, data: str):
        if r == "$":
            return _Tag(len(data) - 1)
        if r in ("'", '"'):
            return _Quote(r)
        if r == "-":
            return _Comment()
        if r == "/":
            return _Block()
        if r == "\\":
            return _Escape()
        if r == ";":
            return None  # emit
        if r == "(":
            return _Atomic(self, ")")
        if r in ("c", "C") and _begin_atomic(data):
            return _Atomic(self, "END")
        return self


def _identifier(r: str) -> bool:
    return r.isalpha() or r.isdigit() or r in "_$"


def _begin_atomic(data: str) -> bool:
    offset = len(data) - len("ATOMIC")
    if offset < 0 or data[offset:].upper() != "ATOMIC":
        return False
    if offset > 0 and _identifier(data[offset - 1]):
        return False
    prefix = data[:offset].rstrip()
    offset = len(prefix) - len("BEGIN")
    if offset < 0 or prefix[offset:].upper() != "BEGIN":
        return False
    return offset == 0 or not _identifier(prefix[offset - 1])


class _Comment:
    def next(self, r: str, data: str):
        if r == "-":
            return _Dollar("\n")
        return _Ready().next(r, data)


class _Block:
    def __init__(self) -> None:
        self.depth = 0

    def next(self, r: str, data: str):
        window = data[-2:]
        if window == "/*":
            self.depth += 1
            return self
        if self.depth == 0:
            return _Ready().next(r, data)
        if window == "*/":
            self.depth -= 1
            if self.depth == 0:
                return _Ready()
        return self


class _Quote:
    def __init__(self, delimiter: str) -> None:
        self.delimiter, self.escape = delimiter, False

    def next(self, r: str, data: str):
        if self.escape:
            if r == self.delimiter:
                self.escape = False
                return self
            return _Ready().next(r, data)
        if r == self.delimiter:
            self.escape = True
        return self


class _Dollar:
    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter

    def next(self, r: str, data: str):
        return _Ready() if data[-len(self.delimiter):] == self.delimiter else self


class _Tag:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def next(self, r: str, data: str):
        if r == "$":
            return _Dollar(data[self.offset:])
        if r.isalpha() or r.isdigit() or r == "_":
            return self
        return _Ready().next(r, data)


class _Escape:
    def next(self, r: str, data: str):
        return _Ready()


class _Atomic:
    def __init__(self, prev, delimiter: str) -> None:
        self.prev, self.delimiter = prev, delimiter

    def next(self, r: str, data: str):
        current = self.prev.next(r, data)
        if current is not None:
            self.prev = current
        if isinstance(self.prev, _Ready) and data[-len(self.delimiter):].upper() == self.delimiter.upper():
            return _Ready()
        return self


def split_statements(text: str) -> list[str]:
    """The file's statements as the CLI records them: split at each ``;`` outside quotes, comments, dollar
    quotes, parentheses and ``BEGIN ATOMIC … END``, each with its trailing ``;`` and surrounding white space
    removed (comments before a statement stay with it), empty ones dropped."""
    return [s for s in (s.rstrip(";").strip() for s in split_raw(text)) if s]


def split_raw(text: str) -> list[str]:
    """The tokens before trimming (the CLI's ``parser.Split``): each up to and including its ``;``."""
    tokens, state, start = [], _Ready(), 0
    for index, r in enumerate(text):
        state = state.next(r, text[start:index + 1])
        if state is None:
            tokens.append(text[start:index + 1])
            start, state = index + 1, _Ready()
    if start < len(text):
        tokens.append(text[start:])
    return tokens


# Literals, quoted identifiers, dollar quotes and comments (kept byte for byte), a ``;`` with the white space
# around it, or a run of white space: the tokens :func:`_canonical` rewrites.
_LEXEME = re.compile(r"""(?P<keep>[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|"(?:[^"]|"")*"|"""
                     r"""\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*|)\$.*?\$(?P=tag)\$|--[^\n]*|/\*.*?\*/)"""
                     r"""|(?P<semi>\s*;\s*)|(?P<space>\s+)""", re.S)


def _canonical(statements: list[str]) -> str:
    """The statements joined by ``;``, every run of white space outside literals, quoted names, dollar quotes
    and comments made one space (none around a ``;``): two splitters' records of one file compare equal, while
    a changed literal, name or semicolon (``'a b'`` for ``'ab'``, ``'a;b'`` for ``'ab'``) does not. Before,
    all white space and every ``;`` were dropped, literals included: an edited applied file was adopted."""
    def token(match: re.Match) -> str:
        return match["keep"] if match["keep"] is not None else ";" if match["semi"] is not None else " "

    return _LEXEME.sub(token, ";".join(s.strip() for s in statements)).strip()


def same_statements(recorded: list[str] | None, text: str) -> bool:
    """Whether what the CLI recorded is this file: the same statements, or (a splitter of another CLI version)
    the same statements and literals once white space outside them is made canonical (:func:`_canonical`)."""
    mine = split_statements(text)
    return recorded == mine or (recorded is not None and _canonical(recorded) == _canonical(mine))


def exists(conn) -> bool:
    return safe_names.exists(conn, TABLE)


def recorded(conn) -> dict[str, tuple[str, list[str] | None]]:
    """``{version: (name, statements)}`` the CLI's table holds (empty when the target has none)."""
    if not exists(conn):
        return {}
    return {v: (n or "", s) for v, n, s in conn.execute(f"SELECT version, name, statements FROM {TABLE}")}


def record(cursor, file_name: str, text: str) -> None:
    """Write the file into the CLI's history, as the CLI would have (inside the caller's transaction)."""
    version, name = cli_version(file_name)
    cursor.execute(f"INSERT INTO {TABLE} (version, name, statements) VALUES (%s, %s, %s) "
                   "ON CONFLICT (version) DO NOTHING", (version, name, split_statements(text)))
