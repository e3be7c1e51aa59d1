"""A reader's journey in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by Selenium) against the real `digestbot serve`, with `digestbot run --once` mailing the suite's
loopback SMTP server. No script runs on the pages (the CSP forbids it): every step is a plain link or form.

DIGESTBOT_SCREENSHOTS=docs writes the phone-sized (390 px) screenshots the README shows into that folder."""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_web import ALICE, new_papers, one_click_url, recipients, run_once, start_serve, stop, suppressions
from test_web_manage import manage_world

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
SCREENSHOTS = os.environ.get("DIGESTBOT_SCREENSHOTS")
PHONE = (390, 844)
# Without the background-networking flags Chromium keeps calling home (updates, sync, field trials).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--force-device-scale-factor=1",
         "--hide-scrollbars", f"--window-size={PHONE[0]},{PHONE[1]}")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra has it)")
if not (CHROMIUM and DRIVER):
    pytest.skip("chromium and chromium-driver are not installed (Debian: apt-get install chromium "
                "chromium-driver; .ci/run does it as root)", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402  (only once we know selenium is there)
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(30)
    # A window is at least 500 px wide: the phone's 390 px viewport is emulated (as DevTools' device mode does).
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 1, "mobile": True})
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    if not SCREENSHOTS:
        return
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    png = driver.get_screenshot_as_png()
    assert png.startswith(b"\x89PNG") and len(png) < 100_000, len(png)
    (folder / name).write_bytes(png)


def follow(driver: webdriver.Chrome, element: WebElement) -> None:
    """Click a link or a form's button, and wait for the page it leads to (a click does not wait)."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(page))


def submit(driver: webdriver.Chrome, card: str, action: str, **fields: str) -> None:
    form_card = driver.find_element(By.ID, card)
    for name, value in fields.items():
        box = form_card.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)
    follow(driver, form_card.find_element(By.CSS_SELECTOR, f'button[value="{action}"]'))


def test_a_reader_manages_and_leaves_their_digest_in_chromium(tmp_path, http_server, smtp_server, browser):
    started = time.monotonic()
    world, base = manage_world(tmp_path, http_server, smtp_server)
    serve = start_serve(world, base)
    try:
        # The digest arrives; its List-Unsubscribe link opens the unsubscribe page, which links to manage.
        assert run_once(world).returncode == 0 and recipients(smtp_server, 0) == [ALICE]
        browser.get(one_click_url(smtp_server.messages[0], base))
        assert browser.find_element(By.TAG_NAME, "h1").text == "Leave everything?"
        follow(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "change how often"))
        assert browser.find_element(By.TAG_NAME, "h1").text == "Your digests"
        card = browser.find_element(By.ID, "sub-everything")
        assert "Papers at most\n5" in card.text and "active" in card.text
        assert "This digest is shared" in browser.find_element(By.ID, "sub-lab-list-co").text
        assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]  # no sideways scroll
        screenshot(browser, "manage-page.png")
        before = world.config.read_text(encoding="utf-8")

        # A refused size: the validator's message under the field, the file as it was.
        submit(browser, "sub-everything", "save", max_papers="900")
        error = browser.find_element(By.ID, "max_papers-error-everything")
        assert error.text == "Input should be less than or equal to 500" and error.is_displayed()
        assert browser.find_element(By.ID, "max_papers-everything").get_attribute("value") == "900"
        assert world.config.read_text(encoding="utf-8") == before
        browser.execute_script("document.getElementById('max_papers-everything').scrollIntoView()")
        screenshot(browser, "manage-error.png")

        # A valid one: saved, the file's comments kept.
        submit(browser, "sub-everything", "save", max_papers="7")
        assert "Saved." in browser.find_element(By.ID, "sub-everything").text
        assert world.config.read_text(encoding="utf-8") == before.replace("max_papers = 5   # a short one",
                                                                           "max_papers = 7   # a short one")

        # Paused: the next run sends nothing. Resumed.
        submit(browser, "sub-everything", "pause")
        assert "paused: no digests until resumed" in browser.find_element(By.ID, "sub-everything").text
        new_papers(http_server, 9)
        sent = len(smtp_server.received)
        run_once(world)
        assert recipients(smtp_server, sent) == []
        submit(browser, "sub-everything", "resume")
        assert "active" in browser.find_element(By.ID, "sub-everything").text
        assert "paused" not in world.config.read_text(encoding="utf-8")

        # Unsubscribe with the button: the done page, the suppression, the address out of the config.
        submit(browser, "sub-everything", "leave")
        assert browser.find_element(By.TAG_NAME, "h1").text == "You have left"
        assert browser.find_element(By.CSS_SELECTOR, "form button").text == "Undo: subscribe again"
        screenshot(browser, "manage-done.png")
        assert ("everything", ALICE) in suppressions(world)
        run_once(world)
        assert recipients(smtp_server, sent) == []
    finally:
        err = stop(serve)
    assert "Traceback" not in err and "token=" not in err, err
    print(f"the reader's journey took {time.monotonic() - started:.1f} s")
