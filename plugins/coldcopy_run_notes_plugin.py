"""Airflow plugin: a note on every ColdCopy run whose every task skipped (coldcopy.run_notes), and the sentinel that
lets the supervisor see a task process end at once (coldcopy.exit_sentinel)."""

from airflow.plugins_manager import AirflowPlugin

from coldcopy import exit_sentinel, run_notes


class ColdCopyRunNotesPlugin(AirflowPlugin):
    name = "coldcopy_run_notes"
    listeners = [run_notes, exit_sentinel]
