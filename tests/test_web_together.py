"""`digestbot serve` among the other things that happen to an installation at once, for real:

- a mail scanner (or a link preview) fetching every link of a digest changes nothing;
- readers acting through the web process edit the config file while the admin runs `digestbot subs add`
  and the running daemon reloads it: every edit of every side survives, and the daemon ends with them all.
"""
from __future__ import annotations

import html
import re
import sqlite3
import subprocess
import threading
from urllib.parse import urlencode

import httpx
from test_web import ALICE, BOB, ONE_CLICK, PUBLIC, one_click_url, run_once, start_serve, stop, wait_for, web_world

from digestbot import config as config_module
from digestbot.web import tokens
from digestbot.web.manage import FORM_FIELD, form_value

SECRET = b"a-secret-only-this-test-knows"  # test_web.web_world's


def state(world) -> tuple[str, list, list, list]:
    """Everything a reader's action could change: the config file, suppressions, votes, the digests."""
    with sqlite3.connect(world.db) as db:
        return (world.config.read_text(encoding="utf-8"),
                db.execute("SELECT * FROM suppression").fetchall(),
                db.execute("SELECT * FROM vote").fetchall(),
                db.execute("SELECT id, subscription, target, status FROM digest ORDER BY id").fetchall())


def links_of(message) -> set[str]:
    """Every URL of a mail: the HTML part's hrefs, the text part's URLs and List-Unsubscribe's."""
    body = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    header = "".join(str(message["List-Unsubscribe"]).split())
    return ({html.unescape(url) for url in re.findall(r'href="([^"]+)"', body)}
            | set(re.findall(r"https?://\S+", text)) | set(re.findall(r"<([^>]+)>", header)))


def test_a_link_scanner_fetching_every_link_of_every_digest_changes_nothing(tmp_path, http_server, smtp_server):
    """Mail security scanners and link previews GET (and HEAD) every link of a mail, and the links of the
    pages those lead to. None of it unsubscribes, votes, confirms or edits anything: only POSTs do."""
    world, base = web_world(tmp_path, http_server, smtp_server)
    serve = start_serve(world, base)
    try:
        assert run_once(world).returncode == 0
        before = state(world)
        ours = {url for received in smtp_server.received for url in links_of(received.message)
                if url.startswith(PUBLIC)}
        kinds = {url.removeprefix(PUBLIC).partition("?")[0] for url in ours}
        assert {"/unsubscribe", "/manage", "/vote"} <= kinds  # the scanner meets every kind of reader link
        assert len(ours) >= 2 * 6 * 2  # two readers, six papers, two votes each
        seen: set[str] = set()
        frontier = {base + url.removeprefix(PUBLIC) for url in ours}
        while frontier:  # the mails' links, then the links of the pages they open (one site: ours)
            url = frontier.pop()
            seen.add(url)
            assert httpx.head(url).status_code in (200, 405), url
            page = httpx.get(url)
            assert page.status_code == 200, (url, page.text[:300])
            for href in re.findall(r'href="(/[^"]*)"', page.text):
                if base + html.unescape(href) not in seen:
                    frontier.add(base + html.unescape(href))
        assert seen - {base + url.removeprefix(PUBLIC) for url in ours}  # the pages' own links were fetched too
        assert state(world) == before

        sent = len(smtp_server.received)
        assert run_once(world).returncode == 0 and run_once(world).returncode == 0
        assert len(smtp_server.received) == sent  # nothing new was matched, and nobody left either
        mail = next(r.message for r in smtp_server.received if r.rcpt_tos == [ALICE])
        assert httpx.post(one_click_url(mail, base), **ONE_CLICK).status_code == 200  # a POST does act
        assert state(world)[1] == [("everything", ALICE, state(world)[1][0][2])]
    finally:
        stop(serve)


def test_readers_and_the_admin_edit_the_config_together_while_the_daemon_reloads(tmp_path, http_server,
                                                                              smtp_server):
    """The web process (a reader leaving, coming back, leaving again; another changing their own
    digest's size again and again), the admin's `digestbot subs add` (six of them, each its own process)
    and the daemon's reloads all work on one file: every change of every side is in it at the end,
    which is valid, and the daemon loads it."""
    world, base = web_world(tmp_path, http_server, smtp_server, every="1s")
    with world.config.open("a", encoding="utf-8") as config:
        config.write('\n# Dave\'s own\n[[subscriptions]]\nname = "dave"\nquery = "model"\n'
                     'email = ["dave@example.org"]\nmax_papers = 5\n')
    serve = start_serve(world, base)
    daemon = world.start("run")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(daemon.stderr), daemon=True)
    reader.start()
    problems: list[str] = []

    def alice() -> None:
        leave = tokens.sign(SECRET, "unsubscribe", "everything", ALICE)
        back = tokens.sign(SECRET, "resubscribe", "everything", ALICE)
        for path, token in (("unsubscribe", leave), ("resubscribe", back), ("unsubscribe", leave)):
            answer = httpx.post(f"{base}/{path}?token={token}", **ONE_CLICK, timeout=60)
            if answer.status_code != 200:
                problems.append(f"{path}: {answer.status_code}")

    def dave() -> None:
        token = tokens.sign(SECRET, "manage", "dave", "dave@example.org")
        for size in range(6, 12):
            answer = httpx.post(f"{base}/manage?" + urlencode({"token": token}), timeout=60, data={
                FORM_FIELD: form_value(SECRET, token), "subscription": "dave", "action": "save",
                "max_papers": str(size), "schedule": "daily 08:00"})
            if answer.status_code != 200 or "Saved." not in answer.text:
                problems.append(f"dave {size}: {answer.status_code}")

    def admin(i: int) -> subprocess.CompletedProcess:
        return world.run("subs", "add", f"lab {i}", "--query", "diffusion", "--email", f"lab{i}@example.org")

    try:
        wait_for(lambda: sorted(r for rcpts in smtp_server.rcpts for r in rcpts)[:2] == [ALICE, BOB], daemon)
        results: list[subprocess.CompletedProcess] = []
        workers = [threading.Thread(target=alice), threading.Thread(target=dave),
                   *(threading.Thread(target=lambda i=i: results.append(admin(i))) for i in range(6))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=300)
        assert problems == [] and [r.returncode for r in results] == [0] * 6, (problems, [r.stderr for r in results])

        final = config_module.load(world.config)  # valid, with every side's changes
        subs = {sub.id: sub for sub in final.subscriptions}
        assert sorted(subs) == ["dave", "everything", *(f"lab-{i}" for i in range(6))]
        assert subs["everything"].email == [BOB] and subs["dave"].max_papers == 11
        assert [subs[f"lab-{i}"].email for i in range(6)] == [[f"lab{i}@example.org"] for i in range(6)]
        text = world.config.read_text(encoding="utf-8")
        assert "# Dave's own" in text and "# the readers" in text  # the comments survive every edit
        wait_for(lambda: any("config reloaded: 1 sources, 8 subscriptions" in line for line in lines), daemon)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        reader.join(timeout=10)
        serve_err = stop(serve)
    assert daemon.returncode == 0 and not [line for line in lines if "ERROR" in line], lines
    assert "ERROR" not in serve_err and "token=" not in serve_err, serve_err
