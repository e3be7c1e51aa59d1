"""An email on the wire in two parts: the recipient's own header lines, then a part shared by all.

Building each email with the stdlib `email` package costs about as much as the SMTP exchange, and a
send pass sends one rendered Message to every recipient of a subscription. So the part that follows
from the content — From, Subject, List-Id, Auto-Submitted and the MIME body (text + HTML, encoded,
with its boundary) — is serialised once by the `email` package (`shared_part`), and each recipient
gets only their own lines in front of it (`recipient_headers`): To, Date, Message-ID and
List-Unsubscribe (their personal one-click URL). The body itself holds nothing personal (digest.py).
Both parts go on the wire dot-stuffed (`stuffed`), the shared one stuffed once.

A recipient line is written directly only when its value is printable ASCII without "=?" and the
line fits in 78 characters (plain addresses, Message-IDs: the usual case); anything else — a non-ASCII
display name — is folded and encoded by the `email` package's SMTP policy, as `build_email` would.
CR, LF or any other control character is refused (ValueError) before a byte is built, so no value can
inject a header.

List-Unsubscribe and List-Unsubscribe-Post are never RFC 2047-encoded, however long (RFC 2369: a mail
client looks for `<URL>` in the raw field and would not find an encoded one): `url_list_field` folds
List-Unsubscribe between its URLs only, and refuses a URL it cannot write as it is (not printable
ASCII, or too long for a 998-octet line). `build_email` writes them through the same code (`POLICY`).
"""
from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.policy import Policy
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from typing import Any

from ..models import Message
from . import Envelope

SMTP = policy.SMTP  # policy.default with CRLF line endings, as smtplib sends them
_LINE_STARTING_WITH_DOT = re.compile(rb"(?m)^\.")
MAX_LINE = 78  # RFC 5322 2.1.1: SHOULD be no more than 78 characters
MAX_OCTETS = 998  # RFC 5322 2.1.1: MUST be no more than 998 characters, CRLF excluded
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058's List-Unsubscribe-Post value
_URL = re.compile(r"[!-~]+")  # printable ASCII without space: a URL as RFC 3986 writes it
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PLAIN = re.compile(r"[\x20-\x7e]*")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_BARE = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")  # RFC 5322 dot-atom @ domain


def header_line(name: str, value: str | Address) -> bytes:
    """One header field, CRLF-terminated; folded and RFC 2047-encoded by the email package when needed."""
    text = str(value)
    if _CONTROL.search(text):
        raise ValueError(f"header {name} may not contain CR, LF or other control characters: {text!r}")
    line = f"{name}: {text}"
    if isinstance(value, str) and len(line) <= MAX_LINE and _PLAIN.fullmatch(text) and "=?" not in text:
        return line.encode("ascii") + b"\r\n"
    # As EmailMessage does it: a header object of the registry (an Address stays an object, so its
    # display name is quoted or encoded, never re-parsed), folded by the SMTP policy.
    folded: bytes = SMTP.header_factory(name, value).fold(policy=SMTP).encode("ascii")
    # Belt and braces: every line break the folding made must be a continuation (CRLF + space).
    if folded.count(b"\r\n") != folded.count(b"\r\n ") + folded.count(b"\r\n\t") + 1:
        raise ValueError(f"header {name} would not fold into one field: {text!r}")
    return folded


def is_bare(target: str) -> bool:
    """A plain dot-atom address ("ann@example.org"): nothing to parse, quote, encode or fold."""
    return _BARE.fullmatch(target) is not None and "=?" not in target and len(target) <= MAX_LINE - 4


def to_line(target: str) -> bytes:
    """The To field of `target` ("Name <addr>" or "addr"); Address() refuses a malformed addr-spec."""
    if is_bare(target):
        return f"To: {target}\r\n".encode("ascii")
    name, addr = parseaddr(target)
    address = Address(display_name=name, addr_spec=addr)
    if name.isascii() and "=?" not in name:
        return header_line("To", formataddr((name, addr)))  # quotes a name with specials, as Address does
    return header_line("To", address)


def recipient_headers(envelope: Envelope, date: str) -> bytes:
    """The lines that differ per recipient (nothing here may come from another recipient's row)."""
    lines = [to_line(envelope.target), header_line("Date", date),
             header_line("Message-ID", envelope.message_id)]
    if envelope.unsubscribe:
        lines.append(url_list_field("List-Unsubscribe", envelope.unsubscribe).encode("ascii"))
        if any(url.startswith("https://") for url in envelope.unsubscribe):
            # RFC 8058 one-click (Gmail/Yahoo bulk-sender rule) needs an https URL to POST to.
            lines.append(f"List-Unsubscribe-Post: {ONE_CLICK}\r\n".encode("ascii"))
    return b"".join(lines)


def url_list_field(name: str, urls: Sequence[str], linesep: str = "\r\n") -> str:
    """`name: <url1>, <url2>` ending in `linesep`, folded after a comma when the next URL would pass 78
    characters, never inside a URL, never encoded (RFC 2369). ValueError for a URL that is empty, not
    printable ASCII, holds a space, "<" or ">", or cannot fit one 998-octet line."""
    if not urls:
        raise ValueError(f"header {name} needs at least one URL")
    lines, line = [], f"{name}:"
    for n, url in enumerate(urls):
        if not _URL.fullmatch(url) or "<" in url or ">" in url:
            raise ValueError(f"header {name} cannot carry the URL {url!r}: RFC 2369 allows neither encoding nor "
                             f"folding inside it, so it must be printable ASCII without spaces or angle brackets "
                             f"(percent-encode the rest)")
        piece = f" <{url}>," if n < len(urls) - 1 else f" <{url}>"
        if n and len(line) + len(piece) > MAX_LINE:
            lines.append(line)
            line = ""
        line += piece
        if len(line) > MAX_OCTETS:
            raise ValueError(f"header {name} cannot carry a URL of {len(url)} characters: a header line is at most "
                             f"{MAX_OCTETS} octets (RFC 5322 2.1.1) and the URL may not be folded or encoded "
                             f"(RFC 2369); shorten it (bot.public_url)")
    lines.append(line)
    return linesep.join(lines) + linesep


def urls_of(value: str) -> list[str]:
    """The URLs of an unfolded `<url1>, <url2>` value, as they were joined (`url_list_field` then
    refuses a URL with a space or an angle bracket, so the split is exact); ValueError for anything else."""
    if not (value.startswith("<") and value.endswith(">")):
        raise ValueError(f"not a list of <URL>s separated by \", \": {value!r}")
    return value[1:-1].split(">, <")


class UrlListHeader(UnstructuredHeader, BaseHeader):
    """List-Unsubscribe as `build_email`'s EmailMessage writes it: checked when set, folded by
    `url_list_field` (the stdlib would RFC 2047-encode a long one)."""

    max_count = 1

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        url_list_field("List-Unsubscribe", urls_of(value))  # refuses what fold() could not write
        super().parse(value, kwds)

    def fold(self, *, policy: Policy) -> str:
        return url_list_field(self.name, urls_of(str(self)), policy.linesep)


class VerbatimHeader(UnstructuredHeader, BaseHeader):
    """List-Unsubscribe-Post as `build_email` writes it: one line of printable ASCII, never encoded."""

    max_count = 1

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        if not _PLAIN.fullmatch(value) or len(value) > MAX_OCTETS - len("List-Unsubscribe-Post: "):
            raise ValueError(f"header value must be one line of printable ASCII (RFC 2369: no encoding): {value!r}")
        super().parse(value, kwds)

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", UrlListHeader)
_HEADERS.map_to_type("list-unsubscribe-post", VerbatimHeader)
POLICY = policy.default.clone(header_factory=_HEADERS)  # build_email's: the stdlib's, but these two as above


def shared_part(message: Message, list_id: str, sender: Address) -> bytes:
    """The rest of the email, the same for every recipient of `message` on the list `list_id`.

    Written directly, not through EmailMessage: serialising with the `email` package cost 2-13 ms a
    digest (more than rendering it), and with one recipient per subscription nothing is shared. The
    headers still go through `header_line` (the SMTP policy folds and encodes what is not plain); each
    body part is encoded as `set_content` would: 7bit when it is ASCII in lines of at most 78 characters,
    else quoted-printable (binascii, in C) — the text reads back the same (tests/test_shared_send.py)."""
    parts = [_text_part("plain", message.text)]
    if message.html:
        parts.append(_text_part("html", message.html))
    head = b"".join([_from_line(sender.display_name, sender.addr_spec), header_line("Subject", message.subject),
                     header_line("List-Id", list_id), b"Auto-Submitted: auto-generated\r\n",
                     b"MIME-Version: 1.0\r\n"])
    if len(parts) == 1:
        return head + parts[0]
    boundary = _boundary(parts)
    return b"".join([head, b'Content-Type: multipart/alternative;\r\n boundary="', boundary, b'"\r\n\r\n',
                     *(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts), b"--", boundary, b"--\r\n"])


def premake(message: Message, list_id: str, sender: Address) -> None:
    """Make the message's shared part where it is rendered (render/apart.py: in a process of its own);
    `premade` gives it to the SMTP channel, which then only adds the recipient's header lines."""
    message.email_part = (list_id, sender, stuffed(shared_part(message, list_id, sender)))


def premade(message: Message, list_id: str, sender: Address) -> bytes | None:
    """The stuffed shared part `premake` made for this list and sender, or None."""
    made = message.email_part
    return made[2] if made is not None and made[0] == list_id and made[1] == sender else None


@lru_cache(maxsize=8)
def _from_line(display_name: str, addr_spec: str) -> bytes:
    """The From field, the same in every message of a pass: parsed and folded once, not once a digest."""
    return header_line("From", Address(display_name=display_name, addr_spec=addr_spec))


def _text_part(subtype: str, text: str) -> bytes:
    """One text/SUBTYPE part in UTF-8, headers and body, CRLF line ends, lines as set_content keeps them
    (split at \\n, \\r or \\r\\n, a final line end added)."""
    data = b"\n".join(text.encode("utf-8").splitlines()) + b"\n"
    if data.isascii() and max(map(len, data.split(b"\n"))) <= MAX_LINE:
        encoding, body = b"7bit", data
    else:
        encoding, body = b"quoted-printable", binascii.b2a_qp(data)
    return (b'Content-Type: text/' + subtype.encode("ascii") + b'; charset="utf-8"\r\nContent-Transfer-Encoding: '
            + encoding + b"\r\n\r\n" + body.replace(b"\n", b"\r\n"))


def _boundary(parts: list[bytes]) -> bytes:
    """A multipart boundary that no part contains (random: a body cannot be made to hold it)."""
    while True:
        boundary = f"==============={secrets.token_hex(12)}==".encode("ascii")
        if not any(boundary in part for part in parts):
            return boundary


def stuffed(data: bytes) -> bytes:
    """SMTP transparency (RFC 5321 4.5.2), as smtplib's `data` applies it to every message: a line
    that starts with "." gets a second one. The shared part is stuffed once, not once per recipient
    (on an 18 KB digest this regular expression costs more than the rest of building the email; most
    have no such line, which a substring search finds out ten times faster)."""
    if not data.startswith(b".") and b"\n." not in data:
        return data
    return _LINE_STARTING_WITH_DOT.sub(b"..", data)


def date_value() -> str:
    from ..store import utcnow  # looked up at call time, like build_email (tests may pin the clock)

    return _date_of(utcnow().replace(microsecond=0))


@lru_cache(maxsize=4)
def _date_of(second: datetime) -> str:
    return format_datetime(second)  # a pass sends hundreds of messages a second: formatted once each second
