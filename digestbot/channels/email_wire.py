"""An email on the wire in two parts: the recipient's own header lines, then a part shared by all.

Building each email with the stdlib `email` package costs about as much as the SMTP exchange, and a
send pass sends one rendered Message to every recipient of a subscription. So the part that follows
from the content — From, Subject, List-Id, Auto-Submitted and the MIME body (text + HTML, encoded,
with its boundary) — is serialised once by the `email` package (`shared_part`), and each recipient
gets only their own lines in front of it (`recipient_headers`): To, Date, Message-ID and
List-Unsubscribe (their personal one-click URL). The body itself holds nothing personal (digest.py).
Both parts go on the wire dot-stuffed (`stuffed`), the shared one stuffed once.

A recipient line is written directly only when its value is printable ASCII without "=?" and the
line fits in 78 characters (plain addresses, Message-IDs, URLs: the usual case); anything else — a
non-ASCII display name, a long List-Unsubscribe — is folded and encoded by the `email` package's SMTP
policy, as `build_email` would. CR, LF or any other control character is refused (ValueError) before
a byte is built, so no value can inject a header.
"""
from __future__ import annotations

import re
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

from ..models import Message
from . import Envelope

SMTP = policy.SMTP  # policy.default with CRLF line endings, as smtplib sends them
_LINE_STARTING_WITH_DOT = re.compile(rb"(?m)^\.")
MAX_LINE = 78  # RFC 5322 2.1.1: SHOULD be no more than 78 characters
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
        lines.append(header_line("List-Unsubscribe", ", ".join(f"<{url}>" for url in envelope.unsubscribe)))
        if any(url.startswith("https://") for url in envelope.unsubscribe):
            # RFC 8058 one-click (Gmail/Yahoo bulk-sender rule) needs an https URL to POST to.
            lines.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    return b"".join(lines)


def shared_part(message: Message, list_id: str, sender: Address) -> bytes:
    """The rest of the email, the same for every recipient of `message` on the list `list_id`."""
    mail = EmailMessage(policy=SMTP)
    mail["From"] = sender
    mail["Subject"] = message.subject
    mail["List-Id"] = list_id
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.text)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    return mail.as_bytes()


def stuffed(data: bytes) -> bytes:
    """SMTP transparency (RFC 5321 4.5.2), as smtplib's `data` applies it to every message: a line
    that starts with "." gets a second one. The shared part is stuffed once, not once per recipient
    (on an 18 KB digest this regular expression costs more than the rest of building the email)."""
    return _LINE_STARTING_WITH_DOT.sub(b"..", data)


def date_value() -> str:
    from ..store import utcnow  # looked up at call time, like build_email (tests may pin the clock)

    return format_datetime(utcnow())
