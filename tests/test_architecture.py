"""The house's rules (issue 42; docs/architecture.md), checked on the tree: the core imports no wing, a wing imports
no other (what two wings share lives in the core, or is handed in by the operator that composes them), the faces
name what they export, and no Python file outgrows 300 lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support import ROOT

PACKAGE = ROOT / "plugins" / "coldcopy"
WINGS = {"backups", "gdpr", "health", "maintenance", "migrations", "partitions", "pitr", "refresh"}
COMPOSERS = {"operators", "testing"}  # the operators compose the wings; coldcopy.testing drives them all


def owner(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "core"


def imported(path: Path) -> set[str]:
    """The ``coldcopy`` subpackages ``path`` imports, at any depth of the module (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"coldcopy.{a.name}" for a in node.names] if node.module == "coldcopy" else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("coldcopy.")}
    return found


def edges() -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = owner(path)
        for target in imported(path) & WINGS - {source}:
            found.setdefault((source, target), set()).add(str(path.relative_to(PACKAGE)))
    return found


def test_the_core_imports_no_wing():
    assert {edge: files for edge, files in edges().items() if edge[0] == "core"} == {}


def test_no_wing_imports_another():
    """No job folder imports another: a piece two wings need is the core's (the slot budget, the capture
    triggers, the refresh schedule), or handed in by the composing operator (a migration marker's applier, the
    dashboards an erasure refreshes)."""
    assert {edge: files for edge, files in edges().items() if edge[0] in WINGS} == {}


def test_faces_name_what_they_export():
    stars = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
             if re.search(r"^\s*from \S+ import \*", p.read_text(), flags=re.M)]
    assert stars == []
    for wing in ("backups", "gdpr", "health", "maintenance", "partitions"):
        face = (PACKAGE / wing / "__init__.py").read_text()
        assert "__all__" in face, wing


def test_no_python_file_is_over_300_lines():
    files = [p for folder in ("plugins", "dags", "scripts", "bench", "tests") for p in (ROOT / folder).rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}
