"""Re-apply the GDPR erasure ledger to a database restored by hand (docs/backups.md, Runbook: restore), before anyone
is handed it: every erasure in the bucket's signed ledger erased at or after --since is carried out again.

    AIRFLOW_CONN_COLDCOPY_SPACES=… AIRFLOW_CONN_COLDCOPY_MANIFEST_KEY=… AIRFLOW_CONN_COLDCOPY_SUBJECT_PEPPER=… \\
      .venv/bin/python scripts/gdpr_reapply.py --dsn postgresql://…/coldcopy_restored --since 2026-11-24T03:00:00Z

--since: the backup's started_at (its manifest); omit it to re-apply every erasure ever recorded (safe, slower).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta

from coldcopy import manifests
from coldcopy.gdpr import reapply_after_restore, subject_pepper
from coldcopy.object_store import Bucket
from coldcopy.refresh.erasures import Dashboards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string of the restored database")
    parser.add_argument("--since", help="the backup's started_at (ISO 8601)")
    args = parser.parse_args()
    since = datetime.fromisoformat(args.since.replace("Z", "+00:00")) - timedelta(hours=1) if args.since else None
    done, problems = reapply_after_restore(args.dsn, Bucket.from_connection(), manifests.keyring(), since,
                                           subject_pepper(), Dashboards)
    print(json.dumps({"reapplied": done, "ledger_problems": problems}, indent=2))
    if problems:
        sys.exit("the erasure ledger has problems (above): every valid erasure was applied; tell the DPO")


if __name__ == "__main__":
    main()
