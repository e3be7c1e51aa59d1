"""Reading Hugging Face paper items (the `daily_papers` / search shape) into `Paper`s.

Shared by every Hugging Face source kind; lenient about extra keys, strict about the shape.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..errors import ParseError
from ..models import Paper, arxiv_id_of
from . import decoded, read_items

HF_PAPER_URL = "https://huggingface.co/papers/{}"


def parse_items_json(body: bytes, fail: Callable[[str], ParseError], source: str) -> list[Paper]:
    """A JSON array of items, each `{"paper": {...}, ...}` or a flat paper object."""
    text = decoded(body, fail, "a JSON array")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                   f"{_looks_like_html(body)}") from None
    except RecursionError:
        raise fail("invalid JSON: nested too deeply") from None
    if isinstance(data, dict) and "error" in data:
        raise fail(f"the server answered with an error: {str(data['error'])[:200]}")
    if not isinstance(data, list):
        raise fail(f"expected a JSON array of papers, got a JSON {type(data).__name__}")
    return read_items(source, data, lambda item, i: paper_from_item(item, i, fail, source))


def paper_from_item(item: Any, index: int, fail: Callable[[str], ParseError], source: str) -> Paper:
    if not isinstance(item, dict):
        raise fail(f"item {index} is a {type(item).__name__}, not an object")
    paper = item.get("paper", item)
    if not isinstance(paper, dict):
        raise fail(f"item {index}: 'paper' is not an object")
    title = _text(paper.get("title")) or _text(item.get("title"))
    raw_id = paper.get("id")
    if not title:
        named = f"id {raw_id[:60]!r}; " if isinstance(raw_id, str) and raw_id else ""
        raise fail(f"item {index} has no title ({named}not a Hugging Face paper item?)")
    arxiv_id = arxiv_id_of(raw_id) if isinstance(raw_id, str) else None
    return Paper(
        title=title,
        abstract=_text(paper.get("summary")) or _text(item.get("summary")),
        arxiv_id=raw_id if isinstance(raw_id, str) else None,  # Paper reports an id that is no arXiv id
        authors=tuple(_authors(paper.get("authors"))),
        # Paper reads the date and the count and reports a malformed one, naming this item.
        published=paper.get("publishedAt") or item.get("publishedAt"),
        url=HF_PAPER_URL.format(arxiv_id) if arxiv_id else None,
        upvotes=paper.get("upvotes", item.get("upvotes")),
        ai_summary=_text(paper.get("ai_summary")) or None,
        ai_keywords=tuple(k for k in (_text(k) for k in _list(paper.get("ai_keywords"))) if k),
        github=github_url(paper.get("githubRepo")),
        project_page=http_url(paper.get("projectPage")),
        sources=(source,),
    )


def http_url(value: Any) -> str | None:
    """Only http(s) links from source data ever reach a digest (no `javascript:`)."""
    if isinstance(value, str) and value.strip().lower().startswith(("https://", "http://")):
        return value.strip()
    return None


def github_url(value: Any) -> str | None:
    if isinstance(value, str) and value.count("/") == 1 and " " not in value:
        return f"https://github.com/{value.strip()}"
    return http_url(value)


def _authors(value: Any) -> list[str]:
    names = []
    for author in _list(value):
        name = author.get("name") if isinstance(author, dict) else author
        if isinstance(author, dict) and author.get("hidden"):
            continue
        if _text(name):
            names.append(_text(name))
    return names


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _looks_like_html(body: bytes) -> str:
    head = body[:200].lstrip().lower()
    return " (the body is an HTML page)" if head.startswith((b"<!doctype", b"<html")) else ""
