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
_SHAPE = re.compile(r"<!--J\d+-->|</?([a-zA-Z][a-zA-Z0-9]*)")


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
        protected = _JINJA.sub(protect, source)
        inlined = css.inline(protected)
    except ValueError as exc:
        log.warning("cannot inline the CSS of the HTML template (%s); inlining each digest instead", exc)
        return None
    inlined = _ESCAPED_TOKEN.sub(r"<!--J\1-->", inlined)
    if [int(n) for n in _TOKEN.findall(inlined)] != list(range(len(tags))) or _shape(inlined) != _shape(protected):
        log.info("the HTML template's structure does not survive CSS inlining as written (e.g. an element "
                 "opened in one {%% if %%} branch); inlining each digest instead")
        return None
    return _TOKEN.sub(lambda m: tags[int(m.group(1))], inlined)


def _shape(html: str) -> list[str]:
    """The body's tags and Jinja tokens in order, without the <tbody> a parser adds: if the parser
    moved or closed anything (and so would change what the template renders), the shapes differ."""
    body = html[html.lower().find("<body"):]
    return [m.group(0).lower() for m in _SHAPE.finditer(body) if (m.group(1) or "").lower() != "tbody"]
