"""`init` and `status` never print a database password, whether the URL is in the config or in
`database_env`; on a real PostgreSQL (the server of test_ledger_postgres, started here on loopback).

The server trusts loopback connections, so the password in the URL is accepted and ignored: what is
tested is only where it shows up.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_ledger_postgres import pg_url  # noqa: F401  (the fixture)

PASSWORD = "s3cret-pw-7"
CONFIG = """\
[bot]
{bot}

[[sources]]
name = "hf"
kind = "hf_daily"

[[subscriptions]]
name = "alice"
query = "inference"
email = ["alice@example.org"]
"""


def digestbot(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digestbot", "-c", str(config), *args], capture_output=True,
                          text=True, check=False, timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture
def secret_url(pg_url: str) -> str:  # noqa: F811
    from sqlmodel import SQLModel

    from digestbot.store import Store

    with Store(pg_url) as store:  # every test starts without tables
        SQLModel.metadata.drop_all(store.engine)
    return pg_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def test_init_and_status_hide_the_password_of_the_config_url(tmp_path, secret_url):
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(bot=f'database = "{secret_url}"'), encoding="utf-8")
    runs = [digestbot(config, "init"), digestbot(config, "init"), digestbot(config, "status")]
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    assert "created postgresql+psycopg://postgres:***@127.0.0.1:" in runs[0].stdout
    assert "postgres:***@" in runs[1].stdout and "already a digestbot database" in runs[1].stdout
    assert "database: postgresql+psycopg://postgres:***@127.0.0.1:" in runs[2].stdout
    assert all(PASSWORD not in r.stdout + r.stderr for r in runs)
    assert PASSWORD not in (tmp_path / ".digestbot-databases.json").read_text(encoding="utf-8")


def test_database_env_keeps_the_password_out_of_the_config(tmp_path, secret_url):
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(bot='database_env = "TEST_DIGESTBOT_DATABASE_URL"'), encoding="utf-8")
    env = {"TEST_DIGESTBOT_DATABASE_URL": secret_url}
    runs = [digestbot(config, "check", env=env), digestbot(config, "init", env=env),
            digestbot(config, "status", env=env)]
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    assert "created postgresql+psycopg://postgres:***@" in runs[1].stdout
    assert "papers: 0" in runs[2].stdout
    assert all(PASSWORD not in r.stdout + r.stderr for r in runs)
    assert PASSWORD not in config.read_text(encoding="utf-8")
