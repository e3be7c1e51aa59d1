"""One SMTP mail transaction for one recipient, knowing where it broke (SmtpChannel decides what
that means). smtplib's sendmail, with three differences:

- the message arrives dot-stuffed (email_wire.stuffed) and MAIL goes out before `settle()` runs;
- a reply smtplib cannot read — it makes up "500 Line too long." for a line over 8 KB and code -1
  for a line without a number — is a broken connection (SMTPServerDisconnected), never an answer;
- once the final "." of DATA went out, a missing or unreadable reply raises OutcomeUnknown: the
  server may have the message (RFC 5321 6.1). That reply is awaited `data_timeout` seconds.
"""
from __future__ import annotations

import smtplib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Wire:
    """One message for one recipient as it goes on the wire: the bare address, the dot-stuffed
    DATA, and whether it needs SMTPUTF8 (a non-ASCII address)."""

    to: str
    data: bytes
    utf8: bool = False


class OutcomeUnknown(Exception):
    """The final "." of DATA went out and no readable reply came back: the server may have the
    message (RFC 5321 6.1 allows it to deliver what it never acknowledged)."""


def transaction(smtp: smtplib.SMTP, mail_from: str, mail: Wire, settle: Callable[[], None],
                data_timeout: float) -> str:
    """smtplib's sendmail for one recipient (same commands and exceptions, see the module's notes);
    `settle()` runs between sending MAIL and reading its reply (local work overlapping the
    server's). The caller has said EHLO (SmtpChannel._connect). Returns the server's reply to the
    final "." ("250 2.0.0 Ok: queued as 4F2A1"), which `digestbot send-test` shows."""
    options = f" SIZE={len(mail.data)}" if smtp.does_esmtp and smtp.has_extn("size") else ""
    if mail.utf8:
        if not (smtp.does_esmtp and smtp.has_extn("smtputf8")):
            raise smtplib.SMTPNotSupportedError("the server does not offer SMTPUTF8")
        smtp.command_encoding = "utf-8"  # as smtplib's mail() does for SMTPUTF8
        options += " SMTPUTF8 BODY=8BITMIME"
    smtp.putcmd("mail", f"FROM:{mail_from}{options}")
    try:
        settle()
    except BaseException:
        _reset(smtp, read_reply=True)  # leave the session clean: nothing was handed over
        raise
    code, reply = _reply(smtp)
    if code != 250:
        smtp.close() if code == 421 else _reset(smtp)
        raise smtplib.SMTPSenderRefused(code, reply, mail_from)
    smtp.putcmd("rcpt", f"TO:<{mail.to}>")  # a bare addr-spec (SmtpChannel._send)
    code, reply = _reply(smtp)
    if code not in (250, 251):
        smtp.close() if code == 421 else _reset(smtp)
        raise smtplib.SMTPRecipientsRefused({mail.to: (code, reply)})
    smtp.putcmd("data")
    code, reply = _reply(smtp)
    if code != 354:
        smtp.close() if code == 421 else _reset(smtp)
        raise smtplib.SMTPDataError(code, reply)
    # sendall() either hands over every byte or raises: a failure here is before the final "."
    smtp.send(mail.data + (b"." if mail.data.endswith(b"\r\n") else b"\r\n.") + b"\r\n")
    code, reply = _final_reply(smtp, data_timeout)
    if code != 250:
        smtp.close() if code == 421 else _reset(smtp)
        raise smtplib.SMTPDataError(code, reply)
    return f"{code} {reply_text(reply)}"


def _reply(smtp: smtplib.SMTP) -> tuple[int, bytes]:
    """smtplib's getreply, where a reply it cannot read is what it is, a broken connection, not an
    answer: getreply makes up "500 Line too long." (a str, not the server's bytes) for a line over
    8 KB, and code -1 for a line without a number."""
    try:
        code, reply = smtp.getreply()
    except smtplib.SMTPResponseException as exc:  # getreply raises no other: this one is smtplib's own
        raise smtplib.SMTPServerDisconnected(f"unreadable reply: {reply_text(exc.smtp_error)}") from None
    if not 200 <= code <= 599:
        smtp.close()  # what follows in the stream cannot be matched to a command any more
        raise smtplib.SMTPServerDisconnected(f"unreadable reply {reply_text(reply)[:80]!r} (code {code})")
    return code, reply


def _final_reply(smtp: smtplib.SMTP, data_timeout: float) -> tuple[int, bytes]:
    """The reply to the final ".", waited for `data_timeout` seconds; no reply is OutcomeUnknown."""
    sock = smtp.sock
    if sock is not None:
        sock.settimeout(data_timeout)
    try:
        return _reply(smtp)
    except smtplib.SMTPServerDisconnected as exc:
        if isinstance(exc.__context__, TimeoutError):  # getreply turns a read timeout into a disconnect
            raise OutcomeUnknown(f"no reply within {data_timeout:g} s") from None
        raise OutcomeUnknown(str(exc) or "connection closed") from None
    finally:
        if smtp.sock is not None:
            smtp.sock.settimeout(smtp.timeout)


def _reset(smtp: smtplib.SMTP, *, read_reply: bool = False) -> None:
    try:
        if read_reply:
            smtp.getreply()  # the MAIL reply still on its way
        smtp.rset()
    except (OSError, smtplib.SMTPException):
        pass  # a dead connection is found (and reopened) by the next send


def reply_text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
