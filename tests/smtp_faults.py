"""A misbehaving SMTP server on 127.0.0.1: just enough ESMTP (greeting, EHLO/HELO, MAIL, RCPT, DATA,
RSET, NOOP, QUIT) to take messages, and faults at a chosen point of the exchange.

    with FaultySmtpServer() as smtp:
        smtp.misbehave("dot", "close", times=1)  # the first message's reply to the final "." is lost

Points: "ehlo" and "rcpt" (once that command arrived, before answering it) and "dot" (once the
final "." arrived). What happens there: "close" the connection without a reply; "hang" (never
reply, until the client gives up); "long" (a reply line over smtplib's 8 KB limit); "garbage" (a
reply without a code); "slow" (the usual reply after `delay` seconds). `times` faults, then it
behaves (None: for ever). `smtputf8=False`: EHLO does not offer SMTPUTF8.

A message is in `received` ("delivered") as soon as its final "." arrived, whatever the reply
was, as a real server may have queued it. `mail_commands` keeps every MAIL command's argument.
"""
from __future__ import annotations

import socket
import socketserver
import threading
import time
from email import message_from_bytes, policy

from servers import Received

POINTS = ("ehlo", "rcpt", "dot")
ACTIONS = ("close", "hang", "long", "garbage", "slow")


class _Fault(Exception):
    """Ends a session the way the fault says (raised by the handler, caught around the session)."""


class FaultySmtpServer:
    def __init__(self, *, smtputf8: bool = True, delay: float = 0.0) -> None:
        self.smtputf8, self.delay = smtputf8, delay
        self.received: list[Received] = []
        self.mail_commands: list[str] = []
        self.point: str | None = None
        self.action = ""
        self.times: int | None = None
        self.faults = 0  # how many times it misbehaved
        self.connections = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _Session)
        self._server.owner = self
        self.host, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None

    def misbehave(self, point: str | None, action: str = "close", times: int | None = None) -> None:
        assert point in (*POINTS, None) and action in ACTIONS
        with self._lock:
            self.point, self.action, self.times = point, action, times

    def start(self) -> FaultySmtpServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            for conn in self._open:  # a hanging session ends when its socket does
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._server.server_close()

    def __enter__(self) -> FaultySmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fault_at(self, point: str) -> str | None:
        """The action to take at `point` now (and count it), or None to behave."""
        with self._lock:
            if self.point != point or (self.times is not None and self.faults >= self.times):
                return None
            self.faults += 1
            return self.action

    def wait_until_stopped_or_closed(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                if not conn.recv(4096):
                    return  # the client gave up and closed
            except TimeoutError:
                continue
            except OSError:
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    owner: FaultySmtpServer


class _Session(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        owner = self.server.owner
        with owner._lock:
            owner._open.add(self.request)
            owner.connections += 1
        try:
            self._converse(owner)
        except (_Fault, OSError):
            pass
        finally:
            with owner._lock:
                owner._open.discard(self.request)

    def _converse(self, owner: FaultySmtpServer) -> None:
        self.reply(b"220 faulty.example.org ESMTP ready")
        mail_from, rcpts = "", []
        while line := self.rfile.readline():
            verb, _, arg = line.decode("utf-8", "replace").strip().partition(" ")
            verb = verb.upper()
            if verb == "EHLO" and self.fault(owner, "ehlo"):
                continue
            if verb == "EHLO":
                utf8 = b"\r\n250-SMTPUTF8" if owner.smtputf8 else b""
                self.reply(b"250-faulty.example.org\r\n250-SIZE 10000000" + utf8 + b"\r\n250 8BITMIME")
            elif verb in ("HELO", "NOOP"):
                self.reply(b"250 OK")
            elif verb == "MAIL":
                owner.mail_commands.append(arg)
                mail_from, rcpts = arg.partition(":")[2].split(" ")[0].strip("<>"), []
                self.reply(b"250 OK")
            elif verb == "RCPT":
                if not self.fault(owner, "rcpt"):
                    rcpts.append(arg.partition(":")[2].split(" ")[0].strip("<>"))
                    self.reply(b"250 OK")
            elif verb == "DATA":
                self.reply(b"354 End data with <CR><LF>.<CR><LF>")
                raw = self.read_data()
                owner.received.append(Received(mail_from, rcpts, message_from_bytes(raw, policy=policy.default),
                                               raw))  # type: ignore[arg-type]
                if not self.fault(owner, "dot"):
                    self.reply(b"250 Queued")
            elif verb == "RSET":
                mail_from, rcpts = "", []
                self.reply(b"250 OK")
            elif verb == "QUIT":
                self.reply(b"221 Bye")
                return
            else:
                self.reply(b"500 Unknown command")

    def read_data(self) -> bytes:
        lines = []
        while (line := self.rfile.readline()) != b".\r\n":
            if not line:
                raise _Fault("the client closed during DATA")
            lines.append(line[1:] if line.startswith(b".") else line)  # undo the dot-stuffing
        return b"".join(lines)

    def fault(self, owner: FaultySmtpServer, point: str) -> bool:
        """Misbehave at `point` if told to; False: behave (the caller replies as usual)."""
        action = owner.fault_at(point)
        if action == "close":
            raise _Fault(point)  # handle() returns and socketserver closes the socket: no reply
        if action == "hang":
            owner.wait_until_stopped_or_closed(self.request)
            raise _Fault(point)
        if action == "long":
            self.reply(b"250 " + b"x" * 9000)  # over smtplib's _MAXLINE (8192)
        elif action == "garbage":
            self.reply(b"hello, this is no SMTP reply")
        elif action == "slow":
            time.sleep(owner.delay)
            return False
        return action is not None

    def reply(self, text: bytes) -> None:
        self.wfile.write(text + b"\r\n")
