"""Shared fixtures: real loopback servers (tests/servers.py), one fresh server per test."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers import HttpServer, SlackServer, SmtpServer


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    with HttpServer() as server:
        yield server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def slack_server() -> Iterator[SlackServer]:
    with SlackServer() as server:
        yield server
