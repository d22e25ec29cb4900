"""
# restore_from_spaces — restore a backup from Spaces

**Trigger by hand.** Params:

- `backup`: `latest` (newest whole-database backup), a date `YYYY-MM-DD` (newest of that day), or an
  object key `backups/…dump.zst.gpg`;
- `target_database`: where to restore: a new database (created) or an empty one. A populated database is
  refused (`pg_restore --clean` cannot replace partitioned tables, and a half-overwritten database is
  worse than none): restore into a new database and point the application at it. The live database of
  `coldcopy_db` (lost and recreated empty) needs a person's approval: the `approve` task waits for one of the
  users in the Variable `coldcopy_restore_approvers` (JSON list of user names) to answer *restore* (Required
  actions in the UI), showing the database, its size and the backup's age; no answer within 24 h is a rejection.
  Any other target is not asked;
- `tables`: optional list, e.g. `["public.workspaces"]`: only their rows, into a target that already has
  the schema (`pg_restore --data-only --disable-triggers`);
- `as_of`: optional point in time (UTC, whole seconds, `2026-11-29T16:00:05Z`): the newest base backup before
  it, then the change archive (`change_archive`) replayed up to the last transaction committed within that
  second; `backup` is ignored. Refused, with the nearest reachable point, when it is in the future, before
  the oldest base backup the archive extends, after the archive's newest point, or across a gap;
- `workspace_id`: optional, only that workspace's rows (every tenant table, its `workspaces` row, the users
  they refer to), in `target_database`, or with `target_schema` in that new schema of the live database
  (owner-only, no constraints: support copies back from it; the restored database is dropped);
- `jobs`: connections of a whole-database restore (`pg_restore --jobs`) and of `as_of`'s replay (its lanes),
  at most 32; 0 (default): one per CPU; 1: one connection, no parallel restore and one replay lane (the fallback
  should the parallel replay ever misbehave).

The object is downloaded to a private spool and must equal its signed manifest (key, size, sha256) before
anything is decrypted; gpg must report an integrity-protected AES256 decryption before its output reaches
`zstd -d | pg_restore --single-transaction --exit-on-error`. A whole-database restore goes into the
quarantine `<target>__restoring`, the erasures since the backup are re-applied there, and only then is it
renamed to `target_database`; any failure drops the quarantine. The same by hand with stock tools: see the
runbook in docs/backups.md.

| Symptom | Meaning | Action |
|---|---|---|
| `does not match its signed manifest` | the object in the bucket is not the one that was backed up (swapped, truncated, tampered) | use another backup; find who wrote the bucket |
| `not symmetrically encrypted` | a plain OpenPGP packet stands where a backup should be | the same: never restore it by hand either |
| `passed over N backup(s) with a refused manifest` (alert) | `latest` skipped backups it cannot trust | investigate the bucket; the restore used the next one |
| `erasure ledger: … problem(s)` (alert) | some ledger entries are junk, forged or missing | every valid one was applied; tell the DPO |
CLI: `airflow dags trigger restore_from_spaces --conf '{"backup": "latest", "target_database": "coldcopy_restored"}'`.
"""

from airflow.sdk import DAG, Param

from coldcopy.dag_defaults import START_DATE, default_args
from coldcopy.dag_params import AS_OF_PATTERN, SCHEMA_PATTERN, optional, text
from coldcopy.operators.backups import MAX_JOBS
from coldcopy.operators.restore import RestoreFromSpacesOperator
from coldcopy.operators.restore_approval import RestoreApprovalOperator

with DAG(
    dag_id="restore_from_spaces",
    description="By hand: restore a backup from Spaces into a database (the live one only when approved)",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=2),
    params={
        "backup": Param("latest", type="string", pattern=r"^(latest|\d{4}-\d{2}-\d{2}|backups/\S+)$",
                        description="latest, YYYY-MM-DD (newest of that day), or an object key backups/…"),
        "target_database": Param("coldcopy_restored", type="string", minLength=1, maxLength=63),
        "tables": optional("only these tables' rows, schema-qualified (empty: all)", kind="array",
                           items={"type": "string", "pattern": r"^[^.\s]+\.[^\s]+$"}),
        "as_of": optional("point in time, UTC, whole seconds, e.g. 2026-11-29T16:00:05Z (empty: the backup itself); "
                          "needs the change archive (docs/pitr.md)", pattern=AS_OF_PATTERN),
        "workspace_id": optional("only this workspace's rows, its UUID (empty: the whole database)", format="uuid"),
        "jobs": Param(0, type="integer", minimum=0, maximum=MAX_JOBS, description="connections of a whole-database "
                      f"restore and of the replay, at most {MAX_JOBS} (0: one per CPU; 1: one, no parallel restore or "
                      "replay lanes)"),
        "target_schema": optional("with workspace_id: copy into this new schema of the live database instead of a "
                                  "new database (lower-case letters, digits, _)", pattern=SCHEMA_PATTERN),
    },
    tags=["coldcopy", "backups", "restore"],
    doc_md=__doc__,
):
    what = {"backup": "{{ params.backup }}", "target_database": "{{ params.target_database }}",
            "tables": "{{ (params.tables or []) | join(',') }}", "as_of": text("as_of")}
    RestoreApprovalOperator(task_id="approve", **what) >> RestoreFromSpacesOperator(
        task_id="restore", **what, workspace_id=text("workspace_id"), target_schema=text("target_schema"),
        jobs="{{ params.jobs }}")
