"""How digestbot's log lines look: `--log-format text` (IsoFormatter) or `json` (JsonFormatter).

A module of its own, with nothing but the standard library: a render child process (render/apart.py)
gets its parent's formatter, and unpickling it must not import the whole command line.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime

LOG_FORMATS = ("text", "json")


class IsoFormatter(logging.Formatter):
    """`2026-11-20T09:30:00.123+01:00 INFO    digestbot.daemon: message`: the date and the offset
    too, so that a line means one moment wherever it is read (journald, a shipped file, a bug report)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        return iso_local(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (`--log-format json`): {"time", "level", "logger", "message"}, plus
    "exception" (the traceback as text) when there is one. A message's line breaks stay inside its string,
    so a log shipper never splits one record in two."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {"time": iso_local(record.created), "level": record.levelname,
                                    "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def iso_local(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="milliseconds")


def log_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else IsoFormatter()
