"""The top-level templates/ and config.example.toml: shipped in the wheel, found by a regular and by an
editable install, and written as a starter config by `digestbot new-config`.

The install tests build and install a copy of the project into a throwaway virtualenv with pip, without
build isolation, and run the installed `digestbot` from an empty folder with no PYTHONPATH, so that the
checkout is not on sys.path. Marked `slow` (about 20 s together); they run in the normal suite.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from email import message_from_bytes, policy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.toml"
TEMPLATES = sorted(str(p.relative_to(ROOT / "templates")) for p in (ROOT / "templates").rglob("*.j2"))
SHIPPED = "digestbot/toplevel/"  # where pyproject.toml's package-dir puts the top level in a wheel


def cli(*args: str, cwd: Path, python: str = sys.executable, env: dict[str, str] | None = None,
        module: bool = True) -> subprocess.CompletedProcess:
    command = [python, "-m", "digestbot", *args] if module else [python, *args]
    return subprocess.run(command, cwd=cwd, env=env or checkout_env(), capture_output=True, text=True, timeout=120)


def checkout_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DIGESTBOT_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    return env


# --- new-config, from the checkout ------------------------------------------------------------------

def test_new_config_writes_the_example_which_check_accepts_and_says_what_to_do_next(tmp_path):
    made = cli("new-config", "etc/digestbot.toml", cwd=tmp_path)  # a missing folder is created
    assert made.returncode == 0, made.stderr
    written = tmp_path / "etc" / "digestbot.toml"
    assert written.read_bytes() == EXAMPLE.read_bytes()
    for step in ("edit it", "digestbot -c etc/digestbot.toml check", "run --once --no-send"):
        assert step in made.stdout
    checked = cli("-c", str(written), "check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert f"{written}: OK" in checked.stdout


def test_new_config_keeps_an_existing_file_unless_forced(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("# mine\n")
    kept = cli("new-config", "config.toml", cwd=tmp_path)
    assert kept.returncode == 2
    assert "config.toml: already exists; kept it" in kept.stderr and "--force" in kept.stderr
    assert config.read_text() == "# mine\n"
    forced = cli("new-config", "config.toml", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert config.read_bytes() == EXAMPLE.read_bytes()


def test_new_config_without_a_path_writes_the_config_the_other_commands_read(tmp_path):
    env = checkout_env() | {"DIGESTBOT_CONFIG": "from-env.toml"}
    assert cli("new-config", cwd=tmp_path, env=env).returncode == 0
    assert cli("-c", "given.toml", "new-config", cwd=tmp_path).returncode == 0
    assert (tmp_path / "from-env.toml").read_bytes() == (tmp_path / "given.toml").read_bytes() == EXAMPLE.read_bytes()
    assert cli("check", cwd=tmp_path, env=env).returncode == 0


def test_the_checkout_keeps_the_templates_and_the_example_at_its_top_level():
    assert TEMPLATES == ["digest.html.j2", "digest.txt.j2", "web/digest.html.j2", "web/manage.html.j2",
                         "web/page.html.j2", "web/subscribe.html.j2"]
    assert not (ROOT / "digestbot" / "templates").exists()
    assert not (ROOT / "digestbot" / "toplevel").exists()  # it would shadow the checkout's files


# --- a built wheel, a regular install, an editable install -------------------------------------------

@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the checkout, so that building writes no build/ or egg-info into it."""
    copy = tmp_path_factory.mktemp("project") / "digestbot-src"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".ci", "tests", "benchmarks", "build", "dist", "*.egg-info", "__pycache__", ".venv", "*.db*"))
    return copy


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A virtualenv that sees this interpreter's packages (the dependencies, pip) through a .pth file — also
    when this interpreter is itself a virtualenv, as in .ci/run — and has the build backend
    pyproject.toml asks for (installed into it when this interpreter's is older)."""
    folder = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = str(folder / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    outer = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    outer += [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    Path(purelib, "outer-packages.pth").write_text("\n".join(dict.fromkeys(outer)) + "\n")
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pip(folder, "install", *requires)  # nothing to do when this interpreter's setuptools is recent enough
    return folder


def pip(folder: Path, *args: str) -> None:
    done = subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          env=installed_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def installed_env() -> dict[str, str]:
    """No PYTHONPATH: the checkout must not be on sys.path."""
    drop = ("PYTHONPATH", "DIGESTBOT_CONFIG", "PYTHONHOME", "PYTHONSTARTUP")
    return {k: v for k, v in os.environ.items() if k not in drop} | {"PYTHONNOUSERSITE": "1"}


@pytest.fixture(scope="module")
def wheel(project, venv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip(venv, "wheel", str(project), "--no-deps", "--no-build-isolation", "-w", str(out))
    [built] = out.glob("digestbot-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_ships_the_templates_and_the_example_config_and_every_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = {n for n in names if n.startswith(SHIPPED)}
        assert shipped == {SHIPPED + "config.example.toml"} | {f"{SHIPPED}templates/{t}" for t in TEMPLATES}, (
            "the top level is mapped into the wheel: only what package-data names may be in it")
        assert archive.read(SHIPPED + "config.example.toml") == EXAMPLE.read_bytes()
        for name in TEMPLATES:
            assert archive.read(f"{SHIPPED}templates/{name}") == (ROOT / "templates" / name).read_bytes()
        # the sentence encoder's tokenizer (the semantic extra brings the model, not its tokenizer)
        tokenizer = "digestbot/relevance/minilm/tokenizer.json"
        assert archive.read(tokenizer) == (ROOT / tokenizer).read_bytes()
    packages = {str(p.parent.relative_to(ROOT)) + "/__init__.py" for p in (ROOT / "digestbot").rglob("__init__.py")}
    missing = sorted(p for p in packages if p not in names)
    assert not missing, f"add these packages to [tool.setuptools] packages in pyproject.toml: {missing}"


@pytest.mark.slow
def test_a_regular_install_finds_them_from_any_folder_and_names_them_when_they_are_gone(wheel, venv, tmp_path):
    pip(venv, "install", "--no-deps", "--force-reinstall", str(wheel))
    site_packages = where_digestbot_is(venv, tmp_path)
    assert site_packages.is_relative_to(venv), site_packages
    try_the_commands(venv, tmp_path)
    shutil.rmtree(site_packages / "digestbot" / "toplevel")  # a damaged installation
    broken = cli("demo", "--dir", "again", cwd=tmp_path, python=str(venv / "bin" / "python"), env=installed_env())
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert "digestbot's templates and config.example.toml are in neither" in broken.stderr
    assert "reinstall digestbot" in broken.stderr


@pytest.mark.slow
def test_an_editable_install_reads_them_in_the_checkout(project, venv, tmp_path):
    pip(venv, "install", "--no-deps", "--no-build-isolation", "-e", str(project))
    assert where_digestbot_is(venv, tmp_path) == project
    try_the_commands(venv, tmp_path / "first")
    template = project / "templates" / "digest.txt.j2"
    template.write_text(template.read_text() + "Edited in the checkout.\n")
    assert "Edited in the checkout." in try_the_commands(venv, tmp_path / "second")


def where_digestbot_is(venv: Path, cwd: Path) -> Path:
    """The folder the venv's python imports digestbot from (the package's parent)."""
    shown = cli("-c", "import digestbot; print(digestbot.__file__)", cwd=cwd, python=str(venv / "bin" / "python"),
                env=installed_env(), module=False)
    assert shown.returncode == 0, shown.stderr
    return Path(shown.stdout.strip()).parents[1]


def try_the_commands(venv: Path, cwd: Path) -> str:
    """new-config, check and demo with the installed console script; the text of one demo digest."""
    cwd.mkdir(exist_ok=True)
    script, env = str(venv / "bin" / "digestbot"), installed_env()
    made = cli("new-config", "config.toml", cwd=cwd, python=script, env=env, module=False)
    assert made.returncode == 0, made.stderr
    assert (cwd / "config.toml").read_bytes() == EXAMPLE.read_bytes()
    checked = cli("check", cwd=cwd, python=script, env=env, module=False)
    assert checked.returncode == 0 and "OK" in checked.stdout, checked.stderr
    demo = cli("demo", "--dir", "demo", cwd=cwd, python=script, env=env, module=False)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    mail = message_from_bytes(next((cwd / "demo" / "outbox").glob("*.eml")).read_bytes(), policy=policy.default)
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "You get this because of the subscription" in text and "<table" in html  # both templates rendered
    return text
