"""The files digestbot ships that live at the repository's top level: `templates/` and `config.example.toml`.

In a checkout they sit beside the package folder, which is also where an editable install (`pip install
-e .`) finds them: its import hook points `digestbot` into the checkout. A wheel carries them under
`digestbot/toplevel/`, because pyproject.toml maps the top level to that package; so `pip install .` has
them too, and the repository keeps one copy of each. (The mapped package itself cannot be imported from an
editable install — setuptools' hook finds no namespace package under a regular one — so they are found by
path, not by importlib.resources.)
"""
from __future__ import annotations

from pathlib import Path

from .config import file as config_file
from .errors import ConfigError, DigestbotError

PACKAGE = Path(__file__).resolve().parent
INSTALLED = PACKAGE / "toplevel"  # where a wheel puts them (pyproject.toml: package-dir)
EXAMPLE_CONFIG = "config.example.toml"


def top_level() -> Path:
    """The folder holding `templates/` and `config.example.toml`: the installed copy, else the checkout."""
    for folder in (INSTALLED, PACKAGE.parent):
        if (folder / EXAMPLE_CONFIG).is_file() and (folder / "templates").is_dir():
            return folder
    raise DigestbotError(f"digestbot's templates and {EXAMPLE_CONFIG} are in neither {INSTALLED} nor "
                         f"{PACKAGE.parent}: the installation is incomplete; reinstall digestbot "
                         "(`pip install --force-reinstall digestbot`, or `pip install -e .` in a checkout)")


def templates_folder() -> Path:
    """The bundled digest.html.j2 and digest.txt.j2 (a `bot.templates` folder overrides them)."""
    return top_level() / "templates"


def example_config() -> Path:
    return top_level() / EXAMPLE_CONFIG


def write_example_config(path: Path, force: bool = False) -> Path:
    """Write the example config to `path` as a starter; an existing file is kept unless `force`.
    Written like a `subs` edit (config_file): under the config's lock, atomically, a symlink followed."""
    real = config_file.real_path(path)
    text = example_config().read_text(encoding="utf-8")
    real.parent.mkdir(parents=True, exist_ok=True)
    with config_file.locked(real):
        before = config_file.read(real)
        if before is not None and not force:
            raise ConfigError(f"{path}: already exists; kept it as it is. Give another path, or --force to "
                              f"replace it with the example (every option, commented)")
        config_file.write(real, text, before, shown=path)
    return real
