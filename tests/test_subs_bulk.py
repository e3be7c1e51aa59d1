"""Many subscribers at once (issue 20, point 7): `subs import/export`, `subs remove-address`, `subs rename`
keeping history, names with an empty id refused, and what `subs add` tells about its defaults and matches.

Real components: the CLI's `main`, a real daemon (one reload per import), SQLite files, a loopback listing.
"""
from __future__ import annotations

import contextlib
import io
import signal
import sqlite3
import time

from delivery_world import init, make_world

from digestbot import config as config_module
from digestbot.cli import main

CSV = """name,email,slack,query,topics,schedule
Alice,alice@example.org;alice@home.example.org,,speculative decoding,,daily 07:00
Bob,bob@example.org,#bob-papers,quantization,,instant
"""


def cli(config, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["-c", str(config), *args])
    return code, out.getvalue(), err.getvalue()


def base_config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[bot]\noutbox = "outbox"\n\n[[subscriptions]]\nname = "Bob"\nemail = ["old@example.org"]\n'
                    'query = "old"\nmax_papers = 3\n', encoding="utf-8")
    return path


def test_import_adds_and_updates_in_one_write_and_export_writes_the_same_csv(tmp_path):
    path = base_config(tmp_path)
    people = tmp_path / "people.csv"
    people.write_text(CSV, encoding="utf-8")
    code, out, err = cli(path, "subs", "import", str(people))
    assert code == 0, err
    assert "added 1 and updated 1 subscriptions" in out
    config = config_module.load(path)
    alice, bob = config.subscription("alice"), config.subscription("bob")
    assert alice.email == ["alice@example.org", "alice@home.example.org"] and alice.schedule == "daily 07:00"
    assert (bob.email, bob.slack, bob.query, bob.schedule) == (["bob@example.org"], ["#bob-papers"], "quantization",
                                                                "instant")
    assert bob.max_papers == 3  # a column the file does not have is left as it was
    code, exported, _ = cli(path, "subs", "export")
    assert code == 0
    assert exported.splitlines()[0] == "name,email,slack,query,topics,schedule"
    assert "Alice,alice@example.org;alice@home.example.org,,speculative decoding,,daily 07:00" in exported
    again = tmp_path / "again.csv"
    assert cli(path, "subs", "export", str(again))[0] == 0 and again.read_text() == exported
    before = path.read_text()
    assert cli(path, "subs", "import", str(again))[0] == 0 and config_module.load(path).subscriptions == \
        config_module.load(path).subscriptions and path.read_text() == before  # a round trip changes nothing


def test_an_invalid_import_changes_nothing(tmp_path):
    path = base_config(tmp_path)
    before = path.read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text("name,email,schedule\nCarol,carol@example.org,daily 08:00\nDave,not-an-address,daily 08:00\n")
    code, _, err = cli(path, "subs", "import", str(bad))
    assert code == 2 and "nothing imported" in err and "not an email address" in err
    assert path.read_text() == before
    bad.write_text("name,mail\nCarol,carol@example.org\n")
    code, _, err = cli(path, "subs", "import", str(bad))
    assert code == 2 and "unknown: mail" in err and path.read_text() == before


def test_a_fifty_row_import_is_one_reload_of_the_running_daemon(tmp_path, http_server, smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    init(world)
    daemon = world.start("run")
    try:
        time.sleep(3)  # started, watching the file
        people = tmp_path / "people.csv"
        people.write_text("name,email,query\n" + "".join(f"Reader {i},r{i}@example.org,topic{i}\n"
                                                         for i in range(50)))
        code, out, err = cli(world.config, "subs", "import", str(people))
        assert code == 0, err
        time.sleep(12)  # two more watch periods: a second write would have been seen by now
        daemon.send_signal(signal.SIGTERM)
        _, log = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert log.count("config reloaded") == 1, log
    assert "51 subscriptions" in log


def test_remove_address_everywhere_refuses_to_leave_a_subscription_empty(tmp_path):
    path = base_config(tmp_path)
    people = tmp_path / "people.csv"
    people.write_text(CSV.replace("bob@example.org", "alice@example.org"))
    assert cli(path, "subs", "import", str(people))[0] == 0
    path.write_text(path.read_text() + '\n[[subscriptions]]\nname = "Solo"\nemail = ["Alice <Alice@example.org>"]\n')
    before = path.read_text()
    code, _, err = cli(path, "subs", "remove-address", "alice@example.org")
    assert code == 2 and "'Solo' would be left with no recipient" in err and path.read_text() == before
    code, out, err = cli(path, "subs", "remove-address", "alice@example.org", "--remove-empty")
    assert code == 0, err
    assert "from 3 subscriptions" in out and "removed 'Solo'" in out
    config = config_module.load(path)
    assert [s.id for s in config.subscriptions] == ["bob", "alice"]
    assert config.subscription("alice").email == ["alice@home.example.org"]
    assert config.subscription("bob").email == [] and config.subscription("bob").slack == ["#bob-papers"]


def test_a_name_whose_id_would_be_empty_is_refused(tmp_path):
    path = base_config(tmp_path)
    code, _, err = cli(path, "subs", "add", "!!!", "--email", "x@example.org")
    assert code == 2 and "makes an empty id" in err
    assert cli(path, "subs", "rename", "bob", "...")[0] == 2
    assert "!!!" not in path.read_text()


def test_add_says_which_defaults_it_applied_and_what_it_would_have_matched(tmp_path, http_server, smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    init(world)
    assert world.run("run", "--once").returncode == 0
    code, out, err = cli(world.config, "subs", "add", "Carol", "--email", "carol@example.org", "--query",
                         "verifiable")
    assert code == 0, err
    assert "defaults applied: schedule 'daily 08:00', max_papers 15, timezone 'UTC' (bot.timezone)" in err
    [(papers,)] = sqlite3.connect(world.db).execute("SELECT count(*) FROM paper").fetchall()
    assert papers == 6
    assert "'Carol' matches 1 of the 6 papers stored from the last 7 days" in err


def test_rename_keeps_the_history(tmp_path, http_server, smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    init(world)
    assert world.run("run", "--once").returncode == 0 and len(smtp_server.received) == 1
    code, out, err = cli(world.config, "subs", "rename", "everything", "All the papers")
    assert code == 0, err
    assert "id 'everything' -> 'all-the-papers'" in out and "1 digest" in out
    assert config_module.load(world.config).subscriptions[0].name == "All the papers"
    with sqlite3.connect(world.db) as db:
        assert {sub for (sub,) in db.execute("SELECT subscription FROM digest UNION SELECT subscription FROM match "
                                             "UNION SELECT subscription FROM delivery")} == {"all-the-papers"}
    again = world.run("run", "--once")
    assert again.returncode == 0 and "cancelled" not in again.stdout
    assert len(smtp_server.received) == 1  # the papers it had are not sent again under the new id
    code, _, err = cli(world.config, "subs", "rename", "all-the-papers", "Everything")  # its old id's history
    assert code == 0, err


def test_rename_refuses_a_name_whose_id_has_history_of_its_own(tmp_path, http_server, smtp_server):
    lab = '\n[[subscriptions]]\nname = "Lab"\nemail = ["lab@example.org"]\nschedule = "instant"\n'
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"], extra_sub=lab)
    init(world)
    assert world.run("run", "--once").returncode == 0
    world.config.write_text(world.config.read_text().replace(lab, "\n"))  # Lab removed; its history stays
    before = world.config.read_text()
    code, _, err = cli(world.config, "subs", "rename", "everything", "LAB")
    assert code == 1 and "already has history under the id 'lab'" in err
    assert world.config.read_text() == before  # neither the file nor the rows changed
    with sqlite3.connect(world.db) as db:
        assert db.execute("SELECT count(*) FROM digest WHERE subscription = 'everything'").fetchone()[0] == 1
