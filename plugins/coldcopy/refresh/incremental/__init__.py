"""Incremental maintenance of the analytics summaries: a refresh costs what changed, not what exists.

Five dashboard aggregates are summary tables (migration 305), each with its definition beside it as a view
(``analytics.<name>_definition``) and an aggregate state (:mod:`.aggregates`). A refresh:

1. **capture** (:mod:`.capture`): statement-level triggers with transition tables on every source table
   append what each writing statement changed — for email_events a signed row per event image — with its
   transaction id, to a delta table of ``coldcopy_ops``, in the writer's transaction, so a change is there
   exactly when it committed;
2. **apply** (:mod:`.maintainer`): in one REPEATABLE READ transaction, the rows whose transactions the
   summary's watermark snapshot does not show are added to the aggregate state (:mod:`.delta`, :mod:`.steps`
   for the join through messages), the summary rows whose figures moved are written (:mod:`.summary_rows`), and
   the transaction's snapshot becomes the new watermark. Apply and watermark commit together: a killed task
   loses or doubles nothing. A summary whose aggregate no longer states its definition goes by groups
   (:mod:`.groups`: its changed groups recomputed from the definition);
3. **rebuild**: the state from the base tables, proven equal to the definition when the definition or the
   aggregate changed; when there is no state, ``force`` is set, the state comes from another cluster or
   database (a restore), the definition reads a table no capture watches, or the change is larger than a pass;
4. **verify** (daily, :mod:`.verification`): the summary and its state against its definition, EXCEPT ALL both
   ways, on the snapshot of an apply; a difference is repaired (the state built again) and alerted.

Why triggers and not the change archive's decoded changes: the archive lags by its drain interval and is
optional (a slot needs a direct connection); a trigger's rows are in the same transaction as the change,
so the watermark is exact without any ordering between two systems. docs/refresh.md has the measured cost.
"""
