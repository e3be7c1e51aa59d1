"""A reader's journey in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by Selenium) against the real `digestbot serve`, with `digestbot run --once` mailing the suite's
loopback SMTP server. No script runs on the pages (the CSP forbids it): every step is a plain link or form.

DIGESTBOT_SCREENSHOTS=docs writes the phone-sized (390 px) screenshots the README shows into that folder."""
from __future__ import annotations

import base64
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_web import ALICE, PUBLIC, new_papers, one_click_url, recipients, run_once, start_serve, stop, suppressions
from test_web_manage import manage_world
from test_web_subscribe import CAROL, HOSTILE, LAB_ID, mails_to, subscribe_world, wait_for_mails

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

from selenium.common.exceptions import WebDriverException  # noqa: E402  (only once we know selenium is there)
from selenium.webdriver.common.by import By  # noqa: E402
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
    # While the old document is being replaced, chromedriver may answer "Node with given id does not belong
    # to the document" (a WebDriverException) instead of a stale element: that too means "not yet", ask again.
    WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(expected_conditions.staleness_of(page))


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


def test_a_reader_subscribes_confirms_rates_and_leaves_in_chromium(tmp_path, http_server, smtp_server, browser):
    """The whole of a reader's life with the bot, in the browser: the subscribe page → subscribe → the
    confirmation mail arrives at aiosmtpd → its link → confirm → the next digest arrives → "Not for me" on a
    paper → unsubscribe → no further digest. Here `public_url` is the serve process itself (no proxy), so
    every link of every mail opens as it is."""
    world, base = subscribe_world(tmp_path, http_server, smtp_server)
    text = world.config.read_text(encoding="utf-8").replace(PUBLIC, base)
    friendly = text.replace(HOSTILE, "What the lab reads: every new paper, as it comes.")
    world.config.write_text(friendly, encoding="utf-8")
    serve = start_serve(world, base)
    try:
        assert run_once(world).returncode == 0  # papers in the database: the page shows a sample of them
        digests = len(smtp_server.received)
        browser.get(f"{base}/")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Subscribe to a paper digest"
        assert "What the lab reads" in browser.find_element(By.ID, f"sub-{LAB_ID}").text
        assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
        screenshot(browser, "subscribe-page.png")
        browser.find_element(By.ID, "email").send_keys(CAROL)
        browser.find_element(By.CSS_SELECTOR, f'input[name="subscription"][value="{LAB_ID}"]').click()
        follow(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
        assert browser.find_element(By.TAG_NAME, "h1").text == "Check your inbox"
        assert CAROL not in world.config.read_text(encoding="utf-8")  # nothing before the reader confirms

        wait_for_mails(smtp_server, digests + 1)  # the first run's digests, then the confirmation mail
        [mail] = mails_to(smtp_server, CAROL)
        [link] = re.findall(rf"{re.escape(base)}/confirm\?token=\S+", mail.get_body(("plain",)).get_content())
        browser.get(link)
        assert browser.find_element(By.TAG_NAME, "h1").text == "Confirm your subscription"
        assert CAROL not in world.config.read_text(encoding="utf-8")  # opening the link changes nothing
        follow(browser, browser.find_element(By.CSS_SELECTOR, "form button"))
        assert browser.find_element(By.TAG_NAME, "h1").text == "You are subscribed"
        screenshot(browser, "subscribe-done.png")
        assert CAROL in world.config.read_text(encoding="utf-8")

        new_papers(http_server, 9)
        sent = len(smtp_server.received)
        assert run_once(world).returncode == 0 and CAROL in recipients(smtp_server, sent)  # the next digest
        [digest] = mails_to(smtp_server, CAROL)[1:]
        browser.get("data:text/html;base64," + base64.b64encode(
            digest.get_body(("html",)).get_content().encode()).decode())  # the mail as a mail client shows it
        down = browser.find_elements(By.CSS_SELECTOR, 'a[data-vote="down"]')[0]
        paper = down.get_attribute("data-paper")
        follow(browser, down)
        follow(browser, browser.find_element(By.CSS_SELECTOR, "form button"))
        assert browser.find_element(By.TAG_NAME, "h1").text == "Noted"
        screenshot(browser, "vote-noted.png")
        with sqlite3.connect(world.db) as db:
            assert db.execute("SELECT target, paper, vote FROM vote").fetchall() == [(CAROL, paper, "down")]

        [unsubscribe] = re.findall(r"<([^>]+)>", "".join(str(digest["List-Unsubscribe"]).split()))
        browser.get(unsubscribe)
        follow(browser, browser.find_element(By.CSS_SELECTOR, "form button"))
        assert browser.find_element(By.TAG_NAME, "h1").text == "You have left"
        new_papers(http_server, 12)
        sent = len(smtp_server.received)
        assert run_once(world).returncode == 0
        assert recipients(smtp_server, sent) and CAROL not in recipients(smtp_server, sent)  # the admin still gets it
    finally:
        err = stop(serve)
    assert "Traceback" not in err and "token=" not in err, err
