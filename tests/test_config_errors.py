"""Errors that teach (issue 20, point 9): the config mistakes people make get one message each, with
FILE:LINE:COLUMN, the line with a caret under the spot, and the fix; a `subs add` / `subs set` that is not
saved cites what was typed (the flag, KEY=VALUE), never a line of a file that was not written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from digestbot import config as config_module
from digestbot.cli import main
from digestbot.errors import ConfigError

BASE = """[bot]
database = "sqlite:///x.db"

[[sources]]
name = "hf"
kind = "hf_daily"
"""
SUB = """
[[subscriptions]]
name = "alice"
email = ["alice@example.org"]
"""


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        config_module.load(path)
    return raised.value.problems


def one(tmp_path: Path, text: str) -> tuple[str, str, str]:
    """The one problem: its first line, the config line shown under it, and the caret line."""
    [problem] = problems_of(tmp_path, text)
    first, shown, caret = problem.split("\n")
    return first, shown, caret


def column_of(shown: str, caret: str) -> int:
    """Where the caret points in the shown line (both indented by four spaces)."""
    assert shown.startswith("    ") and caret.strip() == "^"
    return len(caret) - 4


def test_every_in_words_gets_the_interval_advice(tmp_path):
    first, shown, caret = one(tmp_path, BASE + 'every = "15 minutes"\n' + SUB)
    assert first == (f"{tmp_path / 'config.toml'}:7:9: sources[0].every: '15 minutes' is not an interval: write "
                     f'every = "15m" (a number and s, m, h or d: "30s", "15m", "2h", "1d"), or cron = "..." for '
                     "fixed times")
    assert shown == '    every = "15 minutes"' and shown[4 + column_of(shown, caret) - 1] == '"'
    assert "daily HH:MM" not in first  # not the subscriptions' schedule advice
    for written, advice in (("2 hours", 'write every = "2h"'), ("every 1 day", 'write every = "1d"'),
                            ("often", 'e.g. every = "15m"')):
        assert advice in one(tmp_path, BASE + f'every = "{written}"\n' + SUB)[0]


def test_a_single_bracket_array_table_says_to_write_two(tmp_path):
    path = tmp_path / "config.toml"
    once = BASE + '\n[subscriptions]\nname = "a"\nemail = ["a@example.org"]\n'
    first, shown, caret = one(tmp_path, once)
    assert first == (f"{path}:8:1: subscriptions: write [[subscriptions]] (two brackets) above each of the "
                     "subscriptions, not [subscriptions]")
    assert (shown, caret) == ("    [subscriptions]", "    ^")
    twice = once + '\n[subscriptions]\nname = "b"\nemail = ["b@example.org"]\n'
    first, shown, caret = one(tmp_path, twice)
    assert first.startswith(f"{path}:12:1: TOML syntax error: ")
    assert first.endswith("write [[subscriptions]] (two brackets) above each of them, not [subscriptions]")
    assert (shown, caret) == ("    [subscriptions]", "    ^")
    [bot_twice] = problems_of(tmp_path, BASE + "\n[bot]\ntimezone = 'UTC'\n" + SUB)
    assert "[bot] may appear once: merge the two [bot] tables into one" in bot_twice


@pytest.mark.parametrize("quote", ["\u201c", "\u201d", "\u2018"])
def test_typographic_quotes_name_the_character_and_the_straight_line(tmp_path, quote):
    closing = {"\u201c": "\u201d", "\u201d": "\u201d", "\u2018": "\u2019"}[quote]
    first, shown, caret = one(tmp_path, BASE + SUB + f"query = {quote}llm{closing}\n")
    straight = '"' if quote != "\u2018" else "'"
    assert first.startswith(f"{tmp_path / 'config.toml'}:11:9: TOML syntax error: a typographic quote {quote} "
                            f"(U+{ord(quote):04X}): TOML strings take straight quotes: ")
    assert first.endswith(f"write query = {straight}llm{straight}")
    assert shown[4 + column_of(shown, caret) - 1] == quote
    assert "Invalid value" not in first


def test_a_string_where_a_list_is_wanted_shows_the_list(tmp_path):
    first, shown, caret = one(tmp_path, BASE + SUB.replace('["alice@example.org"]', '"alice@example.org"'))
    assert first == (f"{tmp_path / 'config.toml'}:10:9: subscriptions[0].email: a list is wanted, even of one: "
                     'write email = ["alice@example.org"]')
    assert shown == '    email = "alice@example.org"' and column_of(shown, caret) == 9
    assert "Input should be a valid list" not in first


def test_unknown_keys_and_sections_get_did_you_mean(tmp_path):
    path = tmp_path / "config.toml"
    lines = problems_of(tmp_path, BASE + "evry = '1h'\n" + SUB + 'schedul = "daily 08:00"\n\n[subscription]\n')
    assert lines[0].startswith(f"{path}:7:1: sources[0].evry: unknown key; did you mean 'every'?")
    assert lines[0].endswith("\n    evry = '1h'\n    ^")
    assert lines[1].startswith(f"{path}:12:1: subscriptions[0].schedul: unknown key; did you mean 'schedule'?")
    assert lines[2].startswith(f"{path}:14:1: subscription: unknown section; did you mean [[subscriptions]]?")
    unrelated = problems_of(tmp_path, BASE + SUB + "colour = 'blue'\n")[0]
    assert "did you mean" not in unrelated and "check its spelling" in unrelated


def test_problems_of_a_later_subscription_name_its_place_in_the_file(tmp_path):
    """An invalid table is left out of the loaded list: the later tables keep their file index and line."""
    text = BASE + SUB.replace("email", "emial") + SUB.replace("alice", "bob") + 'schedule = "every day"\n'
    lines = problems_of(tmp_path, text)
    assert any(line.startswith(f"{tmp_path / 'config.toml'}:15: subscriptions[1].schedule: 'every day'")
               for line in lines), lines


def test_check_prints_them_in_a_real_process(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(BASE + SUB.replace('["alice@example.org"]', '"alice@example.org"'), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "digestbot", "-c", str(path), "check"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"{path}:10:9: subscriptions[0].email: a list is wanted, even of one: write email = "
                             '["alice@example.org"]\n    email = "alice@example.org"\n            ^\n')


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_a_refused_subs_edit_cites_the_flag_not_a_line_of_an_unsaved_file(tmp_path, capsys):
    path = tmp_path / "config.toml"
    text = BASE + SUB + 'schedul = "daily 08:00"\n'  # a mistake already in the file, at line 11
    path.write_text(text, encoding="utf-8")
    code, err = cli(capsys, "-c", str(path), "subs", "add", "bob", "--email", "bob", "--max-papers", "900")
    assert code == 2 and path.read_text(encoding="utf-8") == text
    assert err.splitlines()[:3] == ["the edit was not saved; it would make the config invalid:",
                                    "--email: not an email address: 'bob'",
                                    "--max-papers: Input should be less than or equal to 500"]
    assert f"{path}:11: subscriptions[0].schedul: unknown key; did you mean 'schedule'?" in err
    assert ":13" not in err and ":14" not in err  # lines of the text that was never saved

    code, err = cli(capsys, "-c", str(path), "subs", "set", "alice", "email=nobody", "schedul=")
    assert code == 2 and "\nemail=nobody: not an email address: 'nobody'\n" in err
    assert path.read_text(encoding="utf-8") == text
