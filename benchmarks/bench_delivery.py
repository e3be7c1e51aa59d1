"""Delivery benchmark: digestbot's send loop vs a raw smtplib loop, against a local aiosmtpd server.

Both send the same digests (one message per recipient) to an aiosmtpd server running in its own
process (so that its CPU does not compete with the sender's). The raw loop sends messages rendered
beforehand over one connection and records nothing: the upper bound. digestbot claims, renders,
sends and records each digest in its ledger (one commit per sent digest: the crash window stays one
message). The two take turns, a chunk of 1,000 digests each, so that a shared machine's changing
load slows both alike. A second digestbot run has 10% of the recipients answer 450 on their first
RCPT; a retry pass then sends those, and the server's log says whether every digest arrived exactly
once.

Where digestbot's time goes (profiled): the SMTP exchange; the ledger's one commit per sent digest
runs while the next message's MAIL command is with the server (SmtpChannel.record), and touches few pages (no
index on status; claims read a partial index of active digests; WAL checkpoints every ~40 MB, not
every 4 MB, store/database.py). A digest is rendered once per subscription and set of papers, and its MIME body
serialised and dot-stuffed once; per recipient only the header lines (To, Date, Message-ID,
List-Unsubscribe) are built (sendpass.py, mailwire.py). The raw loop's messages come from
build_email, the same headers and body; smtplib dot-stuffs each of them as it sends.

    python benchmarks/run.py delivery [--quick]
"""
from __future__ import annotations

import logging
import smtplib
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digestbot import config as config_module  # noqa: E402
from digestbot import pipeline
from digestbot.app import App  # noqa: E402
from digestbot.channels.email import build_email  # noqa: E402
from digestbot.models import Match, Paper  # noqa: E402
from digestbot.render.shared import Contents  # noqa: E402
from digestbot.store import Store  # noqa: E402
from digestbot.store.ledger import Ledger  # noqa: E402

PER_SUB = 100  # recipients per subscription
PAPERS = 5  # papers per digest
CHUNK = 1000  # digests per turn of the raw loop and of digestbot


def serve(port: int, log_path: str, soft_every: int) -> None:
    """The server process: logs `rcpt<TAB>message-id` per accepted message; recipients whose number is
    a multiple of `soft_every` get one 450 first (0: never)."""
    from aiosmtpd.controller import Controller

    log = open(log_path, "a", buffering=1, encoding="utf-8")
    refused: set[str] = set()

    class Handler:
        async def handle_RCPT(self, server, session, envelope, address, options):
            number = int(address.split("@")[0].lstrip("r") or 0)
            if soft_every and number % soft_every == 0 and address not in refused:
                refused.add(address)
                return "450 4.2.1 try again later"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            content = envelope.content.decode("utf-8", "replace")
            start = content.find("Message-ID:")
            message_id = content[start + 11:content.find("\n", start)].strip() if start >= 0 else "?"
            for rcpt in envelope.rcpt_tos:
                log.write(f"{rcpt}\t{message_id}\n")
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    controller.stop()
    log.close()


class Server:
    def __init__(self, workdir: Path, name: str, soft_every: int = 0):
        from socket import socket

        with socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = workdir / f"{name}.log"
        self.process = subprocess.Popen([sys.executable, __file__, "--serve", str(self.port), str(self.log),
                                         str(soft_every)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> list[tuple[str, str]]:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        return [tuple(line.split("\t")) for line in self.log.read_text().splitlines()]


def config_for(workdir: Path, port: int, subs: int, name: str) -> config_module.Config:
    text = [f'[bot]\ndatabase = "sqlite:///{workdir}/bench-{name}.db"\n\n[email]\nhost = "127.0.0.1"\n'
            f'port = {port}\nsecurity = "none"\nsender = "Digest <digest@example.org>"\n']
    for s in range(subs):
        emails = ", ".join(f'"r{s * PER_SUB + k}@example.org"' for k in range(PER_SUB))
        text.append(f'[[subscriptions]]\nname = "sub {s}"\nquery = "x{s}"\nemail = [{emails}]\nschedule = "instant"\n')
    path = workdir / f"config-{name}.toml"
    path.write_text("\n".join(text))
    return config_module.load(path)


def seed(config: config_module.Config, now: datetime) -> pipeline.Context:
    Store(config.database_url).create_tables()
    ctx = App.from_config(config)
    papers = [Paper(title=f"Paper {i}: fast inference for large language models", arxiv_id=f"2411.{i:05d}",
                    abstract="We make inference faster. " * 20, authors=("A. Author", "B. Author"),
                    url=f"https://huggingface.co/papers/2411.{i:05d}", upvotes=i % 50) for i in range(200)]
    with ctx.store.write() as w:
        new = w.record_papers("bench", papers, now)
        matches = [(pid, Match(sub.id, p, 1.0)) for n, sub in enumerate(config.subscriptions)
                   for pid, p in new[(n * PAPERS) % 195:(n * PAPERS) % 195 + PAPERS]]
        w.record_matches(matches, pipeline._all_targets(config), now)
    with ctx.store.leadership().holding():  # digests are opened under the poll leader lock (store/leader.py)
        pipeline.open_due_digests(ctx, now)
    return ctx


def prepare_raw(ctx: pipeline.Context, now: datetime) -> list[tuple[str, bytes]]:
    """Every pending digest rendered and serialised as digestbot would send it (untimed)."""
    subs = {s.id: s for s in ctx.config.subscriptions}
    sender = ctx.config.email.sender_address
    contents = Contents(ctx.config, ctx.store, ctx.renderer, now)  # the send pass's own rendering
    prepared = []
    for row in Ledger(ctx.store).digests("pending"):
        sub = subs[row.subscription_id]
        message = contents.get(row, sub).message
        mail = build_email(message, pipeline.envelope(ctx.config, row, sub, ctx.store.installation), sender)
        prepared.append((row.target, mail.as_bytes(policy=mail.policy.clone(linesep="\r\n"))))
    return prepared


def raw_loop(prepared: list[tuple[str, bytes]], sender: str, port: int) -> float:
    """One smtplib connection sending the prepared messages; nothing recorded: the upper bound."""
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for target, data in prepared:
            smtp.sendmail(sender, [target], data)
    return time.perf_counter() - started


def digestbot_run(ctx: pipeline.Context, now: datetime) -> tuple[float, pipeline.SendResult]:
    started = time.perf_counter()
    result = pipeline.send_due(ctx, now)
    return time.perf_counter() - started, result


def tally(log: list[tuple[str, str]], digests: int) -> tuple[int, int, int]:
    per_message = Counter(message_id for _, message_id in log)
    delivered = len(per_message)
    duplicates = sum(n - 1 for n in per_message.values())
    return delivered, duplicates, digests - delivered


def run(quick: bool) -> str:
    logging.getLogger("digestbot").setLevel(logging.CRITICAL)  # 10% of 10,000 failures would flood the table
    digests = 500 if quick else 10_000
    chunk = min(digests, CHUNK)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # Raw and digestbot take turns, a chunk of the same digests each, against one server: a
        # shared machine's load then slows both alike, instead of whichever ran during it.
        server = Server(workdir, "throughput")
        raw_seconds = bot_seconds = 0.0
        raw_sent = bot_sent = bot_failed = 0
        for k in range(digests // chunk):
            ctx = seed(config_for(workdir, server.port, chunk // PER_SUB, name=f"chunk{k}"), now)
            prepared = prepare_raw(ctx, now)
            sender = ctx.config.email.sender_address.addr_spec
            for turn in (("raw", "bot") if k % 2 == 0 else ("bot", "raw")):
                if turn == "raw":
                    raw_seconds += raw_loop(prepared, sender, server.port)
                    raw_sent += len(prepared)
                else:
                    seconds, result = digestbot_run(ctx, now)
                    bot_seconds += seconds
                    bot_sent, bot_failed = bot_sent + len(result.sent), bot_failed + len(result.failed)
        server.stop()
        rows = [("raw smtplib, pre-rendered", raw_seconds, raw_sent, 0),
                ("digestbot send_due", bot_seconds, bot_sent, bot_failed)]

        soft_server = Server(workdir, "soft", soft_every=10)
        soft_ctx = seed(config_for(workdir, soft_server.port, digests // PER_SUB, name="soft"), now)
        first_seconds, first = digestbot_run(soft_ctx, now)
        later = now + timedelta(hours=1)  # past every retry time
        retry_seconds, second = digestbot_run(soft_ctx, later)
        soft_log = soft_server.stop()
        rows.append(("digestbot, 10% answer 450 first", first_seconds, len(soft_log) - len(second.sent),
                     len(first.failed)))
        rows.append(("  retry pass", retry_seconds, len(second.sent), len(second.failed)))
    delivered, duplicates, lost = tally(soft_log, digests)
    ratio = (bot_sent / bot_seconds) / (raw_sent / raw_seconds)
    print(f"{digests} digests, {PAPERS} papers each, one message per recipient; aiosmtpd in its own process; "
          f"raw and digestbot alternate in chunks of {chunk}")
    print(f"{'run':<36} {'seconds':>8} {'msgs/s':>8} {'accepted':>9} {'failed':>7}")
    for name, seconds, accepted, failed in rows:
        print(f"{name:<36} {seconds:>8.2f} {accepted / seconds:>8.0f} {accepted:>9} {failed:>7}")
    print(f"digestbot / raw rate: {ratio:.2f}   with 450s: delivered {delivered}, duplicates {duplicates}, lost {lost}")
    return f"ratio_vs_raw_smtp={ratio:.2f} delivered={delivered} duplicates={duplicates} lost={lost}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        print(run("--quick" in sys.argv))
