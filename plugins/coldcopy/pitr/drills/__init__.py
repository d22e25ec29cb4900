"""Restore drills (``restore_drill``): a point-in-time restore onto the verification server every day, checked
against the archive and measured (RTO split by phase, achieved RPO), recorded in
``coldcopy_ops.restore_drills``. One small piece per step:

* :mod:`~coldcopy.pitr.drills.expected` — what the restored database must hold, folded from the bound archive
  independently of the replay (per-table row counts, the final images of a sample of keys);
* :mod:`~coldcopy.pitr.drills.checks` — the restored database compared with that expectation;
* :mod:`~coldcopy.pitr.drills.drill` — the drill itself: pick a second, restore, replay, check, re-apply the
  erasures, drop, record;
* :mod:`~coldcopy.pitr.drills.record` — the history (what db_health, the health page and the metrics read).

See docs/backups.md ("Restore drills").
"""
