"""Rendering: golden files of the three formats, escaping, the email headers, and the size limits.

Golden files live in tests/golden/; after an intended change to the templates, regenerate them with
`DIGESTBOT_REGENERATE_GOLDEN=1 pytest tests/test_render.py` and review the diff.
"""
from __future__ import annotations

import json
import os
import re
from email import message_from_bytes, policy
from email.headerregistry import Address
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from render_fixtures import NOW, config, digest, matches, papers

from digestbot import config as config_module
from digestbot.channels import Envelope
from digestbot.channels.email import build_email
from digestbot.digest import unsubscribe_urls
from digestbot.models import Hit, Match, Paper
from digestbot.render import EMAIL_MAX_BYTES, Renderer
from digestbot.render.slack_posts import MAX_BLOCKS, MAX_CHARS, MAX_TEXT
from digestbot.web.tokens import verify

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("DIGESTBOT_REGENERATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if REGENERATE:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with DIGESTBOT_REGENERATE_GOLDEN=1"
    assert actual == path.read_text(encoding="utf-8"), f"{name} changed; if intended, regenerate (see module doc)"


@pytest.mark.parametrize("fmt", ["html", "txt", "slack.json"])
def test_golden_renderings(tmp_path, renderer, fmt):
    message = renderer.render(digest(tmp_path))
    actual = {"html": message.html, "txt": message.text,
              "slack.json": json.dumps([{"text": p.text, "blocks": p.blocks} for p in message.slack_posts],
                                       indent=2, ensure_ascii=False) + "\n"}[fmt]
    golden(f"digest.{fmt}", actual)


def test_digest_content_header_papers_and_footer(tmp_path, renderer):
    d = digest(tmp_path)
    message = renderer.render(d)
    assert d.more > 0 and len(d.matches) == 5
    assert message.subject == f"5 of {d.total} new papers on LLM inference — Sun 22 Nov"
    best = d.matches[0]
    assert [m.score for m in d.matches] == sorted((m.score for m in d.matches), reverse=True)
    for body in (message.text, message.html):
        assert "LLM inference" in body and "Sun 22 Nov" in body
        assert f"and {d.more} more" in body and "https://huggingface.co/papers" in body
        assert "You get this because" in body and 'papers matching inference OR "language model"' in body.replace(
            "&#34;", '"').replace("&quot;", '"')
        assert "digestbot subs" not in body and "`" not in body  # a reader's footer: no admin commands
        assert f"https://arxiv.org/pdf/{best.paper.arxiv_id}" in body
        assert "matched: " in body
    assert f'href="https://huggingface.co/papers/{best.paper.arxiv_id}"' in message.html
    assert 'href="https://digest.example.org/unsubscribe"' in message.html  # the page telling how to leave
    authors = best.paper.authors
    if len(authors) > 3:
        assert f"{authors[0]}, {authors[1]}, {authors[2]} et al." in message.text


def test_a_capped_digest_says_how_many_it_shows_of_how_many_in_its_subject_and_slack_fallback(tmp_path, renderer):
    capped = digest(tmp_path, max_papers=3)
    assert len(capped.matches) == 3 and capped.more > 0
    total = capped.total
    message = renderer.render(capped)
    assert message.subject == f"3 of {total} new papers on LLM inference — Sun 22 Nov"
    assert message.text.startswith(message.subject + "\n")  # the plain text's title line
    assert f"<title>3 of {total} new papers" in message.html
    posts = message.slack_posts
    assert posts[0].text == message.subject and posts[0].blocks[0]["text"]["text"] == message.subject
    assert all(post.text.startswith(f"3 of {total} new papers") for post in posts)  # continued posts too
    everything = renderer.render(digest(tmp_path, max_papers=total))  # all of them: no "of"
    assert everything.subject == f"{total} new papers on LLM inference — Sun 22 Nov"
    assert everything.slack_posts[0].text == everything.subject
    one = digest(tmp_path, items=papers()[:1])
    assert renderer.subject(one) == "1 new paper on LLM inference — Sun 22 Nov"


def hostile_match() -> Match:
    paper = Paper(title="Fast <script>alert(1)</script> inference & <!channel> amp",
                  abstract="We study <b>inference</b> & <@U123> things. Second sentence about inference <x|y>.",
                  arxiv_id="2411.00001", authors=("<img src=x>", "B", "C", "D"),
                  ai_summary="TL <!here> & more", github="javascript:alert(1)", project_page="https://ok.example/p")
    return Match("s", paper, 3.0, (Hit("inference", "title"), Hit("amp", "title")))


def test_paper_text_is_escaped_everywhere_and_marks_are_added_after(tmp_path, renderer):
    d = digest(tmp_path, items=[])
    d.matches = [hostile_match()]
    message = renderer.render(d)
    assert "<script>" not in message.html and "<img" not in message.html and "<b>" not in message.html
    assert "javascript:" not in message.html + message.text + json.dumps([p.blocks for p in message.slack_posts])
    assert re.search(r"Fast &lt;script&gt;alert\(1\)&lt;/script&gt; <mark[^>]*>inference</mark> &amp; "
                     r"&lt;!channel&gt; <mark[^>]*>amp</mark>", message.html)
    assert "*inference*" in message.text
    slack = json.dumps([p.blocks for p in message.slack_posts])
    for raw in ("<!channel>", "<@U123>", "<!here>", "<x|y>", "<script>", "<b>"):
        assert raw not in slack
    assert "&lt;!channel&gt;" in slack and "&lt;@U123&gt;" in slack and "*inference*" in slack


def test_empty_digest_says_so(tmp_path, renderer):
    d = digest(tmp_path, items=[])
    message = renderer.render(d)
    assert message.subject.startswith("No new papers on LLM inference")
    assert "No new papers matched this period." in message.text
    assert "No new papers matched this period." in message.html


def test_email_headers_multipart_and_inlined_css(tmp_path, renderer, monkeypatch):
    monkeypatch.setenv("DIGESTBOT_TEST_LINK_SECRET", "test-secret")
    cfg = config(tmp_path)
    sub = cfg.subscriptions[0]
    message = renderer.render(digest(tmp_path))
    envelope = Envelope("Alice <alice@example.org>", sub.name, sub.id, "<digest-1.llm-inference@example.org>",
                        "LLM inference <llm-inference.example.org>", unsubscribe_urls(cfg, sub, "alice@example.org"))
    mail = message_from_bytes(bytes(build_email(message, envelope, cfg.email.sender_address)),
                              policy=policy.default)
    assert mail.get_content_type() == "multipart/alternative"
    # One signed link for this subscription and recipient; no mailto beside it, no unsigned parameters.
    [url] = re.fullmatch(r"<(.*)>", mail["List-Unsubscribe"]).groups()
    assert url.startswith("https://digest.example.org/unsubscribe?token=")
    token = verify(b"test-secret", parse_qs(urlsplit(url).query)["token"][0], "unsubscribe")
    assert (token.subscription_id, token.target) == ("llm-inference", "alice@example.org")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["Auto-Submitted"] == "auto-generated" and mail["List-Id"].startswith("LLM inference")
    html = mail.get_body(("html",)).get_content()
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert re.search(r'class="card"[^>]*style="max-width', html) and "<h2 style=" in html  # inlined <style>
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    assert style.strip().startswith("@media")  # only what cannot be inlined: dark mode, small screens
    assert "prefers-color-scheme: dark" in style


def test_no_one_click_header_without_https(tmp_path):
    cfg = config(tmp_path)
    cfg.bot.public_url = None
    urls = unsubscribe_urls(cfg, cfg.subscriptions[0], "alice@example.org")
    envelope = Envelope("alice@example.org", "s", "s", "<m@x>", "s <s.x>", urls)
    mail = build_email(Renderer().render(digest(tmp_path)), envelope,
                       Address(display_name="D", addr_spec="d@example.org"))
    assert mail["List-Unsubscribe"] == "<mailto:digest@example.org?subject=unsubscribe%20llm-inference>"
    assert mail["List-Unsubscribe-Post"] is None


def test_without_the_link_secret_there_is_no_unsigned_one_click_url(tmp_path):
    cfg = config(tmp_path)
    cfg.web.secret_env = None  # public_url alone: `check` warns; the mails carry the mailto only
    assert unsubscribe_urls(cfg, cfg.subscriptions[0], "alice@example.org") == (
        "mailto:digest@example.org?subject=unsubscribe%20llm-inference",)
    assert any("set [web] secret_env too" in line for line in config_module.check_secrets(cfg))


def big_papers(count: int) -> list[Paper]:
    base = papers()
    out = []
    for n in range(count):
        p = base[n % len(base)]
        abstract = (p.abstract + " ") * (5000 // max(len(p.abstract), 1) + 1)
        out.append(Paper(title=f"{p.title} & <variant {n}>", abstract=abstract[:5000], arxiv_id=f"2411.{n:05d}",
                         authors=p.authors, published=p.published, upvotes=p.upvotes, ai_summary=p.ai_summary,
                         github=p.github, project_page="https://example.org/p?a=1&b=2"))
    return out


def test_300_papers_with_5kb_abstracts_stay_within_email_and_slack_limits(tmp_path, renderer):
    d = digest(tmp_path, items=big_papers(300), max_papers=300)
    assert len(d.matches) >= 250
    message = renderer.render(d)
    html_size = len(message.html.encode())
    assert html_size < EMAIL_MAX_BYTES
    assert "more" in message.html and "https://huggingface.co/papers" in message.html  # cut, with a link
    assert "You get this because" in message.html  # the footer survives the cut
    posts = message.slack_posts
    assert len(posts) > 1
    shown = sum(1 for p in posts for b in p.blocks if b["type"] == "section" and "upvotes" not in b["text"]["text"]
                and b["text"]["text"].startswith("*<"))
    assert shown == len(d.matches)  # every paper reaches Slack, split over the thread
    assert posts[0].blocks[0]["type"] == "header" and all(p.blocks[0]["type"] != "header" for p in posts[1:])
    for post in posts:
        assert len(post.blocks) < 50 and len(post.blocks) <= MAX_BLOCKS
        assert len(json.dumps(post.blocks, ensure_ascii=False)) <= 13_000
        assert post.text
        for block in post.blocks:
            texts = [block["text"]["text"]] if "text" in block else [e["text"] for e in block.get("elements", [])]
            assert all(len(t) <= MAX_TEXT for t in texts)
            if block["type"] == "header":
                assert len(block["text"]["text"]) <= 150
    assert MAX_CHARS <= 12_000


def test_html_over_the_limit_is_cut_with_a_link(tmp_path, renderer):
    d = digest(tmp_path, items=big_papers(120), max_papers=120)
    message = renderer.render(d)
    shown = message.html.count("<h2")
    assert shown < len(d.matches)
    assert f"and {d.total - shown} more" in message.html
    assert message.text.count("\n   matched: ") == len(d.matches)  # the text part keeps every paper


def test_fifty_paper_digest_html_is_under_100_kb_uncut(tmp_path, renderer):
    d = digest(tmp_path, items=papers(), max_papers=50)
    message = renderer.render(d)
    assert len(d.matches) >= 30 and message.html.count("<h2") == len(d.matches)
    assert len(message.html.encode()) < EMAIL_MAX_BYTES


def test_only_http_urls_are_linked(tmp_path, renderer):
    d = digest(tmp_path, items=[])
    m = hostile_match()
    d.matches = [m]
    message = renderer.render(d)
    assert "https://ok.example/p" in message.html
    assert matches([]) == []
    assert NOW.year == 2026


def test_user_templates_override_slack_blocks_and_html_with_per_digest_inlining(tmp_path):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "digest.slack.j2").write_text(
        '{"text": {{ subject | slack | tojson }}, "header": [], "footer": [],\n'
        ' "papers": [{% for it in items %}{{ "," if not loop.first }}'
        '[{"type": "section", "text": {"type": "mrkdwn", "text": {{ it.title | slack | tojson }}}}]'
        '{% endfor %}]}\n')
    # A tag that opens an element inside an attribute-less conditional: cannot be pre-inlined safely.
    (folder / "digest.html.j2").write_text(
        "<html><head><style>p { color: red; }</style></head><body>"
        "{% if items %}<p>{% else %}<div>{% endif %}{{ subject }}{% if items %}</p>{% else %}</div>{% endif %}"
        "</body></html>")
    renderer = Renderer(folder)
    d = digest(tmp_path)
    d.matches = [hostile_match()]
    message = renderer.render(d)
    assert not renderer.preinlined
    assert '<p style="color: red;">' in message.html
    [post] = message.slack_posts
    assert [b["text"]["text"] for b in post.blocks] == [
        "Fast &lt;script&gt;alert(1)&lt;/script&gt; inference &amp; &lt;!channel&gt; amp"]


def test_title_links_to_hugging_face_when_it_knows_the_paper_else_arxiv():
    from digestbot.render import title_link

    assert title_link(Paper(title="t", arxiv_id="2411.00001", url="https://huggingface.co/papers/2411.00001")) == \
        "https://huggingface.co/papers/2411.00001"
    assert title_link(Paper(title="t", arxiv_id="2411.00001", upvotes=3)) == "https://huggingface.co/papers/2411.00001"
    assert title_link(Paper(title="t", arxiv_id="2411.00001", url="https://arxiv.org/abs/2411.00001")) == \
        "https://arxiv.org/abs/2411.00001"
    assert title_link(Paper(title="t", url="https://blog.example/post")) == "https://blog.example/post"
