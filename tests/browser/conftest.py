"""Fixtures of the browser tests: headless Chromium driven by Selenium, against the real service
and a worker; a screenshot and the page's HTML under the test's tmp_path when a test fails."""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest

from tests.support import Stack

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")

_MISSING = (
    "selenium is not installed (pip install -e '.[dev]')"
    if importlib.util.find_spec("selenium") is None
    else None
    if CHROMIUM and DRIVER
    else "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver; .ci/run does)"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(pathlib.Path(__file__).parent):
            item.add_marker(pytest.mark.browser)
            if _MISSING:
                item.add_marker(pytest.mark.skip(reason=_MISSING))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so the browser fixture knows whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
async def stack(namespace: str, amqp_url: str, tmp_path: pathlib.Path) -> AsyncIterator[Stack]:
    async with Stack(namespace, amqp_url, tmp_path) as stack:
        yield stack


class Pages:
    """The browser, and a screenshot of each page it showed (taken as it leaves it), which are
    written to the test's tmp_path if it fails."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.shots: list[tuple[str, bytes]] = []

    def open(self, url: str) -> None:
        self.keep()
        self.driver.get(url)

    def keep(self) -> None:
        if self.driver.current_url.startswith("http"):
            self.shots.append((self.driver.current_url, self.driver.get_screenshot_as_png()))

    def save(self, directory: pathlib.Path) -> None:
        self.keep()
        for number, (url, png) in enumerate(self.shots, 1):
            (directory / f"page-{number:02}.png").write_bytes(png)
            print(f"screenshot of {url}: {directory / f'page-{number:02}.png'}")
        (directory / "last-page.html").write_text(self.driver.page_source)


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Pages]:
    """A headless Chromium at desktop size. On failure: a screenshot of each page it showed, and
    the last one's HTML, in tmp_path. Afterwards: no script error and no Content-Security-Policy
    violation in its console."""
    from selenium import webdriver  # here: without selenium, the tests are skipped, not broken
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM or ""
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER or ""))
    pages = Pages(driver)
    try:
        yield pages
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            pages.save(tmp_path)
        else:
            problems = [
                entry["message"]
                for entry in driver.get_log("browser")  # type: ignore[no-untyped-call]
                if entry["source"] in ("javascript", "security") and entry["level"] == "SEVERE"
            ]
            assert problems == [], problems
    finally:
        driver.quit()
