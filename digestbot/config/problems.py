"""Config problems as FILE:LINE: key: message lines (the line found with tomlpos.locate).

Where the column helps, it is given too (FILE:LINE:COLUMN: key: message), with the line and a caret
under the spot: TOML syntax errors, unknown keys, a value of the wrong type, an interval that is not
one. Each message ends with the fix.
"""
from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from .tomlpos import Loc, key_columns, lines_of, locate

Model = TypeVar("Model", bound=BaseModel)
SECRET_HINT = "secrets are read from the environment: name the variable with password_env / token_env"
# Quotes a word processor or a chat client puts in: TOML strings take the straight ones.
SMART_QUOTES = {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
                "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'"}
ARRAYS_OF_TABLES = ("sources", "subscriptions")


class Problems:
    """Collects FILE:LINE: key: message lines."""

    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text
        self.lines: list[str] = []
        self.located: list[tuple[Loc, str]] = []  # (key path, bare message) of each line, in order

    def add(self, loc: Loc, message: str, *, at: str | None = None) -> None:
        """`at`: "key" or "value" to give the column of the key or of its value on its line, "header" that of
        the table's header, with a caret."""
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        line = locate(self.text, loc)
        columns = key_columns(self.text, loc) if at in ("key", "value") else None
        if at == "header" and "[" in (written := lines_of(self.text)[line - 1]):
            columns = (written.index("[") + 1,) * 2
        if columns is None:
            self.lines.append(f"{self.path}:{line}: {key}: {message}")
        else:
            column = columns[0] if at == "key" else columns[1]
            self.lines.append(f"{self.path}:{line}:{column}: {key}: {message}\n{caret(self.text, line, column)}")
        self.located.append((loc, message))

    def sorted(self) -> list[str]:
        return [line for line, _ in self._in_order()]

    def _in_order(self) -> list[tuple[str, tuple[Loc, str]]]:
        def line_number(entry: tuple[str, tuple[Loc, str]]) -> int:
            return int(re.split(r"[:\n]", entry[0][len(str(self.path)) + 1:], maxsplit=1)[0])

        return sorted(zip(self.lines, self.located, strict=True), key=line_number)

    def error(self) -> ConfigError:
        """Every problem, in line order, as the ConfigError that `load` raises."""
        entries = self._in_order()
        return ConfigError([line for line, _ in entries], [where for _, where in entries])

    def validate(self, model: type[Model], value: Any, loc: Loc) -> Model | None:
        """The validated model, or None after recording every problem in `value`."""
        if value is None:
            return None
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            self.add_validation(exc, loc, model)
            return None

    def add_validation(self, exc: ValidationError, prefix: Loc = (), model: type[BaseModel] | None = None) -> None:
        for error in exc.errors():
            loc = prefix + tuple(error["loc"])
            if error["type"] == "extra_forbidden":
                known = model.model_fields if model is not None and len(error["loc"]) == 1 else ()
                self.add(loc, _unknown_key(loc[-1], known), at="key")
            elif error["type"] == "list_type" and isinstance(error["input"], str):
                self.add(loc, f"a list is wanted, even of one: write {loc[-1]} = {json.dumps([error['input']])}",
                         at="value")
            else:
                self.add(loc, error["msg"].removeprefix("Value error, "))


def _unknown_key(key: str | int, known: Iterable[str]) -> str:
    if str(key) in ("password", "token", "secret"):
        return f"unknown key ({SECRET_HINT})"
    near = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    if near:
        return f"unknown key; did you mean {near[0]!r}? (see config.example.toml for every option)"
    return "unknown key (check its spelling; see config.example.toml for every option)"


def unknown_section(key: str, sections: dict[str, str]) -> str:
    near = difflib.get_close_matches(key, list(sections), n=1, cutoff=0.6)
    if near:
        name = near[0]
        header = f"[[{name}]]" if sections[name] == "array of tables" else f"[{name}.NAME]" \
            if sections[name] == "tables" else f"[{name}]"
        return f"unknown section; did you mean {header}?"
    return f"unknown section; allowed: {', '.join(sections)}"


def caret(text: str, line: int, column: int) -> str:
    """The line (tabs shown as spaces, so that the caret stays under its character) and a caret under `column`."""
    lines = lines_of(text)
    shown = lines[line - 1].replace("\t", " ") if 0 < line <= len(lines) else ""
    return f"    {shown}\n    {' ' * (column - 1)}^"


def toml_syntax_error(path: Path, exc: tomllib.TOMLDecodeError, text: str = "") -> str:
    """FILE:LINE[:COLUMN]: TOML syntax error: what tomllib says, and the fix for the mistakes people make:
    typographic quotes, `[subscriptions]` for `[[subscriptions]]`, a table declared twice."""
    message = str(exc)
    line: int | None = getattr(exc, "lineno", None)  # Python 3.14 has them; 3.11 says them in the message only
    column: int | None = getattr(exc, "colno", None)
    if found := re.search(r" \(at line (\d+), column (\d+)\)$", message):
        line, column = line or int(found.group(1)), column or int(found.group(2))
        message = message[:found.start()]
    elif " (at end of document)" in message:
        message = message.replace(" (at end of document)", " at the end of the file")
    lines = lines_of(text)
    written = lines[line - 1] if line and 0 < line <= len(lines) else ""
    quotes = [i for i, c in enumerate(written) if c in SMART_QUOTES]
    header = re.match(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$", written)
    if quotes and line:
        first = written[quotes[0]]
        fixed = "".join(SMART_QUOTES.get(c, c) for c in written).strip()
        return (f"{path}:{line}:{quotes[0] + 1}: TOML syntax error: a typographic quote {first} (U+{ord(first):04X}): "
                f"TOML strings take straight quotes: write {fixed}\n{caret(text, line, quotes[0] + 1)}")
    if header and line and ("twice" in message or "overwrite" in message or "mutate" in message):
        name = header.group(1)
        if name in ARRAYS_OF_TABLES:
            fix = f"write [[{name}]] (two brackets) above each of them, not [{name}]"
        else:
            fix = f"[{name}] may appear once: merge the two [{name}] tables into one"
        start = written.index("[") + 1
        return f"{path}:{line}:{start}: TOML syntax error: {message}: {fix}\n{caret(text, line, start)}"
    if line and column:
        return f"{path}:{line}:{column}: TOML syntax error: {message}\n{caret(text, line, column)}"
    return f"{path}:{line or 1}: TOML syntax error: {message}"
