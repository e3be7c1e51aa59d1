"""Remembering that a database existed, so that a lost one is refused instead of silently replaced.

A fresh database knows nothing: every paper still listed would count as new and be sent again. So
when digestbot creates a database it records that in `.digestbot-databases.json` next to the config
file (the config usually lives apart from the state: a mounted volume that went missing, a deleted
`state/` folder or a wiped container leave the marker behind). On a later start:

    database there              -> open it (refused if damaged or not digestbot's)
    missing, marker has no entry -> a new installation: create it and record it
    missing, marker has an entry -> refuse: restore the backup, or `digestbot init` to start over

If the config's folder is read-only the marker cannot be written; digestbot says so once (a lost
database would then not be noticed).
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from .. import private

log = logging.getLogger(__name__)
MARKER = ".digestbot-databases.json"


def marker_path(config_path: Path) -> Path:
    return config_path.parent / MARKER


def created_at(config_path: Path, url: str) -> str | None:
    """When the database at `url` was created, if this config's marker remembers it."""
    try:
        since = json.loads(marker_path(config_path).read_text("utf-8")).get(_key(url))
        return None if since is None else str(since)  # any entry at all means the database existed
    except (OSError, ValueError, AttributeError):
        return None


def record(config_path: Path, url: str) -> None:
    path = marker_path(config_path)
    try:
        known = json.loads(path.read_text("utf-8")) if path.exists() else {}
        known[_key(url)] = datetime.now(UTC).isoformat(timespec="seconds")
        private.write(path, (json.dumps(known, indent=2) + "\n").encode("utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("cannot record the new database in %s (%s): if it is lost later, digestbot will not notice "
                    "and would start from empty", path, exc)


def shown(url: str) -> str:
    """`url` as it may be printed or logged: with its password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _key(url)


def _key(url: str) -> str:
    """The URL without a password (the marker is not a secret)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        credentials, _, host = rest.partition("@")
        rest = f"{credentials.split(':', 1)[0]}@{host}"
    return f"{scheme}{sep}{rest}"
