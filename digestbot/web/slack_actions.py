"""Slack's interactivity request URL: the "More like this" / "Not for me" buttons of Slack digests.

    POST /slack/actions     a `block_actions` payload (the form field `payload`, JSON), signed by Slack with
                            the app's signing secret (`[slack] signing_secret_env`)

The signature (X-Slack-Signature over the raw body and X-Slack-Request-Timestamp, which must be within
five minutes) is checked before anything is parsed: a bad or missing one, or a stale timestamp, is a 401
and changes nothing. Without a signing secret configured the endpoint does not exist (404).

A button's value (render/slack_posts.py `vote_value`) names the subscription and the paper, not the
channel: the same post goes to every channel of a subscription. The channel is the one the clicked
message is in, as the payload says, and must be listed in the subscription's `slack` (as "#name" or as
its id); the vote is recorded for that entry, replacing the channel's earlier vote on the paper.

Slack wants its answer within 3 seconds: the vote is recorded, the 200 goes out, and only then is the
clicking user told what happened, by a POST to the payload's `response_url` (an ephemeral message only
they see). That URL is followed only on https://hooks.slack.com/ (or, when `[slack] base_url` points the
bot at another Slack-compatible server, on that server's host): never to wherever a payload says. It is
a secret for half an hour and is never logged.
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from slack_sdk.errors import SlackClientError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..config import SubscriptionConfig
from ..errors import StoreError
from ..render.highlight import slack_escape
from ..render.slack_posts import VOTE_ACTIONS, VOTE_LABELS, vote_of
from .site import Site

log = logging.getLogger(__name__)
PATH = "/slack/actions"
MAX_BODY = 1024 * 1024  # the payload repeats the clicked message's blocks, URL-encoded: far over app.MAX_BODY
SLACK_HOOKS = ("https", "hooks.slack.com")
RESPONSE_TIMEOUT = 10


class SlackActions:
    def __init__(self, web: Site):
        self.web = web
        slack = web.config.slack
        secret = web.config.secret(slack.signing_secret_env if slack else None,
                                   "slack.signing_secret_env (the Slack app's signing secret)")
        self.verifier = SignatureVerifier(secret) if secret else None
        base = urlsplit(slack.base_url) if slack and slack.base_url else None
        self.hosts = {SLACK_HOOKS} | ({(base.scheme, base.netloc)} if base and base.netloc else set())

    def routes(self) -> list[Route]:
        return [Route(PATH, self.actions, methods=["POST"])]

    async def actions(self, request: Request) -> Response:
        if self.verifier is None:
            return PlainTextResponse("Not Found", status_code=404)
        body = await request.body()
        if not self.signed(body, request.headers.get("x-slack-request-timestamp"),
                           request.headers.get("x-slack-signature")):
            return PlainTextResponse("invalid signature", status_code=401)
        payload = payload_of(body)
        if payload is None:
            return PlainTextResponse("no payload", status_code=400)
        if payload.get("type") != "block_actions":
            return Response(status_code=200)  # another kind of interaction: not ours to answer
        actions = payload.get("actions")
        votes = [(VOTE_ACTIONS[action["action_id"]], action.get("value"))
                 for action in (actions if isinstance(actions, list) else [])
                 if isinstance(action, dict) and action.get("action_id") in VOTE_ACTIONS]
        if not votes:
            return Response(status_code=200)
        channel_id, channel_name = channel_of(payload)
        texts = await run_in_threadpool(self.record, channel_id, channel_name, votes)
        url = payload.get("response_url")
        if not self.followable(url):
            log.warning("a Slack click's response_url is not on Slack's host: the user was not answered")
            return Response(status_code=200)
        assert isinstance(url, str)
        return Response(status_code=200, background=BackgroundTask(self.tell, url, "\n".join(texts)))

    def signed(self, body: bytes, timestamp: str | None, signature: str | None) -> bool:
        assert self.verifier is not None
        try:
            return self.verifier.is_valid(body, timestamp, signature)
        except ValueError:  # a timestamp that is no number, a body that is not UTF-8
            return False

    def followable(self, url: object) -> bool:
        """The response_url is on Slack's host (exactly: no other port, no user part)."""
        if not isinstance(url, str):
            return False
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc) in self.hosts

    def record(self, channel_id: str, channel_name: str, votes: list[tuple[str, object]]) -> list[str]:
        """Each vote recorded for the channel; what to tell the user about each."""
        texts = []
        for vote, value in votes:
            found = vote_of(value)
            sub = self.subscription(found[0]) if found else None
            if found is None or sub is None:
                texts.append("This button does not work any more: no vote was recorded.")
                continue
            paper = found[1]
            target = listed_channel(sub, channel_id, channel_name)
            if target is None:
                texts.append(f"This channel does not get “{slack_escape(sub.name)}”: no vote was recorded.")
                continue
            try:
                self.web.store.record_vote(sub.id, target, paper, vote, datetime.now(UTC))
                papers = self.web.store.papers_by_keys([paper])
            except StoreError as exc:
                log.error("a Slack vote on %r could not be recorded: %s", sub.id, exc)
                texts.append("Your vote could not be recorded just now; please try again in a few minutes.")
                continue
            log.info("a Slack channel voted %s on a paper of %r", vote, sub.id)
            title = papers[0].title if papers else paper
            texts.append(f"Noted: {VOTE_LABELS[vote].lower()} — {slack_escape(title)}")
        return texts

    def subscription(self, subscription_id: str) -> SubscriptionConfig | None:
        return next((sub for sub in self.web.config.subscriptions if sub.id == subscription_id), None)

    def tell(self, url: str, text: str) -> None:
        """The ephemeral answer to the clicking user, after Slack has had its 200."""
        try:
            response = WebhookClient(url, timeout=RESPONSE_TIMEOUT).send(
                text=text, response_type="ephemeral", replace_original=False)
        except (SlackClientError, OSError) as exc:
            log.warning("could not answer a Slack click: %s", type(exc).__name__)  # the error may name the URL
            return
        if response.status_code != 200:
            log.warning("Slack refused the answer to a click: HTTP %d", response.status_code)


def payload_of(body: bytes) -> dict[str, Any] | None:
    """The JSON object in the form field `payload`; None when there is none."""
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=10)
        data = json.loads(fields["payload"][0])
    except (ValueError, KeyError):
        return None
    return data if isinstance(data, dict) else None


def channel_of(payload: dict[str, Any]) -> tuple[str, str]:
    """(id, name) of the channel the clicked message is in ("" when the payload does not say)."""
    channel = payload.get("channel")
    container = payload.get("container")
    channel_id = name = ""
    if isinstance(channel, dict):
        channel_id, name = str(channel.get("id") or ""), str(channel.get("name") or "")
    if not channel_id and isinstance(container, dict):
        channel_id = str(container.get("channel_id") or "")
    return channel_id, name


def listed_channel(sub: SubscriptionConfig, channel_id: str, channel_name: str) -> str | None:
    """The entry of the subscription's `slack` list naming this channel (by id, or as "#name")."""
    for entry in sub.slack:
        if (channel_id and entry == channel_id) or (channel_name and entry == f"#{channel_name}"):
            return entry
    return None


def routes(web: Site) -> list[Route]:
    return SlackActions(web).routes()
