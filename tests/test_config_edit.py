"""Editing the config from the CLI (byte-for-byte preservation, validation, atomicity) and live reload."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from digestbot import config as config_module
from digestbot import daemon
from digestbot.app import App
from digestbot.models import Paper

ROOT = Path(__file__).resolve().parent.parent
BASE = """\
# Our lab's digests.   (a comment that must survive every edit)
[bot]
timezone = "Europe/Berlin"   # where we are

[[sources]]
name = "hf"
kind = "hf_daily"

[topics.efficient-inference]
query = '"speculative decoding" OR "kv cache"'

[[subscriptions]]
name = "Alice"       # keep me
query = 'inference llm'
email = ["alice@example.org"]

# Bob reads vision papers, weekly.
[[subscriptions]]
name = "Bob"
query   =   'vision'
topics = ["efficient-inference"]
email = ["bob@example.org"]
schedule = "weekly mon 09:00"
"""


def digestbot(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digestbot", "-c", str(path), *args], capture_output=True, text=True)


@pytest.fixture
def path(tmp_path) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(BASE)
    return p


def test_add_then_remove_restores_the_file_byte_for_byte(path):
    added = digestbot(path, "subs", "add", "Carol: RL", "--query", 'reinforcement -survey "reward model"',
                      "--email", "carol@example.org", "--slack", "#rl", "--topic", "efficient-inference",
                      "--schedule", "daily 07:30")
    assert added.returncode == 0, added.stderr
    text = path.read_text()
    assert text.startswith(BASE)  # everything before is untouched
    # set off by one blank line, as a person writes tables; the file ends with one newline
    assert text[len(BASE):].startswith("\n[[subscriptions]]\nname = \"Carol: RL\"\n")
    assert text.endswith("\n") and not text.endswith("\n\n")
    config = config_module.load(path)
    carol = config.subscription("carol-rl")
    assert carol.query == 'reinforcement -survey "reward model"' and carol.slack == ["#rl"]
    assert carol.topics == ["efficient-inference"] and carol.schedule == "daily 07:30"
    removed = digestbot(path, "subs", "remove", "carol-rl")
    assert removed.returncode == 0, removed.stderr
    assert path.read_text() == BASE


def test_set_changes_only_the_named_keys(path):
    result = digestbot(path, "subs", "set", "bob", "query=vision OR image", "email=bob@example.org,b2@example.org",
                       "max_papers=5")
    assert result.returncode == 0, result.stderr
    text = path.read_text()
    assert "query   =   'vision'" not in text and "query   =   'vision OR image'" in text or \
        "query = 'vision OR image'" in text or "'vision OR image'" in text
    assert text.replace("'vision OR image'", "'vision'").replace(
        '["bob@example.org", "b2@example.org"]', '["bob@example.org"]').replace("max_papers = 5\n", "") == BASE
    bob = config_module.load(path).subscription("bob")
    assert bob.email == ["bob@example.org", "b2@example.org"] and bob.max_papers == 5


def test_set_keeps_a_comment_in_its_column(path):
    path.write_text(BASE.replace('name = "Alice"       # keep me\nquery = \'inference llm\'',
                                 'name = "Alice"       # keep me\nquery = \'inference llm\'   # what Alice reads'))
    column = len("query = 'inference llm'   ")
    assert digestbot(path, "subs", "set", "alice", "query=llm").returncode == 0
    assert "query = 'llm'".ljust(column) + "# what Alice reads\n" in path.read_text()
    assert digestbot(path, "subs", "set", "alice", "query=a much longer query than before").returncode == 0
    assert "query = 'a much longer query than before' # what Alice reads\n" in path.read_text()


def test_removing_a_table_keeps_the_comment_of_the_next_one(path):
    assert digestbot(path, "subs", "remove", "alice").returncode == 0
    text = path.read_text()
    assert "# Bob reads vision papers, weekly.\n[[subscriptions]]" in text
    assert "Alice" not in text and "keep me" not in text


@pytest.mark.parametrize("args, reason", [
    (("subs", "set", "bob", "schedule=someday"), "'someday' is not a schedule"),
    (("subs", "set", "bob", "query=vision AND ("), "invalid query"),
    (("subs", "set", "bob", "colour=blue"), "unknown key"),
    (("subs", "add", "Dan", "--query", "x"), "no recipient"),
    (("subs", "add", "alice", "--email", "a@b.c"), "already exists"),
    (("subs", "set", "nobody", "query=x"), "no subscription 'nobody'"),
    (("topics", "remove", "efficient-inference"), "no topic 'efficient-inference'"),
])
def test_a_failing_edit_leaves_the_file_untouched_and_says_why(path, args, reason):
    before = path.read_bytes(), path.stat().st_mtime_ns
    result = digestbot(path, *args)
    assert result.returncode == 2
    assert reason in result.stderr
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".config.toml.")]  # no temp left over


def test_topics_add_list_remove(path):
    assert digestbot(path, "topics", "add", "vision", "--query", "vision OR image").returncode == 0
    listed = digestbot(path, "topics", "list").stdout
    assert "vision OR image" in listed and "efficient-inference" in listed
    assert digestbot(path, "topics", "add", "Not A Slug", "--query", "x").returncode == 2
    assert digestbot(path, "topics", "remove", "vision").returncode == 0
    assert path.read_text() == BASE


def test_topics_in_a_file_without_any_go_at_its_end_and_leave_it_as_it_was(tmp_path):
    path = tmp_path / "config.toml"
    before = BASE.replace("[topics.efficient-inference]\nquery = '\"speculative decoding\" OR \"kv cache\"'\n\n", "")
    path.write_text(before.replace('topics = ["efficient-inference"]\n', ""))
    original = path.read_text()
    assert digestbot(path, "topics", "add", "vision", "--query", "vision").returncode == 0
    assert digestbot(path, "topics", "add", "audio", "--query", "speech").returncode == 0
    text = path.read_text()
    assert text == original + "\n[topics.vision]\nquery = 'vision'\n\n[topics.audio]\nquery = 'speech'\n"
    assert digestbot(path, "topics", "remove", "audio").returncode == 0
    assert digestbot(path, "topics", "remove", "vision").returncode == 0
    assert path.read_text() == original


def test_subs_list_and_show(path):
    listed = digestbot(path, "subs", "list")
    assert listed.returncode == 0 and "alice" in listed.stdout and "weekly mon 09:00" in listed.stdout
    shown = digestbot(path, "subs", "show", "Bob")
    assert shown.returncode == 0, shown.stderr
    # the table as written (comment and spacing kept), what it leaves to defaults, its topics
    assert shown.stdout == (
        f"# subscription 'bob', {path}:18\n"
        "# Bob reads vision papers, weekly.\n"  # the comment right above the header describes Bob's
        "[[subscriptions]]\nname = \"Bob\"\nquery   =   'vision'\ntopics = [\"efficient-inference\"]\n"
        "email = [\"bob@example.org\"]\nschedule = \"weekly mon 09:00\"\n"
        "# not set above, so in effect:\n# max_papers = 15\n# send_empty = false\n# paused = false\n# public = false\n"
        "# learn = true\n# timezone = \"Europe/Berlin\"  # bot.timezone\n\n"
        "[topics.efficient-inference]\nquery = '\"speculative decoding\" OR \"kv cache\"'\n")


def test_the_file_keeps_its_permissions(path):
    os.chmod(path, 0o600)
    assert digestbot(path, "subs", "set", "alice", "max_papers=3").returncode == 0
    assert path.stat().st_mode & 0o777 == 0o600


def paper(title: str) -> Paper:
    return Paper(title=title, abstract="", arxiv_id=None)


def test_live_reload_applies_a_valid_edit_and_keeps_the_last_good_config(path, tmp_path, caplog):
    ctx = App.from_config(config_module.load(path))
    live = daemon.Live(ctx, ctx.reconfigured)
    sched = daemon.build(live)
    assert {j.id for j in sched.get_jobs()} >= {"poll:hf", "config:watch"}
    assert not live.reload_if_changed(sched)  # nothing changed yet

    path.write_text(BASE.replace("'inference llm'", "'diffusion'") + """
[[sources]]
name = "hf-weekly"
kind = "hf_daily"
period = "week"
""")
    assert live.reload_if_changed(sched)
    assert {j.id for j in sched.get_jobs()} >= {"poll:hf", "poll:hf-weekly", "config:watch"}
    assert [m.subscription_id for m in live.ctx.matcher.match([paper("Diffusion models")])] == ["alice"]

    good = live.ctx
    path.write_text(BASE + "\n[bot2]\n")
    line = path.read_text().splitlines().index("[bot2]") + 1
    with caplog.at_level(logging.ERROR):
        assert not live.reload_if_changed(sched)
    assert f"{path}:{line}:1: bot2: unknown section" in caplog.text and "NOT applied" in caplog.text
    assert live.ctx is good and len(live.ctx.config.sources) == 2
    caplog.clear()
    assert not live.reload_if_changed(sched)  # the same bad file is reported once
    assert caplog.text == ""


def test_live_reload_of_a_database_env_whose_variable_is_missing_keeps_the_last_good_config(path, caplog,
                                                                                          monkeypatch):
    ctx = App.from_config(config_module.load(path))
    live = daemon.Live(ctx, ctx.reconfigured)
    sched = daemon.build(live)
    monkeypatch.delenv("DIGESTBOT_TEST_NO_SUCH_DATABASE", raising=False)
    text = path.read_text()
    path.write_text(text.replace("[bot]\n", '[bot]\ndatabase_env = "DIGESTBOT_TEST_NO_SUCH_DATABASE"\n', 1))
    with caplog.at_level(logging.ERROR):
        assert not live.reload_if_changed(sched)  # old code: the watcher job raised ConfigError instead
    assert "NOT applied" in caplog.text and "DIGESTBOT_TEST_NO_SUCH_DATABASE" in caplog.text
    assert live.ctx is ctx
