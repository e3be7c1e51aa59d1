"""Channel kinds: each file in this package defines one `Channel` subclass and registers it by `kind`.

A channel delivers one rendered `Message` to one target (an address, a Slack channel) and returns the
id the server gave it (Message-ID, Slack `ts`, file name). It raises `DeliveryError`; `permanent=True`
means retrying cannot help (a 5xx SMTP reply, an unknown Slack channel). Channels are context managers
so that a batch of sends can share one connection. Each builds itself from the Config
(`from_config`), secrets included, so a new channel is one module here and nothing else.

Two sets of names, kept apart:
- the *ledger channel* is what a subscription asks for and each digest row records: "email",
  "slack", "slack_webhook" (a subscription's `email = [...]`, `slack = [...]`, `slack_webhook`);
- the *channel kind* is the transport that carries it: "smtp", "slack", "slack_webhook", "file".
`ROUTES` is the one place that maps the first to the second.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import DigestbotError
from ..models import Message

if TYPE_CHECKING:
    from ..config import Config

REGISTRY: dict[str, type[Channel]] = {}

# Ledger channel -> (channel kind, the config section that kind needs). Without that section the
# digests go to the outbox (OUTBOX: .eml and .json files) only when the config asks for it
# (Config.outbox_wanted: `[bot] outbox` set, or neither [email] nor [slack], as in `digestbot demo`).
ROUTES: dict[str, tuple[str, str | None]] = {
    "email": ("smtp", "email"),
    "slack": ("slack", "slack"),
    "slack_webhook": ("slack_webhook", None),  # each subscription carries its own webhook URL
}
OUTBOX = "file"


@dataclass(frozen=True)
class Envelope:
    """Who a message is for and the stable ids that make a re-send recognisable."""

    target: str
    subscription: str  # display name
    subscription_id: str
    message_id: str  # deterministic per digest: <digest-42.3f9c0a1b2d4e.alice-llm@digestbot.example.org>
    list_id: str
    unsubscribe: tuple[str, ...] = ()  # List-Unsubscribe URLs: mailto, and https when bot.public_url is set


class Channel:
    """One transport. Subclasses set `kind`, implement `from_config` and `send`; the send pass calls,
    for each digest: `send`, then `record` with the ledger write that says it was sent."""

    kind: ClassVar[str]
    # What the server answered the latest `send` (the SMTP reply to the final ".", Slack's ts and channel,
    # the outbox file): `digestbot send-test` prints it. Empty for a channel that does not say.
    last_reply: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is None:
            return
        known = REGISTRY.get(kind)
        # A subclass may take over its parent's kind (the tests wrap the SMTP channel that way);
        # anything else claiming a taken kind is a copy-paste slip that would silently replace it.
        if known is not None and not issubclass(cls, known) and _name(known) != _name(cls):
            raise TypeError(f"channel kind {kind!r} is already {_name(known)}: give {_name(cls)} a kind of its own")
        REGISTRY[kind] = cls

    @classmethod
    def from_config(cls, config: Config, ledger_channel: str) -> Channel:
        """The channel as `config` sets it up, carrying digests of `ledger_channel`; secrets are read
        here, from the environment variables the config names (ConfigError when one is unset)."""
        raise NotImplementedError

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ends the batch; a channel that holds back a record (see `record`) runs it first."""
        self.flush()

    def send(self, message: Message, envelope: Envelope) -> str:
        raise NotImplementedError

    def record(self, commit: Callable[[], None]) -> None:
        """The hook for the ledger write: called right after `send` accepted a message, with the
        commit that records it as sent. This runs it at once. A channel may hold it back to overlap
        it with its next exchange (SmtpChannel runs it while its next MAIL command is with the
        server) but must run it before it hands over another message, and in `flush` and `close`:
        then at most one accepted message is ever unrecorded, whatever happens to the process."""
        commit()

    def flush(self) -> None:
        """Run the record `record` held back, if any (the send pass calls it before another channel
        sends)."""


def kind_for(config: Config, ledger_channel: str) -> str:
    """The channel kind that carries `ledger_channel` digests under `config` (see ROUTES)."""
    try:
        kind, section = ROUTES[ledger_channel]
    except KeyError:
        raise DigestbotError(f"digests for channel {ledger_channel!r} cannot be delivered: this version knows "
                             f"{', '.join(sorted(ROUTES))} (was the database used by a newer digestbot?)") from None
    if section is None or getattr(config, section) is not None:
        return kind
    if config.outbox_wanted:
        return OUTBOX
    raise DigestbotError(f"digests for channel {ledger_channel!r} cannot be sent: the config has no [{section}] "
                         f"section (add it, or set [bot] outbox to write them to files)")


def outbox_channels(config: Config) -> frozenset[str]:
    """The ledger channels whose digests `config` writes to the outbox instead of sending (reports say
    "wrote", not "sent", for them)."""
    return frozenset(channel for channel in ROUTES if _carried_by(config, channel) == OUTBOX)


def _carried_by(config: Config, ledger_channel: str) -> str | None:
    """`kind_for`, or None for a channel this config cannot send (its digests cannot exist: check refuses
    a subscription using it)."""
    try:
        return kind_for(config, ledger_channel)
    except DigestbotError:
        return None


def lookup(kind: str) -> type[Channel]:
    """The registered class of a channel kind; a clear error for a kind nobody registered."""
    registry = load_all()
    if kind not in registry:
        raise DigestbotError(f"no channel kind {kind!r} is registered (known: {', '.join(sorted(registry))}); "
                             f"a channel kind is a module in digestbot/channels/ defining a Channel with that kind")
    return registry[kind]


def build(config: Config, ledger_channel: str) -> Channel:
    """The channel that delivers `ledger_channel` digests, built from the config."""
    return lookup(kind_for(config, ledger_channel)).from_config(config, ledger_channel)


def opener(config: Config) -> Callable[[str], Channel]:
    """What the send pass opens a ledger channel's transport with (pipeline.Context.open_channel)."""
    return functools.partial(build, config)


def load_all() -> dict[str, type[Channel]]:
    """Import every module of this package so that each channel kind registers itself."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return REGISTRY


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
