"""Every source kind is registered, has user help, and is documented in config.example.toml and README."""
from __future__ import annotations

import re
from pathlib import Path

from digestbot.sources import load_all

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"hf_daily", "hf_search", "hf_page", "arxiv", "feed", "text"}


def test_every_kind_is_registered_with_its_help():
    registry = load_all()
    assert set(registry) == KINDS
    for kind, cls in registry.items():
        assert cls.__doc__ and len(cls.__doc__.strip()) > 80, f"{kind} needs a docstring: it is the user help"


def test_every_kind_and_option_is_documented():
    example = (ROOT / "config.example.toml").read_text()
    readme = (ROOT / "README.md").read_text()
    for kind, cls in load_all().items():
        assert f"`{kind}`" in readme, f"README.md does not describe the {kind} source"
        assert re.search(rf'kind = "{kind}"', example), f"config.example.toml has no {kind} example"
        for option in set(cls.Options.model_fields) - {"name", "kind", "url", "every", "cron"}:
            assert re.search(rf"^#?\s*{option} = ", example, re.M), f"{kind}.{option} is not in config.example.toml"
