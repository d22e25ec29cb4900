"""What a finished whole-database restore writes on its target (the database's comment, set in the transaction that
renames the quarantine and hands it over): which backup, as of when, which workspace. A retry of the same restore
cut short after that commit finds it and is done, instead of refusing a populated target (issue 45)."""

from __future__ import annotations

import json


def mark(key: str, as_of: str | None, workspace_id: str | None) -> dict:
    return {"coldcopy_restored_from": key, "as_of": (as_of or "").strip() or None, "workspace_id": workspace_id}


def read(comment: str | None) -> dict | None:
    """The mark in a database's comment, or None (no comment, another comment, a scratch label)."""
    try:
        found = json.loads(comment) if comment else None
    except ValueError:
        return None
    return found if isinstance(found, dict) and "coldcopy_restored_from" in found else None
