"""Schema drift (the ``schema_drift`` DAG, :mod:`coldcopy.migrations.drift`): the latest check's finding."""

from __future__ import annotations

from coldcopy.health.results import Context, Result

CHECK_WITHIN_HOURS = 36  # the DAG runs daily


def schema_drift(c: Context) -> Result:
    if not c.has_table("coldcopy_ops.schema_drift"):
        return Result("schema_drift", "ok", "not checked yet (the schema_drift DAG runs daily)", None, "objects")
    row = c.one("SELECT checked_at, outcome, error, objects, drifted, breaches, differences, "
                "checked_at < now() - make_interval(hours => %s) AS stale FROM coldcopy_ops.schema_drift "
                "ORDER BY checked_at DESC, id DESC LIMIT 1", (CHECK_WITHIN_HOURS,))
    if row is None:
        return Result("schema_drift", "ok", "not checked yet (the schema_drift DAG runs daily)", None, "objects")
    if row["outcome"] == "unknown":
        return Result("schema_drift", "unknown", f"not checked: {row['error']}", None, "objects",
                      {"checked_at": row["checked_at"].isoformat()})
    objects = [{k: d[k] for k in ("kind", "name", "change", "fields", "security")} for d in row["differences"] or []]
    details = {"checked_at": row["checked_at"].isoformat(), "objects": row["objects"], "drifted": objects[:50]}
    if row["breaches"]:
        worst = [f"{d['kind']} {d['name']}: {d['security']}" for d in objects if d["security"]]
        return Result("schema_drift", "breach", f"{row['breaches']} security-relevant drift(s): "
                      + "; ".join(worst[:3]), row["drifted"], "objects", details)
    if row["drifted"]:
        return Result("schema_drift", "warning", f"{row['drifted']} object(s) differ from what the applied files "
                      "build: " + "; ".join(f"{d['kind']} {d['name']} {d['change']}" for d in objects[:3]),
                      row["drifted"], "objects", details)
    if row["stale"]:
        return Result("schema_drift", "warning", f"last checked {row['checked_at'].isoformat()}, over "
                      f"{CHECK_WITHIN_HOURS} h ago (is the schema_drift DAG running?)", 0, "objects", details)
    return Result("schema_drift", "ok", f"no drift: {row['objects']} objects as the applied files build them",
                  0, "objects", details)
