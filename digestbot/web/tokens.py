"""Signed tokens for readers' links: who may leave (or manage, or confirm) which subscription.

A token is `PAYLOAD.MAC`, both unpadded base64url: PAYLOAD is the JSON list [purpose, subscription id,
target, issued (Unix seconds)], and for a "vote" token a fifth item, the paper's key (so one paper's link
votes on no other paper), for a "digest" token the digest's id (so it lists that one digest's papers), for
a "confirm" token the id of its confirmation request (store: one request, one link; its subscription id is
"" for a query of the reader's own); MAC its HMAC-SHA256 under the installation's secret (`[web] secret_env`).
Whoever holds a token may do its one purpose for its one (subscription, target) and nothing else: the
purpose is signed, so an unsubscribe token is no confirm token; a changed byte, a truncated token or
another secret fails the MAC, which is compared in constant time.

"unsubscribe", "manage", "vote" and "digest" tokens never expire (they are in mails people read months later);
"confirm" and "resubscribe" (the undo button after leaving) tokens expire CONFIRM_TTL after they were issued.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

Purpose = Literal["unsubscribe", "manage", "confirm", "resubscribe", "vote", "digest"]
PURPOSES: tuple[Purpose, ...] = ("unsubscribe", "manage", "confirm", "resubscribe", "vote", "digest")
WITH_PAPER: frozenset[Purpose] = frozenset({"vote"})  # the purposes bound to a paper too
WITH_DIGEST: frozenset[Purpose] = frozenset({"digest"})  # the purposes bound to one digest (its row id) too
WITH_CONFIRMATION: frozenset[Purpose] = frozenset({"confirm"})  # bound to one confirmation request (its row id)
CONFIRM_TTL = timedelta(hours=48)
EXPIRING = {"confirm": CONFIRM_TTL, "resubscribe": CONFIRM_TTL}  # undo is for right after leaving
DOMAIN = b"digestbot-link-v1\n"  # what the MAC is of: never the same bytes as another use of the secret


class BadToken(ValueError):
    """Not a valid token for this purpose: the reader gets a 4xx page saying so, nothing is changed."""


@dataclass(frozen=True, slots=True)
class Token:
    purpose: Purpose
    subscription_id: str
    target: str  # an email address, or a Slack channel
    issued: datetime
    paper: str | None = None  # the paper's key, for a "vote" token (WITH_PAPER); None for the others
    digest: int | None = None  # the digest's id, for a "digest" token (WITH_DIGEST); None for the others
    confirmation: int | None = None  # the request's id, for a "confirm" token (WITH_CONFIRMATION)


def sign(secret: bytes, purpose: Purpose, subscription_id: str, target: str, *, paper: str | None = None,
         digest: int | None = None, confirmation: int | None = None, now: datetime | None = None) -> str:
    """`paper` (a paper's key) is required by the purposes in WITH_PAPER and refused by the others;
    `digest` (a digest's id) likewise for WITH_DIGEST, `confirmation` (a request's id) for WITH_CONFIRMATION."""
    if (paper is not None) != (purpose in WITH_PAPER):
        raise ValueError(f"a {purpose!r} token {'needs' if purpose in WITH_PAPER else 'takes no'} paper")
    if (digest is not None) != (purpose in WITH_DIGEST):
        raise ValueError(f"a {purpose!r} token {'needs' if purpose in WITH_DIGEST else 'takes no'} digest")
    if (confirmation is not None) != (purpose in WITH_CONFIRMATION):
        raise ValueError(f"a {purpose!r} token {'needs' if purpose in WITH_CONFIRMATION else 'takes no'} "
                         f"confirmation")
    issued = int((now or datetime.now(UTC)).timestamp())
    fields: list[str | int] = [purpose, subscription_id, target, issued]
    if paper is not None:
        fields.append(paper)
    if digest is not None:
        fields.append(int(digest))
    if confirmation is not None:
        fields.append(int(confirmation))
    payload = json.dumps(fields, separators=(",", ":")).encode("utf-8")
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def verify(secret: bytes, token: str, purpose: Purpose, *, now: datetime | None = None) -> Token:
    """The token's contents, when it is intact, signed with `secret` and made for `purpose`; else BadToken."""
    encoded_payload, dot, encoded_mac = token.partition(".")
    try:
        payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
    except (binascii.Error, ValueError):
        raise BadToken("the link is damaged (it was cut or changed)") from None
    if not dot or not hmac.compare_digest(mac, _mac(secret, payload)):
        raise BadToken("the link is damaged (it was cut or changed), or it was not made by this digest")
    try:
        kind, subscription_id, target, issued, *rest = json.loads(payload)
        when = datetime.fromtimestamp(int(issued), UTC)
    except (ValueError, TypeError, OverflowError, OSError):
        raise BadToken("the link's contents are not understood") from None
    if kind != purpose:
        raise BadToken(f"this link is for {kind!r}, not for {purpose!r}")
    if len(rest) != (1 if kind in WITH_PAPER | WITH_DIGEST | WITH_CONFIRMATION else 0):
        raise BadToken("the link's contents are not understood")
    paper = str(rest[0]) if rest and kind in WITH_PAPER else None
    digest = rest[0] if rest and kind in WITH_DIGEST else None
    confirmation = rest[0] if rest and kind in WITH_CONFIRMATION else None
    row_ids = [value for value, kinds in ((digest, WITH_DIGEST), (confirmation, WITH_CONFIRMATION)) if kind in kinds]
    if any(type(value) is not int for value in row_ids):  # signed by us as an int; anything else is not ours
        raise BadToken("the link's contents are not understood")
    ttl = EXPIRING.get(kind)
    if ttl is not None and (now or datetime.now(UTC)) > when + ttl:
        raise BadToken("this link has expired; ask for a new one")
    return Token(purpose=kind, subscription_id=str(subscription_id), target=str(target), issued=when, paper=paper,
                 digest=digest, confirmation=confirmation)


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, DOMAIN + payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("empty or not ASCII")
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64(data) != text:  # the unused low bits of the last character set: one token, one spelling
        raise ValueError("not canonical base64")
    return data
