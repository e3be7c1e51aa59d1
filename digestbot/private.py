"""Files and folders that hold subscriber addresses: readable by their owner only, whatever the umask.

The outbox (.eml files with To: lines, Slack payloads), preview renderings and the database marker
were created under the usual umask 022 as world-readable; on a shared host anyone could read who
subscribes to what. Files are written 0600 and folders created 0700; a folder that already exists
keeps the mode its owner gave it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

FILE_MODE, FOLDER_MODE = 0o600, 0o700


def make_folder(path: Path) -> None:
    """`path` and missing parents; `path` itself 0700 when created here (parents: the umask's default)."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)


def write(path: Path, data: bytes) -> None:
    """Replace `path` by a 0600 file holding `data`, atomically: a reader never sees half a file."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, FILE_MODE)  # mkstemp's mode already; said here so no platform default decides
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
