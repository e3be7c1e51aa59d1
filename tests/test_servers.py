"""The loopback servers work with the real clients the bot uses: httpx, smtplib, slack_sdk."""
from __future__ import annotations

import json
import smtplib
from datetime import date
from email.message import EmailMessage

import httpx
import pytest
from fixtures import daily_items
from servers import HttpServer, SlackServer, SmtpServer, in_order
from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]


# --- HttpServer -------------------------------------------------------------------------------------

def test_http_routes_encode_bodies_and_record_requests(http_server: HttpServer) -> None:
    http_server.route("/json", {"a": [1, 2]})
    http_server.route("/text", "hello", status=201, headers={"ETag": '"v1"'})
    http_server.route("/bytes", b"\x00\x01", headers={"Content-Type": "application/octet-stream"})
    with httpx.Client(base_url=http_server.url) as client:
        r = client.get("/json", params={"q": "x y"}, headers={"User-Agent": "digestbot-test"})
        assert (r.status_code, r.json(), r.headers["content-type"]) == (200, {"a": [1, 2]},
                                                                        "application/json; charset=utf-8")
        r = client.get("/text")
        assert (r.status_code, r.text, r.headers["etag"]) == (201, "hello", '"v1"')
        assert client.get("/bytes").content == b"\x00\x01"
        assert client.get("/missing").status_code == 404
    path, query, headers = http_server.requests[0]
    assert (path, query, headers["user-agent"]) == ("/json", {"q": "x y"}, "digestbot-test")
    assert [r.path for r in http_server.requests] == ["/json", "/text", "/bytes", "/missing"]


def test_http_callable_route_sees_the_request(http_server: HttpServer) -> None:
    http_server.route("/echo", lambda req: (200, {"X-Method": req.method}, {"q": req.query, "body": req.json()}))
    r = httpx.post(f"{http_server.url}/echo?x=1", json={"k": "v"})
    assert r.json() == {"q": {"x": "1"}, "body": {"k": "v"}}
    assert r.headers["x-method"] == "POST"


def test_http_callable_returning_none_drops_the_connection(http_server: HttpServer) -> None:
    http_server.route("/drop", lambda req: None)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{http_server.url}/drop")
    assert len(http_server.requests) == 1


def test_http_in_order_replies_then_repeats_the_last(http_server: HttpServer) -> None:
    http_server.route("/flaky", in_order((429, {"Retry-After": "0"}, "slow down"), (200, {}, "ok")))
    statuses = [httpx.get(f"{http_server.url}/flaky").status_code for _ in range(3)]
    assert statuses == [429, 200, 200]


def test_daily_papers_pages_like_the_real_api(http_server: HttpServer) -> None:
    items = daily_items(5, published=date(2026, 11, 19))
    http_server.today = date(2026, 11, 20)
    http_server.daily_papers({"2026-11-19": items})
    url = f"{http_server.url}/api/daily_papers"

    def get(**params: object) -> httpx.Response:
        return httpx.get(url, params=params)

    pages = [get(date="2026-11-19", p=p, limit=2).json() for p in range(4)]
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    assert [i["paper"]["id"] for page in pages for i in page] == [i["paper"]["id"] for i in items]
    assert len(get(date="2026-11-19").json()) == 5  # default limit 50
    assert get().json() == pages[0] + pages[1] + pages[2]  # no date: the latest day
    assert get(date="2026-11-18").json() == []  # a day without papers
    for bad in ({"limit": 101}, {"limit": 0}, {"date": "2026-13-01"}, {"date": "yesterday"},
                {"date": "2026-11-21"}, {"p": "x"}):
        r = get(**({"date": "2026-11-19"} | bad))
        assert r.status_code == 400 and "error" in r.json(), bad


# --- SmtpServer -------------------------------------------------------------------------------------

def _message(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "digest@example.org", to, "Papers für dich"
    msg.set_content("plain ü")
    msg.add_alternative("<p>html ü</p>", subtype="html")
    return msg


def test_smtp_stores_parsed_messages_and_envelopes(smtp_server: SmtpServer) -> None:
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
        assert client.send_message(_message("a@example.org, b@example.org")) == {}
    [msg] = smtp_server.messages
    assert msg["Subject"] == "Papers für dich"
    assert msg.get_body(("html",)).get_content().strip() == "<p>html ü</p>"
    assert smtp_server.rcpts == [["a@example.org", "b@example.org"]]
    assert smtp_server.received[0].mail_from == "digest@example.org"


def test_smtp_refuses_recipients_on_request(smtp_server: SmtpServer) -> None:
    smtp_server.fail_rcpt["later@example.org"] = "450 try later"
    smtp_server.fail_rcpt["gone@example.org"] = "550 no such user"
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
        refused = client.send_message(_message("ok@example.org, later@example.org, gone@example.org"))
        assert refused == {"later@example.org": (450, b"try later"), "gone@example.org": (550, b"no such user")}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.send_message(_message("gone@example.org"))
    assert smtp_server.rcpts == [["ok@example.org"]]


def test_smtp_refuses_data_on_request(smtp_server: SmtpServer) -> None:
    smtp_server.fail_data = "451 local error"
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
        with pytest.raises(smtplib.SMTPDataError):
            client.send_message(_message("a@example.org"))
    assert smtp_server.messages == []


def test_smtp_stop_and_start_on_the_same_port(smtp_server: SmtpServer) -> None:
    port = smtp_server.port
    smtp_server.stop()
    with pytest.raises(OSError):
        smtplib.SMTP(smtp_server.host, port, timeout=2)
    smtp_server.start()
    with smtplib.SMTP(smtp_server.host, port) as client:
        client.send_message(_message("a@example.org"))
    assert smtp_server.port == port and len(smtp_server.messages) == 1


def test_smtp_login_when_credentials_are_set() -> None:
    with SmtpServer(credentials={"digest": "s3cret"}) as server:
        with smtplib.SMTP(server.host, server.port) as client:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("digest", "wrong")
            client.login("digest", "s3cret")
            client.send_message(_message("a@example.org"))
        assert server.logins == ["digest"] and len(server.messages) == 1


# --- SlackServer ------------------------------------------------------------------------------------

def _client(server: SlackServer, token: str = "xoxb-test", **kwargs: object) -> WebClient:
    return WebClient(token=token, base_url=server.base_url, timeout=5, **kwargs)


def test_slack_post_message_with_the_real_client(slack_server: SlackServer) -> None:
    client = _client(slack_server)
    first = client.chat_postMessage(channel="#x", text="hi", blocks=BLOCKS)
    reply = client.chat_postMessage(channel="#x", text="more", thread_ts=first["ts"])
    assert first["ok"] and float(reply["ts"]) > float(first["ts"])
    assert first["channel"] == reply["channel"] and first["message"]["blocks"] == BLOCKS
    assert [(p["channel"], p["text"], p["blocks"], p["thread_ts"]) for p in slack_server.posts] == [
        ("#x", "hi", BLOCKS, None), ("#x", "more", None, first["ts"])]
    assert client.auth_test()["user_id"] == "U0001"


def test_slack_form_encoded_post_decodes_blocks(slack_server: SlackServer) -> None:
    r = httpx.post(f"{slack_server.base_url}chat.postMessage",
                   data={"token": "xoxb-test", "channel": "C123", "text": "hi", "blocks": json.dumps(BLOCKS)})
    assert r.json()["ok"] and slack_server.posts[0]["blocks"] == BLOCKS


def test_slack_errors_bad_token_and_missing_channel(slack_server: SlackServer) -> None:
    with pytest.raises(SlackApiError) as bad:
        _client(slack_server, token="xoxb-wrong").chat_postMessage(channel="#x", text="hi")
    assert bad.value.response["error"] == "invalid_auth"
    slack_server.missing_channels.add("#gone")
    with pytest.raises(SlackApiError) as gone:
        _client(slack_server).chat_postMessage(channel="#gone", text="hi")
    assert gone.value.response["error"] == "channel_not_found"
    assert slack_server.posts == []


def test_slack_rate_limit_answers_429_with_retry_after(slack_server: SlackServer) -> None:
    slack_server.rate_limit(1)
    with pytest.raises(SlackApiError) as limited:  # slack_sdk does not retry 429 by default
        _client(slack_server).chat_postMessage(channel="#x", text="hi")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "1"
    slack_server.rate_limit(2, retry_after=0)
    client = _client(slack_server, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    assert client.chat_postMessage(channel="#x", text="hi")["ok"]
    assert len(slack_server.posts) == 1 and len(slack_server.requests) == 4


def test_slack_dropped_connection(slack_server: SlackServer) -> None:
    slack_server.drop(1)
    with pytest.raises(ConnectionError):  # http.client.RemoteDisconnected
        _client(slack_server, retry_handlers=[]).chat_postMessage(channel="#x", text="hi")
    slack_server.drop(1)  # the default handler retries a connection error: the retry lands once
    assert _client(slack_server).chat_postMessage(channel="#x", text="hi")["ok"]
    assert len(slack_server.posts) == 1 and len(slack_server.requests) == 3


def test_slack_incoming_webhook(slack_server: SlackServer) -> None:
    response = WebhookClient(slack_server.webhook_url("T1/B1/abc"), timeout=5).send(text="hi", blocks=BLOCKS)
    assert (response.status_code, response.body) == (200, "ok")
    assert slack_server.webhooks == [{"id": "T1/B1/abc", "payload": {"text": "hi", "blocks": BLOCKS},
                                      "text": "hi", "blocks": BLOCKS}]
    slack_server.dead_webhooks.add("T1/B1/old")
    assert WebhookClient(slack_server.webhook_url("T1/B1/old"), timeout=5).send(text="hi").status_code == 404
