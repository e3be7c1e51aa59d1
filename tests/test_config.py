"""Config loading: typed values, and every problem reported as FILE:LINE: key: message."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from digestbot import config as config_module
from digestbot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """\
[[sources]]
name = "hf"
kind = "hf_daily"

[[subscriptions]]
name = "Alice: LLM inference"
query = 'inference llm'
email = ["alice@example.org"]
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config_module.load(path)
    return info.value.problems


def test_minimal_config_loads_with_defaults_and_resolves_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "config.toml"
    path.write_text(MINIMAL)
    config = config_module.load(path)
    assert config.subscriptions[0].id == "alice-llm-inference"
    assert config.subscriptions[0].schedule == "daily 08:00"
    assert config.bot.max_age_days == 7
    assert config.database_url == f"sqlite:///{tmp_path / 'sub' / 'digestbot.db'}"
    assert config.outbox == tmp_path / "sub" / "outbox"
    assert config.sources[0].url is None and config.sources[0].every == "15m"


def test_example_config_is_accepted():
    config = config_module.load(ROOT / "config.example.toml")
    assert config.email is not None and config.email.security == "starttls"
    assert [s.kind for s in config.sources] == ["hf_daily", "hf_search", "hf_page", "arxiv", "feed"]


def test_every_problem_names_file_line_and_key(tmp_path):
    text = MINIMAL + """
[bot]
timezone = "Mars/Olympus"
colour = "blue"

[email]
sender = "nobody"
password = "hunter2"
"""
    lines = problems(tmp_path, text)
    path = str(tmp_path / "config.toml")
    assert f"{path}:11: bot.timezone: unknown timezone 'Mars/Olympus'" in "\n".join(lines)
    assert any(line.startswith(f"{path}:12:1: bot.colour: unknown key") for line in lines)
    assert any(line.startswith(f"{path}:15: email.sender: not an email address") for line in lines)
    assert any(line.startswith(f"{path}:16:1: email.password: unknown key") and "password_env" in line
               for line in lines)
    assert len(lines) == 4


def test_array_table_errors_point_at_the_right_entry(tmp_path):
    text = MINIMAL + """
[[subscriptions]]
name = "Bob"
email = ["bob@example.org"]
schedule = "daily 25:00"
max_papers = 0
"""
    lines = problems(tmp_path, text)
    path = str(tmp_path / "config.toml")
    assert any(line.startswith(f"{path}:14: subscriptions[1].max_papers:") for line in lines)
    lines = problems(tmp_path, text.replace("max_papers = 0\n", ""))
    assert lines == [f"{path}:13: subscriptions[1].schedule: 'daily 25:00': the time must be HH:MM "
                     f"(24-hour), e.g. 08:00"]


def test_unknown_source_kind_and_bad_source_option(tmp_path):
    text = MINIMAL + """
[[sources]]
name = "typo"
kind = "hf_dialy"

[[sources]]
name = "big"
kind = "hf_daily"
limit = 500
"""
    lines = problems(tmp_path, text)
    assert any(":12: sources[1].kind: unknown source kind 'hf_dialy'; one of:" in line for line in lines)
    assert any(":17: sources[2].limit:" in line for line in lines)


def test_invalid_query_points_at_the_character(tmp_path):
    lines = problems(tmp_path, MINIMAL.replace("'inference llm'", "'inference AND (llm OR'"))
    [line] = lines
    assert line.startswith(f"{tmp_path / 'config.toml'}:7: subscriptions[0].query: invalid query")
    assert "^" in line and "inference AND (llm OR" in line


def test_unknown_topic_duplicate_names_and_missing_recipient(tmp_path):
    text = MINIMAL.replace('query = \'inference llm\'', 'topics = ["nope"]') + """
[[subscriptions]]
name = "alice: llm inference"
"""
    lines = "\n".join(problems(tmp_path, text))
    assert ":7: subscriptions[0].topics: no topic 'nope'" in lines
    assert ":11: subscriptions[1].name: another subscription already has this name" in lines
    assert ":11: subscriptions[1].name: no recipient" in lines


def test_line_breaks_in_addresses_are_rejected(tmp_path):
    lines = problems(tmp_path, MINIMAL.replace('"alice@example.org"', '"alice@example.org\\r\\nBcc: x@y.z"'))
    assert lines and ":8: subscriptions[0].email: must not contain a line break" in lines[0]


def test_toml_syntax_error_has_a_line(tmp_path):
    [line] = problems(tmp_path, MINIMAL + "\n[bot\n")
    assert line.startswith(f"{tmp_path / 'config.toml'}:10:5: TOML syntax error")


def test_secrets_come_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    # [email] too: with [slack] alone, the subscription's email = [...] could not be sent (a problem)
    path.write_text(MINIMAL + '\n[slack]\ntoken_env = "TEST_DIGESTBOT_TOKEN"\n\n[email]\nsender = "d@example.org"\n')
    config = config_module.load(path)
    monkeypatch.delenv("TEST_DIGESTBOT_TOKEN", raising=False)
    [line] = config_module.check_secrets(config)
    assert line == f"{path}:11: slack.token_env: environment variable TEST_DIGESTBOT_TOKEN is not set (needed to send)"
    with pytest.raises(ConfigError):
        config.secret("TEST_DIGESTBOT_TOKEN", "slack.token_env")
    monkeypatch.setenv("TEST_DIGESTBOT_TOKEN", "xoxb-1")
    assert config.secret("TEST_DIGESTBOT_TOKEN", "slack.token_env") == "xoxb-1"


def test_check_command_exit_codes(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "\n[bot]\ncolour = 1\n")
    run = lambda p: subprocess.run([sys.executable, "-m", "digestbot", "-c", str(p), "check"],  # noqa: E731
                                   capture_output=True, text=True)
    ok, broken = run(good), run(bad)
    assert ok.returncode == 0 and "OK" in ok.stdout
    assert broken.returncode == 2 and f"{bad}:11:1: bot.colour: unknown key" in broken.stderr
    missing = run(tmp_path / "nope.toml")
    assert missing.returncode == 2 and "no such config file" in missing.stderr


def test_every_option_is_documented_in_the_example_config():
    import re

    from digestbot import sources
    from digestbot.config.alerts import AlertsConfig

    text = (ROOT / "config.example.toml").read_text()
    documented = set(re.findall(r"^\s*#?\s*([a-z_]+)\s*=", text, re.M))
    models = [config_module.BotConfig, config_module.EmailConfig, config_module.SlackConfig,
              config_module.TopicConfig, config_module.SubscriptionConfig, AlertsConfig,
              *(kind.Options for kind in sources.load_all().values())]
    missing = {f"{m.__name__}.{f}" for m in models for f in m.model_fields if f not in documented}
    assert missing == set()
