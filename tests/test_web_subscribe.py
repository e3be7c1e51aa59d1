"""The subscribe page (`digestbot serve`, web/subscribe.py) for real: the serve process on loopback, its
confirmation mails at a loopback aiosmtpd, `digestbot run --once` in its own process, one config file.

The lab offers "Lab <news> & co" publicly (its admin is its one recipient) and lets readers write their own
query (`allow_custom`); "everything" (Alice and Bob) is not public. A browser is plain HTTP: the page's
cookie sent back by hand (it is Secure, for the https public URL of the proxy not run here)."""
from __future__ import annotations

import re
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
from delivery_world import World
from test_web import (
    ALICE,
    ONE_CLICK,
    PUBLIC,
    SECRET_ENV,
    new_papers,
    recipients,
    run_once,
    start_serve,
    stop,
    suppressions,
    web_world,
)

from digestbot.web import tokens

SECRET = b"a-secret-only-this-test-knows"
ADMIN, CAROL = "admin@example.org", "carol@example.org"
LAB, LAB_ID = "Lab <news> & co", "lab-news-co"
HOSTILE = "Papers for the lab.\\n<script>alert(1)</script> & more"
PUBLIC_SUB = f"""
# the lab's public digest
[[subscriptions]]
name = "{LAB}"
description = "{HOSTILE}"
email = ["{ADMIN}"]   # the admin
public = true
schedule = "instant"
"""


def subscribe_world(tmp_path, http_server, smtp_server) -> tuple[World, str]:
    world, base = web_world(tmp_path, http_server, smtp_server)
    text = world.config.read_text(encoding="utf-8")
    text = text.replace(f'secret_env = "{SECRET_ENV}"\n', f'secret_env = "{SECRET_ENV}"\nallow_custom = true\n', 1)
    world.config.write_text(text + PUBLIC_SUB, encoding="utf-8")
    return world, base


@pytest.fixture
def served(tmp_path, http_server, smtp_server):
    world, base = subscribe_world(tmp_path, http_server, smtp_server)
    process = start_serve(world, base)
    yield world, base
    err = stop(process)
    assert "token=" not in err and "Traceback" not in err and CAROL not in err, err


class Browser:
    """GET / once (its cookie and the form's value), then posts the form as a browser without script does."""

    def __init__(self, base: str):
        self.base = base
        page = httpx.get(f"{base}/")
        assert page.status_code == 200, page.text
        self.page = page
        cookie = page.headers["set-cookie"]
        self.cookie = cookie.split(";")[0]
        assert self.cookie.startswith("__Host-digestbot_form=")
        self.form = re.search(r'name="form" value="([0-9a-f]+)"', page.text).group(1)

    def subscribe(self, email: str, subscription: str = "", query: str = "", *, form: str | None = None,
                  cookie: str | None = None, headers: dict[str, str] | None = None, **extra: str) -> httpx.Response:
        data = {"form": self.form if form is None else form, "email": email, "subscription": subscription,
                "query": query, "website": "", **extra}
        sent = {"cookie": self.cookie if cookie is None else cookie, **(headers or {})}
        return httpx.post(f"{self.base}/subscribe", data=data, headers={k: v for k, v in sent.items() if v})


def wait_for_mails(smtp_server, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(smtp_server.received) < count:
        assert time.monotonic() < deadline, f"{len(smtp_server.received)} mails, not {count}"
        time.sleep(0.05)


def confirm_url(message, base: str) -> str:
    [url] = set(re.findall(r"https://\S+/confirm\?token=[\w.%-]+", message.get_body(("plain",)).get_content()))
    assert url.startswith(f"{PUBLIC}/confirm?token=")
    return base + url.removeprefix(PUBLIC)


def confirmations(world: World) -> list[tuple[str, str, str]]:
    with sqlite3.connect(world.db) as db:
        return db.execute("SELECT subscription, target, status FROM confirmation ORDER BY id").fetchall()


def mails_to(smtp_server, address: str) -> list:
    return [r.message for r in smtp_server.received if r.rcpt_tos == [address]]


def test_the_page_lists_the_public_subscriptions_with_a_sample_escaped(served, smtp_server):
    world, base = served
    run_once(world)  # papers in the store: the sample comes from them
    page = Browser(base).page
    assert "<script" not in page.text and "alert(1)" in page.text  # the description, escaped
    assert "Lab &lt;news&gt; &amp; co" in page.text and "<news>" not in page.text
    assert 'id="sub-lab-news-co"' in page.text and 'id="sub-everything"' not in page.text
    card = page.text.split('id="sub-lab-news-co"')[1].split("</div>")[0]
    with sqlite3.connect(world.db) as db:
        titles = [t for (t,) in db.execute("SELECT title FROM paper")]
    shown = re.findall(r"<li>(?:<a [^>]*>)?([^<]+)", card)
    assert len(shown) == 3 and all(title in titles for title in shown)
    assert 'name="subscription" value="lab-news-co"' in page.text and 'name="query"' in page.text
    trap = re.search(r'<div class="trap" aria-hidden="true">.*?</div>', page.text, re.S).group(0)
    assert 'name="website"' in trap and 'tabindex="-1"' in trap and 'autocomplete="off"' in trap
    cookie = page.headers["set-cookie"].lower()
    assert all(part in cookie for part in ("httponly", "samesite=strict", "secure", "path=/"))


def test_subscribe_confirm_and_manage(served, smtp_server):
    world, base = served
    browser = Browser(base)
    answer = browser.subscribe(CAROL, LAB_ID)
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    wait_for_mails(smtp_server, 1)
    [mail] = mails_to(smtp_server, CAROL)
    assert mail["Subject"] == f"Confirm your subscription to {LAB}"
    url = confirm_url(mail, base)
    before = world.config.read_text(encoding="utf-8")

    page = httpx.get(url)  # a link scanner: nothing changes
    assert page.status_code == 200 and '<form method="post"' in page.text and "Confirm" in page.text
    assert world.config.read_text(encoding="utf-8") == before

    done = httpx.post(url)
    assert done.status_code == 200 and "You are subscribed" in done.text
    after = world.config.read_text(encoding="utf-8")
    assert re.search(rf'email = \["{ADMIN}", "{CAROL}"\] +# the admin\n', after)  # its comment stays
    assert "# the lab's public digest\n[[subscriptions]]" in after and world.cli("check").returncode == 0
    assert confirmations(world) == [(LAB_ID, CAROL, "confirmed")]
    [manage] = re.findall(r'<a href="(/manage\?token=[^"]+)"', done.text)
    managed = httpx.get(base + manage.replace("&amp;", "&"))
    assert managed.status_code == 200 and "Lab &lt;news&gt; &amp; co" in managed.text and CAROL in managed.text

    again = httpx.post(url)  # idempotent
    assert again.status_code == 200 and "You are subscribed" in again.text
    assert world.config.read_text(encoding="utf-8") == after


def test_the_answer_says_nothing_of_the_address_and_each_address_gets_three_mails_a_day(served, smtp_server):
    world, base = served
    browser = Browser(base)
    answers = [browser.subscribe("dave@example.org", "", query) for query in ("llm", "vision", "speech")]
    new = browser.subscribe("erin@example.org", LAB_ID)
    subscribed = browser.subscribe(ADMIN, LAB_ID)  # on the list already
    limited = browser.subscribe("dave@example.org", LAB_ID)  # a fourth request today
    repeated = browser.subscribe("erin@example.org", LAB_ID)  # the same again, a moment later
    for answer in (*answers, subscribed, limited, repeated):
        assert (answer.status_code, answer.content) == (new.status_code, new.content)
    wait_for_mails(smtp_server, 5)
    time.sleep(1)
    assert len(mails_to(smtp_server, "dave@example.org")) == 3 and len(mails_to(smtp_server, "erin@example.org")) == 1
    assert len(smtp_server.received) == 5


def test_three_tabs_at_once_one_mail_and_the_address_once(served, smtp_server):
    world, base = served
    browser = Browser(base)
    start = threading.Barrier(3)
    answers: list[int] = []

    def post() -> None:
        start.wait()
        answers.append(browser.subscribe(CAROL, LAB_ID).status_code)

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200, 200, 200]
    wait_for_mails(smtp_server, 1)
    time.sleep(1)
    [mail] = smtp_server.messages
    url = confirm_url(mail, base)
    both = [threading.Thread(target=httpx.post, args=(url,)) for _ in range(2)]
    for t in both:
        t.start()
    for t in both:
        t.join()
    assert world.config.read_text(encoding="utf-8").count(CAROL) == 1


def test_honeypot_and_forged_forms_send_nothing(served, smtp_server):
    world, base = served
    browser = Browser(base)
    trapped = browser.subscribe(CAROL, LAB_ID, website="http://spam.example")
    assert trapped.status_code == 200 and "Check your inbox" in trapped.text
    forged = [browser.subscribe(CAROL, LAB_ID, form=""), browser.subscribe(CAROL, LAB_ID, form="0" * 64),
              browser.subscribe(CAROL, LAB_ID, cookie="__Host-digestbot_form=" + "A" * 43),
              httpx.post(f"{base}/subscribe", data={"form": browser.form, "email": CAROL, "subscription": LAB_ID}),
              browser.subscribe(CAROL, LAB_ID, headers={"sec-fetch-site": "cross-site"})]
    assert [f.status_code for f in forged] == [403] * 5
    assert confirmations(world) == []
    sentinel = browser.subscribe("sentinel@example.org", LAB_ID)
    assert (sentinel.status_code, sentinel.content) == (trapped.status_code, trapped.content)
    wait_for_mails(smtp_server, 1)
    time.sleep(0.5)
    assert smtp_server.rcpts == [["sentinel@example.org"]]


def test_bad_fields_are_shown_next_to_them(served, smtp_server):
    world, base = served
    browser = Browser(base)
    bad_query = browser.subscribe(CAROL, "", "llm AND (vision")
    assert bad_query.status_code == 400
    shown = re.search(r'<pre class="error" id="query-error"[^>]*>([^<]*)</pre>', bad_query.text).group(1)
    assert "^" in shown and "llm AND (vision" in shown
    assert 'value="llm AND (vision"' in bad_query.text and f'value="{CAROL}"' in bad_query.text
    bad_address = browser.subscribe("carol at example", LAB_ID)
    assert bad_address.status_code == 400 and 'id="email-error"' in bad_address.text
    assert browser.subscribe(CAROL, "everything").status_code == 400  # not public
    assert browser.subscribe(CAROL, "no-such-digest").status_code == 400
    hostile = browser.subscribe(CAROL, "", '"<script>x')
    assert hostile.status_code == 400 and "<script>" not in hostile.text
    big = httpx.post(f"{base}/subscribe", content=b"email=" + b"x" * 17000, headers={"cookie": browser.cookie})
    assert big.status_code == 413
    # The admin turns queries of one's own off: the running page follows the file.
    text = world.config.read_text(encoding="utf-8")
    world.config.write_text(text.replace("allow_custom = true", "allow_custom = false"), encoding="utf-8")
    assert browser.subscribe(CAROL, "", "llm").status_code == 400
    assert 'name="query"' not in httpx.get(f"{base}/").text
    assert confirmations(world) == [] and smtp_server.received == []


def test_an_expired_or_foreign_confirm_link_changes_nothing(served, smtp_server):
    world, base = served
    Browser(base).subscribe(CAROL, LAB_ID)
    wait_for_mails(smtp_server, 1)
    token = confirm_url(smtp_server.messages[0], base).partition("token=")[2]
    found = tokens.verify(SECRET, token.replace("%3D", "="), "confirm")
    before = world.config.read_text(encoding="utf-8")
    old = tokens.sign(SECRET, "confirm", LAB_ID, CAROL, confirmation=found.confirmation,
                      now=datetime.now(UTC) - timedelta(hours=49))
    other = tokens.sign(SECRET, "confirm", LAB_ID, "mallory@example.org", confirmation=found.confirmation)
    for bad in (old, other):
        refused = httpx.post(f"{base}/confirm?" + urlencode({"token": bad}))
        assert refused.status_code == 400 and "Nothing was changed" in refused.text
    assert world.config.read_text(encoding="utf-8") == before
    assert confirmations(world) == [(LAB_ID, CAROL, "sent")]


def test_a_reader_who_left_comes_back_only_by_confirming(served, http_server, smtp_server):
    """The admin is the public list's last recipient: leaving records the suppression and leaves the
    config as it is (valid); `run` sends them nothing; subscribing again and confirming lifts it."""
    world, base = served
    leave = tokens.sign(SECRET, "unsubscribe", LAB_ID, ADMIN)
    assert httpx.post(f"{base}/unsubscribe?" + urlencode({"token": leave}), **ONE_CLICK).status_code == 200
    assert (LAB_ID, ADMIN) in suppressions(world) and ADMIN in world.config.read_text(encoding="utf-8")
    assert world.cli("check").returncode == 0
    run_once(world)
    assert ADMIN not in recipients(smtp_server, 0)
    Browser(base).subscribe(ADMIN, LAB_ID)
    wait_for_mails(smtp_server, len(smtp_server.received) + 1)
    url = confirm_url(mails_to(smtp_server, ADMIN)[-1], base)
    assert (LAB_ID, ADMIN) in suppressions(world)  # asking is not enough
    assert httpx.post(url).status_code == 200
    assert (LAB_ID, ADMIN) not in suppressions(world)
    sent = len(smtp_server.received)
    new_papers(http_server, 9)
    run_once(world)
    assert ADMIN in recipients(smtp_server, sent)


def test_a_query_of_ones_own_is_a_subscription_that_goes_with_its_owner(served, smtp_server):
    world, base = served
    Browser(base).subscribe(CAROL, "", 'inference AND  "language model"')
    wait_for_mails(smtp_server, 1)
    [mail] = mails_to(smtp_server, CAROL)
    assert mail["Subject"].startswith("Confirm your subscription to of your own query")
    done = httpx.post(confirm_url(mail, base))
    assert done.status_code == 200
    text = world.config.read_text(encoding="utf-8")
    assert world.cli("check").returncode == 0
    [name] = re.findall(r'name = "(Own: [^"]+)"', text)
    assert f'owner = "{CAROL}"' in text and "query = 'inference AND \"language model\"'" in text
    own = re.findall(r'<a href="/manage\?token=([^"]+)"', done.text)[0]
    subscription_id = tokens.verify(SECRET, own.replace("%3D", "="), "manage").subscription_id
    assert subscription_id.startswith("own-inference-and-language-model-")
    leave = tokens.sign(SECRET, "unsubscribe", subscription_id, CAROL)
    assert httpx.post(f"{base}/unsubscribe?" + urlencode({"token": leave}), **ONE_CLICK).status_code == 200
    after = world.config.read_text(encoding="utf-8")
    assert name not in after and CAROL not in after and world.cli("check").returncode == 0
    assert ALICE in after and LAB in after


def test_a_mail_not_sent_goes_when_serve_starts_again(tmp_path, http_server, smtp_server):
    world, base = subscribe_world(tmp_path, http_server, smtp_server)
    process = start_serve(world, base)
    try:
        smtp_server.stop()  # the server is down: the request waits, recorded
        assert Browser(base).subscribe(CAROL, LAB_ID).status_code == 200
        deadline = time.monotonic() + 30
        while confirmations(world) != [(LAB_ID, CAROL, "pending")]:
            assert time.monotonic() < deadline, confirmations(world)
            time.sleep(0.1)
    finally:
        err = stop(process)
    assert "was not sent" in err and "token=" not in err
    smtp_server.start()
    process = start_serve(world, base)
    try:
        wait_for_mails(smtp_server, 1)
        assert smtp_server.rcpts == [[CAROL]]
        assert httpx.post(confirm_url(smtp_server.messages[0], base)).status_code == 200
        assert confirmations(world) == [(LAB_ID, CAROL, "confirmed")]
    finally:
        stop(process)
