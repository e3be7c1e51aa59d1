"""Slack incoming webhooks: a subscription's `slack_webhook` (or `slack_webhook_env`) URL.

A webhook posts to the one channel it was made for and returns no `ts`; the same rules as the bot
token channel apply (Retry-After, at most two copies after a broken connection, pacing).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from ..errors import DeliveryError
from ..models import Message, SlackPost
from . import Channel, Envelope
from .slack import Pacer, post_at_most_twice, refused

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)


def webhook_urls(config: Config) -> dict[str, str]:
    """Subscription id -> its webhook URL: `slack_webhook`, or the variable `slack_webhook_env` names."""
    urls = {}
    for sub in config.subscriptions:
        url = sub.slack_webhook or config.secret(sub.slack_webhook_env, f"subscription {sub.name!r} slack_webhook_env")
        if url:
            urls[sub.id] = url
    return urls


class SlackWebhookChannel(Channel):
    """Posts through incoming webhooks; `urls` maps a subscription id to its webhook URL."""

    kind = "slack_webhook"

    def __init__(self, urls: dict[str, str], timeout: int = 30, min_interval: float = 1.0):
        self.urls, self.timeout = urls, timeout
        self.pacer = Pacer(min_interval)

    @classmethod
    def from_config(cls, config: Config, ledger_channel: str) -> SlackWebhookChannel:
        """Every subscription's webhook; paced as `[slack] min_interval` says, if there is a [slack]."""
        pace = config.slack.min_interval if config.slack else 1.0
        return cls(webhook_urls(config), min_interval=pace)

    def send(self, message: Message, envelope: Envelope) -> str:
        url = self.urls.get(envelope.subscription_id)
        if not url:
            raise DeliveryError(f"subscription {envelope.subscription!r} has no slack_webhook any more",
                                permanent=True)
        client = WebhookClient(url, timeout=self.timeout,
                               retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)])
        where = f"the webhook of {envelope.subscription!r}"  # never the URL: it is a secret
        for number, post in enumerate(message.slack_posts):
            try:
                self._post(client, post, where, envelope.subscription_id)
            except DeliveryError as exc:
                if number == 0:
                    raise
                raise DeliveryError(f"{exc}; part {number + 1} of {len(message.slack_posts)} was not posted",
                                    permanent=True) from None
        return "webhook"  # a webhook returns no id

    def _post(self, client: WebhookClient, post: SlackPost, where: str, key: str) -> None:
        def once() -> str:
            self.pacer.wait(key)
            response = client.send(text=post.text, blocks=post.blocks, unfurl_links=False, unfurl_media=False)
            if response.status_code != 200:
                raise refused(where, (response.body or str(response.status_code)).strip())
            return "webhook"

        try:
            post_at_most_twice(once, where)
        except OSError as exc:
            raise DeliveryError(f"cannot reach Slack to post to {where}: {exc} (retried later)",
                                unreachable=True) from None
