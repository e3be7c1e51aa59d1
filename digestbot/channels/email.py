"""Email over SMTP: one connection per batch, multipart/alternative text + HTML."""
from __future__ import annotations

import logging
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from ..errors import DeliveryError
from ..models import Message
from . import Channel, Envelope

log = logging.getLogger(__name__)


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
    """Sends email through the `[email]` SMTP server (security none | starttls | ssl)."""

    kind = "smtp"

    def __init__(self, host: str, port: int, security: str, sender: Address, username: str | None = None,
                 password: str | None = None, timeout: float = 30.0):
        self.host, self.port, self.security, self.sender = host, port, security, sender
        self.username, self.password, self.timeout = username, password, timeout
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        where = f"SMTP server {self.host}:{self.port}"
        try:
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
            if self.username:  # only now: never AUTH before TLS
                smtp.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{where} refused the login for {self.username!r}: {exc.smtp_code} "
                                f"{exc.smtp_error.decode(errors='replace')} (check [email] username and the "
                                f"password variable)", permanent=False) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"cannot reach {where}: {exc or type(exc).__name__} (is it running? "
                                f"check [email] host, port and security)") from None
        return smtp

    def send(self, message: Message, envelope: Envelope) -> str:
        mail = build_email(message, envelope, self.sender)
        for attempt in (1, 2):  # a server that dropped an idle connection gets one reconnect
            if self._smtp is None:
                self._smtp = self._connect()
            try:
                self._smtp.send_message(mail, from_addr=self.sender.addr_spec, to_addrs=[parseaddr(envelope.target)[1]])
                return envelope.message_id
            except smtplib.SMTPServerDisconnected:
                self._smtp = None
                if attempt == 2:
                    raise DeliveryError(f"SMTP server {self.host}:{self.port} disconnected") from None
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()))
                raise _reply_error(envelope.target, code, reply) from None
            except smtplib.SMTPResponseException as exc:
                raise _reply_error(envelope.target, exc.smtp_code, exc.smtp_error) from None
            except (OSError, smtplib.SMTPException) as exc:
                self._smtp = None
                raise DeliveryError(f"SMTP send to {envelope.target} failed: {exc}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._smtp = None


def _reply_error(target: str, code: int, reply: bytes | str) -> DeliveryError:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return DeliveryError(f"SMTP server answered {code} {text} for {target}", permanent=500 <= code < 600)
