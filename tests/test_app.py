"""The front door: `App.from_config` builds an installation's parts; every entry point goes through it."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

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
