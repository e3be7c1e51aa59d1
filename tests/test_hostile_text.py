"""Paper text that hides or reorders what a reader sees, and paper ids that would become paths (issue 16,
point 10, the paper-text part).

A listing served over loopback HTTP holds a title with a right-to-left override and an abstract with
zero-width characters, and an item whose id is `../../x`; `run --once` writes the digest to the outbox
(email and Slack), and `papers` prints what is stored: none of them shows an invisible character, and
no link carries the id as a path. A paper stored by an older version (raw row) is neutralised too.
"""
from __future__ import annotations

import email
import json
import sqlite3
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
from fixtures import daily_items

from digestbot import cli
from digestbot.models import Digest, Match, Paper
from digestbot.render import Renderer

INVISIBLE = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F,
                              *range(0x200B, 0x200E), 0x2060, 0xFEFF, 0x1B, 0x00)]
RLO, PDF, ZWSP, ZWJ, WJ, BOM, LRI, PDI = "\u202e", "\u202c", "\u200b", "\u200d", "\u2060", "\ufeff", "\u2066", "\u2069"
HOSTILE_TITLE = f"Speculative {RLO}gnidoced{PDF} for LLM inference.exe"
HOSTILE_ABSTRACT = (f"We make in{ZWSP}ference fast{ZWJ}er with a dr{WJ}aft model.{BOM} "
                    f"Speculative decoding{LRI} cuts latency{PDI}. \u200eIt is exact\u200f.")
PATH_ID = "../../x"


def invisible_in(text: str) -> list[str]:
    return sorted({f"U+{ord(c):04X}" for c in text if c in INVISIBLE})


def hostile_items() -> list[dict]:
    items = daily_items(3, published=datetime.now(UTC).date())
    items[0]["paper"].update(title=HOSTILE_TITLE, summary=HOSTILE_ABSTRACT,
                             authors=[{"name": f"Eve {RLO}live"}], ai_summary=f"Fast{ZWSP} inference.")
    items[0]["title"], items[0]["summary"] = HOSTILE_TITLE, HOSTILE_ABSTRACT
    items[1]["paper"].update(id=PATH_ID, title="KV cache inference at scale", summary="We study inference.")
    items[1]["title"] = "KV cache inference at scale"
    for item in items[2:]:
        item["paper"]["id"] = "2411.00003"
    return items


def write_config(tmp: Path, url: str) -> Path:
    path = tmp / "config.toml"
    path.write_text(f"""[bot]
database = "sqlite:///digestbot.db"
outbox = "outbox"

[[sources]]
name = "hostile"
kind = "hf_search"
url = "{url}"
query = "inference"

[[subscriptions]]
name = "everyone"
query = 'inference'
email = ["reader@example.org"]
slack = ["#papers"]
schedule = "instant"
""")
    return path


def outbox_texts(outbox: Path) -> dict[str, str]:
    """Every part a reader sees: the Subject, the text and HTML parts, the Slack fallbacks and blocks."""
    shown: dict[str, str] = {}
    [eml] = outbox.glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    shown["subject"] = str(message["Subject"])
    shown["text"] = message.get_body(("plain",)).get_content()
    shown["html"] = message.get_body(("html",)).get_content()
    [posts] = outbox.glob("*.json")
    payload = json.loads(posts.read_text("utf-8"))
    shown["slack text"] = "\n".join(post["text"] for post in payload)
    shown["slack blocks"] = json.dumps([post["blocks"] for post in payload], ensure_ascii=False)
    return shown


@pytest.fixture
def delivered(http_server, tmp_path) -> tuple[Path, dict[str, str]]:
    http_server.route("/search", json.dumps(hostile_items()).encode())
    config = write_config(tmp_path, f"{http_server.url}/search")
    assert cli.main(["-c", str(config), "run", "--once", "--send-backlog"]) == 0
    return config, outbox_texts(tmp_path / "outbox")


def test_invisible_characters_never_reach_email_or_slack(delivered):
    _, shown = delivered
    for part, text in shown.items():
        assert invisible_in(text) == [], f"{part} shows invisible characters"
    for part in ("text", "html", "slack blocks"):
        assert "Speculative gnidoced for LLM" in shown[part]
        assert "faster with a draft model." in shown[part] and "Eve live" in shown[part]


def test_a_path_as_paper_id_never_becomes_a_link(delivered):
    _, shown = delivered
    assert "KV cache" in shown["html"] and "KV cache" in shown["slack blocks"]  # delivered, without id links
    for part, text in shown.items():
        assert "/.." not in text and "%2F" not in text, f"{part} links the id as a path"
    assert "https://huggingface.co/papers/2411.00003" in shown["html"]  # a real id still links


def test_papers_prints_stored_text_neutralised_and_no_path_link(delivered, capsys):
    config, _ = delivered
    capsys.readouterr()
    assert cli.main(["-c", str(config), "papers"]) == 0
    assert cli.main(["-c", str(config), "papers", "--json"]) == 0
    out = capsys.readouterr().out
    assert invisible_in(out) == [] and "gnidoced" in out
    assert "/.." not in out and PATH_ID not in out


def test_a_paper_stored_by_an_older_version_is_shown_neutralised(tmp_path):
    """Rows written before Paper neutralised its text (raw SQL here) are cleaned when they are read."""
    from digestbot.store import Store

    url = f"sqlite:///{tmp_path / 'old.db'}"
    with Store(url) as store:
        store.create_tables()
    now = datetime.now(UTC).replace(tzinfo=None)
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute("INSERT INTO paper (arxiv_id, slug, title, abstract, authors, url, upvotes, ai_keywords, sources,"
                   " first_seen, updated) VALUES (?, 'x', ?, ?, '[]', ?, 3, '[]', '[]', ?, ?)",
                   (PATH_ID, HOSTILE_TITLE, HOSTILE_ABSTRACT, f"https://huggingface.co/papers/{PATH_ID}", now, now))
    with Store(url) as store:
        [paper] = store.papers()
    assert (paper.arxiv_id, paper.url) == (None, None)
    message = Renderer().render(Digest("everyone", "everyone", "today", [Match("everyone", paper)]))
    shown = [message.subject, message.text, message.html, *(p.text for p in message.slack_posts),
             json.dumps([p.blocks for p in message.slack_posts], ensure_ascii=False)]
    assert all(invisible_in(text) == [] and "/.." not in text for text in shown)


@pytest.mark.parametrize("raw", ["../../x", "2411.00001/../../x", "2411.00001?x=1", "2411.00001#frag",
                                 "2411.00001%2F..", "2411.00001 x", "javascript:alert(1)", "/etc/passwd"])
def test_only_an_arxiv_id_is_ever_put_into_a_link(raw):
    paper = Paper(title="t", arxiv_id=raw, url=f"https://huggingface.co/papers/{raw}", upvotes=1)
    assert (paper.arxiv_id, paper.hf_url, paper.arxiv_url, paper.pdf_url) == (None,) * 4
    # A page link the source gave stays only when it names a real paper (a query or fragment after it is fine).
    assert paper.link in (None, f"https://huggingface.co/papers/{raw}") and ".." not in (paper.link or "")
    assert paper.link is None or paper.link.startswith("https://huggingface.co/papers/2411.00001")
    assert paper.problems  # the source reports it, naming the item
    paper.arxiv_id = raw  # set after construction: the link properties check again
    assert (paper.hf_url, paper.arxiv_url, paper.pdf_url) == (None, None, None)


def test_real_ids_still_link():
    paper = Paper(title="t", arxiv_id="arXiv:2407.13168v2")
    assert paper.arxiv_url == "https://arxiv.org/abs/2407.13168" and paper.problems == []
    assert Paper(title="t", arxiv_id="hep-th/9901001v1").pdf_url == "https://arxiv.org/pdf/hep-th/9901001"
