"""'…and N more' leads somewhere, for real: with readers' links on, `digestbot run --once` sends a capped
digest (loopback SMTP) whose "and N more" link (text and HTML) is the reader's own signed link to the real
`digestbot serve`, which lists every paper of that digest, escaped; bad and foreign tokens get a 400."""
from __future__ import annotations

import html
import re
import sqlite3

import httpx
import pytest
from fixtures import daily_items
from test_web import ALICE, PUBLIC, one_click_url, run_once, start_serve, stop, web_world

from digestbot.web import tokens

HOSTILE = '<script>alert("x")</script> & <b>bold</b> decoding'
SHOWN = 2


@pytest.fixture
def capped(tmp_path, http_server, smtp_server):
    world, base = web_world(tmp_path, http_server, smtp_server)
    items = daily_items(6)
    items[3]["title"] = items[3]["paper"]["title"] = HOSTILE
    http_server.daily_papers({items[0]["publishedAt"][:10]: items})
    text = world.config.read_text(encoding="utf-8")
    assert "max_papers = 5\n" in text
    world.config.write_text(text.replace("max_papers = 5\n", f"max_papers = {SHOWN}\n", 1), encoding="utf-8")
    process = start_serve(world, base)
    yield world, base
    err = stop(process)
    assert "token=" not in err and "ERROR" not in err  # tokens are never logged


def listed_titles(page: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<p class="title">\d+\. (?:<a href="[^"]*">)?(.*?)(?:</a>)?</p>',
                                                 page)]


def test_and_n_more_opens_the_readers_list_of_every_paper_of_the_digest(capped, smtp_server):
    world, base = capped
    assert run_once(world).returncode == 0
    alice = next(r.message for r in smtp_server.received if r.rcpt_tos == [ALICE])
    shown, total = map(int, re.match(r"(\d+) of (\d+) new papers", str(alice["Subject"])).groups())
    assert shown == SHOWN and total == 6

    text = alice.get_body(("plain",)).get_content()
    [(more, text_url)] = re.findall(r"\.\.\.and (\d+) more: (\S+)", text)
    body = alice.get_body(("html",)).get_content()
    [(html_more, html_url)] = re.findall(r'…and (\d+) more: <a href="([^"]+)"[^>]*>see them all</a>', body)
    assert int(more) == int(html_more) == total - shown
    assert html.unescape(html_url) == text_url and text_url.startswith(f"{PUBLIC}/digest?token=")
    assert "huggingface.co/papers" not in text_url

    page = httpx.get(base + text_url.removeprefix(PUBLIC))
    assert page.status_code == 200
    titles = listed_titles(page.text)
    assert len(titles) == total and HOSTILE in titles
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text  # the hostile title, escaped
    assert ALICE in page.text and ("matched: " in page.text or "all new papers" in page.text)
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    # every paper of the list, shown in the mail or not, can be rated from here: a paper not in the mail
    mailed = set(re.findall(r'data-vote="down" data-paper="([^"]+)"', body))
    downs = {paper: html.unescape(url)
             for url, paper in re.findall(r'<a href="([^"]+)" data-vote="down" data-paper="([^"]+)"', page.text)}
    assert len(downs) == total and mailed < downs.keys()
    paper = sorted(downs.keys() - mailed)[0]
    assert httpx.post(base + downs[paper]).status_code == 200
    with sqlite3.connect(world.db) as db:
        assert db.execute("SELECT target, paper, vote FROM vote").fetchall() == [(ALICE, paper, "down")]

    bob = next(r.message for r in smtp_server.received if r.rcpt_tos != [ALICE])
    [bob_url] = re.findall(r"\.\.\.and \d+ more: (\S+)", bob.get_body(("plain",)).get_content())
    assert bob_url != text_url  # each reader's own link (bound to their address and their digest row)

    token = text_url.partition("token=")[2]
    for bad in (token[:-3], token[:12] + ("A" if token[12] != "A" else "B") + token[13:], token.split(".")[0], ""):
        refused = httpx.get(f"{base}/digest?token={bad}")
        assert refused.status_code == 400 and "This link does not work" in refused.text
    unsubscribe_token = one_click_url(alice, base).partition("token=")[2]  # another purpose: refused
    refused = httpx.get(f"{base}/digest?token={unsubscribe_token}")
    assert refused.status_code == 400 and "not for &#39;digest&#39;" in refused.text


def test_a_digest_token_lists_only_its_own_readers_digest(capped, smtp_server):
    """A genuine token whose digest id is another reader's row (signed with the installation's secret, as
    a leaked secret would allow) still lists nothing: the row must be the token's (subscription, target)."""
    world, base = capped
    assert run_once(world).returncode == 0
    alice = next(r.message for r in smtp_server.received if r.rcpt_tos == [ALICE])
    token = re.findall(r"\.\.\.and \d+ more: \S+token=(\S+)", alice.get_body(("plain",)).get_content())[0]
    secret = world.env["DIGESTBOT_TEST_LINK_SECRET"].encode()
    found = tokens.verify(secret, token, "digest")
    assert found.digest is not None and found.target == ALICE
    for digest_id in (found.digest + 1, found.digest - 1, 10_000):
        other = tokens.sign(secret, "digest", "everything", ALICE, digest=digest_id)
        assert httpx.get(f"{base}/digest", params={"token": other}).status_code == 400
    assert httpx.get(f"{base}/digest", params={"token": token}).status_code == 200
