"""Slack through the Web API (`chat.postMessage` with a bot token)."""
from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from ..errors import DeliveryError
from ..models import Message, SlackPost
from . import Channel, Envelope

log = logging.getLogger(__name__)
PERMANENT = {"channel_not_found", "not_in_channel", "invalid_auth", "not_authed", "account_inactive",
             "token_revoked", "is_archived", "msg_too_long", "invalid_blocks", "no_permission"}


class SlackChannel(Channel):
    """Posts to Slack channels with a bot token (`[slack] token_env`); `base_url` for other servers."""

    kind = "slack"

    def __init__(self, token: str, base_url: str | None = None, timeout: int = 30):
        self.client = WebClient(token=token, base_url=base_url or WebClient.BASE_URL, timeout=timeout,
                                retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])

    def send(self, message: Message, envelope: Envelope) -> str:
        """Posts the first part at top level and the rest in its thread; returns the top-level `ts`."""
        first_ts = ""
        for post in message.slack_posts:
            ts = self._post(envelope.target, post, thread_ts=first_ts or None)
            first_ts = first_ts or ts
        return first_ts

    def _post(self, channel: str, post: SlackPost, thread_ts: str | None) -> str:
        try:
            response = self.client.chat_postMessage(channel=channel, text=post.text, blocks=post.blocks,
                                                    thread_ts=thread_ts, unfurl_links=False, unfurl_media=False)
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown_error") if exc.response is not None else "unknown_error"
            raise DeliveryError(f"Slack refused the post to {channel}: {error}",
                                permanent=error in PERMANENT) from None
        except (SlackClientError, OSError) as exc:
            raise DeliveryError(f"cannot reach Slack to post to {channel}: {exc}") from None
        return str(response.get("ts", ""))
