"""The applier of a summary's aggregate state: the generic one (:mod:`~coldcopy.refresh.incremental.delta`) or the
join through messages (:mod:`~coldcopy.refresh.incremental.steps`)."""

from __future__ import annotations

import psycopg

from coldcopy.refresh.incremental.aggregates import MessageSteps
from coldcopy.refresh.incremental.delta import DeltaApplier
from coldcopy.refresh.incremental.steps import StepApplier


def applier_for(conn: psycopg.Connection, aggregate) -> DeltaApplier | StepApplier:
    return StepApplier(conn, aggregate) if isinstance(aggregate, MessageSteps) else DeltaApplier(conn, aggregate)
