"""Parsing untrusted XML safely: no DTD entities, no external resources, a size cap.

arXiv's Atom and RSS listings never declare entities, so a body that does is refused outright; this
closes the billion-laughs / quadratic-blowup attacks whatever the expat version, for ElementTree
(through defusedxml) and for feedparser (which gets the body only after `check_xml` passed).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError as XmlSyntaxError
from defusedxml.ElementTree import fromstring

from ..errors import ParseError

MAX_XML_BYTES = 10 * 1024 * 1024  # Http refuses larger bodies anyway; this guards parse() callers
_DECLARATION = re.compile(rb"<!(?:ENTITY|DOCTYPE[^>]*\[)", re.IGNORECASE)


def check_xml(body: bytes, fail: Callable[[str], ParseError], expected: str) -> None:
    """Raise ParseError for an empty, oversized, non-XML or entity-declaring body."""
    head = body[:300].lstrip().lower()
    if not head:
        raise fail(f"empty response body (expected {expected})")
    if len(body) > MAX_XML_BYTES:
        raise fail(f"the body is {len(body)} bytes, over the {MAX_XML_BYTES} limit for {expected}")
    if head.startswith((b"<!doctype html", b"<html")):
        raise fail(f"the server sent an HTML page instead of {expected} (an error or bot-check page?)")
    if b"encoding=" not in head[:100]:  # XML without a declared encoding must be UTF-8
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise fail(f"response is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if _DECLARATION.search(body):
        raise fail("the XML declares entities (an entity-expansion attack?); refused")


def parse_xml(body: bytes, fail: Callable[[str], ParseError], expected: str) -> Element:
    """The root element of a trusted-shape XML body; ParseError for anything else."""
    check_xml(body, fail, expected)
    try:
        return fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise fail(f"unsafe XML refused ({type(exc).__name__})") from None
    except XmlSyntaxError as exc:
        raise fail(f"invalid XML ({exc}); expected {expected}") from None
    except (ValueError, RecursionError) as exc:
        raise fail(f"invalid XML ({type(exc).__name__}); expected {expected}") from None
