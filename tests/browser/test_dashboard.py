"""The web dashboard in headless Chromium, against the real service and worker (docs/dashboard.md):
missions appear and finish without a reload, a timeline ends in COMPLETED, a cancel, signing
in and out, and a hostile payload shown as text."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")

from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mission_service.tokens import hash_token
from missions.v1 import mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.browser.conftest import Pages
from tests.support import Stack, free_port, payload

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

WAIT_S = 60
HOSTILE = "<script>alert(1)</script>"


async def _dashboard(stack: Stack, *args: str) -> str:
    """Start the stack's service with its HTTP port; the dashboard's URL."""
    port = free_port()
    await stack.start_service("--http-listen", f"127.0.0.1:{port}", *args)
    return f"http://127.0.0.1:{port}/"


def _until(browser: Pages, what: str, check: Callable[[Any], Any]) -> Any:
    """Wait on the page's state (never a sleep): ``check``'s first truthy answer."""
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(browser.driver, WAIT_S, ignored_exceptions=ignored).until(check, message=what)


def _text(browser: Pages, selector: str) -> str:
    """The text of the first element ``selector`` finds ("" for none, or one just redrawn)."""
    try:
        found = browser.driver.find_elements(By.CSS_SELECTOR, selector)
        return str(found[0].text) if found else ""
    except StaleElementReferenceException:
        return ""


def _states(browser: Pages, ids: list[str]) -> list[str]:
    return [_text(browser, f'#missions tr[data-id="{mission_id}"] .badge') for mission_id in ids]


def _timeline(browser: Pages) -> list[str]:
    return [
        str(row.get_attribute("data-type"))
        for row in browser.driver.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
    ]


def _click(browser: Pages, label: str) -> bool:
    browser.driver.find_element(By.XPATH, f'//button[normalize-space()="{label}"]').click()
    return True


def _confirm(browser: Pages, label: str) -> None:
    """Click ``label``, then the confirmation's "Yes, ..."."""
    _until(browser, f"a {label} button", lambda _: _click(browser, label))
    _until(browser, f"the {label} confirmation", lambda _: _click(browser, f"Yes, {label.lower()}"))


async def test_missions_appear_and_finish_live_and_a_timeline_ends_in_completed(stack: Stack, browser: Pages) -> None:
    url = await _dashboard(stack)
    browser.open(url + "#/missions")
    _until(browser, "the live indicator", lambda _: _text(browser, "#live") == "live")
    browser.driver.execute_script("window.notReloaded = true")

    # No worker yet: they wait, QUEUED; then one starts and they run.
    ids = [(await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo"))).mission.id for _ in range(3)]
    _until(browser, "three QUEUED rows", lambda _: _states(browser, ids) == ["QUEUED"] * 3)
    await stack.start_consuming_worker()
    _until(browser, "three SUCCEEDED rows", lambda _: _states(browser, ids) == ["SUCCEEDED"] * 3)
    assert browser.driver.execute_script("return window.notReloaded") is True

    browser.driver.find_element(By.CSS_SELECTOR, f'#missions tr[data-id="{ids[0]}"] a').click()
    _until(browser, "a timeline to COMPLETED", lambda _: _timeline(browser) == ["CREATED", "STARTED", "COMPLETED"])
    _until(browser, "the mission page, final", lambda _: _text(browser, "#live").startswith("final"))
    assert _text(browser, "h1 .badge") == "SUCCEEDED"
    assert ids[0] in _text(browser, "dl.fields")

    # A unique prefix in the id box opens the mission.
    browser.open(url + "#/missions")
    box = _until(browser, "the id box", lambda driver: driver.find_element(By.ID, "id-search"))
    box.send_keys(ids[1][:13] + "\n")
    _until(browser, "the mission the prefix names", lambda _: ids[1] in _text(browser, "dl.fields"))


async def test_the_overview_shows_states_queues_flagged_without_a_worker_and_workers(
    stack: Stack, browser: Pages
) -> None:
    url = await _dashboard(stack)
    await stack.start_consuming_worker("--worker-id", "browser-worker")
    await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="nobody-handles-this"))
    browser.open(url)
    flagged = '#queues tr.orphan[data-type="nobody-handles-this"]'
    _until(browser, "the type no worker handles, flagged", lambda _: "no worker" in _text(browser, flagged))
    _until(browser, "the live worker", lambda _: "browser-worker" in _text(browser, "#workers"))
    _until(browser, "one QUEUED", lambda _: _text(browser, '#states [data-label="QUEUED"] .bar-value') == "1")

    # Live: a mission finishing now shows in the counts without a reload.
    await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo"))
    _until(browser, "one SUCCEEDED", lambda _: _text(browser, '#states [data-label="SUCCEEDED"] .bar-value') == "1")

    browser.driver.set_window_size(390, 844)  # a phone: one column, nothing wider than the screen
    _until(
        browser,
        "no sideways scrolling at a phone's width",
        lambda driver: driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"),
    )


async def test_a_mission_is_cancelled_from_its_page(stack: Stack, browser: Pages) -> None:
    url = await _dashboard(stack)
    waiting = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="nobody-handles-this"))).mission
    browser.open(f"{url}#/missions/{waiting.id}")
    _until(browser, "the mission, QUEUED", lambda _: _text(browser, "h1 .badge") == "QUEUED")
    _confirm(browser, "Cancel")
    _until(browser, "the mission, CANCELLED", lambda _: _text(browser, "h1 .badge") == "CANCELLED")
    _until(browser, "a timeline to CANCELLED", lambda _: _timeline(browser) == ["CREATED", "CANCELLED"])
    got = await stack.stub.GetMission(pb.GetMissionRequest(mission_id=waiting.id))
    assert got.mission.state == mission_pb2.MISSION_STATE_CANCELLED


async def test_a_hostile_payload_label_and_error_are_shown_as_text(stack: Stack, browser: Pages) -> None:
    url = await _dashboard(stack)
    await stack.start_consuming_worker()
    request = pb.SubmitMissionRequest(
        type="echo", payload=payload(html=HOSTILE, img="<img src=x onerror=alert(2)>"), labels={"team": HOSTILE}
    )
    hostile = (await stack.stub.SubmitMission(request)).mission
    browser.open(f"{url}#/missions/{hostile.id}")
    _until(browser, "the result", lambda _: HOSTILE in _text(browser, "#result"))
    assert HOSTILE in _text(browser, "#payload") and HOSTILE in _text(browser, "dl.fields")
    assert "<img src=x onerror=alert(2)>" in _text(browser, "#payload")
    assert browser.driver.find_elements(By.CSS_SELECTOR, "main script, main img") == []
    browser.open(f"{url}#/missions")
    _until(browser, "the label, as text", lambda _: f"team={HOSTILE}" in _text(browser, "#missions"))
    with pytest.raises(NoAlertPresentException):
        browser.driver.switch_to.alert.text  # noqa: B018 (reading it is the check)


async def test_sign_in_act_with_the_cookie_and_sign_out(stack: Stack, browser: Pages, tmp_path: pathlib.Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[tokens.{hash_token("ada-token")}]\nprincipal = "ada"\nroles = ["admin"]\n')
    url = await _dashboard(stack, "--tokens-file", str(tokens))
    waiting = (
        await stack.stub.SubmitMission(
            pb.SubmitMissionRequest(type="nobody-handles-this"), metadata=(("authorization", "Bearer ada-token"),)
        )
    ).mission
    browser.open(f"{url}#/missions/{waiting.id}")
    token = _until(browser, "the sign-in form", lambda driver: driver.find_element(By.ID, "token"))
    token.send_keys("wrong-token\n")
    _until(browser, "the refusal", lambda _: "unknown bearer token" in _text(browser, "form .error"))
    token.clear()
    token.send_keys("ada-token\n")

    # Back where it was going, signed in: the cookie carries the session, the page the CSRF token.
    _until(browser, "the mission, signed in", lambda _: _text(browser, "h1 .badge") == "QUEUED")
    assert _text(browser, "#who .principal") == "ada"
    [cookie] = browser.driver.get_cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("missions_session", True, "Strict")
    _confirm(browser, "Cancel")
    _until(browser, "the mission, CANCELLED", lambda _: _text(browser, "h1 .badge") == "CANCELLED")

    browser.driver.find_element(By.ID, "sign-out").click()
    _until(browser, "the sign-in form again", lambda driver: driver.find_element(By.ID, "token"))
    assert browser.driver.get_cookies() == []
    browser.open(url + "#/missions")
    _until(browser, "signed out: asked to sign in", lambda driver: driver.find_element(By.ID, "token"))
