"""Email over SMTP: one connection per batch, multipart/alternative text + HTML."""
from __future__ import annotations

import logging
import smtplib
import ssl
from collections import OrderedDict
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Callable

from .. import mailwire
from ..errors import DeliveryError
from ..models import Message
from . import Channel, Envelope

log = logging.getLogger(__name__)
SHARED_PARTS = 16  # serialised bodies kept: the send pass sends one subscription's rows together


def build_email(message: Message, envelope: Envelope, sender: Address) -> EmailMessage:
    """The message as it goes on the wire; EmailMessage refuses CR/LF in any header value.

    The HTML arrives with its CSS already inlined (render.py does it, so that the size limit is
    checked on what is sent)."""
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
    if envelope.unsubscribe:
        mail["List-Unsubscribe"] = ", ".join(f"<{url}>" for url in envelope.unsubscribe)
        if any(url.startswith("https://") for url in envelope.unsubscribe):
            # RFC 8058 one-click (Gmail/Yahoo bulk-sender rule) needs an https URL to POST to.
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
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
        self._mail_from = smtplib.quoteaddr(sender.addr_spec)
        self._shared_parts: OrderedDict[tuple[int, str], tuple[Message, bytes]] = OrderedDict()

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
        return self.send_after(message, envelope, settle=_nothing)

    def send_after(self, message: Message, envelope: Envelope, settle: Callable[[], None]) -> str:
        """Send; `settle` runs while the MAIL command is with the server, and always before the
        message is handed over (the send pass commits the previous digest there, see ledger.py)."""
        to = envelope.target if mailwire.is_bare(envelope.target) else parseaddr(envelope.target)[1]
        try:
            data = self._wire(message, envelope, to)
        except (ValueError, TypeError) as exc:  # CR/LF or similar in a header value: never on the wire
            raise DeliveryError(f"cannot build the email to {envelope.target}: {exc}", permanent=True) from None
        for attempt in (1, 2):  # a server that dropped the connection gets one reconnect
            if self._smtp is None:
                self._smtp = self._connect()
            try:
                if isinstance(data, EmailMessage):  # non-ASCII addresses: smtplib negotiates SMTPUTF8
                    settle()
                    self._smtp.send_message(data, from_addr=self.sender.addr_spec, to_addrs=[to])
                else:
                    _transaction(self._smtp, self._mail_from, to, data, settle)
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
                if exc.smtp_code == 421:  # the server is closing the connection
                    self._smtp = None
                raise _reply_error(envelope.target, exc.smtp_code, exc.smtp_error) from None
            except (OSError, smtplib.SMTPException) as exc:
                self._smtp = None
                raise DeliveryError(f"SMTP send to {to} failed: {exc}", unreachable=True) from None
        raise AssertionError("unreachable")

    def _wire(self, message: Message, envelope: Envelope, to: str) -> bytes | EmailMessage:
        """The message as DATA carries it (dot-stuffed); an EmailMessage when an address is not ASCII
        (smtplib then negotiates SMTPUTF8). Built before connecting: a bad header never reaches the
        server.

        The recipient's header lines are built per send; the rest (content headers and MIME body) is
        serialised and stuffed once per rendered message and list, and reused (see mailwire.py)."""
        if not (to + self.sender.addr_spec).isascii():
            return build_email(message, envelope, self.sender)
        own = mailwire.stuffed(mailwire.recipient_headers(envelope, mailwire.date_value()))
        return own + self._shared(message, envelope)

    def _shared(self, message: Message, envelope: Envelope) -> bytes:
        key = (id(message), envelope.list_id)
        cached = self._shared_parts.get(key)
        if cached is not None and cached[0] is message:  # identity, not just id(): ids are reused
            self._shared_parts.move_to_end(key)
            return cached[1]
        part = mailwire.stuffed(mailwire.shared_part(message, envelope.list_id, self.sender))
        self._shared_parts[key] = (message, part)  # holding the message keeps its id() unique
        if len(self._shared_parts) > SHARED_PARTS:
            self._shared_parts.popitem(last=False)
        return part

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._smtp = None


LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _nothing() -> None:
    pass


def _transaction(smtp: smtplib.SMTP, mail_from: str, to: str, stuffed: bytes, settle: Callable[[], None]) -> None:
    """smtplib's sendmail for one recipient (same commands, replies and exceptions), except that
    `settle()` runs between sending MAIL and reading its reply (local work overlapping the
    server's), and that the message arrives already dot-stuffed (mailwire.stuffed)."""
    smtp.ehlo_or_helo_if_needed()
    size = f" SIZE={len(stuffed)}" if smtp.does_esmtp and smtp.has_extn("size") else ""
    smtp.putcmd("mail", f"FROM:{mail_from}{size}")
    try:
        settle()
    except BaseException:
        _reset(smtp, read_reply=True)  # leave the session clean: nothing was handed over
        raise
    code, reply = smtp.getreply()
    if code != 250:
        smtp.close() if code == 421 else _reset(smtp)
        raise smtplib.SMTPSenderRefused(code, reply, mail_from)
    code, reply = smtp.docmd("rcpt", f"TO:<{to}>")  # `to` is a bare addr-spec (send_after)
    if code not in (250, 251):
        smtp.close() if code == 421 else _reset(smtp)
        raise smtplib.SMTPRecipientsRefused({to: (code, reply)})
    code, reply = smtp.docmd("data")
    if code != 354:
        smtp.close() if code == 421 else _reset(smtp)
        raise smtplib.SMTPDataError(code, reply)
    smtp.send(stuffed + (b"." if stuffed.endswith(b"\r\n") else b"\r\n.") + b"\r\n")
    code, reply = smtp.getreply()
    if code != 250:
        smtp.close() if code == 421 else _reset(smtp)
        raise smtplib.SMTPDataError(code, reply)


def _reset(smtp: smtplib.SMTP, *, read_reply: bool = False) -> None:
    try:
        if read_reply:
            smtp.getreply()  # the MAIL reply still on its way
        smtp.rset()
    except (OSError, smtplib.SMTPException):
        pass  # a dead connection is found (and reopened) by the next send
def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _reply_error(target: str, code: int, reply: bytes | str) -> DeliveryError:
    """4xx: try again later; 5xx: permanent (unknown mailbox, policy); 421: the server is going away."""
    text = f"SMTP server answered {code} {_text(reply)} for {target}"
    if 500 <= code < 600:
        text += " (permanent: check the address, then `digestbot retry --failed`)"
    return DeliveryError(text, permanent=500 <= code < 600, unreachable=code == 421)
