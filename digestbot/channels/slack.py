"""Slack through the Web API (`chat.postMessage` with a bot token).

Three rules (Slack's API documentation):
- 429 is retried after the server's `Retry-After` (slack_sdk's RateLimitErrorRetryHandler).
- A post whose connection dropped after the request went out may have landed, and Slack has no
  idempotency key: slack_sdk's default ConnectionErrorRetryHandler would re-send it blindly, so it is
  not installed. We retry such a post once, with a warning, and if that fails too the digest becomes
  `failed` (not retried by the ledger): at most two copies, never a stream of them.
- Posts to one channel are paced (`min_interval`, about one per second: Slack's tier for posting).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from ..errors import DeliveryError, DigestbotError
from ..models import Message, SlackPost
from . import Channel, Envelope

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)
PERMANENT = {"channel_not_found", "not_in_channel", "invalid_auth", "not_authed", "account_inactive",
             "token_revoked", "is_archived", "msg_too_long", "invalid_blocks", "no_permission",
             "no_service", "invalid_token", "channel_is_archived", "action_prohibited",
             "posting_to_general_channel_denied"}
REMEDY = {"channel_not_found": "check the channel name, and invite the bot to it",
          "not_in_channel": "invite the bot to the channel (/invite @bot)",
          "invalid_auth": "check the bot token in the [slack] token_env variable",
          "not_authed": "set the bot token variable named by [slack] token_env",
          "token_revoked": "install the app again and update the token",
          "no_service": "the webhook was removed: create a new one and update slack_webhook"}


def refused(where: str, error: str) -> DeliveryError:
    remedy = REMEDY.get(error, "retried later" if error not in PERMANENT else "not retried")
    return DeliveryError(f"Slack refused the post to {where}: {error} ({remedy})", permanent=error in PERMANENT)


class Pacer:
    """At most one post per `interval` seconds per channel."""

    def __init__(self, interval: float):
        self.interval = interval
        self._last: dict[str, float] = {}

    def wait(self, channel: str) -> None:
        last = self._last.get(channel)
        if last is not None:
            time.sleep(max(0.0, last + self.interval - time.monotonic()))
        self._last[channel] = time.monotonic()


def post_at_most_twice(post: Callable[[], str], where: str) -> str:
    """Run `post`; after a connection lost mid-request, once more, and then give up for good."""
    try:
        return post()
    except (SlackClientError, OSError) as exc:
        if isinstance(exc, SlackApiError) or _refused_connection(exc):
            raise  # a clear answer, or nothing was sent: the caller decides
        log.warning("the connection to Slack broke while posting to %s (%s): the post may have landed; "
                    "trying once more, so it may appear twice", where, exc)
    try:
        return post()
    except (SlackClientError, OSError, DeliveryError) as exc:
        raise DeliveryError(f"posting to {where} failed twice after a broken connection ({exc}); the post may "
                            f"be there: check {where}, then `digestbot retry --failed` if it is not",
                            permanent=True) from None


def _refused_connection(exc: BaseException) -> bool:
    reason = getattr(exc, "reason", None)  # urllib's URLError wraps the socket error
    return isinstance(exc, ConnectionRefusedError) or isinstance(reason, ConnectionRefusedError)


class SlackChannel(Channel):
    """Posts to Slack channels with a bot token (`[slack] token_env`); `base_url` for other servers."""

    kind = "slack"

    def __init__(self, token: str | None, base_url: str | None = None, timeout: int = 30, min_interval: float = 1.0):
        # retry_handlers replaces slack_sdk's defaults: no blind connection-error retry (see above)
        self.client = WebClient(token=token, base_url=base_url or WebClient.BASE_URL, timeout=timeout,
                                retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)])
        self.pacer = Pacer(min_interval)

    @classmethod
    def from_config(cls, config: Config, ledger_channel: str) -> SlackChannel:
        """`[slack]`, with the bot token from the variable `token_env` names."""
        if config.slack is None:
            raise DigestbotError(f"{config.path}: the slack channel needs a [slack] section")
        token = config.secret(config.slack.token_env, "slack.token_env")
        return cls(token, config.slack.base_url, min_interval=config.slack.min_interval)

    def send(self, message: Message, envelope: Envelope) -> str:
        """Posts the first part at top level and the rest in its thread; returns the top-level `ts`."""
        first_ts = ""
        for number, post in enumerate(message.slack_posts):
            try:
                ts = self._post(envelope.target, post, thread_ts=first_ts or None)
            except DeliveryError as exc:
                if number == 0:
                    raise
                # Retrying would post the first part again: report the partial post instead.
                raise DeliveryError(f"{exc}; part {number + 1} of {len(message.slack_posts)} (the thread) was "
                                    f"not posted", permanent=True) from None
            first_ts = first_ts or ts
        return first_ts

    def _post(self, channel: str, post: SlackPost, thread_ts: str | None) -> str:
        def once() -> str:
            self.pacer.wait(channel)
            response = self.client.chat_postMessage(channel=channel, text=post.text, blocks=post.blocks,
                                                    thread_ts=thread_ts, unfurl_links=False, unfurl_media=False)
            ts = str(response.get("ts", ""))
            self.last_reply = f"ok: ts {ts} in channel {response.get('channel', channel)}"
            return ts

        try:
            return post_at_most_twice(once, channel)
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown_error") if exc.response is not None else "unknown_error"
            raise refused(channel, str(error)) from None
        except (SlackClientError, OSError) as exc:
            raise DeliveryError(f"cannot reach Slack to post to {channel}: {exc} (retried later)",
                                unreachable=True) from None
