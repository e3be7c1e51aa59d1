"""Config values no digest can carry are refused by every load (`check`, the daemon, the subs editor).

VT, NEL and U+2028 in a header-bound value made every digest of the subscription fail at send time;
NUL and ESC went out raw in `Subject:` and `List-Id:`. Each is now one FILE:LINE: key: message naming
the character, and an edit that would put one in leaves the file as it was.
"""
from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from digestbot import config as config_module
from digestbot.cli import main
from digestbot.errors import ConfigError

BASE = """\
[email]
sender = "Paper Digest <digest@example.org>"

[[sources]]
name = "hf"
kind = "hf_daily"

[[subscriptions]]
name = "Alice: LLM inference"
query = 'inference llm'
email = ["alice@example.org", "bob@example.org"]
"""
LINES = {"sender": 2, "name": 9, "email": 11}
KEYS = {"sender": "email.sender", "name": "subscriptions[0].name", "email": "subscriptions[0].email"}
CHARACTERS = {"\x0b": "U+000B", "\x85": "U+0085", "\u2028": "U+2028", "\x00": "U+0000", "\x1b": "U+001B"}


def with_character(field: str, char: str, *, escaped: bool = True) -> str:
    written = f"\\u{ord(char):04x}" if escaped else char  # raw NUL, ESC and VT are TOML syntax errors
    places = {"sender": ("Paper Digest <", f"Paper{written}Digest <"),
              "name": ("Alice: LLM", f"Alice:{written}LLM"),
              "email": ('"bob@example.org"', f'"bob{written}@example.org"')}
    old, new = places[field]
    return BASE.replace(old, new)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config_module.load(path)
    return info.value.problems


@pytest.mark.parametrize("char", CHARACTERS, ids=CHARACTERS.values())
@pytest.mark.parametrize("field", LINES)
def test_a_control_character_is_one_error_naming_line_key_and_character(tmp_path, field, char):
    [line] = problems(tmp_path, with_character(field, char))
    assert line.startswith(f"{tmp_path / 'config.toml'}:{LINES[field]}: {KEYS[field]}: ")
    assert f"contains {CHARACTERS[char]} (" in line and "remove it" in line
    assert char not in line  # the message itself never carries the character to the terminal


@pytest.mark.parametrize("char", ["\x85", "\u2028", "\u2029"], ids=["NEL", "U+2028", "U+2029"])
def test_characters_toml_allows_raw_keep_every_line_number_right(tmp_path, char):
    text = with_character("name", char, escaped=False) + '\n[bot]\ncolour = "blue"\n'
    lines = problems(tmp_path, text)
    assert [line.split(": ", 2)[:2] for line in lines] == [
        [f"{tmp_path / 'config.toml'}:9", "subscriptions[0].name"],
        [f"{tmp_path / 'config.toml'}:14:1", "bot.colour"]]


def test_every_string_of_the_file_is_checked_and_tab_and_newlines_stay_allowed(tmp_path):
    text = BASE.replace("query = 'inference llm'", "query = '''\n\tinference\n\tllm'''") \
        + '\n[bot]\npublic_url = "https://x.org/\\u001b[31m"\n'
    [line] = problems(tmp_path, text)
    assert ":16: bot.public_url: contains U+001B (a control character) at character 15" in line
    path = tmp_path / "config.toml"
    path.write_text(text.replace("\\u001b[31m", ""), encoding="utf-8")
    assert config_module.load(path).subscriptions[0].query == "inference\n\tllm"


def test_line_breaks_in_slack_channels_and_public_url_are_refused(tmp_path):
    text = BASE.replace('email = [', 'slack = ["#papers\\r\\nX: y"]\nemail = [') \
        + '\n[bot]\npublic_url = "https://x.org/\\nBcc: y"\n'
    lines = "\n".join(problems(tmp_path, text))
    assert ":11: subscriptions[0].slack: must not contain a line break" in lines
    assert ":15: bot.public_url: must not contain a line break" in lines


def test_check_refuses_it_with_exit_code_2(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(with_character("sender", "\x0b"), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "digestbot", "-c", str(path), "check"], check=False,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "OK" not in result.stdout
    assert f"{path}:2: email.sender: contains U+000B (a control character) at character 6" in result.stderr


def cli(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))
    return code, err.getvalue()


@pytest.mark.parametrize("char", CHARACTERS, ids=CHARACTERS.values())
def test_subs_set_and_add_cannot_put_one_in(tmp_path, char):
    path = tmp_path / "config.toml"
    path.write_text(BASE, encoding="utf-8")
    code, err = cli("-c", str(path), "subs", "set", "Alice: LLM inference", f"email=carol{char}@example.org")
    assert code == 2 and "the edit was not saved" in err
    assert f"\nemail=: item 1 contains {CHARACTERS[char]} (" in err  # the value is not printed (nor its line)
    assert char not in err
    code, err = cli("-c", str(path), "subs", "add", f"Carol{char}papers", "--email", "carol@example.org")
    assert code == 2 and f"\nNAME: contains {CHARACTERS[char]} (" in err
    assert path.read_text(encoding="utf-8") == BASE


def test_a_key_with_a_control_character_is_named_without_printing_the_character(tmp_path):
    lines = problems(tmp_path, BASE + '"col\\u001bour" = 1\n')
    assert "subscriptions[0].colour: this key contains U+001B (a control character) at character 4" in lines[0]
    assert all("\x1b" not in line for line in lines)
