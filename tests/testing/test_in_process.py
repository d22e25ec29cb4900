"""coldcopy.testing.in_process: dag.test()'s idle second, shortened only for its own loop while skips cascade."""

from __future__ import annotations

import time

from coldcopy.testing.in_process import _no_idle_second_while_skips_cascade


class Ti:
    def __init__(self, task_id: str) -> None:
        self.task_id, self.map_index = task_id, -1


def loop(passes: list[set[str]], awaiting=()):
    """A stand-in for DAG.test's loop: one sleep(1) per pass, its locals named as Airflow 3.3.2 names them."""
    for names in passes:
        awaiting_input_tis = set(awaiting)  # noqa: F841 - read from the frame
        ids_unrunnable = {Ti(n) for n in names}  # noqa: F841 - read from the frame
        time.sleep(1)


def timed(fn, *args) -> float:
    started = time.monotonic()
    fn(*args)
    return time.monotonic() - started


def test_a_pass_that_moved_sleeps_briefly_a_stuck_one_or_a_human_wait_the_whole_second_and_no_one_else():
    with _no_idle_second_while_skips_cascade(loop):
        assert timed(loop, [{"a", "b", "c"}, {"b", "c"}, {"c"}]) < 0.5  # a skip cascade: progress each pass
        assert 0.9 < timed(loop, [{"c"}]) < 1.5  # nothing moved since the last pass: a retry's delay, a deferral
        assert timed(loop, [{"x"}], [Ti("x")]) > 0.9  # a task awaits a human's answer
        assert timed(time.sleep, 0.3) >= 0.3  # any other caller (a task run in-process) sleeps what it asked
    assert time.sleep.__module__ == "time"  # put back
