"""One run of one job, in its own process (and process group), as a worker runs a task: ``python -m
coldcopy.testing.faults.child <job>``, its context in ``COLDCOPY_FAULT_CONTEXT``; a kill at a step is armed by
``COLDCOPY_KILL_AT`` (:mod:`coldcopy.steps`). Exit 0: the job finished."""

from __future__ import annotations

import logging
import sys

from coldcopy.testing.faults.jobs import JOBS, Context

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    job = JOBS[sys.argv[1]]
    phase = {"--next-day": job.next_day, "--prepare": job.prepare}.get(sys.argv[2] if sys.argv[2:] else "", job.run)
    phase(Context.from_env())
