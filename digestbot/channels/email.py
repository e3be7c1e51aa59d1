"""Email over SMTP: one connection per batch, multipart/alternative text + HTML."""
from __future__ import annotations

import logging
import re
import smtplib
import ssl
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from ..errors import DeliveryError
from ..models import Message
from . import Channel, Envelope

log = logging.getLogger(__name__)


def build_email(message: Message, envelope: Envelope, sender: Address) -> EmailMessage:
    """The message as it goes on the wire; EmailMessage refuses CR/LF in any header value."""
    from ..store import utcnow

    mail = EmailMessage()
    name, addr = parseaddr(envelope.target)
    mail["From"] = sender
    mail["To"] = Address(display_name=name, addr_spec=addr)
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = envelope.message_id
    mail["List-Id"] = envelope.list_id
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.text)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    return mail


class SmtpChannel(Channel):
    """Sends email through the `[email]` SMTP server (security none | starttls | ssl).

    One connection serves a whole batch and is re-opened once if the server dropped it. Each message
    goes to one recipient, so a refusal maps to exactly one ledger row: 4xx is retried later, 5xx is
    permanent. The password is only ever sent inside TLS (or to a server on this machine)."""

    kind = "smtp"

    def __init__(self, host: str, port: int, security: str, sender: Address, username: str | None = None,
                 password: str | None = None, timeout: float = 30.0):
        self.host, self.port, self.security, self.sender = host, port, security, sender
        self.username, self.password, self.timeout = username, password, timeout
        self._smtp: smtplib.SMTP | None = None
        self._template: _Template | None = None

    @property
    def where(self) -> str:
        return f"SMTP server {self.host}:{self.port}"

    def _connect(self) -> smtplib.SMTP:
        try:
            smtp = self._open()
            self._login(smtp)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{self.where} refused the login for {self.username!r}: {exc.smtp_code} "
                                f"{_text(exc.smtp_error)} (check [email] username and the password variable)",
                                unreachable=True) from None
        except smtplib.SMTPNotSupportedError as exc:
            remedy = ("use security = \"ssl\" with its TLS port, usually 465; digestbot never falls back to plain "
                      "text" if "STARTTLS" in str(exc) else "remove [email] username, or check the port")
            raise DeliveryError(f"{self.where}: {exc} ({remedy})", unreachable=True) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"cannot reach {self.where}: {exc or type(exc).__name__} (is it running? "
                                f"check [email] host, port and security)", unreachable=True) from None
        return smtp

    def _open(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            smtp.starttls(context=context)  # raises SMTPNotSupportedError when not offered: no downgrade
        return smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        if not self.username:
            return
        if self.security == "none" and self.host not in LOOPBACK:
            smtp.close()
            raise DeliveryError(f"{self.where}: refusing to send the password unencrypted (security = \"none\" "
                                f"with a username): use starttls or ssl", unreachable=True, permanent=True)
        smtp.login(self.username, self.password or "")  # only now: never AUTH before TLS

    def send(self, message: Message, envelope: Envelope) -> str:
        to = parseaddr(envelope.target)[1]
        try:
            data = self._wire(message, envelope, to)
        except (ValueError, TypeError) as exc:  # CR/LF or similar in a header value: never on the wire
            raise DeliveryError(f"cannot build the email to {envelope.target}: {exc}", permanent=True) from None
        for attempt in (1, 2):  # a server that dropped the connection gets one reconnect
            if self._smtp is None:
                self._smtp = self._connect()
            try:
                if isinstance(data, EmailMessage):  # non-ASCII addresses: smtplib negotiates SMTPUTF8
                    self._smtp.send_message(data, from_addr=self.sender.addr_spec, to_addrs=[to])
                else:
                    self._smtp.sendmail(self.sender.addr_spec, [to], data)
                log.debug("%s accepted %s for %s", self.where, envelope.message_id, to)
                return envelope.message_id
            except smtplib.SMTPServerDisconnected:
                self._smtp = None
                if attempt == 2:
                    raise DeliveryError(f"{self.where} disconnected twice while sending to {to}",
                                        unreachable=True) from None
                log.info("%s dropped the connection; reconnecting", self.where)
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()))
                raise _reply_error(envelope.target, code, reply) from None
            except smtplib.SMTPResponseException as exc:
                raise _reply_error(envelope.target, exc.smtp_code, exc.smtp_error) from None
            except (OSError, smtplib.SMTPException) as exc:
                self._smtp = None
                raise DeliveryError(f"SMTP send to {to} failed: {exc}", unreachable=True) from None
        raise AssertionError("unreachable")

    def _wire(self, message: Message, envelope: Envelope, to: str) -> bytes | EmailMessage:
        """The message as sent. Building an email costs more than sending it, and every recipient of a
        subscription's period gets the same content: the bytes are reused with the recipient's own
        To, Message-ID and Date, once a second full build has shown that nothing else differs."""
        if not (to + self.sender.addr_spec).isascii():
            return build_email(message, envelope, self.sender)
        template = self._template
        if template is not None and template.message is message and template.reusable:
            return template.readdress(envelope)
        mail = build_email(message, envelope, self.sender)
        data = _flatten(mail)
        boundary = (mail.get_boundary() or "").encode()
        if template is not None and template.message is message and template.reusable is None:
            # the MIME boundary is random per build: the only other difference allowed
            template.reusable = template.readdress(envelope) == data.replace(boundary, template.boundary)
        else:
            self._template = _Template(message, data, boundary)
        return data

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._smtp = None


LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_PER_RECIPIENT = ("To", "Message-ID", "Date")


def _flatten(mail: EmailMessage) -> bytes:
    return mail.as_bytes(policy=mail.policy.clone(linesep="\r\n"))


def _header_line(name: str) -> re.Pattern:
    return re.compile(rb"^" + name.encode() + rb":.*\r\n(?:[ \t].*\r\n)*", re.MULTILINE | re.IGNORECASE)


_LINES = {name: _header_line(name) for name in _PER_RECIPIENT}


class _Template:
    """One built message whose bytes can serve the other recipients of the same content.

    `reusable` is None until a second recipient's full build is compared with the readdressed
    bytes: a header that depends on the recipient in any other way (say, a personal unsubscribe
    link) makes them differ, and then every recipient gets a full build."""

    def __init__(self, message: Message, data: bytes, boundary: bytes):
        self.message, self.reusable, self.boundary = message, None, boundary
        self.head, self.body = data.split(b"\r\n\r\n", 1)
        self.head += b"\r\n"

    def readdress(self, envelope: Envelope) -> bytes:
        head = self.head
        lines = _recipient_headers(envelope)
        for header, pattern in _LINES.items():
            line = pattern.search(lines).group(0)
            head = pattern.sub(lambda _match: line, head, count=1)
        return head + b"\r\n" + self.body


def _recipient_headers(envelope: Envelope) -> bytes:
    """To, Message-ID and Date as `build_email` writes them; plain ASCII values without a display
    name are written directly (the email package's header objects cost more than the SMTP send)."""
    from ..store import utcnow

    name, addr = parseaddr(envelope.target)
    date = format_datetime(utcnow())
    simple = f"{addr}{envelope.message_id}"
    if not name and simple.isascii() and len(simple) < 900 and not any(c in simple for c in "\r\n\t \"(),:;[]\\"):
        return f"To: {addr}\r\nMessage-ID: {envelope.message_id}\r\nDate: {date}\r\n".encode()
    fresh = EmailMessage(policy=email_policy.SMTP)
    fresh["To"] = Address(display_name=name, addr_spec=addr)
    fresh["Message-ID"] = envelope.message_id
    fresh["Date"] = date
    return bytes(fresh)


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _reply_error(target: str, code: int, reply: bytes | str) -> DeliveryError:
    """4xx: try again later; 5xx: permanent (unknown mailbox, policy); 421: the server is going away."""
    text = f"SMTP server answered {code} {_text(reply)} for {target}"
    if 500 <= code < 600:
        text += " (permanent: check the address, then `digestbot retry --failed`)"
    return DeliveryError(text, permanent=500 <= code < 600, unreachable=code == 421)
