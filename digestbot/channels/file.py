"""The outbox: writes each email as an `.eml` file and each Slack post as a `.json` payload.

Used for a channel whose section (`[email]`, `[slack]`) is absent when the config asks for the outbox
(`[bot] outbox`, or no [email] and no [slack] at all, as `digestbot demo`): nothing leaves the machine.
"""
from __future__ import annotations

import json
import re
from email.headerregistry import Address
from pathlib import Path
from typing import TYPE_CHECKING

from .. import private
from ..errors import DeliveryError
from ..models import Message
from . import Channel, Envelope
from .email import build_email

if TYPE_CHECKING:
    from ..config import Config

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FileChannel(Channel):
    """Writes into `[bot] outbox`: `<digest>-<target>.eml` for email, `.json` for Slack."""

    kind = "file"

    def __init__(self, outbox: Path, format: str, sender: Address | None = None):
        self.outbox, self.format = outbox, format
        self.sender = sender or Address(display_name="digestbot", addr_spec="digestbot@localhost")

    @classmethod
    def from_config(cls, config: Config, ledger_channel: str) -> FileChannel:
        """`[bot] outbox`; email digests as `.eml`, the others as Slack payloads (`.json`)."""
        return cls(config.outbox, ledger_channel, config.email.sender_address if config.email else None)

    def send(self, message: Message, envelope: Envelope) -> str:
        private.make_folder(self.outbox)  # the files name their recipients
        stem = _UNSAFE.sub("_", f"{envelope.message_id.strip('<>').split('@')[0]}-{envelope.target}")
        if self.format == "email":
            path = self.outbox / f"{stem}.eml"
            try:
                data = bytes(build_email(message, envelope, self.sender))
            except ValueError as exc:  # a header value it cannot write (CR/LF, a URL too long to send), as SMTP
                raise DeliveryError(f"cannot build the email to {envelope.target}: {exc}", permanent=True) from None
        else:
            path = self.outbox / f"{stem}.json"
            payload = [{"channel": envelope.target, "text": post.text, "blocks": post.blocks}
                       for post in message.slack_posts]  # the first is top-level, the rest its thread
            data = json.dumps(payload, indent=2, ensure_ascii=False).encode()
        private.write(path, data)
        self.last_reply = f"written to {path} (the outbox: nothing was sent)"
        return str(path)
