"""Templates in the presenter's page (Chromium): the polls saved as a file, a file's polls added
as drafts to another session, a bad file refused with each bad entry named, a session duplicated."""

import json
import os
import tempfile

import pytest

from test_browser import browsers, presenter_signs_in_and_creates, shot, text, wait  # noqa: F401

By = pytest.importorskip("selenium.webdriver.common.by").By


def write(template):
    handle, path = tempfile.mkstemp(prefix="tally-template-", suffix=".json")
    with os.fdopen(handle, "w") as f:
        json.dump(template, f)
    return path


def test_the_presenter_saves_imports_and_duplicates_polls(server, browsers):  # noqa: F811
    driver = browsers.open()
    sid, _ = presenter_signs_in_and_creates(driver, server, "Workshop")
    link = driver.find_element(By.ID, "template-export")
    assert link.get_attribute("href").endswith(f"/api/v1/sessions/{sid}/template") and link.get_attribute("download") is not None

    good = write({"format": "tally-template", "version": 1, "polls": [
        {"question": "Coffee or tea?", "kind": "single", "options": ["Coffee", "Tea"]},
        {"question": "One word for today?", "kind": "wordcloud"}]})
    bad = write({"format": "tally-template", "version": 1, "polls": [
        {"question": "Fine", "kind": "single", "options": ["a", "b"]},
        {"question": "", "kind": "single", "options": ["a", "b"]},
        {"question": "Too wide", "kind": "scale", "scale": {"min": 1, "max": 11}}]})
    try:
        driver.find_element(By.ID, "template-import").send_keys(bad)
        wait(driver, lambda d: "Nothing imported" in text(d), message="the refusal")
        assert "poll 2:" in text(d := driver) and "poll 3:" in text(d) and "Fine" not in [e.text for e in d.find_elements(By.CSS_SELECTOR, ".poll h3")]
        driver.find_element(By.ID, "template-import").send_keys(good)
        wait(driver, lambda d: "Coffee or tea?" in text(d) and "One word for today?" in text(d), message="the drafts")
        shot(driver, "presenter-template-import.png")
    finally:
        os.unlink(good)
        os.unlink(bad)
    polls = server.ok("GET", f"/api/v1/sessions/{sid}", token=server.operator_token())["polls"]
    assert [p["poll"]["question"] for p in polls] == ["Coffee or tea?", "One word for today?"]
    assert {p["poll"]["state"] for p in polls} == {"draft"}

    # Back to the list: the same talk for the next room.
    driver.get(f"http://127.0.0.1:{server.port}/presenter")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"[data-duplicate='{sid}']"))
    driver.find_element(By.CSS_SELECTOR, f"[data-duplicate='{sid}']").click()
    wait(driver, lambda d: "/presenter/" in d.current_url and not d.current_url.endswith(sid) and "Workshop (copy)" in text(d))
    wait(driver, lambda d: "Coffee or tea?" in text(d) and "One word for today?" in text(d))
