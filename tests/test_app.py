"""The front door: `App.from_config` builds an installation's parts; every entry point goes through it."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fixtures import daily_items

from digestbot import config as config_module
from digestbot.app import App
from digestbot.errors import DigestbotError
from digestbot.models import Paper

CONFIG = """
[bot]
database = "sqlite:///data/state.db"

[[subscriptions]]
name = "Decoding"
query = 'decoding'
email = ["a@example.org"]

[topics.privacy]
like = ["2411.00001"]
"""


def write(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return path


def test_a_built_app_has_every_part_over_the_configured_database(tmp_path):
    path = write(tmp_path)
    with App.from_config(path) as app:  # a path, or a loaded Config
        assert (tmp_path / "data" / "state.db").exists()  # a new installation's database was created
        assert app.config.path == path and app.store.count_papers() == 0
        paper = Paper(title="Speculative decoding", abstract="Faster decoding.", arxiv_id="2411.1",
                      published=datetime.now(UTC))
        assert [m.subscription_id for m in app.matcher.match([paper])] == ["decoding"]
        assert app.renderer is not None and callable(app.open_channel)


def test_the_commands_that_look_after_the_database_do_not_open_it(tmp_path):
    path = write(tmp_path)
    app = App.from_config(path, open_database=False)
    assert not (tmp_path / "data").exists()  # nothing created until asked
    with pytest.raises(DigestbotError):
        app.schema_revision()  # no database: said, not created
    assert not (tmp_path / "data" / "state.db").exists()
    assert app.init_database().created
    assert not app.init_database().created  # the second time: already there, nothing changed
    assert app.schema_revision().newest and app.upgrade_schema() is None


def test_a_reconfigured_app_keeps_its_database_and_http_client(tmp_path):
    path = write(tmp_path)
    app = App.from_config(path)
    edited = config_module.load(path)
    again = app.reconfigured(edited)
    assert again.store is app.store and again.http is app.http and again.config is edited
    assert again.matcher is not app.matcher  # rebuilt from the edited config


def test_run_once_lets_its_matcher_go_before_sending_and_the_next_run_matches_with_a_new_one(tmp_path, http_server):
    """run_once drops the matcher once its polls are over (its room is what the send pass fills: issue 21's
    memory), so the same App polling again must build one again and match that poll's new papers."""
    items = daily_items(6)
    today = datetime.now(UTC).date().isoformat()
    http_server.daily_papers({today: items[:3]})
    path = tmp_path / "config.toml"
    path.write_text(f'[bot]\noutbox = "outbox"\n\n[[sources]]\nname = "hf"\nkind = "hf_daily"\n'
                    f'url = "{http_server.url}/api/daily_papers"\n\n[[subscriptions]]\nname = "Everything"\n'
                    f'email = ["all@example.org"]\nschedule = "instant"\nmax_papers = 100\n')
    with App.from_config(path) as app:
        [first], sent = app.run_once()
        assert first.matched == 3 and len(sent.sent) == 1
        assert "matcher" not in app.__dict__  # let go: the send pass ran without it
        http_server.daily_papers({today: items})
        [second], sent_again = app.run_once()
    assert second.new == 3 and second.matched == 3 and len(sent_again.sent) == 1  # matched by a matcher built again
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2
