"""One exception tree for everything digestbot reports to a user.

    DigestbotError
    ├── ConfigError          the config file is wrong (carries FILE:LINE: key: message lines)
    ├── StoreError           the database cannot be used (busy, corrupt, missing)
    ├── SourceError          a source could not be polled (carries the source name)
    │   ├── FetchError       the network or the server failed
    │   └── ParseError       the response is not what the source kind expects
    └── DeliveryError        a channel could not deliver (permanent=True: do not retry)
"""
from __future__ import annotations


class DigestbotError(Exception):
    """Base of every error digestbot raises on purpose."""


class ConfigError(DigestbotError):
    def __init__(self, problems: list[str] | str, located: list[tuple[tuple[str | int, ...], str]] | None = None):
        """`located`: for a file's problems, each problem's key path and bare message, in the order of
        `problems` (config.edit cites an edit's own values by what was typed instead of by line)."""
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.located = located
        super().__init__("\n".join(self.problems))


class StoreError(DigestbotError):
    pass


class SourceError(DigestbotError):
    def __init__(self, source: str, message: str):
        self.source = source
        self.reason = message
        super().__init__(f"source {source!r}: {message}")


class FetchError(SourceError):
    pass


class ParseError(SourceError):
    pass


class DeliveryError(DigestbotError):
    """permanent: retrying cannot help. unreachable: the server itself is down (not this message's
    fault), so the sender stops using that channel for the rest of the batch."""

    def __init__(self, message: str, *, permanent: bool = False, unreachable: bool = False):
        self.permanent = permanent
        self.unreachable = unreachable
        super().__init__(message)
