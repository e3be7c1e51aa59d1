"""Small text helpers shared by the renderers: URLs from source data, one-line header text."""
from __future__ import annotations


def safe_url(url: object) -> str:
    """The URL when it is http(s) and cannot break out of an attribute or a Slack link; else ''."""
    value = str(url or "").strip()
    web = value.lower().startswith(("https://", "http://"))
    return value if web and not any(c in value for c in " \r\n\t<>\"|") else ""


def one_line(text: object) -> str:
    """Text for a header or a subject: no line breaks, whatever the source sent."""
    return " ".join(str(text).split())
