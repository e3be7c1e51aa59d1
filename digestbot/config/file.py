"""The config file on disk: the file a path really names, its lock, and replacing it without losing anything.

Edits of one config exclude each other with a lock file beside the real file (`config.toml.lock`,
flock), so that an edit reads the file only once no other edit is between its read and its write. The
lock file stays in place: deleting it would let a waiting edit lock the old file while a new one locks
a fresh file of the same name. An editor saving the file by hand takes no lock; `write` notices a file
that changed since it was read and refuses, which leaves a window of microseconds, not of an edit.

The path may be a symlink (a config kept in /etc, linked from the service's home): the link stays a
link, and its target is replaced in its own folder with the mode and owner it had, so that the service
user can still read a file edited by root.
"""
from __future__ import annotations

import fcntl
import io
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError

LOCK_TIMEOUT = 10.0  # seconds an edit waits for another one to finish
NEW_FILE_MODE = 0o644

log = logging.getLogger(__name__)


def real_path(path: str | Path) -> Path:
    """The file `path` names once every symlink is followed (it need not exist yet)."""
    return Path(os.path.realpath(path))


def lock_path(real: Path) -> Path:
    return real.with_name(real.name + ".lock")


@contextmanager
def locked(real: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the exclusive lock of the config file `real`; ConfigError after `timeout` seconds of waiting."""
    lock = lock_path(real)
    fd = _open_lock(lock, real)
    try:
        _acquire(fd, lock, real, timeout)
        yield
    finally:
        os.close(fd)  # releases the lock


def _open_lock(lock: Path, real: Path) -> int:
    try:  # flock needs no write access: a lock file created by root still serves everyone who can read it
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT, NEW_FILE_MODE)
    except FileNotFoundError:
        raise ConfigError(f"{real}: its folder {real.parent} does not exist; nothing was written; "
                          "create the folder or give the path of an existing config") from None
    except OSError as exc:
        raise ConfigError(f"{lock}: cannot open the lock file that edits of {real} take ({exc.strerror}); "
                          f"nothing was written; edit as a user who can write to {real.parent}") from None
    try:
        _give_to_owner_of(fd, real)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _give_to_owner_of(fd: int, real: Path) -> None:
    """A lock file created by root belongs to the config's owner, so that the owner can lock it too."""
    try:
        config = real.stat()
    except FileNotFoundError:
        return
    lock = os.fstat(fd)
    if os.geteuid() == 0 and (lock.st_uid, lock.st_gid) != (config.st_uid, config.st_gid):
        os.fchown(fd, config.st_uid, config.st_gid)


def _acquire(fd: int, lock: Path, real: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            raise ConfigError(f"{lock}: another edit of {real} is in progress (it holds this lock; waited "
                              f"{timeout:g} s); nothing was written; run the command again when it is done "
                              f"(`fuser {lock}` shows which process holds it)")
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.1)


def read(real: Path) -> bytes | None:
    """The file's bytes, None when there is no file yet."""
    try:
        return real.read_bytes()
    except FileNotFoundError:
        return None


def decode(data: bytes | None, path: Path) -> str:
    """As Path.read_text reads it (UTF-8, any line ending read as \\n)."""
    try:
        return io.TextIOWrapper(io.BytesIO(data or b""), encoding="utf-8").read()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8 and edit it again") from None


def write(real: Path, text: str, expected: bytes | None, shown: str | Path | None = None) -> None:
    """Replace `real` by `text` atomically (a temporary file in its folder, fsync, rename) with the file's
    mode and owner, unless its content is no longer `expected` (what the edit read; None: no file).
    `shown`: the path as the user gave it, for messages."""
    before = _stat(real)
    fd, temporary = tempfile.mkstemp(prefix=f".{real.name}.", dir=real.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            _keep_owner_and_mode(handle.fileno(), before, real)
            os.fsync(handle.fileno())
        if read(real) != expected:
            raise ConfigError(f"{shown or real} changed while this edit was being made (edited by hand?); "
                              "nothing was written; run the command again")
        os.replace(temporary, real)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(real.parent)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _keep_owner_and_mode(fd: int, before: os.stat_result | None, real: Path) -> None:
    if before is None:
        os.fchmod(fd, NEW_FILE_MODE)
        return
    new = os.fstat(fd)
    uid = before.st_uid if before.st_uid != new.st_uid else -1
    gid = before.st_gid if before.st_gid != new.st_gid else -1
    if (uid, gid) != (-1, -1):
        try:  # before the mode: a change of owner clears the setgid bit
            os.fchown(fd, uid, gid)
        except PermissionError:
            log.warning("%s: now owned by uid %d gid %d instead of uid %d gid %d (only root can keep its owner); "
                        "give it back with `chown %d:%d %s` if another user must read it",
                        real, new.st_uid, new.st_gid, before.st_uid, before.st_gid,
                        before.st_uid, before.st_gid, real)
    os.fchmod(fd, stat.S_IMODE(before.st_mode))


def _fsync_folder(folder: Path) -> None:
    """The rename itself survives a crash only once the folder is on disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
