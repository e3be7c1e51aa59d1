"""Email over SMTP: one connection per sender thread, multipart/alternative text + HTML."""
from __future__ import annotations

import logging
import smtplib
import ssl
from collections import OrderedDict
from collections.abc import Callable
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING

from ..errors import DeliveryError, DigestbotError
from ..models import Message
from . import Channel, Envelope, email_wire
from .smtp_transaction import OutcomeUnknown, Wire, reply_text, transaction

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)
SHARED_PARTS = 16  # serialised bodies kept: the send pass sends one subscription's rows together


def build_email(message: Message, envelope: Envelope, sender: Address) -> EmailMessage:
    """The message as it goes on the wire; EmailMessage refuses CR/LF in any header value.

    The HTML arrives with its CSS already inlined (render.py does it, so that the size limit is
    checked on what is sent)."""
    from ..store import utcnow

    mail = EmailMessage(policy=email_wire.POLICY)  # List-Unsubscribe folded, never encoded (RFC 2369)
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
            mail["List-Unsubscribe-Post"] = email_wire.ONE_CLICK
    mail.set_content(message.text)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    return mail


class SmtpChannel(Channel):
    """Sends email through the `[email]` SMTP server (security none | starttls | ssl).

    One connection serves a sender thread's whole pass (sending.py). Each message goes to one
    recipient, so a refusal maps to exactly one ledger row: 4xx is retried later, 5xx is permanent.
    The password is only ever sent inside TLS (or to a server on this machine).

    Where a failure happens decides what it means (RFC 5321 6.1): before the final "." of DATA
    nothing was handed over, so the connection is re-opened once and then the digest waits for a
    later run; after it, the server may have the message. Then the outcome is unknown: it is tried
    once more, and if that does not end in a clear 250 the digest is `failed` with a text saying
    it may have arrived (at most twice, same Message-ID), never re-sent on its own. A reply that
    smtplib cannot read (a line over 8 KB, no code) is such a failure, not the server's refusal.
    `data_timeout` is the wait for the reply to the final ".": 10 minutes (RFC 5321 4.5.3.2.6),
    as a server may check the message before answering; `timeout` is for everything else.

    Its ledger record costs no time of its own (`record`): the send pass's commit of one message
    runs while the next message's MAIL command is with the server, and that message is handed over
    only after the commit succeeded, so still at most one accepted message is unrecorded."""

    kind = "smtp"

    def __init__(self, host: str, port: int, security: str, sender: Address, username: str | None = None,
                 password: str | None = None, timeout: float = 30.0, data_timeout: float = 600.0):
        self.host, self.port, self.security, self.sender = host, port, security, sender
        self.username, self.password, self.timeout = username, password, timeout
        self.data_timeout = data_timeout
        self._smtp: smtplib.SMTP | None = None
        self._mail_from = smtplib.quoteaddr(sender.addr_spec)
        self._shared_parts: OrderedDict[tuple[int, str], tuple[Message, bytes]] = OrderedDict()
        self._unrecorded: Callable[[], None] | None = None  # the record `record` held back

    @classmethod
    def from_config(cls, config: Config, ledger_channel: str) -> SmtpChannel:
        """`[email]`, with the password from the variable `password_env` names."""
        e = config.email
        if e is None:
            raise DigestbotError(f"{config.path}: the smtp channel needs an [email] section")
        password = config.secret(e.password_env, "email.password_env")
        return cls(e.host, e.port, e.security, e.sender_address, e.username, password, e.timeout)

    @property
    def where(self) -> str:
        return f"SMTP server {self.host}:{self.port}"

    def _connect(self) -> smtplib.SMTP:
        try:
            smtp = self._open()
            smtp.ehlo_or_helo_if_needed()  # here, so that an EHLO failure reads as the connection's
            self._login(smtp)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{self.where} refused the login for {self.username!r}: {exc.smtp_code} "
                                f"{reply_text(exc.smtp_error)} (check [email] username and the password variable)",
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
        # A TLS context only when TLS is used: loading the system's CA certificates costs ~20 ms per
        # connection, a tenth of a 100-digest batch to a relay on this machine.
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            # raises SMTPNotSupportedError when not offered: no downgrade
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        if not self.username:
            return
        if self.security == "none" and self.host not in LOOPBACK:
            smtp.close()
            raise DeliveryError(f"{self.where}: refusing to send the password unencrypted (security = \"none\" "
                                f"with a username): use starttls or ssl", unreachable=True, permanent=True)
        smtp.login(self.username, self.password or "")  # only now: never AUTH before TLS

    def record(self, commit: Callable[[], None]) -> None:
        """Held back until the next transaction has sent its MAIL command, or `flush`/`close`."""
        self.flush()
        self._unrecorded = commit

    def flush(self) -> None:
        commit, self._unrecorded = self._unrecorded, None
        if commit is not None:
            commit()

    def send(self, message: Message, envelope: Envelope) -> str:
        """Send; a held-back record runs while the MAIL command is with the server, and in any case
        before this message is handed over (a failure to record stops it: see `transaction`)."""
        try:
            return self._send(message, envelope)
        finally:
            self.flush()  # the transaction never got as far as MAIL (no connection, a bad header)

    def _send(self, message: Message, envelope: Envelope) -> str:
        to = envelope.target if email_wire.is_bare(envelope.target) else parseaddr(envelope.target)[1]
        try:
            mail = self._wire(message, envelope, to)
        except (ValueError, TypeError) as exc:  # CR/LF or similar in a header value: never on the wire
            raise DeliveryError(f"cannot build the email to {envelope.target}: {exc}", permanent=True) from None
        try:
            self._send_reconnecting(mail, envelope.target)
        except OutcomeUnknown as lost:
            log.warning("%s: no readable reply to the final \".\" of %s for %s (%s); the server may have it. "
                        "Sending it once more, so it may arrive twice (same Message-ID)", self.where,
                        envelope.message_id, to, lost)
            self._once_more(mail, envelope, lost)
        log.debug("%s accepted %s for %s", self.where, envelope.message_id, to)
        return envelope.message_id

    def _send_reconnecting(self, mail: Wire, target: str) -> None:
        """One try, and one more on a new connection if the old one broke before the final "."."""
        try:
            return self._attempt(mail, target)
        except smtplib.SMTPServerDisconnected as exc:
            log.info("%s dropped the connection (%s); reconnecting", self.where, exc)
        try:
            return self._attempt(mail, target)
        except smtplib.SMTPServerDisconnected as exc:
            raise DeliveryError(f"{self.where} disconnected twice while sending to {mail.to} ({exc}); nothing was "
                                f"handed over, retried later", unreachable=True) from None

    def _once_more(self, mail: Wire, envelope: Envelope, lost: Exception) -> None:
        """The second and last try of a message whose first outcome is unknown (as Slack's posts),
        on a new connection (_attempt dropped the old one). A server that lost its reply again, or
        cannot be reached, is down for the rest of the pass: the next message would fare the same."""
        try:
            self._attempt(mail, envelope.target)
        except (OutcomeUnknown, DeliveryError, smtplib.SMTPException, OSError) as again:
            broken = not isinstance(again, DeliveryError) or again.unreachable
            raise DeliveryError(
                f"outcome unknown: the message to {envelope.target} was handed over to {self.where}, but no "
                f"readable reply came back ({lost}), and one more try failed too ({again}). It may have arrived, "
                f"at most twice, as Message-ID {envelope.message_id}: check with the recipient or in the server's "
                f"log, and only if it did not arrive, `digestbot retry --failed`", permanent=True,
                unreachable=broken) from None

    def _attempt(self, mail: Wire, target: str) -> None:
        """One transaction; a broken connection (SMTPServerDisconnected, OutcomeUnknown) is dropped
        and re-raised, every other failure becomes the DeliveryError it means."""
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self.last_reply = transaction(self._smtp, self._mail_from, mail, self.flush,
                                          self.data_timeout)  # flush: see `record`
        except (smtplib.SMTPServerDisconnected, OutcomeUnknown):
            self._smtp = None
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise _reply_error(target, code, reply) from None
        except smtplib.SMTPNotSupportedError as exc:  # SMTPUTF8 missing: nothing this server can do for it
            raise DeliveryError(f"{self.where} cannot take the non-ASCII address of {target}: {exc} (use an ASCII "
                                f"address, or a server that offers SMTPUTF8)", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:  # the server is closing the connection
                self._smtp = None
            raise _reply_error(target, exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            self._smtp = None
            raise DeliveryError(f"SMTP send to {mail.to} failed: {exc}", unreachable=True) from None

    def _wire(self, message: Message, envelope: Envelope, to: str) -> Wire:
        """The message as DATA carries it (dot-stuffed). Built before connecting: a bad header never
        reaches the server. A non-ASCII address needs SMTPUTF8: then the `email` package writes the
        whole message with UTF-8 headers, as smtplib's send_message would.

        The recipient's header lines are built per send; the rest (content headers and MIME body) is
        serialised and stuffed once per rendered message and list, and reused (see email_wire.py)."""
        if not (to + self.sender.addr_spec).isascii():
            whole = build_email(message, envelope, self.sender).as_bytes(policy=policy.SMTPUTF8)
            return Wire(to, email_wire.stuffed(whole), utf8=True)
        own = email_wire.stuffed(email_wire.recipient_headers(envelope, email_wire.date_value()))
        return Wire(to, own + self._shared(message, envelope))

    def _shared(self, message: Message, envelope: Envelope) -> bytes:
        made = email_wire.premade(message, envelope.list_id, self.sender)
        if made is not None:
            return made
        key = (id(message), envelope.list_id)
        cached = self._shared_parts.get(key)
        if cached is not None and cached[0] is message:  # identity, not just id(): ids are reused
            self._shared_parts.move_to_end(key)
            return cached[1]
        part = email_wire.stuffed(email_wire.shared_part(message, envelope.list_id, self.sender))
        self._shared_parts[key] = (message, part)  # holding the message keeps its id() unique
        if len(self._shared_parts) > SHARED_PARTS:
            self._shared_parts.popitem(last=False)
        return part

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._smtp is not None:
                try:
                    self._smtp.quit()
                except (OSError, smtplib.SMTPException):
                    pass
                self._smtp = None


LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _reply_error(target: str, code: int, reply: bytes | str) -> DeliveryError:
    """4xx: try again later; 5xx: permanent (unknown mailbox, policy); 421: the server is going away."""
    text = f"SMTP server answered {code} {reply_text(reply)} for {target}"
    if 500 <= code < 600:
        text += " (permanent: check the address, then `digestbot retry --failed`)"
    return DeliveryError(text, permanent=500 <= code < 600, unreachable=code == 421)
