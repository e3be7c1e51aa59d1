"""Split a digest's Block Kit blocks into Slack posts that respect Slack's limits.

Limits (Slack's API documentation): 50 blocks per message, 3000 characters per section / context text,
150 per header, and an undocumented cap near 13k characters per message. The first post carries the
header; the rest continue in its thread (channels/slack.py posts them with `thread_ts`). A paper's
blocks are never split across posts.

The blocks are built here in Python (a Jinja template producing JSON cost 3x as much, see
benchmarks/bench_render.py); a `digest.slack.j2` in `bot.templates` still overrides them.

With `digest.slack_buttons` each paper ends with an `actions` block of two buttons, "More like this"
(action_id `vote_up`) and "Not for me" (`vote_down`), whose value (`vote_value`) names the subscription
and the paper key; `digestbot serve` answers their clicks (web/slack_actions.py reads it with `vote_of`).
The value carries no channel: the same post goes to every channel of the subscription.
"""
from __future__ import annotations

import json
import re
from typing import Any

from ..models import Block, Digest, SlackPost
from .highlight import slack_escape
from .item import Item
from .urls import safe_url

MAX_BLOCKS = 48  # under 50, leaving room for a "continued" context line
MAX_CHARS = 12_000  # serialized blocks per post, under Slack's ~13k
MAX_TEXT = 3000
MAX_HEADER = 150
_OPEN_TAIL = re.compile(r"&[a-z]*$|<[^>]*$")  # half an entity or half a <url|label> after a cut
VOTE_ACTIONS = {"vote_up": "up", "vote_down": "down"}  # a button's action_id -> the vote it records
VOTE_LABELS = {"up": "More like this", "down": "Not for me"}
MAX_VALUE = 2000  # characters of a button's value (Slack's limit)


def fit_text(text: str, limit: int = MAX_TEXT) -> str:
    """Cut mrkdwn to `limit` characters without leaving half an escape or half a link behind."""
    if len(text) <= limit:
        return text
    return _OPEN_TAIL.sub("", text[: limit - 1]) + "…"


def _fit_block(block: Block) -> Block:
    kind = block.get("type")
    if kind == "header":
        block["text"]["text"] = block["text"]["text"][:MAX_HEADER]
    elif kind == "section":
        block["text"]["text"] = fit_text(block["text"]["text"])
    elif kind == "context":
        for element in block.get("elements", []):
            if "text" in element:
                element["text"] = fit_text(element["text"])
    return block


def _size(blocks: list[Block]) -> int:
    """Characters of the blocks' texts plus a generous allowance for the JSON around them (fast: no dumps)."""
    total = 0
    for block in blocks:
        total += 80
        text = block.get("text")
        if text:
            total += len(text["text"])
        for element in block.get("elements", ()):
            shown = element.get("text", "")  # a button's text is an object, a context element's a string
            total += 40 + len(shown["text"] if isinstance(shown, dict) else shown) + len(element.get("value", ""))
    return total


def split_posts(text: str, header: list[Block], papers: list[list[Block]], footer: list[Block]) -> list[SlackPost]:
    """Posts of at most MAX_BLOCKS blocks and MAX_CHARS characters; the footer ends the last one."""
    groups = [[_fit_block(b) for b in group] for group in [header, *papers, footer] if group]
    posts: list[list[Block]] = [[]]
    used = 0
    for group in groups:
        size = _size(group)
        if posts[-1] and (len(posts[-1]) + len(group) > MAX_BLOCKS or used + size > MAX_CHARS):
            posts.append([])
            used = 0
        posts[-1].extend(group)
        used += size
    total = len(posts)
    result = []
    for n, blocks in enumerate(posts, 1):
        fallback = text if n == 1 else f"{text} (continued, {n}/{total})"
        result.append(SlackPost(fit_text(fallback), blocks))
    return result


def mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text}


def context(text: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(text)]}


def paper_blocks(it: Item) -> list[Block]:
    """A section (linked title, authors, why, TL;DR, marked summary) and a context line of links
    (digest_blocks adds the vote buttons).

    Every piece of paper text is escaped: `*_slack` fields arrive escaped (and marked), the rest goes
    through `slack_escape` here. URLs passed `safe_url` (http(s), no spaces, quotes or angle brackets).
    """
    lines = [f"*<{it.link}|{it.title_slack}>*" if it.link else f"*{it.title_slack}*"]
    if it.authors:
        lines.append(slack_escape(it.authors))
    lines.append(f"_{slack_escape(it.why)}_")
    if it.tldr:
        lines.append(f">*TL;DR* {slack_escape(it.tldr)}")
    if it.summary_slack:
        lines.append(it.summary_slack)
    meta = [it.date] if it.date else []
    meta.append(f"{it.upvotes} upvotes")
    meta += [f"<{url}|{label}>" for url, label in ((it.arxiv, "arXiv"), (it.pdf, "PDF"), (it.code, "code"),
                                                   (it.project, "project")) if url]
    return [{"type": "section", "text": mrkdwn("\n".join(lines))}, context(" · ".join(meta))]


def vote_value(subscription_id: str, paper: str) -> str:
    """A vote button's value: compact JSON {"s": subscription id, "p": paper key}."""
    return json.dumps({"s": subscription_id, "p": paper}, separators=(",", ":"), ensure_ascii=False)


def vote_of(value: object) -> tuple[str, str] | None:
    """(subscription id, paper key) of a button's value; None when it is not one `vote_value` made."""
    if not isinstance(value, str) or len(value) > MAX_VALUE:
        return None
    try:
        data: Any = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data[k] for k in ("s", "p")):
        return None
    return data["s"], data["p"]


def vote_buttons(subscription_id: str, paper: str, number: int) -> list[Block]:
    """The paper's actions block (none when its value would pass Slack's limit). Its block_id holds the
    paper's place in the digest: unique within a message, as Slack requires."""
    value = vote_value(subscription_id, paper)
    if len(value) > MAX_VALUE:
        return []
    return [{"type": "actions", "block_id": f"vote-{number}", "elements": [
        {"type": "button", "action_id": action, "text": {"type": "plain_text", "text": VOTE_LABELS[vote]},
         "value": value} for action, vote in VOTE_ACTIONS.items()]}]


def digest_blocks(digest: Digest, items: list[Item],
                  subject: str) -> tuple[list[Block], list[list[Block]], list[Block]]:
    """(header blocks, blocks of each paper, footer blocks) of one digest."""
    header = [{"type": "header", "text": {"type": "plain_text", "text": subject[:MAX_HEADER]}},
              *([context("Most relevant first.")] if items else [])]  # the header says what and when
    if not items:
        header.append({"type": "section", "text": mrkdwn("No new papers matched this period.")})
    footer = []
    if digest.more:
        more = safe_url(digest.more_url)
        footer.append(context(f"…and {digest.more} more" + (f": <{more}|see the listing>" if more else "")))
    why = f"You get this because of the subscription “{slack_escape(digest.subscription)}”"
    if digest.query:
        why += f": papers matching {slack_escape(digest.query)}"
    if digest.topics:
        topics = "topics" if len(digest.topics) > 1 else "topic"
        why += f"{',' if digest.query else ':'} {topics} {slack_escape(', '.join(digest.topics))}"
    links = [f"<{url}|{label}>" for url, label in ((safe_url(digest.manage_url), "Manage your subscriptions"),
                                                   (safe_url(digest.unsubscribe_url), "Unsubscribe")) if url]
    footer += [{"type": "divider"}, context(f"{why}. {slack_escape(digest.manage)}"
                                            + (f"\n{' · '.join(links)}" if links else ""))]
    if not digest.slack_buttons:
        return header, [paper_blocks(it) for it in items], footer
    keys = [match.paper.key for match in digest.matches]
    return header, [paper_blocks(it) + vote_buttons(digest.subscription_id, key, n)
                    for n, (it, key) in enumerate(zip(items, keys, strict=True), 1)], footer
