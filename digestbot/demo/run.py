"""`digestbot demo`: the real job, offline, on the bundled sample listings.

A loopback HTTP server plays Hugging Face's `/api/daily_papers` (with its paging and its 400 for bad
parameters), so the demo goes through the real `hf_daily` source, SQLite store, matcher, templates and
the file channel. Everything lands in one folder the user can open.
"""
from __future__ import annotations

import copy
import json
import shutil
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from ..pipeline import PollResult, SendResult

Item = dict[str, Any]  # one entry of Hugging Face's daily papers, as its JSON


class Report(Protocol):
    """How the command line reports a run (`cli.report_run`)."""

    def __call__(self, polls: list[PollResult], sends: SendResult, *, sent_anything: bool) -> None: ...

DEMO_CONFIG = """\
# The demo's config: the same format as a real one (see config.example.toml).
[bot]
database = "sqlite:///demo.db"
outbox = "outbox"                  # no [email] / [slack] sections: digests are written here

[[sources]]
name = "hf-daily"
kind = "hf_daily"
url = "{url}/api/daily_papers"     # a loopback server playing Hugging Face

[topics.privacy]
query = 'privacy OR "membership inference" OR "differential privacy"'

[[subscriptions]]
name = "Alice: LLM inference"
query = 'inference AND (llm OR llms OR "language model" OR "language models") NOT survey'
email = ["alice@example.org"]
schedule = "instant"

[[subscriptions]]
name = "Privacy lab"
topics = ["privacy"]
email = ["privacy-lab@example.org"]
slack = ["#privacy"]
schedule = "instant"

[[subscriptions]]
name = "Top papers"                # no query: every new paper, ranked by upvotes
email = ["bob@example.org"]
schedule = "instant"
max_papers = 5
"""


def sample_items(today: datetime) -> dict[str, list[Item]]:
    """The bundled items split over yesterday and today, dated so that they count as new."""
    items = json.loads(resources.files("digestbot.demo").joinpath("daily_papers.json").read_text("utf-8"))
    days = [(today - timedelta(days=1)).date().isoformat(), today.date().isoformat()]
    listing: dict[str, list[Item]] = {day: [] for day in days}
    for index, item in enumerate(copy.deepcopy(items)):
        day = days[index % 2]
        item["publishedAt"] = f"{day}T00:00:00.000Z"
        item["paper"]["publishedAt"] = f"{day}T06:00:00.000Z"
        listing[day].append(item)
    return listing


def serve_daily_papers(listing: dict[str, list[Item]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            page, limit = int(query.get("p", 0)), int(query.get("limit", 50))
            if limit > 100:
                self._send(400, {"error": "limit must be at most 100"})
                return
            items = listing.get(query.get("date", ""), [])
            self._send(200, items[page * limit:(page + 1) * limit])

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # keep the demo's output readable
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_demo(folder: Path, report: Report) -> int:
    from .. import config as config_module
    from ..app import App
    from ..store import Store

    folder.mkdir(parents=True, exist_ok=True)
    for old in ("demo.db", "demo.db-wal", "demo.db-shm"):
        (folder / old).unlink(missing_ok=True)
    shutil.rmtree(folder / "outbox", ignore_errors=True)
    now = datetime.now(UTC)
    server = serve_daily_papers(sample_items(now))
    try:
        path = folder / "config.toml"
        path.write_text(DEMO_CONFIG.format(url=f"http://127.0.0.1:{server.server_port}"), encoding="utf-8")
        config = config_module.load(path)
        with Store(config.database_url) as fresh:  # the demo starts from empty on purpose, like `init`
            fresh.create_tables()
        app = App.from_config(config)
        print(f"digestbot demo: polling the bundled sample listings (a loopback server on port "
              f"{server.server_port}) for {len(config.subscriptions)} subscriptions")
        polls, sends = app.run_once(now)
        report(polls, sends, sent_anything=True)
    finally:
        server.shutdown()
    outbox = config.outbox
    print(f"\n{sum(p.seen for p in polls)} papers polled, {sum(p.new for p in polls)} new, "
          f"{sum(p.matched for p in polls)} matches, {len(sends.sent)} digests written")
    print(f"look at: {outbox}  (.eml opens in any mail program; .json is the Slack payload)")
    print(f"config:  {path}  (try: digestbot -c {path} status)")
    return 1 if sends.failed or any(p.error for p in polls) else 0
