"""The `[alerts]` section: who hears about a failing or quiet source, failed digests and a crashed daemon
(digestbot/alerts.py decides when; the messages go through the digest ledger).

    [alerts]
    email = ["ops@example.org"]
    slack = "#ops"          # one channel (a list works too)
    failed_polls = 3        # a source that failed this many polls in a row
    quiet_factor = 1.5      # ... or listed nothing new for 1.5 x its usual longest gap
    min_quiet_hours = 24    # never "quiet" sooner than this
"""
from __future__ import annotations

from email.utils import parseaddr

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .problems import Problems


class AlertsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: list[str] = []
    slack: list[str] = []
    failed_polls: int = Field(default=3, ge=1)
    quiet_factor: float = Field(default=1.5, ge=1)
    min_quiet_hours: float = Field(default=24.0, gt=0)

    @field_validator("email", mode="before")
    @classmethod
    def _emails(cls, values: object) -> object:
        values = [values] if isinstance(values, str) else values  # `email = "ops@x"`: one address
        for value in values if isinstance(values, list) else ():
            if not isinstance(value, str) or "\n" in value or "\r" in value or "@" not in parseaddr(value)[1]:
                raise ValueError(f"not an email address: {value!r}")
        return values

    @field_validator("slack", mode="before")
    @classmethod
    def _channels(cls, values: object) -> object:
        values = [values] if isinstance(values, str) else values  # `slack = "#ops"`, as the README writes it
        for value in values if isinstance(values, list) else ():
            if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
                raise ValueError(f"not a Slack channel: {value!r} (e.g. \"#ops\")")
        return values

    @model_validator(mode="after")
    def _someone(self) -> AlertsConfig:
        if not self.email and not self.slack:
            raise ValueError('give email = ["ops@example.org"] and/or slack = "#ops": alerts need a recipient')
        return self

    def targets(self) -> list[tuple[str, str]]:
        """(ledger channel, target) of every recipient, as a subscription's would be."""
        return [("email", address) for address in self.email] + [("slack", channel) for channel in self.slack]


def check(alerts: AlertsConfig | None, *, has_email: bool, has_slack: bool, problems: Problems) -> None:
    """Alerts by a channel the config does not set up would go to the outbox, where nobody looks."""
    if alerts is None:
        return
    if alerts.email and not has_email:
        problems.add(("alerts", "email"), "alerts by email need an [email] section (the SMTP server to send with)")
    if alerts.slack and not has_slack:
        problems.add(("alerts", "slack"), "alerts to Slack need a [slack] section (the bot token to post with)")
