"""Characters a config value may not hold, because no digest could carry them.

A control character in a subscription's name, an address or the sender goes into `Subject:`,
`List-Id:`, `From:` or `To:` of every digest: the email library refuses VT, NEL (U+0085) and the line
and paragraph separators (U+2028, U+2029) at send time, so every digest of the subscription fails for
ever; NUL and ESC it lets through raw, into headers that mail clients and terminals then mangle. So
`check` and every load refuse them, in every string of the file (a query or a URL has no use for them
either). TAB, CR and LF are allowed where TOML allows them (multi-line queries); the header-bound
fields refuse CR and LF themselves (config._no_newlines).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any, Protocol

from .tomlpos import Loc

# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; TAB, LF and CR (09, 0A, 0D) are left
# out. U+2028/U+2029 are not Cc, but line breaks to str.splitlines and to the email library. A regex
# rather than a loop over unicodedata.category: every load scans every string of the file.
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


class Reporter(Protocol):
    def add(self, loc: Loc, message: str) -> None: ...


def describe(char: str) -> str:
    """'U+000B (a control character)', 'U+2028 (LINE SEPARATOR)'."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} ({name or 'a control character'})"


def problem(value: str) -> str | None:
    """Why `value` cannot be sent (its first forbidden character and where), or None."""
    found = FORBIDDEN.search(value)
    if found is None:
        return None
    return (f"contains {describe(found.group())} at character {found.start() + 1}, which mail headers and "
            f"Slack messages must not carry: remove it")


def cleaned(data: Any, problems: Reporter, loc: Loc = ()) -> Any:
    """`data` (parsed TOML) with every forbidden character removed, each string that had one reported
    once at its key. Validation then runs on the cleaned copy, so a bad value gives one message, not
    this one plus whatever the character would make the field's own validator say."""
    if isinstance(data, str):
        return _cleaned_string(data, problems, loc, "")
    if isinstance(data, dict):
        result = {}
        for key, value in data.items():
            if isinstance(key, str) and problem(key):
                clean = FORBIDDEN.sub("", key)
                _cleaned_string(key, problems, loc + (clean,), "this key ")
                key = clean
            result[key] = cleaned(value, problems, loc + (key,))
        return result
    if isinstance(data, list):
        return [cleaned(value, problems, loc + (index,)) if isinstance(value, dict)
                else _cleaned_item(value, problems, loc, index) for index, value in enumerate(data)]
    return data


def _cleaned_item(value: Any, problems: Reporter, loc: Loc, index: int) -> Any:
    if isinstance(value, str):  # a list of strings (addresses, channels): reported at its key
        return _cleaned_string(value, problems, loc, f"item {index + 1} ")
    return cleaned(value, problems, loc)


def _cleaned_string(value: str, problems: Reporter, loc: Loc, what: str) -> str:
    why = problem(value)
    if why is None:
        return value
    problems.add(loc, what + why)
    return FORBIDDEN.sub("", value)
