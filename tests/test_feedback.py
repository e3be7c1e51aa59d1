"""Feedback on every paper, for real: `digestbot run --once` sends the digests (loopback SMTP), each
paper carries the reader's signed "more like this" / "not for me" links, the real `digestbot serve`
answers them (a GET records nothing, the POST does, undo removes), and `digestbot feedback` records
and lists the same votes."""
from __future__ import annotations

import html
import json
import re
import sqlite3

import httpx
import pytest
from test_web import ALICE, BOB, PUBLIC, one_click_url, run_once, start_serve, stop, web_world


@pytest.fixture
def served(tmp_path, http_server, smtp_server):
    world, base = web_world(tmp_path, http_server, smtp_server)
    process = start_serve(world, base)
    yield world, base, process
    err = stop(process)
    assert "token=" not in err and "ERROR" not in err  # tokens are never logged


def votes(world) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(world.db) as db:
        return db.execute("SELECT subscription, target, paper, vote FROM vote ORDER BY paper, target").fetchall()


def title_of(world, key: str) -> str:
    with sqlite3.connect(world.db) as db:
        [(title,)] = db.execute("SELECT title FROM paper WHERE arxiv_id = ? OR slug = ?", (key, key)).fetchall()
    return title


def manage_url(message) -> str:
    [url] = re.findall(rf"Manage your subscriptions: ({re.escape(PUBLIC)}/manage\?token=\S+)",
                       message.get_body(("plain",)).get_content())
    return url


def html_body(message) -> str:
    return message.get_body(("html",)).get_content()


def vote_links(message, vote: str) -> dict[str, str]:
    """paper key -> the URL of its `vote` link in the HTML email (as written: &amp; unescaped)."""
    found = re.findall(rf'<a href="([^"]+)" data-vote="{vote}" data-paper="([^"]+)"', html_body(message))
    return {paper: html.unescape(url) for url, paper in found}


def local(url: str, base: str) -> str:
    assert url.startswith(f"{PUBLIC}/")
    return base + url.removeprefix(PUBLIC)


def test_not_for_me_from_a_sent_digest_get_then_post_then_undo(served, smtp_server):
    world, base, _ = served
    assert run_once(world).returncode == 0
    alice = next(r.message for r in smtp_server.received if r.rcpt_tos == [ALICE])
    down, up = vote_links(alice, "down"), vote_links(alice, "up")
    assert down and down.keys() == up.keys()
    paper, url = sorted(down.items())[0]
    assert url.startswith(f"{PUBLIC}/vote?token=") and url.endswith("&v=down")
    url = local(url, base)

    page = httpx.get(url)  # a link scanner, a preview: nothing recorded
    assert page.status_code == 200 and '<form method="post"' in page.text and votes(world) == []
    title = title_of(world, paper)
    assert html.escape(title) in page.text  # the reader sees which paper, by its title (escaped)

    token = url.partition("token=")[2].partition("&")[0]
    for bad in (token[:-3], token[:12] + ("A" if token[12] != "A" else "B") + token[13:], token.split(".")[0]):
        refused = httpx.post(f"{base}/vote?token={bad}&v=down")
        assert refused.status_code == 400 and "Nothing was changed" in refused.text
    unsubscribe_token = one_click_url(alice, base).partition("token=")[2]  # another purpose: refused too
    assert httpx.post(f"{base}/vote?token={unsubscribe_token}&v=down").status_code == 400
    assert httpx.post(url.replace("v=down", "v=sideways")).status_code == 400
    assert votes(world) == []

    noted = httpx.post(url)
    assert noted.status_code == 200 and "Noted" in noted.text and "Undo" in noted.text
    assert html.escape(title) in noted.text
    assert votes(world) == [("everything", ALICE, paper, "down")]
    manage = httpx.get(local(manage_url(alice), base)).text  # the manage page shows what the reader rated
    assert re.findall(r'<li data-rated="(\w+)">.*?</span> (.*?)</li>', manage) == [("down", html.escape(title))]
    listed = world.cli("feedback", "list", "everything", "--json")
    assert listed.returncode == 0
    assert [(v["target"], v["paper"], v["vote"]) for v in json.loads(listed.stdout)] == [(ALICE, paper, "down")]
    assert paper in world.cli("feedback", "list", "everything").stdout

    assert httpx.post(local(up[paper], base)).status_code == 200  # the other link: the vote is replaced
    assert votes(world) == [("everything", ALICE, paper, "up")]

    [undo] = re.findall(r'<form method="post" action="([^"]+)"', noted.text)
    assert httpx.post(base + html.unescape(undo)).status_code == 200
    assert votes(world) == []


def test_personal_links_differ_per_recipient_and_the_footer_unsubscribe_is_the_header_one(served, smtp_server):
    world, base, _ = served
    assert run_once(world).returncode == 0
    mails = {r.rcpt_tos[0]: r.message for r in smtp_server.received}
    assert sorted(mails) == [ALICE, BOB]
    alice, bob = vote_links(mails[ALICE], "up"), vote_links(mails[BOB], "up")
    assert alice.keys() == bob.keys() and not set(alice.values()) & set(bob.values())
    for rcpt, mail in mails.items():
        header = one_click_url(mail, base).partition("token=")[2]
        text = mail.get_body(("plain",)).get_content()
        assert f"Unsubscribe: {PUBLIC}/unsubscribe?token={header}" in text
        assert f'href="{PUBLIC}/unsubscribe?token={header}"' in html_body(mail)
        assert re.search(rf"Manage your subscriptions: {re.escape(PUBLIC)}/manage\?token=\S+", text)
        assert "More like this: " in text and "Not for me: " in text
        other = BOB if rcpt == ALICE else ALICE
        assert other not in str(mail)


def test_the_command_line_records_replaces_and_lists(served):
    world, _, _ = served
    recorded = world.cli("feedback", "everything", "https://arxiv.org/abs/2411.00001v2", "up", "--target", ALICE)
    assert recorded.returncode == 0, recorded.stderr
    assert votes(world) == [("everything", ALICE, "2411.00001", "up")]
    again = world.cli("feedback", "record", "everything", "2411.00001", "down", "--target", ALICE)
    assert again.returncode == 0 and "it was up" in again.stdout
    assert world.cli("feedback", "everything", "list", "down").returncode == 0  # a paper called "list"
    assert votes(world) == [("everything", ALICE, "2411.00001", "down"), ("everything", "*", "list", "down")]
    listed = world.cli("feedback", "list", "everything")
    assert listed.returncode == 0 and "2411.00001" in listed.stdout and " list " in listed.stdout
    for wrong in (["everything", "2411.00001", "sideways"], ["everything", "2411.00001"],
                  ["nobody", "2411.00001", "up"], ["list", "everything", "--target", ALICE]):
        assert world.cli("feedback", *wrong).returncode == 2, wrong
    assert len(votes(world)) == 2


def test_the_footer_manage_link_opens_the_readers_manage_page(served, smtp_server):
    """The footer's "Manage your subscriptions" link (signed here, in digest.py) is the token the manage
    page (web/manage.py) accepts: it lists the reader's subscription, and a changed token is refused."""
    world, base, _ = served
    assert run_once(world).returncode == 0
    alice = next(r.message for r in smtp_server.received if r.rcpt_tos == [ALICE])
    url = manage_url(alice)
    page = httpx.get(local(url, base))
    assert page.status_code == 200 and "everything" in page.text.lower() and ALICE in html.unescape(page.text)
    assert httpx.get(local(url, base)[:-2]).status_code == 400
