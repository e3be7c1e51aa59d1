"""Delivery benchmark: digestbot's send loop vs a raw smtplib loop, against a local aiosmtpd server.

Both send the same digests (one message per recipient) to an aiosmtpd server running in its own
process (smtp_sink.py, so that its CPU does not compete with the sender's). The raw loop sends messages rendered
beforehand over one connection and records nothing: the upper bound. digestbot claims, renders,
sends and records each digest in its ledger (one commit per sent digest: the crash window stays one
message). The two take turns, a chunk of 1,000 digests each, so that a shared machine's changing
load slows both alike. A second digestbot run has 10% of the recipients answer 450 on their first
RCPT; a retry pass then sends those, and the server's log says whether every digest arrived exactly
once. The throughput is measured twice: with PER_SUB recipients per subscription (one body serialised for
100 messages) and with one recipient each (as bench_cycle's subscribers: every body is built for its
message; `ratio_vs_raw_smtp_one_recipient`).

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smtp_sink import Sink  # noqa: E402

PER_SUB = 100  # recipients per subscription
PAPERS = 5  # papers per digest
CHUNK = 1000  # digests per turn of the raw loop and of digestbot


def config_for(workdir: Path, port: int, subs: int, name: str, per_sub: int = PER_SUB) -> config_module.Config:
    text = [f'[bot]\ndatabase = "sqlite:///{workdir}/bench-{name}.db"\n\n[email]\nhost = "127.0.0.1"\n'
            f'port = {port}\nsecurity = "none"\nsender = "Digest <digest@example.org>"\n']
    for s in range(subs):
        emails = ", ".join(f'"r{s * per_sub + k}@example.org"' for k in range(per_sub))
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


def throughput(workdir: Path, digests: int, per_sub: int, name: str,
               now: datetime) -> tuple[float, float, int, int, int]:
    """Raw loop and digestbot taking turns, a chunk of the same digests each, against one sink: a shared
    machine's load then slows both alike, instead of whichever ran during it. (raw seconds, digestbot
    seconds, raw sent, digestbot sent, digestbot failed)."""
    chunk = min(digests, CHUNK)
    sink = Sink(workdir, name)
    raw_seconds = bot_seconds = 0.0
    raw_sent = bot_sent = bot_failed = 0
    for k in range(digests // chunk):
        ctx = seed(config_for(workdir, sink.port, chunk // per_sub, name=f"{name}{k}", per_sub=per_sub), now)
        prepared = prepare_raw(ctx, now)
        sender = ctx.config.email.sender_address.addr_spec
        for turn in (("raw", "bot") if k % 2 == 0 else ("bot", "raw")):
            if turn == "raw":
                raw_seconds += raw_loop(prepared, sender, sink.port)
                raw_sent += len(prepared)
            else:
                seconds, result = digestbot_run(ctx, now)
                bot_seconds += seconds
                bot_sent, bot_failed = bot_sent + len(result.sent), bot_failed + len(result.failed)
    sink.stop()
    return raw_seconds, bot_seconds, raw_sent, bot_sent, bot_failed


def run(quick: bool) -> str:
    logging.getLogger("digestbot").setLevel(logging.CRITICAL)  # 10% of 10,000 failures would flood the table
    digests = 500 if quick else 10_000
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        raw_seconds, bot_seconds, raw_sent, bot_sent, bot_failed = throughput(workdir, digests, PER_SUB, "shared", now)
        rows = [(f"raw smtplib, pre-rendered ({PER_SUB} per body)", raw_seconds, raw_sent, 0),
                ("digestbot send_due", bot_seconds, bot_sent, bot_failed)]
        ratio = (bot_sent / bot_seconds) / (raw_sent / raw_seconds)
        # One recipient per subscription (as bench_cycle's subscribers): no body is shared, each is built
        raw1, bot1, raw1_sent, bot1_sent, bot1_failed = throughput(workdir, digests, 1, "own", now)
        rows += [("raw smtplib, pre-rendered (1 per body)", raw1, raw1_sent, 0),
                 ("digestbot send_due, 1 per body", bot1, bot1_sent, bot1_failed)]
        ratio_one = (bot1_sent / bot1) / (raw1_sent / raw1)

        soft_sink = Sink(workdir, "soft", soft_every=10)
        soft_ctx = seed(config_for(workdir, soft_sink.port, digests // PER_SUB, name="soft"), now)
        first_seconds, first = digestbot_run(soft_ctx, now)
        later = now + timedelta(hours=1)  # past every retry time
        retry_seconds, second = digestbot_run(soft_ctx, later)
        soft_log = [(rcpt, entry.message_id) for entry in soft_sink.stop() for rcpt in entry.rcpts]
        rows.append(("digestbot, 10% answer 450 first", first_seconds, len(soft_log) - len(second.sent),
                     len(first.failed)))
        rows.append(("  retry pass", retry_seconds, len(second.sent), len(second.failed)))
    delivered, duplicates, lost = tally(soft_log, digests)
    print(f"{digests} digests, {PAPERS} papers each, one message per recipient; aiosmtpd in its own process; "
          f"raw and digestbot alternate in chunks of {min(digests, CHUNK)}")
    print(f"{'run':<42} {'seconds':>8} {'msgs/s':>8} {'accepted':>9} {'failed':>7}")
    for name, seconds, accepted, failed in rows:
        print(f"{name:<42} {seconds:>8.2f} {accepted / seconds:>8.0f} {accepted:>9} {failed:>7}")
    print(f"digestbot / raw rate: {ratio:.2f} ({PER_SUB} recipients per body), {ratio_one:.2f} (one recipient per "
          f"body)   with 450s: delivered {delivered}, duplicates {duplicates}, lost {lost}")
    return (f"ratio_vs_raw_smtp={ratio:.2f} ratio_vs_raw_smtp_one_recipient={ratio_one:.2f} delivered={delivered} "
            f"duplicates={duplicates} lost={lost}")


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
