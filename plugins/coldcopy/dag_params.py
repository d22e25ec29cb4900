"""Params a person fills in the Trigger form (issue 41): optional ones are optional, and what JSON Schema can check
is checked there, before any run exists.

Airflow's form marks a param *required* unless its ``type`` includes ``"null"``, and turns an emptied field into
``null``: an optional param is therefore ``type=["null", …]`` with the default ``None``, and a task reads it
through :func:`text` (a template's ``{{ params.x }}`` would render ``None`` as the word "None"). Schemas are
checked by Airflow when a run is triggered (form, REST API, CLI): a bad value is refused with the schema's
message and no run is created, so no task fails and nothing pages.
"""

from __future__ import annotations

from airflow.sdk import Param

# A second in UTC, with its zone (Z or ±hh:mm): what coldcopy.pitr.recovery.parse_as_of reads.
AS_OF_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$"
# A new schema's name (coldcopy.pitr.workspace.schema_name: not public nor pg_*, which it refuses itself).
SCHEMA_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"


def optional(description: str, *, kind: str = "string", **schema) -> Param:
    """An optional param: empty (``None``) unless given; ``schema`` (``pattern``, ``format``…) applies to a value."""
    return Param(None, type=["null", kind], description=description, **schema)


def text(name: str) -> str:
    """The template of an optional string param for an operator's field: its value, or ``""`` when not given."""
    return "{{ params." + name + " or '' }}"


def required_in_form(param: Param) -> bool:
    """Whether Airflow's Trigger form insists on a value (its ``isRequired``): a ``type`` without ``"null"``."""
    kind = param.schema.get("type")
    return bool(kind) and not (isinstance(kind, list) and "null" in kind)
