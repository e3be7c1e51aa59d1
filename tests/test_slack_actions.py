"""Votes from Slack, for real: `digestbot run --once` posts the Slack digest to the loopback Slack server
with the real slack_sdk, each paper ends with "More like this" / "Not for me" buttons, and the real
`digestbot serve` answers a click built from the posted blocks, signed as Slack signs it: the vote is the
channel's, and the clicking user is told through the click's response_url (only on Slack's host).

The rendering part (which digests carry buttons, Slack's block limits) needs no server."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from delivery_world import World, init, make_world
from render_fixtures import CONFIG, NOW, QUERY, TOPIC, matches, papers
from servers import free_port
from test_web import SECRET_ENV, run_once, start_serve, stop

from digestbot import config as config_module
from digestbot.digest import make_digest
from digestbot.render import Renderer
from digestbot.render.slack_posts import MAX_BLOCKS

SIGNING_ENV = "DIGESTBOT_TEST_SLACK_SIGNING_SECRET"
SIGNING = "8f742231b10e8888abcd99yyyzzz85a5-only-this-test-knows"
SECOND = "C0SECOND00"  # a channel listed by its id


def slack_world(tmp_path: Path, http_server, smtp_server, slack_server, *, buttons: bool = True) -> tuple[World, str]:
    port = free_port()
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=[],
                       slack_url=slack_server.base_url, slack=["#papers", SECOND])
    text = world.config.read_text(encoding="utf-8")
    if buttons:
        text = text.replace("min_interval = 0\n", f'min_interval = 0\nsigning_secret_env = "{SIGNING_ENV}"\n', 1)
    text = text.replace("[[subscriptions]]\n", f'[web]\nlisten = "127.0.0.1:{port}"\nsecret_env = "{SECRET_ENV}"\n\n'
                        "[[subscriptions]]\n", 1)
    world.config.write_text(text, encoding="utf-8")
    world.env[SECRET_ENV] = "a-secret-only-this-test-knows"
    world.env[SIGNING_ENV] = SIGNING
    init(world)
    return world, f"http://127.0.0.1:{port}"


@pytest.fixture
def served(tmp_path, http_server, smtp_server, slack_server):
    """`digestbot serve` running, and the digest posted to #papers and to SECOND."""
    world, base = slack_world(tmp_path, http_server, smtp_server, slack_server)
    process = start_serve(world, base)
    assert run_once(world).returncode == 0
    yield world, base, process
    if process.returncode is not None:
        return  # the test stopped it to read its log
    err = stop(process)
    assert "Traceback" not in err and "/actions/" not in err and SIGNING not in err, err


def signed(payload: dict, *, secret: str = SIGNING, age: float = 0) -> tuple[str, dict[str, str]]:
    """The form body Slack sends and its headers, signed as Slack documents it (v0 HMAC-SHA256)."""
    body = urlencode({"payload": json.dumps(payload)})
    timestamp = str(int(time.time() - age))
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return body, {"content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": timestamp,
                  "x-slack-signature": f"v0={digest}"}


def send(base: str, payload: dict, **signing: object) -> httpx.Response:
    body, headers = signed(payload, **signing)  # type: ignore[arg-type]
    return httpx.post(f"{base}/slack/actions", content=body, headers=headers)


def action_blocks(post: dict) -> list[dict]:
    return [block for block in post["blocks"] if block["type"] == "actions"]


def click(post: dict, block: dict, action_id: str, response_url: str, channel: dict | None = None) -> dict:
    """A block_actions payload as Slack sends it when someone clicks `action_id` in `block` of `post`."""
    button = next(e for e in block["elements"] if e["action_id"] == action_id)
    channel = channel or {"id": post["channel_id"], "name": post["channel"].lstrip("#")}
    return {"type": "block_actions", "user": {"id": "U0ALICE", "username": "alice", "team_id": "T0001"},
            "api_app_id": "A0001", "token": "legacy-verification-token", "trigger_id": "1.2.3",
            "team": {"id": "T0001", "domain": "digestbot-test"},
            "container": {"type": "message", "message_ts": post["ts"], "channel_id": channel["id"],
                          "is_ephemeral": False},
            "channel": channel,
            "message": {"type": "message", "ts": post["ts"], "text": post["text"], "blocks": post["blocks"]},
            "response_url": response_url,
            "actions": [{"type": "button", "action_id": action_id, "block_id": block["block_id"],
                         "text": button["text"], "value": button["value"], "action_ts": f"{time.time():.6f}"}]}


def votes(world: World) -> list[dict]:
    """What `digestbot feedback list` shows (the store's votes of the subscription)."""
    listed = world.cli("feedback", "list", "everything", "--json")
    assert listed.returncode == 0, listed.stderr
    return [{k: v[k] for k in ("target", "paper", "vote")} for v in json.loads(listed.stdout)]


def wait_for_responses(slack_server, count: int) -> list[dict]:
    deadline = time.monotonic() + 15
    while len(slack_server.responses) < count:
        assert time.monotonic() < deadline, f"{len(slack_server.responses)} of {count} answers arrived"
        time.sleep(0.05)
    return slack_server.responses


def first_post(slack_server, channel: str = "#papers") -> dict:
    return next(p for p in slack_server.posts if p["channel"] == channel and p["thread_ts"] is None)


# --- end to end --------------------------------------------------------------------------------------


def test_a_posted_digest_has_two_buttons_per_paper_and_a_click_records_the_channels_vote(served, slack_server):
    world, base, _ = served
    post = first_post(slack_server)
    papers_shown = [b for b in post["blocks"] if b["type"] == "section" and b["text"]["text"].startswith("*<")]
    blocks = action_blocks(post)
    assert len(papers_shown) == len(blocks) == 5
    assert len({b["block_id"] for b in post["blocks"] if "block_id" in b}) == len(blocks)  # unique in the message
    for block in blocks:
        assert [(e["action_id"], e["text"]["text"]) for e in block["elements"]] == [
            ("vote_up", "More like this"), ("vote_down", "Not for me")]
        values = {json.loads(e["value"])["p"] for e in block["elements"]}
        assert len(values) == 1 and json.loads(block["elements"][0]["value"])["s"] == "everything"
    # The same buttons in the other channel (the content is shared; the click names the channel)
    assert action_blocks(first_post(slack_server, SECOND)) == blocks
    assert votes(world) == []

    block = blocks[1]
    paper = json.loads(block["elements"][0]["value"])["p"]
    answer = send(base, click(post, block, "vote_up", slack_server.response_url("T0001/1/up")))
    assert answer.status_code == 200
    assert votes(world) == [{"target": "#papers", "paper": paper, "vote": "up"}]
    [told] = wait_for_responses(slack_server, 1)
    title = next(b for b in post["blocks"] if b["type"] == "section" and paper in json.dumps(b))
    assert told["id"] == "T0001/1/up" and told["response_type"] == "ephemeral" and told["replace_original"] is False
    shown_title = told["text"].removeprefix("Noted: more like this — ")
    assert shown_title != told["text"] and len(shown_title) > 10 and shown_title in title["text"]["text"]

    # A second click, the other way: it replaces the first
    assert send(base, click(post, block, "vote_down", slack_server.response_url("T0001/2/down"))).status_code == 200
    assert votes(world) == [{"target": "#papers", "paper": paper, "vote": "down"}]
    assert wait_for_responses(slack_server, 2)[1]["text"].startswith("Noted: not for me — ")

    # The channel listed by its id votes for itself
    other = first_post(slack_server, SECOND)
    assert other["channel_id"] == SECOND
    send(base, click(other, action_blocks(other)[1], "vote_up", slack_server.response_url("T0001/3/up"),
                     channel={"id": SECOND, "name": "second"}))
    assert sorted(votes(world), key=lambda v: v["target"]) == [
        {"target": "#papers", "paper": paper, "vote": "down"}, {"target": SECOND, "paper": paper, "vote": "up"}]


def test_forged_stale_or_unsigned_clicks_are_refused_and_change_nothing(served, slack_server):
    world, base, _ = served
    post = first_post(slack_server)
    payload = click(post, action_blocks(post)[0], "vote_up", slack_server.response_url())

    assert send(base, payload, secret="not-the-signing-secret").status_code == 401
    assert send(base, payload, age=6 * 60).status_code == 401  # correctly signed, 6 minutes old
    body, headers = signed(payload)
    assert httpx.post(f"{base}/slack/actions", content=body).status_code == 401  # no headers at all
    for missing in ("x-slack-signature", "x-slack-request-timestamp"):
        assert httpx.post(f"{base}/slack/actions", content=body,
                          headers={k: v for k, v in headers.items() if k != missing}).status_code == 401
    bad_time = {**headers, "x-slack-request-timestamp": "soon"}
    assert httpx.post(f"{base}/slack/actions", content=body, headers=bad_time).status_code == 401
    tampered = body.replace("vote_up", "vote_down")  # signed for "up": changing the body breaks the signature
    assert httpx.post(f"{base}/slack/actions", content=tampered, headers=headers).status_code == 401

    time.sleep(0.3)  # an answer would have been sent right after the response
    assert votes(world) == [] and slack_server.responses == []


def test_a_channel_the_subscription_does_not_list_records_nothing_and_says_so(served, slack_server):
    world, base, _ = served
    post = first_post(slack_server)
    block = action_blocks(post)[0]
    elsewhere = click(post, block, "vote_up", slack_server.response_url("T0001/9/x"),
                      channel={"id": "C0ELSEWHERE", "name": "random"})
    assert send(base, elsewhere).status_code == 200
    [told] = wait_for_responses(slack_server, 1)
    assert "does not get “everything”" in told["text"] and told["response_type"] == "ephemeral"

    forged_value = click(post, block, "vote_up", slack_server.response_url("T0001/9/y"))
    forged_value["actions"][0]["value"] = json.dumps({"s": "someone-elses", "p": "2411.00001"})
    assert send(base, forged_value).status_code == 200
    assert "does not work" in wait_for_responses(slack_server, 2)[1]["text"]
    not_json = click(post, block, "vote_down", slack_server.response_url("T0001/9/z"))
    not_json["actions"][0]["value"] = "up"
    assert send(base, not_json).status_code == 200
    assert "does not work" in wait_for_responses(slack_server, 3)[2]["text"]
    assert votes(world) == []


def test_a_response_url_on_another_host_is_not_followed(served, slack_server, http_server):
    world, base, process = served
    asked: list[str] = []
    http_server.route("/actions/T0001/1/x", lambda request: (asked.append(request.method), (200, {}, "ok"))[1])
    post = first_post(slack_server)
    block = action_blocks(post)[0]
    foreign = click(post, block, "vote_up", f"{http_server.url}/actions/T0001/1/x")
    assert send(base, foreign).status_code == 200
    # The vote counts (the click was Slack's); only the answer to an unknown host is not sent
    assert votes(world) == [{"target": "#papers", "paper": json.loads(block["elements"][0]["value"])["p"],
                             "vote": "up"}]
    send(base, click(post, block, "vote_down", slack_server.response_url("T0001/2/y")))
    wait_for_responses(slack_server, 1)  # the later click's answer came: the earlier one would be there too
    err = stop(process)
    assert asked == [] and "response_url is not on Slack's host" in err and http_server.url not in err


def test_without_signing_secret_env_no_buttons_and_no_endpoint(tmp_path, http_server, smtp_server, slack_server):
    world, base = slack_world(tmp_path, http_server, smtp_server, slack_server, buttons=False)
    process = start_serve(world, base)
    try:
        assert run_once(world).returncode == 0
        assert slack_server.posts and not any(action_blocks(p) for p in slack_server.posts)
        body, headers = signed({"type": "block_actions", "actions": []})
        assert httpx.post(f"{base}/slack/actions", content=body, headers=headers).status_code == 404
    finally:
        stop(process)


def test_a_large_click_payload_is_accepted_on_this_path_only(served, slack_server):
    """Slack repeats the whole clicked message in the payload: more than the 16 KB other forms may have."""
    world, base, _ = served
    post = first_post(slack_server)
    payload = click(post, action_blocks(post)[0], "vote_up", slack_server.response_url())
    payload["message"]["blocks"] = post["blocks"] * 12
    body, headers = signed(payload)
    assert len(body) > 64 * 1024
    assert httpx.post(f"{base}/slack/actions", content=body, headers=headers).status_code == 200
    assert len(votes(world)) == 1
    assert httpx.post(f"{base}/vote?token=x&v=up", content=body, headers=headers).status_code == 413


# --- rendering and config ----------------------------------------------------------------------------


def slack_config(tmp_path: Path, max_papers: int, signing: bool) -> config_module.Config:
    text = CONFIG.format(query=QUERY, topic=TOPIC, max_papers=max_papers)
    text += '\n[slack]\ntoken_env = "X_TOKEN"\n' + (f'signing_secret_env = "{SIGNING_ENV}"\n' if signing else "")
    return config_module.loads(text, tmp_path / "config.toml")


def test_buttons_only_on_bot_token_slack_digests_with_the_signing_secret_configured(tmp_path):
    renderer = Renderer()
    found = matches(papers())
    for signing, channel, expected in ((True, "slack", True), (True, "slack_webhook", False),
                                       (True, "email", False), (False, "slack", False)):
        cfg = slack_config(tmp_path, 5, signing)
        d = make_digest(cfg, cfg.subscriptions[0], found, channel=channel, period_key="2026-11-22T08:00", now=NOW)
        blocks = [b for post in renderer.render(d).slack_posts for b in post.blocks]
        buttons = [b for b in blocks if b["type"] == "actions"]
        assert bool(buttons) == expected, (signing, channel)
        if expected:
            keys = [json.loads(b["elements"][0]["value"]) for b in buttons]
            assert keys == [{"s": "llm-inference", "p": m.paper.key} for m in d.matches]
            # each paper's buttons come right after its section and context line
            kinds = [b["type"] for b in blocks]
            assert all(kinds[i - 2:i] == ["section", "context"] for i, k in enumerate(kinds) if k == "actions")


def test_many_papers_with_buttons_stay_within_slacks_block_limit(tmp_path):
    cfg = slack_config(tmp_path, 200, True)
    d = make_digest(cfg, cfg.subscriptions[0], matches(papers()), channel="slack", period_key="2026-11-22T08:00",
                    now=NOW)
    assert len(d.matches) >= 30
    posts = Renderer().render(d).slack_posts
    assert len(posts) > 1
    shown = 0
    for post in posts:
        assert len(post.blocks) <= MAX_BLOCKS < 50
        ids = [b["block_id"] for b in post.blocks if "block_id" in b]
        assert len(ids) == len(set(ids))
        kinds = [b["type"] for b in post.blocks]
        shown += kinds.count("actions")
        for i, kind in enumerate(kinds):  # a paper is never split from its buttons
            if kind == "section" and post.blocks[i]["text"]["text"].startswith("*<"):
                assert kinds[i + 1:i + 3] == ["context", "actions"]
    assert shown == len(d.matches)


def test_check_reports_a_missing_signing_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("X_TOKEN", "xoxb-1")
    monkeypatch.delenv(SIGNING_ENV, raising=False)
    cfg = slack_config(tmp_path, 5, True)
    [line] = [p for p in config_module.check_secrets(cfg) if "slack" in p]
    assert f"slack.signing_secret_env: environment variable {SIGNING_ENV} is not set" in line
    monkeypatch.setenv(SIGNING_ENV, SIGNING)
    assert not [p for p in config_module.check_secrets(slack_config(tmp_path, 5, True)) if "slack" in p]
