"""The docs' ``airflow …`` commands reach the running stack (issue 41 item 4): ``.airflow/airflow.cfg`` points at
SQLite while the launcher holds the real settings in its environment, so ``airflow variables get`` from a shell
read another database (and made a stray SQLite file). Before the fix there was nothing to run but that.

The stack writes ``<home>/bin/airflow`` (and ``<home>/airflow.env``) itself, the e2e stack as ``make airflow``'s:
the docs' example run through it from another directory, with a shell's own AIRFLOW settings pointing elsewhere,
is seen by the stack (REST API), and what the stack holds is what it prints."""

from __future__ import annotations

import json
import os
import subprocess


def test_the_docs_variables_example_reaches_the_stack(live, api, tmp_path):
    cli = live.stack.cli
    shell = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
             f"sqlite:///{tmp_path / 'stray.db'}"}  # a shell's leftovers: the wrapper must not follow them

    def airflow(*args: str) -> str:
        done = subprocess.run([str(cli), *args], cwd=tmp_path, env=shell, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    variable = "coldcopy_migration_approvers"
    try:  # docs/migrations.md's example, as written there
        airflow("variables", "set", variable, '["alice", "bob"]')
        assert json.loads(api.get(f"/variables/{variable}").json()["value"]) == ["alice", "bob"]
        assert api.patch(f"/variables/{variable}", json={"key": variable, "value": '["approver"]'}).status_code == 200
        assert json.loads(airflow("variables", "get", variable).strip().splitlines()[-1]) == ["approver"]
    finally:
        api.delete(f"/variables/{variable}")
    assert not list(tmp_path.rglob("*.db")) and not (live.stack.home / "airflow.db").exists()  # no stray SQLite
    env_file = live.stack.home / "airflow.env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600" and oct(cli.stat().st_mode & 0o777) == "0o700"
