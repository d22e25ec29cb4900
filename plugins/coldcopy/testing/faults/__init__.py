"""The fault campaign (issue 45; docs/safety.md): every job that changes state, killed at each named step boundary
(:mod:`coldcopy.steps`) and at random instants, rerun, and checked by one invariant checker."""

from coldcopy.testing.faults.campaign import Campaign, Trial
from coldcopy.testing.faults.jobs import JOBS, Context, Job

__all__ = ["JOBS", "Campaign", "Context", "Job", "Trial"]
