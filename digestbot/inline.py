"""CSS inlining for the HTML email, done once per template instead of once per digest.

Email clients ignore or strip <style> (Outlook, many webmails), so every style must sit in a
`style` attribute. css-inline does that in ~0.5 ms per digest — as long as a whole digest takes to
render otherwise — so we inline the *template*: each Jinja tag is swapped for an HTML comment
(comments stay in place even between table rows, where text would be moved out of the table), the
source is inlined, and the tags are put back. If any tag did not survive in order (a template whose
tags open and close HTML elements in odd ways), we fall back to inlining each rendered digest.
"""
from __future__ import annotations

import logging
import re

import css_inline

log = logging.getLogger(__name__)
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_TOKEN = re.compile(r"<!--J(\d+)-->")
_ESCAPED_TOKEN = re.compile(r"&lt;!--J(\d+)--&gt;")  # inside <title> (RCDATA) the comment is text


def inliner() -> css_inline.CSSInliner:
    # load_remote_stylesheets=False: a template must never make the bot fetch URLs (its default does).
    return css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)


def inline_template(source: str, css: css_inline.CSSInliner) -> str | None:
    """The template source with its <style> inlined, or None when that cannot be done safely."""
    tags: list[str] = []

    def protect(match: re.Match[str]) -> str:
        tags.append(match.group())
        return f"<!--J{len(tags) - 1}-->"

    try:
        inlined = css.inline(_JINJA.sub(protect, source))
    except ValueError as exc:
        log.warning("cannot inline the CSS of the HTML template (%s); inlining each digest instead", exc)
        return None
    inlined = _ESCAPED_TOKEN.sub(r"<!--J\1-->", inlined)
    if [int(n) for n in _TOKEN.findall(inlined)] != list(range(len(tags))):
        log.info("the HTML template's tags do not survive CSS inlining in order; inlining each digest instead")
        return None
    return _TOKEN.sub(lambda m: tags[int(m.group(1))], inlined)
