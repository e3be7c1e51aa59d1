"""A channel the tests install in a `digestbot` subprocess (`World.run(..., plugins=["kill_after_send"])`):
the real SMTP channel, except that the process dies by SIGKILL, like a power cut, when the send pass
hands it the ledger write of a message the server accepted. That is the moment between "the server
has it" and "the ledger says so", the one window where a crash makes a duplicate.

Only a subprocess may import this module: in the test process it would take over the `smtp` kind
for every other test.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Callable

from digestbot.channels.email import SmtpChannel


class KillAfterSend(SmtpChannel):
    kind = "smtp"  # a subclass may take its parent's kind: this process sends through this one

    def record(self, commit: Callable[[], None]) -> None:
        os.kill(os.getpid(), signal.SIGKILL)
