"""What of a dump this login may restore: the archive's table of contents (``pg_restore -l -v``) made into the
list ``pg_restore -L`` reads.

On Supabase the project's login ``postgres`` is no superuser, and a dump of a Supabase database holds entries
only a superuser (or the platform's roles) can replay: ``CREATE EXTENSION`` of an untrusted extension
(pg_stat_statements…), ``COMMENT ON EXTENSION``, event triggers, grants on ``pg_catalog`` functions
(``GRANT ALL ON FUNCTION pg_catalog.pg_reload_conf() TO postgres``), ``ALTER DEFAULT PRIVILEGES FOR ROLE
supabase_admin``. With ``--exit-on-error --single-transaction`` the first of them stopped every whole-database
restore, hence every verification, ``as_of`` restore and rehearsal. :func:`restorable` leaves out exactly
those (and, transitively, every entry depending on one), and names them; a superuser's restore is not
filtered. With ``tables``, only those tables' data entries are kept, matched on schema *and* name (``--table
users`` also matched ``auth.users``).

A grant whose object the archive does not hold is left out too: Supabase grants every routine of
``extensions`` to postgres ``WITH GRANT OPTION`` after the extensions exist (and projects grant them to the API
roles), so pg_dump writes ``GRANT … ON FUNCTION extensions.pg_stat_statements(…)``, whose dependency is an entry
an extension's members never get (they are not dumped). Its extension left out, the grant stopped the restore
at ``function extensions.pg_stat_statements(boolean) does not exist``. The grants on the schema ``public``,
which every database has and pg_dump does not write, stay. :func:`log_lines` names the grants in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

_ENTRY = re.compile(r"^(?P<id>\d+); \d+ \d+ (?P<rest>.*)$")
_DEPENDS = re.compile(r"^;\s+depends on:(?P<ids>[\d ]*)$")
_EVERYWHERE = {"ACL - SCHEMA public "}  # grants on what every database has, which pg_dump does not write
NOT_HELD = "a grant on an object the archive does not hold (an extension's member)"


@dataclass(frozen=True)
class Capabilities:
    """What the restoring login may do on the target server."""

    superuser: bool
    extensions: frozenset[str]  # those it may create: trusted ones, or any for a superuser
    roles: frozenset[str]  # roles it is a member of (itself included)

    @classmethod
    def of(cls, conn: psycopg.Connection) -> Capabilities:
        cursor = conn.cursor(row_factory=psycopg.rows.tuple_row)
        superuser = cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        extensions = {n for (n,) in cursor.execute(
            "SELECT DISTINCT name FROM pg_available_extension_versions WHERE %s OR trusted OR NOT superuser",
            (superuser,))}
        roles = {r for (r,) in cursor.execute(
            "SELECT rolname FROM pg_roles WHERE pg_has_role(current_user, oid, 'MEMBER')")}
        return cls(bool(superuser), frozenset(extensions), frozenset(roles))


def _refused(rest: str, can: Capabilities) -> str | None:
    """Why ``can`` cannot replay the entry ``rest`` (its text after the ids), or ``None``."""
    words = rest.split(" ")
    if rest.startswith("EXTENSION - ") and words[2] not in can.extensions:
        return "an extension only a superuser may create"
    if rest.startswith("COMMENT - EXTENSION "):
        return "a comment on an extension, which only its owner may set"
    if rest.startswith("EVENT TRIGGER "):
        return "an event trigger, which only a superuser may create"
    if rest.startswith("ACL pg_catalog "):
        return "a grant on a system object"
    if rest.startswith("DEFAULT ACL ") and words[-1] not in can.roles:
        return f"default privileges of role {words[-1]}, which this login is not a member of"
    if rest.startswith("SUBSCRIPTION "):
        return "a subscription, which only a superuser may create"
    return None


def restorable(listing: str, can: Capabilities, *, tables: list[str] | None = None,
               without: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """The ``-L`` list of ``listing`` (``pg_restore -l -v``) that ``can`` replays, in the archive's order, and
    the entries left out, each with why. ``tables`` (``schema.table``): only those tables' data. ``without``:
    kinds of entries not wanted (``FK CONSTRAINT``, ``TRIGGER``), left out silently."""
    entries: list[tuple[str, str, str, set[str]]] = []  # (id, line, its text after the ids, depends on)
    for line in listing.splitlines():
        if match := _ENTRY.match(line):
            entries.append((match["id"], line, match["rest"], set()))
        elif (match := _DEPENDS.match(line)) and entries:
            entries[-1][3].update(match["ids"].split())
    held = {entry[0] for entry in entries}
    wanted = None if tables is None else {tuple(t.split(".", 1)) for t in tables}
    dropped: dict[str, str] = {}
    kept: list[tuple[str, str]] = []  # (line, text after the ids)
    left_out: list[str] = []
    for entry_id, line, rest, depends in entries:
        if any(rest.startswith(f"{kind} ") for kind in without):
            continue
        why = None if can.superuser else _refused(rest, can)
        if why is None and not can.superuser and rest.startswith("ACL ") and not depends <= held and \
                not any(rest.startswith(kind) for kind in _EVERYWHERE):
            why = NOT_HELD
        if why is None and (parent := next((d for d in depends if d in dropped), None)):
            why = f"depends on entry {parent}, left out"
        if why is None and wanted is not None:
            words = rest.split(" ")
            if not (rest.startswith("TABLE DATA ") and (words[2], words[3]) in wanted):
                continue  # not asked for: not restored, not reported
        if why is not None:
            dropped[entry_id] = why
            left_out.append(f"{rest} ({why})")
            continue
        kept.append((line, rest))
    if wanted is not None:
        found = {tuple(rest.split(" ")[2:4]) for _, rest in kept}
        if missing := sorted(f"{s}.{t}" for s, t in wanted - found):
            raise LookupError(f"the backup holds no data of {', '.join(missing)}")
    return "".join(f"{line}\n" for line, _ in kept), left_out


def with_partitions(conn: psycopg.Connection, tables: list[str]) -> list[str]:
    """``tables`` as the target's catalog names them (``schema.table``), each partitioned one replaced by its
    partitions: a partitioned table's rows are in its partitions' data entries."""
    wanted: set[str] = set()
    for table in tables:
        rows = conn.execute(
            "WITH RECURSIVE tree(oid) AS (SELECT to_regclass(%s)::oid UNION SELECT i.inhrelid FROM pg_inherits i "
            "JOIN tree ON i.inhparent = tree.oid) SELECT format('%%s.%%s', n.nspname, c.relname), c.relkind "
            "FROM tree JOIN pg_class c ON c.oid = tree.oid JOIN pg_namespace n ON n.oid = c.relnamespace",
            (table,)).fetchall()
        wanted |= {name for name, kind in rows if kind != "p"} if rows else {
            table if "." in table else f"public.{table}"}  # unknown here: the list says whether the backup has it
    return sorted(wanted)


def log_lines(left_out: list[str]) -> list[str]:
    """What :func:`restorable` left out, for the log: one line per entry, but every grant in one line (a
    project's dump holds one for each routine of an extension and each role), each named by its object."""
    grants = [entry for entry in left_out if entry.startswith("ACL ")]
    lines = [entry for entry in left_out if not entry.startswith("ACL ")]
    if grants:
        names = sorted({_object(entry) for entry in grants})
        lines.append(f"{len(grants)} grants left out, on objects the archive does not hold or the restore "
                     f"leaves out: {', '.join(names)}")
    return lines


def _object(entry: str) -> str:
    """``schema.name(…)`` of a left-out ACL entry's text (``ACL <schema> <KIND> <name(args)> <owner> (why)``)."""
    words = entry.split(" ")
    name = " ".join(words[3:]).split("(", 1)
    return f"{'' if words[1] == '-' else words[1] + '.'}{name[0].split(' ')[0]}{'(…)' if len(name) > 1 else ''}"
