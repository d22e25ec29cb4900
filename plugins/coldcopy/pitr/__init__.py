"""Point-in-time recovery from a continuous change archive, on what a managed database allows: logical
decoding (the ``coldcopy_pitr`` publication, a ``pgoutput`` slot) drained into signed, hash-chained,
encrypted segments in the bucket, replayed onto the newest base backup before the chosen second.

One module per step: :mod:`~coldcopy.pitr.setup` (publication, slot), :mod:`~coldcopy.pitr.pgoutput` (the
decoder), :mod:`~coldcopy.pitr.archiver` (drain → segment → read back → advance), :mod:`~coldcopy.pitr.chain`
(the bucket's chains, gaps), :mod:`~coldcopy.markers` (DDL the decoder does not carry),
:mod:`~coldcopy.pitr.replay` (idempotent apply), :mod:`~coldcopy.pitr.recovery` (``as_of``: plan and restore),
:mod:`~coldcopy.change_slot` (the slot's WAL never fills the disk). The runbook: docs/pitr.md.
"""
