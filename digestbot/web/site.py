"""What the route modules (feedback.py, manage.py, digest_list.py, subscribe.py) use of the web process's shared parts.

app.Web is the one implementation; it is named here as a Protocol because app.py imports the route
modules to list their routes, so they cannot import it back (tests/test_import_cycles.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from jinja2 import Environment
from starlette.responses import HTMLResponse

from ..app import App
from ..config import Config
from ..store import Store
from . import tokens


class Site(Protocol):
    secret: bytes  # signs and checks the readers' links
    config_path: Path
    app: App
    pages: Environment  # the templates/web/ pages

    @property
    def config(self) -> Config: ...

    @property
    def store(self) -> Store: ...

    def page(self, status: int, title: str, *lines: str, form: tuple[str, str] | None = None,
             link: tuple[str, str] | None = None) -> HTMLResponse:
        """A page in the digest's look; `form`: (action, label) of its one POST button; `link`: (URL, text)."""
        ...

    def bad_link(self, error: tokens.BadToken) -> HTMLResponse: ...

    def subscription_name(self, subscription_id: str) -> str: ...

    def leave(self, subscription_id: str, target: str) -> None:
        """The one-click unsubscribe: the suppression first, then the address out of the config."""
        ...

    def come_back(self, subscription_id: str, target: str) -> None:
        """The address back in the subscription's recipients (config), and its suppression lifted."""
        ...
