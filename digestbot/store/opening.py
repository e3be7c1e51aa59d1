"""Opening an installation's database: created on a new installation, refused when lost or damaged.

A database digestbot created is recorded beside the config (dbstate.py); if it is missing later, it
was lost (a new disk, a wrong path) and starting from an empty one would send every paper still
listed again, so it is refused instead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .. import private
from ..errors import DigestbotError
from . import dbstate
from .database import Store, is_blank, set_aside, sqlite_path

log = logging.getLogger(__name__)


def open_store(url: str, config_path: Path, *, busy_timeout: float = 10.0, create: bool = True) -> Store:
    """The database of the installation configured at `config_path`, upgraded to this version's schema.
    `create=False` (the commands that only look: status, papers, ...): a missing database is an error, never
    made (an empty one made by a typo in `database` would hide the real one, and send its history again)."""
    if not exists(url):
        if not create:
            raise DigestbotError(f"no database at {dbstate.shown(url)}; `digestbot init` creates one (or "
                                 f"`digestbot run` on its first start). If one existed, restore it from a backup, "
                                 f"or check `database` / `database_env` in the config")
        since = dbstate.created_at(config_path, url)
        if since is not None:
            raise DigestbotError(
                f"the database {dbstate.shown(url)} is missing, but digestbot created it on {since} (recorded in "
                f"{dbstate.marker_path(config_path)}): restore it from a backup; starting from an empty one would "
                f"send every paper still listed again. To start over on purpose: `digestbot init`")
        log.warning("new installation: creating the database %s", dbstate.shown(url))
        return create_store(url, config_path, busy_timeout=busy_timeout)
    if never_used(url, config_path):
        if not create:
            raise DigestbotError(f"the database {dbstate.shown(url)} is an empty file; `digestbot init` completes it")
        log.warning("the database %s is an empty file (a first run was stopped while creating it): creating its "
                    "tables now", dbstate.shown(url))
        return create_store(url, config_path, busy_timeout=busy_timeout)
    return Store.open_existing(url, busy_timeout=busy_timeout)


def never_used(url: str, config_path: Path) -> bool:
    """An empty SQLite file that no digestbot finished creating (older versions killed while creating it
    left one). Emptied after use, the marker remembers it: then it is refused like any damaged file."""
    path = sqlite_path(url)
    return path is not None and is_blank(Path(path)) and dbstate.created_at(config_path, url) is None


def exists(url: str) -> bool:
    path = sqlite_path(url)
    if path is not None:
        return Path(path).exists()
    with Store(url) as store:  # other databases: missing tables mean a missing database
        return store.has_tables()


def create_store(url: str, config_path: Path, *, busy_timeout: float = 10.0) -> Store:
    if path := sqlite_path(url):
        private.make_folder(Path(path).parent)  # a new folder for subscriber data
    store = Store(url, busy_timeout=busy_timeout)
    store.create_tables()
    dbstate.record(config_path, url)
    return store


@dataclass(frozen=True)
class Initialised:
    """What `init_database` did."""

    created: bool  # False: it was a digestbot database already, and nothing was changed
    moved_aside: Path | None = None  # where a damaged file went (with `force`)


def init_database(url: str, config_path: Path, *, force: bool = False, busy_timeout: float = 10.0) -> Initialised:
    """Create the database on purpose, also where a lost one was recorded. An existing digestbot database
    is left as it is (not even upgraded); a damaged file is refused, or moved aside with `force`."""
    try:
        Store.open_existing(url, busy_timeout=busy_timeout, upgrade=False).close()
        return Initialised(created=False)
    except DigestbotError as exc:
        path = sqlite_path(url)
        moved = None
        if path and Path(path).exists() and not never_used(url, config_path):  # a never-used blank file is completed
            if not force:
                raise DigestbotError(f"{exc}\n(not touched: `digestbot init --force` moves it aside and starts "
                                     f"empty)") from exc
            moved = set_aside(Path(path))
    create_store(url, config_path, busy_timeout=busy_timeout).close()
    return Initialised(created=True, moved_aside=moved)
