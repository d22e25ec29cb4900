"""The connection ids (issue 42, 5): one module holds them, the README's connections table lists exactly those, and
no other module spells one out."""

import re
import subprocess

from coldcopy import connections
from tests.support import ROOT


def readme_connections() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Connections"):]
    section = section[:section.index("\n## ", 3)]
    return re.findall(r"^\| `(coldcopy_[a-z_]+)` \|", section, flags=re.M)


def test_the_readme_table_lists_every_connection_the_code_reads_and_no_other():
    assert sorted(readme_connections()) == sorted(connections.ALL)
    assert len(set(connections.ALL)) == len(connections.ALL)


def test_no_module_but_connections_spells_out_a_connection_id():
    pattern = "\"(" + "|".join(connections.ALL) + ")\""
    found = subprocess.run(["git", "grep", "-nE", pattern, "--", "plugins/coldcopy", "dags",
                            ":!plugins/coldcopy/connections.py", ":!plugins/coldcopy/testing"],
                           cwd=ROOT, capture_output=True, text=True).stdout.splitlines()
    assert found == []
