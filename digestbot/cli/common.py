"""What every command shares: the global options, the layout of each command's help, the exit codes, and
how JSON and notes are written.

Part of the command line (cli/__init__.py, ops.py and subs.py build their commands with `add_command`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from ..logformat import LOG_FORMATS

# What add_subparsers() returns: argparse names it privately, and only its stubs make it generic.
if TYPE_CHECKING:
    Actions: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Actions = argparse._SubParsersAction

EXIT_OK = 0
EXIT_FAILED = 1  # it ran, but something failed: a source, a digest, the database
EXIT_USAGE = 2  # what it was asked is wrong: an option, a name, the config file (argparse's own code)
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a program stopped by a closed pipe

EXIT_CODES = """\
exit codes:
  0    done
  1    it ran, but something failed: a source, a digest, or the database (missing, damaged, busy)
  2    usage or config error: a bad option, an unknown subscription, topic or source name, an invalid
       or missing config file (nothing was done)
  130  interrupted (Ctrl-C) before it finished
  141  stdout was closed before all was written (e.g. `| head -1`): the rest is dropped quietly"""




class UsageError(Exception):
    """A command was given options that do not go together (exit 2, like argparse's own errors)."""


def default_config() -> str:
    return os.environ.get("DIGESTBOT_CONFIG") or "config.toml"


def add_global_options(parser: argparse.ArgumentParser, *, with_defaults: bool) -> None:
    """-c/--config, -v/--verbose, -q/--quiet. The top-level parser holds their defaults; every command's
    parser takes them too, with argparse.SUPPRESS as the default, so that an option after the command
    is accepted and, when given, wins, while one not given there leaves the top-level value alone."""
    def default(value: str) -> str:
        return value if with_defaults else argparse.SUPPRESS

    group = parser.add_argument_group("global options (before or after the command)")
    group.add_argument("-c", "--config", default=default(default_config()), metavar="CONFIG",
                       help="config file (default: $DIGESTBOT_CONFIG, then ./config.toml)")
    # One destination: the last of -v and -q given wins.
    group.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const="verbose",
                       default=default("normal"), help="log debug detail")
    group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const="quiet",
                       default=default("normal"),
                       help="log only warnings and errors (the daemon too); no summary notes on stderr")
    group.add_argument("--log-format", choices=LOG_FORMATS, default=default("text"),
                       help="log lines as text (ISO date and time, level, logger, message; the default) or as "
                            "one JSON object per line for log shippers")


def examples_text(examples: Sequence[str]) -> str:
    return "examples:\n" + "\n".join(f"  {example}" for example in examples)


def add_command(actions: Actions, name: str, *, help: str, examples: Sequence[str],
                description: str | None = None) -> argparse.ArgumentParser:
    """A command (or a command's action): its one-line help, its examples under its --help, and the global
    options, which may follow it."""
    parser: argparse.ArgumentParser = actions.add_parser(
        name, help=help, description=description or help[0].upper() + help[1:] + ".",
        epilog=examples_text(examples), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_global_options(parser, with_defaults=False)
    return parser


def add_json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"{what}: one JSON document on stdout")


def print_help_of(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A command for a group of actions given none: its help (exit 0)."""
    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return EXIT_OK
    return show


def emit_json(document: Any) -> None:
    """The JSON mode's only output on stdout: one document, written as it is encoded (`run --once` at
    50,000 subscriptions lists 50,000 digests: encoded whole, the text alone would add tens of MB)."""
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


def note(args: argparse.Namespace, text: str) -> None:
    """A summary for a person (e.g. "12 papers") on stderr; none with --quiet, nor with --json (the
    document has it)."""
    if args.verbosity != "quiet" and not getattr(args, "json", False):
        print(text, file=sys.stderr)


def iso(value: datetime | None) -> str | None:
    """A time for JSON: ISO 8601 in UTC (a naive time from the database is UTC)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def silence_stdout() -> None:
    """The reader of stdout has gone (`| head -1`): point stdout at /dev/null, so that the interpreter's
    own flush at exit does not fail again with a traceback (the Python docs' "Note on SIGPIPE")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
