"""Config problems as FILE:LINE: key: message lines (the line found with tomlpos.locate)."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .tomlpos import Loc, locate

Model = TypeVar("Model", bound=BaseModel)
SECRET_HINT = "secrets are read from the environment: name the variable with password_env / token_env"


class Problems:
    """Collects FILE:LINE: key: message lines."""

    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text
        self.lines: list[str] = []

    def add(self, loc: Loc, message: str) -> None:
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        self.lines.append(f"{self.path}:{locate(self.text, loc)}: {key}: {message}")

    def sorted(self) -> list[str]:
        return sorted(self.lines, key=lambda line: int(line[len(str(self.path)) + 1:].split(":", 1)[0]))

    def validate(self, model: type[Model], value: Any, loc: Loc) -> Model | None:
        """The validated model, or None after recording every problem in `value`."""
        if value is None:
            return None
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            self.add_validation(exc, loc)
            return None

    def add_validation(self, exc: ValidationError, prefix: Loc = ()) -> None:
        for error in exc.errors():
            loc = prefix + tuple(error["loc"])
            if error["type"] == "extra_forbidden":
                self.add(loc, _unknown_key(loc[-1]))
            else:
                self.add(loc, error["msg"].removeprefix("Value error, "))


def _unknown_key(key: str | int) -> str:
    if str(key) in ("password", "token", "secret"):
        return f"unknown key ({SECRET_HINT})"
    return "unknown key (check its spelling; see config.example.toml for every option)"


def toml_syntax_error(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    message = str(exc)
    line = getattr(exc, "lineno", None)
    if line is None and "(at line " in message:
        line = message.rsplit("(at line ", 1)[1].split(",")[0]
        message = message.rsplit(" (at line ", 1)[0]
    return f"{path}:{line or 1}: TOML syntax error: {message}"
