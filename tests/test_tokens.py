"""Signed reader links (digestbot/web/tokens.py): only an intact token of the right purpose is accepted."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digestbot.web.tokens import BadToken, sign, verify

SECRET = b"s3cret-for-tests"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_a_token_says_what_it_was_signed_for():
    token = sign(SECRET, "unsubscribe", "decoding", "alice@example.org", now=NOW)
    found = verify(SECRET, token, "unsubscribe")
    assert (found.purpose, found.subscription_id, found.target, found.issued) == \
        ("unsubscribe", "decoding", "alice@example.org", NOW)


def test_unsubscribe_and_manage_tokens_never_expire():
    for purpose in ("unsubscribe", "manage"):
        token = sign(SECRET, purpose, "decoding", "#papers", now=NOW)
        assert verify(SECRET, token, purpose, now=NOW + timedelta(days=3650)).target == "#papers"


def test_confirm_tokens_expire_after_48_hours():
    token = sign(SECRET, "confirm", "decoding", "alice@example.org", confirmation=7, now=NOW)
    assert verify(SECRET, token, "confirm", now=NOW + timedelta(hours=47, minutes=59)).target == "alice@example.org"
    with pytest.raises(BadToken, match="expired"):
        verify(SECRET, token, "confirm", now=NOW + timedelta(hours=48, seconds=1))


def test_a_confirm_token_is_bound_to_its_request_id():
    token = sign(SECRET, "confirm", "", "alice@example.org", confirmation=7, now=NOW)
    found = verify(SECRET, token, "confirm", now=NOW)
    assert (found.confirmation, found.digest, found.paper, found.subscription_id) == (7, None, None, "")
    assert sign(SECRET, "confirm", "", "alice@example.org", confirmation=8, now=NOW) != token
    with pytest.raises(ValueError, match="needs confirmation"):
        sign(SECRET, "confirm", "decoding", "alice@example.org", now=NOW)
    with pytest.raises(ValueError, match="takes no confirmation"):
        sign(SECRET, "manage", "decoding", "alice@example.org", confirmation=7, now=NOW)
    # a digest token (its fifth item an id too) confirms nothing
    digest = sign(SECRET, "digest", "decoding", "alice@example.org", digest=7, now=NOW)
    with pytest.raises(BadToken):
        verify(SECRET, digest, "confirm", now=NOW)


def test_a_tampered_token_is_refused():
    token = sign(SECRET, "unsubscribe", "decoding", "alice@example.org", now=NOW)
    forged = sign(b"another secret", "unsubscribe", "decoding", "bob@example.org", now=NOW)
    payload, mac = token.split(".")
    # Each character of the payload and of the MAC changed in turn: none of them passes.
    for i in range(len(token)):
        if token[i] == ".":
            continue
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
        with pytest.raises(BadToken):
            verify(SECRET, changed, "unsubscribe")
    with pytest.raises(BadToken):  # someone else's payload under this token's MAC
        verify(SECRET, forged.split(".")[0] + "." + mac, "unsubscribe")
    with pytest.raises(BadToken):  # signed with another secret
        verify(SECRET, forged, "unsubscribe")


@pytest.mark.parametrize("cut", [1, 5, 20, 43])
def test_a_truncated_token_is_refused(cut):
    token = sign(SECRET, "unsubscribe", "decoding", "alice@example.org", now=NOW)
    with pytest.raises(BadToken):
        verify(SECRET, token[:-cut], "unsubscribe")


@pytest.mark.parametrize("junk", ["", ".", "abc", "abc.def", "é.é", "a" * 500])
def test_junk_is_refused(junk):
    with pytest.raises(BadToken):
        verify(SECRET, junk, "unsubscribe")


def test_a_token_of_another_purpose_is_refused():
    manage = sign(SECRET, "manage", "decoding", "alice@example.org", now=NOW)
    with pytest.raises(BadToken, match="manage"):
        verify(SECRET, manage, "unsubscribe")
    unsubscribe = sign(SECRET, "unsubscribe", "decoding", "alice@example.org", now=NOW)
    with pytest.raises(BadToken):
        verify(SECRET, unsubscribe, "resubscribe")


def test_a_vote_token_is_bound_to_its_paper_too_and_never_expires():
    token = sign(SECRET, "vote", "sub", "a@example.org", paper="2411.00001", now=NOW)
    found = verify(SECRET, token, "vote", now=NOW + timedelta(days=3650))
    assert (found.subscription_id, found.target, found.paper) == ("sub", "a@example.org", "2411.00001")
    assert verify(SECRET, sign(SECRET, "unsubscribe", "sub", "a@example.org", now=NOW), "unsubscribe").paper is None
    with pytest.raises(ValueError):
        sign(SECRET, "vote", "sub", "a@example.org")  # a vote token without its paper
    with pytest.raises(ValueError):
        sign(SECRET, "unsubscribe", "sub", "a@example.org", paper="2411.00001")
    with pytest.raises(BadToken):
        verify(SECRET, token, "unsubscribe")


def test_a_digest_token_is_bound_to_its_digest_id_and_never_expires():
    token = sign(SECRET, "digest", "decoding", "alice@example.org", digest=42, now=NOW)
    found = verify(SECRET, token, "digest", now=NOW + timedelta(days=3650))
    assert (found.digest, found.paper, found.target) == (42, None, "alice@example.org")
    assert sign(SECRET, "digest", "decoding", "alice@example.org", digest=43, now=NOW) != token
    with pytest.raises(BadToken, match="not for 'vote'"):
        verify(SECRET, token, "vote")
    with pytest.raises(ValueError):
        sign(SECRET, "digest", "decoding", "alice@example.org", now=NOW)  # no digest id
    with pytest.raises(ValueError):
        sign(SECRET, "manage", "decoding", "alice@example.org", digest=42, now=NOW)
    with pytest.raises(ValueError):
        sign(SECRET, "vote", "decoding", "alice@example.org", paper="2411.00001", digest=42, now=NOW)
    # a vote token (its fifth item a paper key) opens no digest list
    vote = sign(SECRET, "vote", "decoding", "alice@example.org", paper="2411.00001", now=NOW)
    with pytest.raises(BadToken):
        verify(SECRET, vote, "digest")
