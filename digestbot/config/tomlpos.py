"""Find the line of a key in TOML text, so config errors can say FILE:LINE.

tomllib keeps no positions; this walks the text the way a reader does: table headers open sections,
`[[name]]` headers count array entries, `key = ...` lines name keys. When the key itself is absent
(a missing required key) the line of its table header is the best answer.
"""
from __future__ import annotations

import re

Loc = tuple[str | int, ...]  # a key's path: table names, array indices, the key (as pydantic's `loc`)

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*[=.]""")


def _name(part: str) -> str:
    part = part.strip()
    return part[1:-1] if part[:1] in "\"'" and part[-1:] == part[:1] else part


def _header_path(raw: str) -> tuple[str, ...]:
    return tuple(_name(p) for p in re.findall(r"""("[^"]*"|'[^']*'|[^.]+)""", raw))


def lines_of(text: str) -> list[str]:
    """The lines as TOML (and tomllib's error positions) count them: ended by LF only. str.splitlines
    also breaks at NEL, U+2028 and other characters a TOML string may hold, which would shift every
    line number after such a value."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def locate(text: str, loc: Loc) -> int:
    """1-based line of `loc` (e.g. ("subscriptions", 1, "query")); 1 when nothing better is known."""
    lines = lines_of(text)
    section_start, rest = _find_section(lines, loc)
    if rest:
        line = _find_key(lines, section_start, str(rest[0]))
        if line is not None:
            return line + 1
    return section_start + 1 if section_start >= 0 else 1


def key_columns(text: str, loc: Loc) -> tuple[int, int] | None:
    """1-based columns of the key `loc` names and of its value, on the key's line; None when the key is
    not written on a line of its own table (a missing key, an inline table)."""
    lines = lines_of(text)
    section_start, rest = _find_section(lines, loc)
    if len(rest) != 1:
        return None
    number = _find_key(lines, section_start, str(rest[0]))
    if number is None:
        return None
    line = lines[number]
    key = len(line) - len(line.lstrip()) + 1
    equals = line.find("=")
    value = equals + 1 + len(line[equals + 1:]) - len(line[equals + 1:].lstrip()) + 1 if equals >= 0 else key
    return key, value


def _find_section(lines: list[str], loc: Loc) -> tuple[int, Loc]:
    """The header line of the deepest table named by a prefix of `loc`, and what remains of `loc`."""
    best, rest = -1, tuple(loc)
    counts: dict[tuple[str, ...], int] = {}
    target: Loc
    for number, line in enumerate(lines):
        match = _HEADER.match(line)
        if not match:
            continue
        path = _header_path(match.group(2))
        if match.group(1) == "[[":
            index = counts.get(path, 0)
            counts[path] = index + 1
            target = path + (index,)
        else:
            target = path
        if tuple(loc[: len(target)]) == target and len(target) >= len(loc) - len(rest):
            best, rest = number, tuple(loc[len(target):])
    return best, rest


def _find_key(lines: list[str], start: int, key: str) -> int | None:
    for number in range(start + 1, len(lines)):
        if _HEADER.match(lines[number]):
            return None
        match = _KEY.match(lines[number])
        if match and _name(match.group(1)) == key:
            return number
    return None


def table_text(text: str, loc: Loc) -> tuple[int, str] | None:
    """The 1-based line of the header of table `loc` (e.g. ("subscriptions", 1)) and the table as
    written, up to the next header, with its comments: those right above its header describe it,
    those right above the next header describe that one. None: no such table."""
    lines = lines_of(text)
    header, rest = _find_section(lines, loc)
    if header < 0 or rest:
        return None
    end = next((n for n in range(header + 1, len(lines)) if _HEADER.match(lines[n])), len(lines))
    while end - 1 > header and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    start = header
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return header + 1, "\n".join(lines[start:end])
