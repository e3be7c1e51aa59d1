"""Edits of one config file at the same time (other commands, a hand edit), and configs behind symlinks.

Every edit takes the config's lock (`config.toml.lock` beside the real file), reads the file under it
and refuses to overwrite a file that changed since it was read. Edits run as real `digestbot`
processes wherever the point is what a user sees.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_config_edit import BASE, digestbot

from digestbot import config as config_module
from digestbot.config.edit import ConfigEditor, editing
from digestbot.errors import ConfigError

# Imports first, then waits for the starting signal, so that every process edits at the same moment.
# The last of eight waits for seven edits: on a loaded machine that can take longer than the 10 s an
# edit waits by default, and this test is about edits lost, not about edits that gave up saying so.
RACER = """\
import os, sys, time
from digestbot.config import file as config_file
from digestbot.cli import main
config_file.LOCK_TIMEOUT = 300
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.001)
sys.exit(main(sys.argv[3:]))
"""

# Another edit in progress: takes the lock, says so, and on a line from stdin appends a subscription
# to the file as it was when the lock was taken, then ends (which releases the lock).
HOLDER = """\
import fcntl, sys
lock = open(sys.argv[1], "a")
fcntl.flock(lock, fcntl.LOCK_EX)
text = open(sys.argv[2]).read()
print("locked", flush=True)
if sys.stdin.readline().strip() == "write":
    with open(sys.argv[2], "w") as f:
        f.write(text + '\\n[[subscriptions]]\\nname = "Held"\\nemail = ["held@example.org"]\\n')
"""

HELD = 'name = "Held"'


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(BASE)
    return p


def lock_of(real: Path) -> Path:
    return real.with_name(real.name + ".lock")


def hold_lock(config: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_of(config)), str(config)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def release(holder: subprocess.Popen, write: bool = False) -> None:
    holder.communicate("write\n" if write else "\n", timeout=60)
    assert holder.returncode == 0


def has_open(pid: int, file: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(file):
                return True
        except OSError:
            pass
    return False


# --- concurrent edits ---------------------------------------------------------------------------

def test_eight_simultaneous_subs_add_all_survive(path: Path, tmp_path: Path):
    go = tmp_path / "go"
    names = [f"racer-{i}" for i in range(8)]
    racers = [subprocess.Popen(
        [sys.executable, "-c", RACER, str(go), str(tmp_path / f"ready-{name}"),
         "-c", str(path), "subs", "add", name, "--email", f"{name}@example.org"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{name}").exists() for name in names) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    results = [racer.communicate(timeout=120) + (racer.returncode,) for racer in racers]
    for name, (out, err, code) in zip(names, results, strict=True):
        assert code == 0 and out == f"{path}: added subscription {name!r}\n", err
    ids = [sub.id for sub in config_module.load(path).subscriptions]
    assert sorted(ids) == sorted(["alice", "bob", *names])
    assert path.read_text().startswith(BASE)


def test_edits_from_threads_of_one_process_wait_for_each_other(path: Path):
    """As a web server's request handlers do: each edit opens the lock anew, so they exclude each other."""
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def add(name: str) -> None:
        try:
            barrier.wait(timeout=60)
            with editing(path, timeout=300) as editor:
                editor.add_subscription(name, {"email": [f"{name}@example.org"]})
                editor.save()
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=add, args=(f"thread-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert failures == []
    ids = {sub.id for sub in config_module.load(path).subscriptions}
    assert ids == {"alice", "bob", "thread-0", "thread-1", "thread-2", "thread-3"}


def test_an_edit_waits_for_one_in_progress_and_keeps_both(path: Path):
    holder = hold_lock(path)
    edit = subprocess.Popen([sys.executable, "-m", "digestbot", "-c", str(path), "subs", "add", "Waiter",
                             "--email", "w@example.org"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60  # until it waits for the lock (or, without one, has finished)
    while edit.poll() is None and not has_open(edit.pid, lock_of(path)) and time.monotonic() < deadline:
        time.sleep(0.01)
    release(holder, write=True)  # the other edit writes its change, then lets go
    _, err = edit.communicate(timeout=60)
    assert edit.returncode == 0, err
    text = path.read_text()
    assert HELD in text and 'name = "Waiter"' in text
    assert {"held", "waiter"} <= {sub.id for sub in config_module.load(path).subscriptions}


def test_an_edit_that_cannot_get_the_lock_fails_clearly_and_writes_nothing(path: Path):
    holder = hold_lock(path)
    try:
        with pytest.raises(ConfigError) as raised, editing(path, timeout=0.5) as editor:
            editor.add_subscription("Late", {"email": ["late@example.org"]})
            editor.save()
    finally:
        release(holder)
    message = str(raised.value)
    assert str(lock_of(path)) in message and "another edit" in message and "nothing was written" in message
    assert path.read_text() == BASE
    assert lock_of(path).exists()  # left in place: deleting a lock file lets two edits hold "it" at once


@pytest.mark.parametrize("how", ["under the lock", "read without the lock"])
def test_a_file_changed_by_hand_between_read_and_write_is_kept(path: Path, how: str):
    by_hand = BASE.replace("'inference llm'", "'inference llm OR agents'")  # an editor's save, no lock

    def edit(editor: ConfigEditor) -> None:
        editor.add_subscription("Carol", {"email": ["carol@example.org"]})
        path.write_text(by_hand)
        editor.save()

    with pytest.raises(ConfigError) as raised:
        if how == "under the lock":
            with editing(path) as editor:
                edit(editor)
        else:
            edit(ConfigEditor(path))
    assert str(raised.value) == (f"{path} changed while this edit was being made (edited by hand?); "
                                 "nothing was written; run the command again")
    assert path.read_text() == by_hand
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".config.toml.")]


def test_an_editor_can_save_twice(path: Path):
    with editing(path) as editor:
        editor.add_subscription("Carol", {"email": ["carol@example.org"]})
        editor.save()
        editor.set_subscription("carol", {"max_papers": 3})
        editor.save()
    assert config_module.load(path).subscription("carol").max_papers == 3


# --- symlinks, mode and owner -------------------------------------------------------------------

@pytest.fixture(params=["absolute link beside it", "relative link in another folder"])
def linked(request, tmp_path: Path) -> tuple[Path, Path]:
    """(link, target): the config lives in etc/, the link elsewhere."""
    target = tmp_path / "etc" / "config.toml"
    target.parent.mkdir()
    target.write_text(BASE)
    if request.param == "absolute link beside it":
        link = tmp_path / "etc" / "current.toml"
        link.symlink_to(target)
    else:
        link = tmp_path / "home" / "digestbot.toml"
        link.parent.mkdir()
        link.symlink_to(Path("..") / "etc" / "config.toml")
    return link, target


def test_an_edit_through_a_symlink_edits_its_target(linked: tuple[Path, Path]):
    link, target = linked
    pointed = os.readlink(link)
    os.chmod(target, 0o640)
    result = digestbot(link, "subs", "add", "Carol", "--email", "carol@example.org")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{link}: added subscription 'Carol'\n"
    assert link.is_symlink() and os.readlink(link) == pointed
    assert 'name = "Carol"' in target.read_text() and target.read_text().startswith(BASE)
    assert target.stat().st_mode & 0o7777 == 0o640
    assert lock_of(target).exists() and not lock_of(link).exists()  # one lock per real file
    assert digestbot(link, "subs", "remove", "carol").returncode == 0
    assert link.is_symlink() and target.read_text() == BASE


def test_two_paths_to_one_file_share_its_lock(linked: tuple[Path, Path]):
    link, target = linked
    holder = hold_lock(target)
    try:
        with pytest.raises(ConfigError, match="another edit"), editing(link, timeout=0.5) as editor:
            editor.add_subscription("Late", {"email": ["late@example.org"]})
            editor.save()
    finally:
        release(holder)
    assert link.is_symlink() and target.read_text() == BASE


@pytest.mark.parametrize("mode", [0o640, 0o600, 0o2660])
def test_the_file_keeps_its_mode_exactly(path: Path, mode: int):
    os.chmod(path, mode)
    result = subprocess.run(["sh", "-c", 'umask 077 && exec "$@"', "sh", sys.executable, "-m", "digestbot",
                             "-c", str(path), "subs", "set", "alice", "max_papers=3"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert path.stat().st_mode & 0o7777 == mode


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give a file away")
@pytest.mark.parametrize("through", ["the file", "a link"])
def test_an_edit_run_as_root_leaves_the_file_to_its_owner(linked: tuple[Path, Path], through: str):
    link, target = linked
    os.chown(target, 65534, 65534)
    os.chmod(target, 0o600)
    assert digestbot(target if through == "the file" else link, "subs", "set", "alice", "max_papers=3").returncode == 0
    stat = target.stat()
    assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o7777) == (65534, 65534, 0o600)
    assert lock_of(target).stat().st_uid == 65534  # the service user's own edits can open it too
    assert link.is_symlink() and config_module.load(target).subscription("alice").max_papers == 3
