"""Edit the config file from the command line without ever breaking it.

Edits go through tomlkit, which keeps comments, order and formatting of everything it is not asked to
change. Each edit produces the new text, validates it exactly as `digestbot check` would, and only then
replaces the file atomically (a temporary file in the same folder, fsync, rename). A failing edit leaves
the file untouched and raises ConfigError saying why.

Edit under the config's lock, so that edits made at the same moment (two commands, the command line
and a web form) wait for each other instead of overwriting each other:

    with editing(path) as editor:
        editor.add_subscription("Carol", {"email": ["carol@example.org"]})
        editor.save()

A ConfigEditor made outside `editing` reads without the lock and takes it only to save; it then
refuses to save over a file another edit changed since (config_file.py has the details).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomlkit
from slugify import slugify
from tomlkit.items import AoT, Item, Table

from .. import config as config_module
from ..errors import ConfigError
from . import file as config_file
from .problems import Problems
from .tomlpos import Loc, table_text

LIST_KEYS = {"email", "slack", "topics", "like"}
INT_KEYS = {"max_papers"}
FLOAT_KEYS = {"min_similarity"}
BOOL_KEYS = {"send_empty", "paused", "public", "learn"}
_HEADER = re.compile(r"^\s*\[")


@contextmanager
def editing(path: str | Path, timeout: float | None = None) -> Iterator[ConfigEditor]:
    """An editor of the config at `path` that holds its lock (waiting up to `timeout` seconds for it,
    config_file.LOCK_TIMEOUT by default) from before it reads the file until the block ends;
    ConfigError if the lock stays taken."""
    editor = ConfigEditor(path, lock_timeout=timeout, read=False)
    with config_file.locked(editor.real, editor.lock_timeout):
        editor._load()
        editor._holds_lock = True
        try:
            yield editor
        finally:
            editor._holds_lock = False


class ConfigEditor:
    def __init__(self, path: str | Path, lock_timeout: float | None = None, read: bool = True):
        """`read=False`: the caller reads the file later (`editing` does, once it holds the lock)."""
        self.path = Path(path)
        # The edited table, and what the caller calls each of its keys (`subs add` flags: {"email": "--email"}):
        # when set, problems of that table are cited by what was typed, not by a line of a file never saved.
        self.edited: Loc | None = None
        self.cited: dict[str, str] = {}
        self.real = config_file.real_path(self.path)  # a symlink's target is edited; the link stays
        self.lock_timeout = config_file.LOCK_TIMEOUT if lock_timeout is None else lock_timeout
        self._holds_lock = False
        if read:
            self._load()

    def _load(self) -> None:
        self._read_bytes = config_file.read(self.real)  # None: `subs add` may start a config from nothing
        self.original = config_file.decode(self._read_bytes, self.path)
        self.doc = tomlkit.parse(self.original)

    # --- subscriptions ------------------------------------------------------------------------------

    def _subscriptions(self) -> AoT | list[Table]:
        found: AoT | list[Table] = self.doc.get("subscriptions", [])
        return found

    def find(self, name: str) -> int:
        for i, table in enumerate(self._subscriptions()):
            if name in (table.get("name"), slugify(str(table.get("name", "")))):
                return i
        raise ConfigError(f"{self.path}: no subscription {name!r} (see `digestbot subs list`)")

    def add_subscription(self, name: str, values: dict[str, Any]) -> None:
        if any(slugify(str(t.get("name", ""))) == slugify(name) for t in self._subscriptions()):
            raise ConfigError(f"{self.path}: a subscription named {name!r} already exists "
                              f"(change it with `digestbot subs set`)")
        table = tomlkit.table()
        table["name"] = name
        for key, value in values.items():
            table[key] = _item(key, value)
        # One blank line between two tables, as people write them: before the new one, unless
        # the text above ends with one; after it too, if something follows it.
        subscriptions = self._subscriptions()
        above = subscriptions[-1].as_string() if subscriptions else self.text()
        if above.strip() and not above.endswith("\n\n"):
            table.trivia.indent = "\n"
        self.edited = ("subscriptions", len(subscriptions))
        if "subscriptions" not in self.doc:
            self.doc.append("subscriptions", tomlkit.aot())
        elif list(self.doc)[-1] != "subscriptions":
            table.add(tomlkit.nl())
        self.doc["subscriptions"].append(table)

    def set_subscription(self, name: str, values: dict[str, Any]) -> None:
        index = self.find(name)
        self.edited = ("subscriptions", index)
        table = self._subscriptions()[index]
        for key, value in values.items():
            if value in ("", None) and key in table:
                del table[key]
            elif key in table:
                _replace(table, key, _item(key, value))
            else:
                table[key] = _item(key, value)

    def remove_subscription(self, name: str) -> None:
        """Removed as text, so that comments above the next table stay with it."""
        index = self.find(name)
        lines = tomlkit.dumps(self.doc).splitlines(keepends=True)
        headers = [i for i, line in enumerate(lines) if line.strip().startswith("[[subscriptions]]")]
        start = headers[index]
        end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
        while end - 1 > start and lines[end - 1].lstrip().startswith("#"):
            end -= 1  # a comment right above the next header describes that table
        if end == len(lines):  # the last table: the blank line above it went with it when it was added
            while start > 0 and not lines[start - 1].strip():
                start -= 1
        self.doc = tomlkit.parse("".join(lines[:start] + lines[end:]))

    # --- topics -------------------------------------------------------------------------------------

    def add_topic(self, name: str, values: dict[str, Any]) -> None:
        if name != slugify(name):
            raise ConfigError(f"{self.path}: topic names are slugs: use {slugify(name)!r}")
        topics = self.doc.get("topics")
        if topics is None:
            topics = tomlkit.table(is_super_table=True)
            self.doc.append("topics", topics)
        if name in topics:
            raise ConfigError(f"{self.path}: topic {name!r} already exists")
        table = tomlkit.table()
        for key, value in values.items():
            table[key] = _item(key, value)
        if list(self.doc)[-1] != "topics":  # a blank line before what follows (tomlkit puts one above)
            table.add(tomlkit.nl())
        topics.append(name, table)

    def remove_topic(self, name: str) -> None:
        topics = self.doc.get("topics")
        if topics is None or name not in topics:
            raise ConfigError(f"{self.path}: no topic {name!r}")
        del topics[name]
        text = self.text()
        if text.endswith("\n\n") and not self.original.endswith("\n\n"):  # the blank line above it
            self.doc = tomlkit.parse(text.rstrip("\n") + "\n")

    # --- writing ------------------------------------------------------------------------------------

    def text(self) -> str:
        return tomlkit.dumps(self.doc)

    def save(self) -> config_module.Config:
        """Validate the edited text as `check` would; replace the file only when it is valid."""
        text = self.text()
        try:
            config = config_module.loads(text, self.path)
        except ConfigError as exc:
            raise ConfigError(["the edit was not saved; it would make the config invalid:", *self._cite(exc)]) from None
        if self._holds_lock:
            self._write(text)
        else:
            with config_file.locked(self.real, self.lock_timeout):
                self._write(text)
        return config

    def _cite(self, exc: ConfigError) -> list[str]:
        """The problems of an edit that was not saved. With `cited` set, a problem of the edited table names
        what was typed ("--email: not an email address: 'bob'"), and any other is located in the file as it
        is on disk (the edited text's lines exist nowhere, and may be shifted by the edit)."""
        if not self.cited or self.edited is None or exc.located is None:
            return exc.problems
        edited, saved = self.edited, Problems(self.path, self.original)
        cited: list[str] = []
        for loc, message in exc.located:
            key = str(loc[len(edited)]) if len(loc) > len(edited) else ""
            if tuple(loc[:len(edited)]) == edited and (key in self.cited or not self._on_disk(edited)):
                cited.append(f"{self.cited.get(key, key or 'the new table')}: {message}")
            else:  # as it is in the file: a key the edit did not touch
                saved.add(loc, message)
        return cited + saved.lines

    def _on_disk(self, loc: Loc) -> bool:
        return table_text(self.original, loc) is not None

    def _write(self, text: str) -> None:
        config_file.write(self.real, text, self._read_bytes, self.path)
        self._read_bytes = text.encode("utf-8")  # what the file now holds: the next save starts from it


def parse_assignment(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` from the command line into a typed value; lists are comma-separated."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"expected KEY=VALUE, got {text!r}")
    value = value.strip()
    if key in LIST_KEYS:
        return key, [v.strip() for v in value.split(",") if v.strip()]
    if key in INT_KEYS | FLOAT_KEYS and value:
        try:
            return key, int(value) if key in INT_KEYS else float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if key in BOOL_KEYS and value:
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return key, value.lower() == "true"
    return key, value


def _item(key: str, value: Any) -> Any:
    """Strings become TOML literal strings when they can, so queries keep their "quotes" readable."""
    if isinstance(value, str) and "'" not in value and "\n" not in value and key in ("query", "schedule"):
        return tomlkit.string(value, literal=True)
    return value


def _replace(table: Table, key: str, value: Any) -> None:
    """Set `key` and keep its comment where it was: people align the comments of a table."""
    before = table.item(key)
    table[key] = value
    after = table.item(key)
    if isinstance(before, Item) and isinstance(after, Item) and before.trivia.comment:  # not a table
        shift = len(before.as_string()) - len(after.as_string())
        after.trivia.comment_ws = " " * max(1, len(before.trivia.comment_ws) + shift)


def subscription_table(editor: ConfigEditor, name: str) -> Table:
    return editor._subscriptions()[editor.find(name)]
