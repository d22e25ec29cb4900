"""Expected vs live, object by object (:func:`compare`): each :class:`Difference` names the object, what differs,
whether it is **security-relevant** (:func:`security_reason`) and the SQL that brings either side to the other."""

from __future__ import annotations

from dataclasses import dataclass

from coldcopy.migrations.drift.catalog import EXCLUDED_SCHEMAS, SchemaObject

API_ROLES = ("anon", "authenticated", "PUBLIC")  # who reaches the data through Supabase's API (service_role is trusted)


@dataclass(frozen=True)
class Difference:
    kind: str
    name: str
    change: str  # missing (the files build it, live lacks it) | extra (live only) | changed
    expected: SchemaObject | None
    live: SchemaObject | None
    fields: tuple[str, ...] = ()  # what differs, for a change
    security: str | None = None  # why it is a breach, when it is one

    @property
    def table(self) -> str | None:
        return (self.live or self.expected).table

    def to_live(self) -> str:
        """The SQL that makes the live database what the files built (a repair)."""
        return _sql(self.live, self.expected)

    def to_expected(self) -> str:
        """The SQL that makes the files build what live holds (a migration adopting the drift)."""
        return _sql(self.expected, self.live)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "change": self.change, "fields": list(self.fields),
                "security": self.security, "expected": self.expected.props if self.expected else None,
                "live": self.live.props if self.live else None, "to_live": self.to_live(),
                "to_expected": self.to_expected()}


def _sql(have: SchemaObject | None, want: SchemaObject | None) -> str:
    """From ``have`` to ``want`` (either absent)."""
    if want is None:
        return have.drop_sql
    if have is None:
        return want.create_sql
    if want.kind == "column":
        return _column_sql(have, want)
    if want.kind == "table":
        return _table_sql(want)
    if want.kind == "grant":
        return f"{have.drop_sql}\n{want.create_sql}"
    if want.kind == "function":
        return want.create_sql  # CREATE OR REPLACE
    return f"{have.drop_sql}\n{want.create_sql}"


def _column_sql(have: SchemaObject, want: SchemaObject) -> str:
    table, column = want.name.rsplit(".", 1)
    alter, out = f"ALTER TABLE {table} ALTER COLUMN {column}", []
    if have.props.get("type") != want.props.get("type"):
        out.append(f"{alter} TYPE {want.props['type']};")
    if have.props.get("default") != want.props.get("default"):
        out.append(f"{alter} SET DEFAULT {want.props['default']};" if want.props.get("default")
                   else f"{alter} DROP DEFAULT;")
    if have.props.get("not_null") != want.props.get("not_null"):
        out.append(f"{alter} {'SET' if want.props.get('not_null') else 'DROP'} NOT NULL;")
    if (have.props.get("identity"), have.props.get("generated")) != (want.props.get("identity"),
                                                                      want.props.get("generated")):
        out.append(f"-- identity/generated differ: recreate the column\n{have.drop_sql}\n{want.create_sql}")
    return "\n".join(out)


def _table_sql(want: SchemaObject) -> str:
    verb = {True: "ENABLE", False: "DISABLE"}
    out = [f"ALTER TABLE {want.name} {verb[bool(want.props.get('row_level_security'))]} ROW LEVEL SECURITY;"]
    out.append(f"ALTER TABLE {want.name} {'' if want.props.get('forced') else 'NO '}FORCE ROW LEVEL SECURITY;")
    return "\n".join(out)


def security_reason(change: str, expected: SchemaObject | None, live: SchemaObject | None) -> str | None:
    """Why the difference opens data the files kept closed (a breach), or None."""
    obj = live or expected
    e, lv = (expected.props if expected else {}), (live.props if live else {})
    if obj.kind == "table" and live is not None:
        if e.get("row_level_security") and not lv.get("row_level_security"):
            return "row level security disabled"
        if e.get("forced") and not lv.get("forced"):
            return "row level security no longer forced (the table's owner bypasses its policies)"
        if expected is None and not lv.get("row_level_security") and obj.name.startswith("public."):
            return "a table in public without row level security (the API roles reach it)"
    if obj.kind == "policy":
        if change == "extra":
            return "a policy added" + ("" if lv.get("permissive", True) else " (restrictive)")
        if change == "changed":
            return "a policy changed: " + ", ".join(k for k in ("using", "with_check", "roles", "command",
                                                              "permissive") if e.get(k) != lv.get(k))
        if change == "missing" and not e.get("permissive", True):
            return "a restrictive policy dropped"
    if obj.kind == "grant" and live is not None and obj.name.split(" on ", 1)[0] in API_ROLES:
        more = set(_privileges(lv)) - set(_privileges(e))
        if more:
            return f"granted {', '.join(sorted(more))} to {obj.name.split(' on ', 1)[0]}"
    if obj.kind == "function" and live is not None and lv.get("security_definer"):
        path = [c for c in (lv.get("config") or []) if c.startswith("search_path=")]
        if not path or path[0].split("=", 1)[1].replace(" ", "") != "pg_catalog,pg_temp":  # empty: pg_temp shadows
            return "a SECURITY DEFINER function without a fixed search_path"
        if change != "missing" and (not e.get("security_definer") or e.get("body") != lv.get("body")):
            return "a SECURITY DEFINER function " + ("added" if expected is None else "changed")
    return None


def _privileges(props: dict) -> list[str]:
    return [p.strip() for p in (props.get("privileges") or "").split(",") if p.strip()]


def compare(expected: dict, live: dict) -> list[Difference]:
    """Every object whose presence or properties differ, ordered by kind and name."""
    out = []
    for key in sorted(set(expected) | set(live)):
        e, lv = expected.get(key), live.get(key)
        if e is not None and lv is not None:
            fields = tuple(sorted(k for k in set(e.props) | set(lv.props) if e.props.get(k) != lv.props.get(k)))
            if not fields:
                continue
            change = "changed"
        else:
            fields, change = (), ("missing" if lv is None else "extra")
            if change == "extra" and lv.kind == "extension" and lv.home in EXCLUDED_SCHEMAS:
                continue  # the platform's (catalog.py)
        out.append(Difference(key[0], key[1], change, e, lv, fields, security_reason(change, e, lv)))
    return out
