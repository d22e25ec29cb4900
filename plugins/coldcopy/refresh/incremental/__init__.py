"""Incremental maintenance of the analytics summaries: a refresh costs what changed, not what exists.

Five dashboard aggregates are summary tables (migration 305), each with its definition beside it as a view
(``analytics.<name>_definition``). A refresh:

1. **capture** (:mod:`.capture`): statement-level triggers with transition tables on every source table
   append the group keys each writing statement touched, with its transaction id, to a delta table of
   ``coldcopy_ops`` — in the writer's transaction, so a key exists exactly when its change committed;
2. **apply** (:mod:`.maintainer`): in one REPEATABLE READ transaction, the keys whose transactions the
   summary's watermark snapshot does not show are collected, their groups deleted from the summary and
   re-inserted from the definition filtered by those keys, and the transaction's snapshot becomes the new
   watermark. Apply and watermark commit together: a killed task loses or doubles nothing;
3. **rebuild**: the whole definition, when there is no state, ``force`` is set, the definition changed (a
   migration), the state comes from another cluster or database (a restore), or the definition reads a
   table no capture watches;
4. **verify** (daily): the summary against its definition, EXCEPT ALL both ways, on the snapshot of an
   apply; a difference is repaired and alerted.

Why triggers and not the change archive's decoded changes: the archive lags by its drain interval and is
optional (a slot needs a direct connection); a trigger's keys are in the same transaction as the change,
so the watermark is exact without any ordering between two systems. docs/refresh.md has the measured cost.
"""
