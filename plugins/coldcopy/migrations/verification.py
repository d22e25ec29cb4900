"""A migration file checked after it applies (Sqitch's idea): ``NNN_name.verify.sql`` beside it holds queries that
must return no row, or ``DO`` blocks that raise when something is wrong. Run by the runner inside the file's
transaction when it has one (a failure rolls the whole file back), else after its last part, before it is
recorded (a failure fails the task and alerts; the file stays unrecorded, so the next run verifies it again). The
message names the query, its line and the first row it returned.

Only reading statements are run, and nothing they write stays (helper-14's attack: a ``DO`` block, a comment or
literal hiding a ``DELETE``, a second statement after an unquoted ``begin``). Each statement must start with SELECT,
WITH, TABLE, VALUES or DO (its first token, lexed by sqlparse: comments and literals skipped); it is sent alone
(the extended protocol refuses a second command in the string); and it runs inside a savepoint rolled back after
it, so whatever it wrote is undone before the file is recorded. The approval shows and seals its checksum with the
file's.
"""

from __future__ import annotations

import re

import psycopg

from coldcopy.migrations import Migration, MigrationError, strip_sql_comments

_READING = re.compile(r"^\s*(SELECT|WITH|TABLE|VALUES|DO)\b", re.I)
_WRITING = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE|TRUNCATE|DROP|ALTER|CREATE|GRANT|REVOKE|COPY)\b", re.I)


def statements(migration: Migration) -> list[tuple[int, str]]:
    """(line, statement) of the verify file, each checked to be a reading one."""
    import sqlparse

    text, out, offset = migration.verify_text(), [], 0
    for statement in sqlparse.split(text):
        start = text.find(statement, offset)
        offset = start + len(statement)
        lead = re.match(r"(?:\s|--[^\n]*(?:\n|$))*", statement).end()  # its own first line, past comments
        line = text.count("\n", 0, start + lead) + 1
        flat = strip_sql_comments(statement).strip()
        first = _first_token(statement)
        if first is None:
            continue
        kind = _READING.match(flat)
        if not kind or first != kind.group(1).upper() or (kind.group(1).upper() == "WITH" and _WRITING.search(flat)):
            raise MigrationError(f"{migration.verify_path.name} line {line}: only SELECT, WITH, TABLE, VALUES and "
                                 f"DO are verify queries (got {' '.join(flat.split())[:80]!r}); {migration.file_name} "
                                 "was not applied")
        out.append((line, statement))
    return out


def _first_token(statement: str) -> str | None:
    """The statement's first word as PostgreSQL's lexer would see it (comments skipped), upper-cased."""
    import sqlparse
    from sqlparse import tokens

    for parsed in sqlparse.parse(statement):
        for token in parsed.flatten():
            if token.is_whitespace or token.ttype in tokens.Comment or token.ttype in (
                    tokens.Comment.Single, tokens.Comment.Multiline) or token.value == ";":
                continue
            return token.value.upper()
    return None


def check(cur: psycopg.Cursor, migration: Migration) -> int:
    """Run the verify file's queries on ``cur``; returns how many ran. :raises MigrationError: one returned a row
    or raised (named, with its line and the row)."""
    checks = statements(migration)
    for line, statement in checks:
        try:
            cur.execute("SAVEPOINT coldcopy_verify")
            cur.execute(statement, prepare=True)  # one command: a second one in the string is refused
            row = cur.fetchone() if cur.description is not None else None
            names = [c.name for c in cur.description or []]
            cur.execute("ROLLBACK TO SAVEPOINT coldcopy_verify")  # whatever it wrote, undone
        except psycopg.Error as error:
            raise MigrationError(f"{migration.file_name} failed its verify at line {line} of "
                                 f"{migration.verify_path.name}: {str(error).strip().splitlines()[0]}") from error
        if row is not None:
            shown = dict(zip(names, row, strict=True))
            query = " ".join(strip_sql_comments(statement).split())[:120]
            raise MigrationError(f"{migration.file_name} failed its verify at line {line} of "
                                 f"{migration.verify_path.name}: `{query}` returned {shown}")
    return len(checks)
