"""The applier of a summary's aggregate state: the generic one (:mod:`~coldcopy.refresh.incremental.delta`) or the
join through messages (:mod:`~coldcopy.refresh.incremental.steps`) or workspace_usage's windows
(:mod:`~coldcopy.refresh.incremental.usage`)."""

from __future__ import annotations

import psycopg

from coldcopy.refresh.incremental.aggregates import MessageSteps, WorkspaceUsage
from coldcopy.refresh.incremental.delta import DeltaApplier
from coldcopy.refresh.incremental.steps import StepApplier
from coldcopy.refresh.incremental.usage import UsageApplier


def applier_for(conn: psycopg.Connection, aggregate) -> DeltaApplier | StepApplier | UsageApplier:
    if isinstance(aggregate, MessageSteps):
        return StepApplier(conn, aggregate)
    if isinstance(aggregate, WorkspaceUsage):
        return UsageApplier(conn, aggregate)
    return DeltaApplier(conn, aggregate)
