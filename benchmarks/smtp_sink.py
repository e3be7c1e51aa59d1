"""The benchmarks' SMTP sink: aiosmtpd in a process of its own (so that its CPU does not compete with the
sender's), accepting everything and logging one line per accepted message.

Each line: arrival time (time.time(), when the reply to DATA goes out), size in bytes, the recipients
(comma-separated) and the Message-ID. Options: `delay_ms` answers each DATA after that many milliseconds
(`await asyncio.sleep`: a relay that takes its time, while other connections go on); `soft_every`
answers 450 to the first RCPT of each recipient whose number (r<N>@...) is a multiple of it; `sample`
keeps the first message as it came (bench_cycle pads it for its floor).

    sink = Sink(workdir, delay_ms=50)   ...   sink.entries(); sink.rate(); sink.stop()
    python benchmarks/smtp_sink.py PORT LOG [--sample PATH] [--delay MS] [--soft-every N]   (the process itself)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Entry:
    at: float  # time.time() of the reply to DATA
    size: int
    rcpts: tuple[str, ...]
    message_id: str


def serve(port: int, log_path: str, sample_path: str | None, delay_ms: float, soft_every: int) -> None:
    from aiosmtpd.controller import Controller

    log = open(log_path, "a", buffering=1, encoding="utf-8")
    refused: set[str] = set()

    class Handler:
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
            number = address.split("@")[0].lstrip("r")
            if soft_every and number.isdigit() and int(number) % soft_every == 0 and address not in refused:
                refused.add(address)
                return "450 4.2.1 try again later"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            content = envelope.original_content
            if sample_path and not os.path.exists(sample_path):
                Path(sample_path).write_bytes(content)
            start = content.find(b"Message-ID:")
            message_id = content[start + 11:content.find(b"\n", start)].strip().decode() if start >= 0 else "?"
            log.write(f"{time.time():.6f}\t{len(content)}\t{','.join(envelope.rcpt_tos)}\t{message_id}\n")
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, data_size_limit=0)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    controller.stop()
    log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """The sink process on a free loopback port, logging to WORKDIR/NAME.log."""

    def __init__(self, workdir: Path, name: str = "sink", *, delay_ms: float = 0, soft_every: int = 0,
                 sample: bool = False):
        self.port = free_port()
        self.log, self.sample = workdir / f"{name}.log", workdir / f"{name}.eml"
        args = [sys.executable, __file__, str(self.port), str(self.log), "--delay", str(delay_ms),
                "--soft-every", str(soft_every), *(["--sample", str(self.sample)] if sample else [])]
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def entries(self, since: int = 0) -> list[Entry]:
        """The accepted messages (from the `since`-th on), in order of arrival."""
        if not self.log.exists():
            return []
        found = []
        for line in self.log.read_text(encoding="utf-8").splitlines()[since:]:
            at, size, rcpts, message_id = line.split("\t")
            found.append(Entry(float(at), int(size), tuple(rcpts.split(",")), message_id))
        return found

    def sizes(self) -> list[int]:
        return [entry.size for entry in self.entries()]

    def reset(self) -> int:
        """Forget the sample (the next message becomes it); how many messages were logged so far."""
        self.sample.unlink(missing_ok=True)
        return len(self.entries())

    def rate(self, since: int = 0) -> float:
        """Messages per second as the sink saw them: count / (last arrival - first arrival)."""
        entries = self.entries(since)
        if len(entries) < 2:
            return float("nan")
        return len(entries) / (entries[-1].at - entries[0].at)

    def stop(self) -> list[Entry]:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)
        return self.entries()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("log")
    parser.add_argument("--sample")
    parser.add_argument("--delay", type=float, default=0.0, help="milliseconds before each DATA is answered")
    parser.add_argument("--soft-every", type=int, default=0)
    options = parser.parse_args()
    serve(options.port, options.log, options.sample, options.delay, options.soft_every)
