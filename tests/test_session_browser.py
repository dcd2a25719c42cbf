"""The labelling page in a real browser: Debian's chromium driven through chromedriver by
Selenium (``make test-browser``; .ci/run installs both packages). Label a batch with clicks,
the type-ahead and keyboard shortcuts, see the next batch arrive, reload and find the labels
kept. A screenshot of the page is kept (its path is printed)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from ccma.session.store import Store
from test_session import CLASSES, init_tiny_session, start_server

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CCMA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CCMA_CHROMEDRIVER", "/usr/bin/chromedriver")
SHOTS = Path(os.environ.get("CCMA_SCREENSHOT_DIR", "/tmp/ccma-session-screenshots"))


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for exe in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(exe):
            pytest.fail(f"{exe} not found: install Debian's chromium and chromium-driver "
                        "(apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(tmp_path):
    sdir, truth = init_tiny_session(tmp_path)
    proc, url = start_server(sdir)
    try:
        yield sdir, truth, url
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def wait_for(driver, what, timeout: float = 60):
    """Poll ``what(driver)`` until it is truthy; fails with a screenshot's path after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what(driver)
        if value:
            return value
        time.sleep(0.1)
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / "timeout.png"))
    raise AssertionError(f"timed out; page screenshot at {SHOTS / 'timeout.png'}")


def cards(driver, done: bool | None = None):
    """The grid's cards (elements); ``done`` given: only the answered or open ones."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, "#grid .card")
    if done is None:
        return found
    return [c for c in found if ("done" in c.get_attribute("class")) == done]


def snapshot(driver) -> list[dict]:
    """The grid as one read (row, answered, answer text): the page may rebuild it any time."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#grid .card')].map(c => ({row: c.dataset.row, "
        "done: c.classList.contains('done'), answer: c.querySelector('.answer').textContent}))")


def press(driver, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def test_label_in_the_browser(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    sdir, truth, url = server
    browser.get(url)
    wait_for(browser, lambda d: len(cards(d)) == 10)        # 8 picks + 2 calibration images
    assert browser.find_element(By.ID, "round").text == "round 1"
    first = cards(browser)
    # clicks: the type-ahead on the first image, the best-guess button on the next four
    typed = first[0].find_element(By.CSS_SELECTOR, ".other input")
    typed.click()
    typed.send_keys("Seven", Keys.ENTER)
    wait_for(browser, lambda d: "✓ seven" in first[0].text)
    for card in first[1:5]:
        card.find_element(By.CSS_SELECTOR, ".choices button").click()
        wait_for(browser, lambda d, c=card: "done" in c.get_attribute("class"))
    # keyboard: focus moved to the sixth card; previous / next, then 1, s, n, 1, 2
    assert "current" in first[5].get_attribute("class")
    press(browser, Keys.ARROW_LEFT)
    assert "current" in first[4].get_attribute("class")
    press(browser, "j")
    assert "current" in first[5].get_attribute("class")
    for key in ("1", "s", "n", "1", "2"):
        press(browser, key)
        time.sleep(0.2)
    wait_for(browser, lambda d: len(Store(sdir).answers()) == 10)
    answers = Store(sdir).answers()
    assert len(answers) == 10
    assert answers[int(first[0].get_attribute("data-row"))].label == CLASSES.index("seven")
    assert {a.kind for a in answers.values()} == {"label", "skip", "none"}
    # the next batch arrives by itself
    wait_for(browser, lambda d: d.find_element(By.ID, "round").text == "round 2"
             and sum(not c["done"] for c in snapshot(d)) == 10)
    for key in ("1", "1"):
        press(browser, key)
        time.sleep(0.2)
    wait_for(browser, lambda d: sum(c["done"] for c in snapshot(d)) == 2)
    labelled = {c["row"]: c["answer"] for c in snapshot(browser) if c["done"]}
    # reload: the same tab keeps its images and shows the labels it gave
    browser.refresh()
    wait_for(browser, lambda d: len(snapshot(d)) == 10 and sum(c["done"] for c in snapshot(d)) == 2)
    after = {c["row"]: c["answer"] for c in snapshot(browser) if c["done"]}
    assert after == labelled and all(t.startswith("✓ ") for t in after.values())
    wait_for(browser, lambda d: d.find_element(By.ID, "session-text").text == "12 / 80 images")
    assert browser.find_element(By.CSS_SELECTOR, "#chart polyline")          # the per-round chart
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "session-page.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
