"""Airflow plugin: a note on every ColdCopy run whose every task skipped (coldcopy.run_notes)."""

from airflow.plugins_manager import AirflowPlugin

from coldcopy import run_notes


class ColdCopyRunNotesPlugin(AirflowPlugin):
    name = "coldcopy_run_notes"
    listeners = [run_notes]
