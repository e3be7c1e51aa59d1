"""The README's systemd units work as written (issue 20, point 10): each is complete ([Install], a User=,
its StateDirectory= and WorkingDirectory=, the database outside /etc), names only commands and options
digestbot has, and `systemd-analyze verify` finds nothing wrong in it (skipped where systemd is not
installed: .ci/run installs Debian's package)."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from digestbot.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
EXECUTABLE = "/opt/digestbot/venv/bin/digestbot"


def units() -> dict[str, str]:
    """File name -> text of every ```ini block of the README that starts with `# /etc/systemd/system/NAME`."""
    text = README.read_text(encoding="utf-8")
    found = re.findall(r"```ini\n# /etc/systemd/system/(\S+)\n(.*?)```", text, re.S)
    return {name: body for name, body in found}


def test_the_readme_has_complete_units_for_the_daemon_and_the_web_process():
    found = units()
    assert set(found) == {"digestbot.service", "digestbot-web.service"}
    for name, unit in found.items():
        sections = re.findall(r"^\[(\w+)\]$", unit, re.M)
        assert sections == ["Unit", "Service", "Install"], name
        settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
        assert settings["User"] == "digestbot" and settings["StateDirectory"] == "digestbot"
        assert settings["WorkingDirectory"] == "/var/lib/digestbot" and settings["WantedBy"] == "multi-user.target"
        assert settings["Environment"] == "DIGESTBOT_CONFIG=/etc/digestbot/config.toml"
        program, *argv = shlex.split(settings["ExecStart"])
        assert program == EXECUTABLE
        with pytest.raises(SystemExit) as helped:  # a command and options this digestbot has
            build_parser().parse_args([*argv, "--help"])
        assert helped.value.code == 0
    assert {shlex.split(dict(re.findall(r"^(\w+)=(.*)$", u, re.M))["ExecStart"])[1] for u in found.values()} == \
        {"run", "serve"}
    # The setup next to them puts the database and the outbox in the state folder, not in /etc.
    text = README.read_text(encoding="utf-8")
    assert 'database = "sqlite:////var/lib/digestbot/digestbot.db"' in text
    assert 'outbox = "/var/lib/digestbot/outbox"' in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed "
                    "(Debian: apt-get install systemd; .ci/run does)")
def test_systemd_analyze_verify_accepts_each_unit(tmp_path):
    program = tmp_path / "bin" / "digestbot"  # verify checks that ExecStart names an executable
    program.parent.mkdir()
    program.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    program.chmod(0o755)
    for name, unit in units().items():
        path = tmp_path / name
        path.write_text(unit.replace(EXECUTABLE, str(program)), encoding="utf-8")
        result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
        about_it = [line for line in (result.stdout + result.stderr).splitlines() if name in line]
        assert result.returncode == 0 and about_it == [], result.stdout + result.stderr

    # It does find a mistake: a relative WorkingDirectory= is a fatal error.
    broken = tmp_path / "broken.service"
    broken.write_text(units()["digestbot.service"].replace(EXECUTABLE, str(program))
                      .replace("WorkingDirectory=/var/lib/digestbot", "WorkingDirectory=var/lib/digestbot"),
                      encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "WorkingDirectory= path is not absolute" in result.stderr
