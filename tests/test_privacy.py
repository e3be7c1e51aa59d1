"""Secrets stay out of logs and output; files that name subscribers are private to their owner.

-v once logged the incoming-webhook URL (through slack_sdk's debug logger); `database_env` keeps a
database password out of the config file; the outbox, preview files and the database marker were
world-readable under the usual umask 022.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from delivery_world import SLACK_TOKEN_ENV, init, make_world

from digestbot import config as config_module
from digestbot import preview
from digestbot.channels import Envelope
from digestbot.channels.file import FileChannel
from digestbot.cli import main
from digestbot.errors import ConfigError
from digestbot.models import Message, SlackPost
from digestbot.store import dbstate

CONFIG = """\
[bot]
{bot}

[[sources]]
name = "hf"
kind = "hf_daily"

[[subscriptions]]
name = "alice"
query = "inference"
email = ["alice@example.org"]
"""


def test_verbose_run_logs_neither_the_webhook_url_nor_the_bot_token(tmp_path, http_server, smtp_server,
                                                                    slack_server):
    hook_id = "T0PRIVATE/B0PRIVATE/webhooksecret42"
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=[], slack=["#papers"],
                       slack_url=slack_server.base_url, webhook=slack_server.webhook_url(hook_id))
    init(world)
    result = world.run("-v", "run", "--once")
    assert result.returncode == 0, result.stderr
    assert slack_server.webhooks and slack_server.posts  # both really went out, with -v on
    assert " DEBUG " in result.stderr
    output = result.stdout + result.stderr
    assert "webhooksecret42" not in output and "/webhook/" not in output
    assert world.env.get(SLACK_TOKEN_ENV, "xoxb-test") not in output


def config_at(tmp_path: Path, bot: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(bot=bot), encoding="utf-8")
    return path


def test_database_env_gives_the_url_and_relative_sqlite_paths_follow_the_config(tmp_path, monkeypatch):
    path = config_at(tmp_path, 'database_env = "TEST_DIGESTBOT_DB"')
    monkeypatch.setenv("TEST_DIGESTBOT_DB", "sqlite:///state/bot.db")
    config = config_module.load(path)
    assert config.database_url == f"sqlite:///{tmp_path / 'state' / 'bot.db'}"
    assert config_module.check_secrets(config) == []


def test_database_and_database_env_together_are_refused(tmp_path):
    path = config_at(tmp_path, 'database = "sqlite:///a.db"\ndatabase_env = "TEST_DIGESTBOT_DB"')
    with pytest.raises(ConfigError) as info:
        config_module.load(path)
    assert info.value.problems == [f"{path}:3: bot.database_env: give database or database_env, not both"]


def test_a_missing_database_variable_is_named(tmp_path, monkeypatch, capsys):
    path = config_at(tmp_path, 'database_env = "TEST_DIGESTBOT_DB"')
    monkeypatch.delenv("TEST_DIGESTBOT_DB", raising=False)
    assert main(["-c", str(path), "status"]) == 2  # a config error
    expected = f"{path}:2: bot.database_env: environment variable TEST_DIGESTBOT_DB is not set"
    assert capsys.readouterr().err.startswith(expected)
    assert not list(tmp_path.glob("*.db"))  # nothing was created from a default
    assert main(["-c", str(path), "check"]) == 0  # like the other secrets: a warning, the file is valid
    assert f"warning: {expected} (needed to open the database)" in capsys.readouterr().err


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


MESSAGE = Message(subject="2 new papers", text="for alice@example.org", html="<p>hi</p>",
                  slack_posts=[SlackPost(text="hi", blocks=[])])
ENVELOPE = Envelope("alice@example.org", "alice", "alice", "<digest-1.alice@example.org>", "alice <alice.x>")


def test_outbox_files_and_folder_are_private(tmp_path, umask_022):
    outbox = tmp_path / "state" / "outbox"
    written = [Path(FileChannel(outbox, kind).send(MESSAGE, ENVELOPE)) for kind in ("email", "slack")]
    assert mode(outbox) == 0o700
    assert [mode(p) for p in written] == [0o600, 0o600]
    assert sorted(p.name for p in outbox.iterdir()) == sorted(p.name for p in written)  # no temporaries left


def test_preview_files_and_folder_are_private(tmp_path, umask_022):
    out = tmp_path / "preview"
    paths = preview.write(MESSAGE, out)
    assert mode(out) == 0o700 and [mode(p) for p in paths] == [0o600] * 3
    assert (out / "digest.txt").read_text(encoding="utf-8") == "for alice@example.org"


def test_database_marker_is_private(tmp_path, umask_022):
    config_path = tmp_path / "config.toml"
    dbstate.record(config_path, "postgresql+psycopg://digest:s3cret@db.example.org/digest")
    marker = dbstate.marker_path(config_path)
    assert mode(marker) == 0o600
    assert "s3cret" not in marker.read_text(encoding="utf-8")
    assert dbstate.created_at(config_path, "postgresql+psycopg://digest:other@db.example.org/digest")
