"""Split a digest's Block Kit blocks into Slack posts that respect Slack's limits.

Limits (FIELD-NOTES, Slack): 50 blocks per message, 3000 characters per section / context text,
150 per header, and an undocumented cap near 13k characters per message. The first post carries the
header; the rest continue in its thread (channels/slack.py posts them with `thread_ts`). A paper's
blocks are never split across posts.
"""
from __future__ import annotations

import json
import re

from .models import SlackPost

MAX_BLOCKS = 48  # under 50, leaving room for a "continued" context line
MAX_CHARS = 12_000  # serialized blocks per post, under Slack's ~13k
MAX_TEXT = 3000
MAX_HEADER = 150
_OPEN_TAIL = re.compile(r"&[a-z]*$|<[^>]*$")  # half an entity or half a <url|label> after a cut


def fit_text(text: str, limit: int = MAX_TEXT) -> str:
    """Cut mrkdwn to `limit` characters without leaving half an escape or half a link behind."""
    if len(text) <= limit:
        return text
    return _OPEN_TAIL.sub("", text[: limit - 1]) + "…"


def _fit_block(block: dict) -> dict:
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


def _size(blocks: list[dict]) -> int:
    return len(json.dumps(blocks, ensure_ascii=False))


def split_posts(text: str, header: list[dict], papers: list[list[dict]], footer: list[dict]) -> list[SlackPost]:
    """Posts of at most MAX_BLOCKS blocks and MAX_CHARS characters; the footer ends the last one."""
    groups = [[_fit_block(b) for b in group] for group in [header, *papers, footer] if group]
    posts: list[list[dict]] = [[]]
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
