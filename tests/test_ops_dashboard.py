"""The dashboard in a real headless browser (Debian chromium + chromedriver through selenium).

Loopback only: the page loads nothing from anywhere but the API, and the browser runs with background
networking off. A screenshot is saved to tests/artifacts/dashboard.png for a human to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blockdns.config import QueryLogSettings, from_dict
from blockdns.ops.querylog import QueryLog

from opshelpers import (
    BLOCKED_NAME,
    TEST_LISTS,
    TOKEN,
    ApiThread,
    FakeControl,
    chromium_paths,
    headless_chrome,
    row,
)

ARTIFACTS = Path(__file__).parent / "artifacts"

pytestmark = pytest.mark.skipif(
    chromium_paths() is None, reason="chromium and chromedriver are not installed (tests/system-deps.sh)"
)


@pytest.fixture
def control() -> FakeControl:
    control = FakeControl()
    control.stats.queries[(1, "blocked", "default")] += 4
    control.stats.queries[(1, "resolved", "default")] += 5
    control.stats.queries[(28, "cached", "default")] += 1
    control.stats.blocks[("deepseek", "chat", "all")] += 4
    control.stats.cache.hits, control.stats.cache.misses = 1, 6
    for seconds in (0.004, 0.012, 0.020):
        control.stats.observe_upstream_latency(seconds)
    return control


@pytest.fixture
def api(tmp_path: Path, control: FakeControl) -> Iterator[ApiThread]:
    querylog = QueryLog(QueryLogSettings(), tmp_path / "q.sqlite", control.stats)
    querylog.client_names = {"192.168.1.10": "laptop-anna.home.arpa"}.get
    querylog.start()
    for index in range(4):
        querylog.offer(row(BLOCKED_NAME, control=control, client=f"192.168.1.{10 + index}"))
    for index in range(6):
        querylog.offer(row(f"www{index}.example.org", control=control))
    assert querylog.flush()
    thread = ApiThread(control, querylog).start()
    yield thread
    thread.stop()
    querylog.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = headless_chrome(tmp_path / "chrome-profile")
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def wait_for(driver: Any, condition: Any, timeout: float = 10) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def test_dashboard_shows_numbers_and_pauses(api: ApiThread, control: FakeControl, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    control.stats.ratelimited_slipped, control.stats.ratelimited_dropped = 3, 5
    browser.get(api.url + "/")
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true")

    assert text(browser, "problems") == "8"
    assert "8 over the rate limit" in text(browser, "problems-detail")
    assert text(browser, "total-queries") == "10"
    assert text(browser, "blocked-queries") == "4"
    assert text(browser, "block-rate").startswith("40.0 %")
    assert text(browser, "cache-hit-rate") == "14.3 %"
    assert text(browser, "upstream-latency") == "12.0 ms"
    assert text(browser, "paused-state") == "Blocking on"
    vendors = browser.find_element(By.ID, "top-vendors").text
    assert "deepseek" in vendors and "4" in vendors
    recent = browser.find_elements(By.CSS_SELECTOR, "#recent-blocked tbody tr")
    assert len(recent) == 4 and BLOCKED_NAME in recent[0].text and "192.168.1." in recent[0].text
    assert "www0.example.org" not in browser.find_element(By.ID, "recent-blocked").text
    assert "laptop-anna.home.arpa (192.168.1.10)" in browser.find_element(By.ID, "recent-blocked").text
    clients = browser.find_elements(By.CSS_SELECTOR, "#top-clients tbody tr")
    assert len(clients) == 4 and "laptop-anna.home.arpa (192.168.1.10)" in text(browser, "top-clients")
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart svg rect.bar-blocked")
    assert len(bars) >= 1
    assert "10 queries, 4 blocked" in text(browser, "log-totals")

    # Pause: the page asks for the token once, then pauses.
    browser.find_element(By.ID, "pause-btn").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "token-panel").is_displayed())
    browser.find_element(By.ID, "token-input").send_keys(TOKEN)
    browser.find_element(By.ID, "token-save").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "paused-state").get_attribute("data-state") == "paused")
    assert control.paused_until is not None
    assert text(browser, "paused-state").startswith("Paused until")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))

    # Resume uses the kept token without asking again.
    browser.find_element(By.ID, "resume-btn").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "paused-state").get_attribute("data-state") == "on")
    assert control.paused_until is None
    assert not browser.find_element(By.ID, "token-panel").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('blockdns.api-token')") == TOKEN

    # A page that loads nothing else and breaks no rule leaves no errors in the console.
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_a_wrong_token_is_asked_again(api: ApiThread, control: FakeControl, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(api.url + "/")
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true")
    browser.execute_script("sessionStorage.setItem('blockdns.api-token', 'wrong')")
    browser.find_element(By.ID, "pause-btn").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "token-panel").is_displayed())
    assert "refused" in text(browser, "message")
    assert control.paused_until is None


def test_the_page_asks_for_the_token_when_reads_need_it(
    api: ApiThread, control: FakeControl, browser: Any
) -> None:
    """An API that is not bound to loopback (or has read_token = true) answers reads only with the token:
    the page asks for it, then shows the numbers and keeps sending it."""
    from selenium.webdriver.common.by import By

    control.settings = from_dict({"api": {"token": TOKEN, "read_token": True}, "lists": TEST_LISTS})
    browser.get(api.url + "/")
    wait_for(browser, lambda d: d.find_element(By.ID, "token-panel").is_displayed())
    assert "only with the API token" in text(browser, "message")
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") != "true"
    browser.find_element(By.ID, "token-input").send_keys(TOKEN)
    browser.find_element(By.ID, "token-save").click()
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true")
    assert text(browser, "total-queries") == "10"
    recent = browser.find_elements(By.CSS_SELECTOR, "#recent-blocked tbody tr")
    assert len(recent) == 4 and BLOCKED_NAME in recent[0].text
    # The next poll sends the kept token as well: the numbers follow the server.
    control.stats.queries[(1, "blocked", "default")] += 1
    wait_for(browser, lambda d: d.find_element(By.ID, "total-queries").text == "11", timeout=15)
    assert not browser.find_element(By.ID, "token-panel").is_displayed()
