"""Channel kinds: each file in this package defines one `Channel` subclass and registers it by `kind`.

A channel delivers one rendered `Message` to one target (an address, a Slack channel) and returns the
id the server gave it (Message-ID, Slack `ts`, file name). It raises `DeliveryError`; `permanent=True`
means retrying cannot help (a 5xx SMTP reply, an unknown Slack channel). Channels are context managers
so that a batch of sends can share one connection.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, ClassVar

from ..models import Message

REGISTRY: dict[str, type["Channel"]] = {}


@dataclass(frozen=True)
class Envelope:
    """Who a message is for and the stable ids that make a re-send recognisable."""

    target: str
    subscription: str  # display name
    subscription_id: str
    message_id: str  # deterministic per digest: <digest-42.alice-llm@digestbot.example.org>
    list_id: str
    unsubscribe: tuple[str, ...] = ()  # List-Unsubscribe URLs: mailto, and https when bot.public_url is set


class Channel:
    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            REGISTRY[cls.kind] = cls

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def send(self, message: Message, envelope: Envelope) -> str:
        raise NotImplementedError

    def send_after(self, message: Message, envelope: Envelope, settle: Callable[[], None]) -> str:
        """send(), calling `settle` before the message can be accepted (the send pass commits the
        previous digest there). SMTP overrides it to run `settle` while its MAIL command is out."""
        settle()
        return self.send(message, envelope)


def load_all() -> dict[str, type[Channel]]:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return REGISTRY
