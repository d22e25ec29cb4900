"""The Airflow UI in headless Chromium (Debian's package, driven by Playwright; no browser download):
the DAG list shows every DAG and a DAG's page shows its runbook (doc_md). Screenshots: .artifacts/ui/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "ui"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed (make test installs it)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live, api):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{live.stack.url}/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", live.stack.admin_password)
    page.click("button[type=submit]")
    # Logged in once the app has left /auth/ and settled; navigating earlier aborts the login's redirect.
    page.wait_for_url(lambda url: "/auth/" not in url)
    page.wait_for_load_state("networkidle")
    yield page
    page.close()


def test_the_dag_list_shows_every_dag(page, live):
    page.goto(f"{live.stack.url}/dags")
    expected = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "dags").glob("*.py"))
    for dag_id in expected:
        page.get_by_text(dag_id, exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "dag_list.png", full_page=True)


def test_a_dag_page_shows_its_runbook(page, live):
    page.goto(f"{live.stack.url}/dags/partition_maintenance")
    page.get_by_role("button", name="Dag Docs").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("partition_maintenance — daily at 01:00 UTC").wait_for(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "partition_maintenance_runbook.png")
    text = dialog.inner_text()
    assert "detach_archived" in text and "Symptom" in text  # the runbook's steps and its symptom table


def test_the_health_page_in_the_airflow_nav(page, live, generated_template):
    from coldcopy.testing import health_history

    live.reset_target(generated_template)
    health_history.fill(live.target_dsn, days=7)
    page.goto(f"{live.stack.url}/plugin/coldcopy-health")  # the nav entry's route: the page in an iframe
    frame = page.frame_locator("iframe")
    frame.get_by_role("heading", name="ColdCopy DB health").wait_for(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "health_in_airflow.png")
    page.goto(f"{live.stack.url}/coldcopy-health/")
    for section in ("Checks", "Last 7 days (hourly maxima)", "Materialized views", "Partitions and backups",
                    "Recent maintenance", "Top statements by total time", "Unused indexes", "Largest tables"):
        page.get_by_role("heading", name=section).wait_for(timeout=10_000)
    assert page.locator("svg.spark polyline").count() >= 5
    assert page.get_by_text("view_freshness", exact=True).count() == 1
    # Numbers a person reads (issue 24): timestamps to the second, no raw seconds or microseconds.
    text = page.locator("body").inner_text()
    assert re.search(r"\b20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\b", text), text[:2000]
    assert not re.search(r"\d\d:\d\d:\d\d\.\d{3,}", text), "a timestamp with sub-seconds"
    assert not re.search(r"\b\d+\.\d{4,}\b", text), "a number with machine precision"
    page.screenshot(path=ARTIFACTS / "health_page.png", full_page=True)


def test_the_trigger_form_of_every_hand_started_dag_can_be_submitted_with_its_defaults(page, live, api):
    """Issue 41, 1: empty optional params once turned the form red and kept its Trigger button disabled. Defaults:
    restore_from_spaces restores the latest backup, whole database, into a new one; nothing is triggered here."""
    for dag_id in ("restore_from_spaces", "restore_drill", "partition_restore"):
        page.goto(f"{live.stack.url}/dags/{dag_id}")
        page.get_by_role("button", name="Trigger").first.click()
        dialog = page.get_by_role("dialog")
        submit = dialog.get_by_role("button", name="Trigger")
        submit.wait_for(timeout=30_000)
        dialog.get_by_text("Run Parameters").first.wait_for(timeout=10_000)
        page.screenshot(path=ARTIFACTS / f"trigger_{dag_id}.png")
        assert submit.is_enabled(), f"{dag_id}: the Trigger button is disabled ({dialog.inner_text()[:1500]})"
        assert "required" not in dialog.inner_text().lower(), dialog.inner_text()[:1500]
        page.keyboard.press("Escape")
