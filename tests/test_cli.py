"""The command line as a user meets it: global options on either side of the command, help with examples
everywhere, --json documents, exit codes, a closed pipe, and what a command alone does."""
from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fixtures import daily_items

from digestbot.app import App
from digestbot.cli import build_parser, main
from digestbot.models import Paper

ROOT = Path(__file__).resolve().parent.parent
BAYESIAN = "2411.01049"  # "Transformers Can Do Bayesian Inference", the only one of daily_items(4) on it


def write_config(tmp: Path, http_url: str, *, smtp_port: int | None = None, extra: str = "") -> Path:
    """Source "hf" (hf_daily) and source "broken" (a search whose server answers HTML); subscription
    "everything" (every paper, to a@ and bad@example.org) and "bayes" (a query); email or the outbox."""
    email = (f'[email]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
             f'sender = "Digest <digest@example.org>"\n') if smtp_port else ""
    path = tmp / "config.toml"
    path.write_text(f"""[bot]
database = "sqlite:///bot.db"
outbox = "outbox"
{extra}
{email}
[[sources]]
name = "hf"
kind = "hf_daily"
url = "{http_url}/api/daily_papers"
every = "1h"

[[sources]]
name = "broken"
kind = "hf_search"
url = "{http_url}/broken"
query = "x"

[topics.vision]
query = "vision OR image"

[[subscriptions]]
name = "everything"
email = ["a@example.org", "bad@example.org"]
schedule = "instant"

[[subscriptions]]
name = "bayes"
query = "bayesian"
email = ["b@example.org"]
schedule = "daily 08:00"
""", encoding="utf-8")
    return path


@pytest.fixture
def served(http_server):
    http_server.daily_papers({datetime.now(UTC).date().isoformat(): daily_items(4)})
    http_server.route("/broken", "<html>Bad gateway</html>")
    return http_server


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def digestbot(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digestbot", *argv], capture_output=True, text=True, timeout=120,
                          cwd=kwargs.pop("cwd", ROOT), **kwargs)


# --- 1. global options before or after the command ---------------------------------------------------

def test_config_before_or_after_the_command_and_after_wins(tmp_path, served, capsys):
    path = write_config(tmp_path, served.url)
    elsewhere = tmp_path / "missing.toml"
    assert run_main(capsys, "-c", str(path), "init")[0] == 0  # status never creates the database
    for argv in (["-c", str(path), "status"], ["status", "-c", str(path)], ["-c", str(elsewhere), "status",
                                                                            "--config", str(path)]):
        code, out, err = run_main(capsys, *argv)
        assert code == 0, (argv, err)
        assert "hf (hf_daily" in out and "broken (hf_search" in out
    code, out, err = run_main(capsys, "-c", str(path), "status", "-c", str(elsewhere))  # the later one wins
    assert code == 2 and "missing.toml" in err

    code, out, _ = run_main(capsys, "subs", "list", "-c", str(path))
    assert code == 0 and out.split()[0] == "everything" and "bayes" in out
    code, out, _ = run_main(capsys, "subs", "-c", str(path), "show", "bayes")
    assert code == 0 and 'query = "bayesian"' in out
    code, out, _ = run_main(capsys, "db", "current", "-c", str(path))
    assert code == 0 and "the newest; nothing to upgrade" in out
    code, out, _ = run_main(capsys, "topics", "list", "--config", str(path))
    assert code == 0 and out.startswith("vision")


def test_quiet_and_verbose_on_either_side_the_later_wins(tmp_path, served, capsys):
    path = write_config(tmp_path, served.url)
    assert run_main(capsys, "-c", str(path), "subs", "list")[2] == "2 subscriptions\n"
    for argv in (["-q", "-c", str(path), "subs", "list"], ["subs", "list", "-c", str(path), "--quiet"],
                 ["-v", "subs", "list", "-c", str(path), "-q"]):
        code, out, err = run_main(capsys, *argv)
        assert code == 0 and "everything" in out and err == "", argv
    code, out, err = run_main(capsys, "-q", "subs", "list", "-c", str(path), "-v")
    assert code == 0 and err == "2 subscriptions\n"


def test_the_daemon_logs_only_warnings_with_quiet(tmp_path, served):
    path = write_config(tmp_path, served.url)
    process = subprocess.Popen([sys.executable, "-m", "digestbot", "run", "-c", str(path), "-q", "--send-backlog"],
                               cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("outbox/*.eml")) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert list(tmp_path.glob("outbox/*.eml")), "the daemon's first poll sent nothing"
        time.sleep(0.5)  # the failing source's warning is logged by now
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Ctrl-C to stop" not in err and " INFO " not in err  # without -q: both (tests/test_run.py)
    assert "broken" in err  # a failing source is a warning or an error: still logged


# --- 2. help everywhere -------------------------------------------------------------------------------

def parsers(parser: argparse.ArgumentParser, path: str = "digestbot"):
    """(path, parser, its subcommands' choice actions) for the whole tree."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, f"{path} {name}")


def test_every_command_and_argument_has_help_and_every_command_an_example():
    missing = []
    for path, parser in parsers(build_parser()):
        if path != "digestbot" and "examples:\n  digestbot " not in (parser.epilog or ""):
            missing.append(f"{path}: no example")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {a.dest}: no help" for a in action._choices_actions if not a.help]
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}: no help")
    assert missing == []
    assert len(list(parsers(build_parser()))) >= 25  # the walk reached the nested commands


def test_a_command_help_shows_its_examples_and_the_global_options(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["subs", "test", "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "examples:\n  digestbot subs test alice\n" in out and "-c CONFIG, --config CONFIG" in out


# --- 3. --json ----------------------------------------------------------------------------------------

def test_run_once_json_says_what_was_polled_sent_and_failed(tmp_path, served, smtp_server, capsys):
    smtp_server.fail_rcpt["bad@example.org"] = "550 no such user"
    path = write_config(tmp_path, served.url, smtp_port=smtp_server.port)
    code, out, err = run_main(capsys, "run", "--once", "--json", "--send-backlog", "-c", str(path))
    assert code == 1  # a source and a digest failed
    report = json.loads(out)
    assert set(report) == {"sources", "sent", "failed", "deferred", "no_send", "backlog", "cancelled", "seconds",
                           "polled_by_another"}
    assert report["polled_by_another"] == []
    assert set(report["seconds"]) == {"collect", "match", "record", "open", "send"}
    assert report["seconds"]["send"] > 0 and report["seconds"]["collect"] > 0  # timed, not left at zero
    hf, broken = report["sources"]
    assert hf == {"name": "hf", "listed": 4, "new": 4, "matches": 5, "error": None}  # 4 everything + 1 bayes
    assert broken["name"] == "broken" and broken["listed"] == 0 and "HTML" in broken["error"]
    assert report["sent"] == [{"subscription": "everything", "channel": "email", "target": "a@example.org",
                               "papers": 4}]
    [failed] = report["failed"]
    assert failed["subscription"] == "everything" and failed["target"] == "bad@example.org"
    assert "550" in failed["error"]
    assert (report["deferred"], report["no_send"]) == (0, False)
    assert [r.rcpt_tos for r in smtp_server.received] == [["a@example.org"]]

    code, out, _ = run_main(capsys, "-c", str(path), "status", "--json")
    assert code == 1  # a source's latest poll failed, and a digest failed
    status = json.loads(out)
    assert status["healthy"] is False and len(status["problems"]) == 2
    assert status["papers"] == 4 and status["database"] == str(tmp_path / "bot.db")
    sources = {s["name"]: s for s in status["sources"]}
    assert sources["hf"]["papers_seen"] == 4 and sources["hf"]["last_error"] is None
    assert sources["hf"]["kind"] == "hf_daily" and sources["hf"]["schedule"] == "every 1h"
    polled = datetime.fromisoformat(sources["hf"]["last_success"])
    assert abs(datetime.now(UTC) - polled) < timedelta(minutes=5)
    assert datetime.fromisoformat(sources["hf"]["next_poll"]) - polled == timedelta(hours=1)
    assert sources["broken"]["last_success"] is None and "HTML" in sources["broken"]["last_error"]
    assert sources["broken"]["last_error_at"] is not None and sources["broken"]["papers_seen"] == 0
    email = status["digests"]["email"]
    assert (email["sent"], email["failed"], email["pending"]) == (1, 1, 0)
    assert email["papers"] == {"pending": 1, "sent": 4, "failed": 4, "cancelled": 0}  # bayes's paper waits for 08:00
    assert email["oldest_pending"] is not None
    [row] = status["failed"]
    assert (row["subscription"], row["target"], row["channel"]) == ("everything", "bad@example.org", "email")
    assert "550" in row["error"] and row["attempts"] == 1


def test_run_once_no_send_json_and_json_needs_once(tmp_path, served, capsys):
    path = write_config(tmp_path, served.url)
    code, out, _ = run_main(capsys, "-c", str(path), "run", "--once", "--no-send", "--json")
    report = json.loads(out)
    assert code == 1 and report["no_send"] is True and report["sent"] == [] and report["sources"][0]["new"] == 4
    code, out, err = run_main(capsys, "-c", str(path), "run", "--json")
    assert code == 2 and out == "" and "--json needs --once" in err


def test_subs_list_test_and_papers_json(tmp_path, served, capsys):
    path = write_config(tmp_path, served.url)
    main(["-c", str(path), "run", "--once", "--no-send"])
    capsys.readouterr()

    code, out, err = run_main(capsys, "-c", str(path), "subs", "list", "--json")
    assert code == 0 and err == ""
    listed = json.loads(out)
    assert [s["id"] for s in listed] == ["everything", "bayes"]
    assert listed[1] == {"id": "bayes", "name": "bayes", "schedule": "daily 08:00", "timezone": "UTC",
                         "query": "bayesian", "topics": [], "email": ["b@example.org"], "slack": [],
                         "slack_webhook": False, "max_papers": 15}

    code, out, err = run_main(capsys, "-c", str(path), "subs", "test", "bayes", "--json", "--days", "2")
    assert code == 0 and err == ""
    tested = json.loads(out)
    assert (tested["subscription"], tested["days"], tested["papers"]) == ("bayes", 2.0, 4)
    [match] = tested["matches"]
    assert match["id"] == BAYESIAN and "Bayesian" in match["title"] and match["score"] > 0
    assert match["url"].endswith(BAYESIAN) and match["why"].startswith("matched: bayesian")
    everything = json.loads(run_main(capsys, "-c", str(path), "subs", "test", "everything", "--json")[1])
    assert len(everything["matches"]) == 4 and everything["matches"][0]["why"] == "all new papers"

    code, out, err = run_main(capsys, "-c", str(path), "papers", "--json")
    papers = json.loads(out)
    assert code == 0 and err == "" and len(papers) == 4 and BAYESIAN in {p["id"] for p in papers}
    assert set(papers[0]) == {"id", "title", "abstract", "authors", "url", "published", "upvotes", "sources"}
    assert all(p["sources"] == ["hf"] for p in papers)


def test_check_json_valid_with_warnings_and_invalid(tmp_path, served, capsys, monkeypatch):
    monkeypatch.delenv("TEST_DIGESTBOT_CLI_TOKEN", raising=False)
    path = write_config(tmp_path, served.url, extra='\n[slack]\ntoken_env = "TEST_DIGESTBOT_CLI_TOKEN"\n')
    code, out, err = run_main(capsys, "check", "--json", "-c", str(path))
    checked = json.loads(out)
    assert code == 0 and err == ""
    assert checked["ok"] is True and checked["problems"] == [] and checked["config"] == str(path)
    assert (checked["sources"], checked["topics"], checked["subscriptions"]) == (2, 1, 2)
    [warning] = checked["warnings"]
    assert "TEST_DIGESTBOT_CLI_TOKEN" in warning

    path.write_text(path.read_text() + "\n[[subscriptions]]\nname = 'x'\nschedule = 'someday'\n")
    code, out, err = run_main(capsys, "check", "--json", "-c", str(path))
    checked = json.loads(out)
    assert code == 2 and checked["ok"] is False and err == ""
    assert any(re.search(r"config\.toml:\d+: subscriptions\[2\]\.schedule", p) for p in checked["problems"])


def test_json_on_stdout_stays_one_document_in_a_real_process(tmp_path, served):
    """Warnings (a source failing) go to stderr; stdout is the document alone."""
    path = write_config(tmp_path, served.url)
    result = digestbot("-c", str(path), "run", "--once", "--no-send", "--json")
    assert result.returncode == 1 and json.loads(result.stdout)["sources"][1]["name"] == "broken"
    assert "broken" in result.stderr


# --- 4. exit codes ------------------------------------------------------------------------------------

def test_exit_codes(tmp_path, served, capsys):
    path = write_config(tmp_path, served.url)
    code, _, err = run_main(capsys, "-c", str(path), "db", "current")  # no database yet: it ran, and failed
    assert code == 1 and "error:" in err and not (tmp_path / "bot.db").exists()
    assert run_main(capsys, "-c", str(path), "subs", "test", "nobody")[0] == 2  # an unknown name
    assert run_main(capsys, "-c", str(path), "preview", "nobody", "--out", str(tmp_path / "p"))[0] == 2
    assert run_main(capsys, "-c", str(path), "sources", "check", "nothing")[0] == 2
    assert run_main(capsys, "-c", str(tmp_path / "none.toml"), "check")[0] == 2  # a missing config file
    invalid = tmp_path / "invalid.toml"
    invalid.write_text("[bot]\ncolour = 1\n")
    code, _, err = run_main(capsys, "-c", str(invalid), "status")
    assert code == 2 and "bot.colour: unknown key" in err
    with pytest.raises(SystemExit) as exited:
        main(["-c", str(path), "status", "--nope"])
    assert exited.value.code == 2

    assert run_main(capsys, "-c", str(path), "run", "--once", "--no-send")[0] == 1  # a source failed
    served.route("/broken", b"[]")
    assert run_main(capsys, "-c", str(path), "run", "--once")[0] == 0


def test_the_exit_codes_are_documented_in_help_and_readme():
    help_text = digestbot("--help").stdout
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = readme[readme.index("## Commands"):readme.index("\n## ", readme.index("## Commands") + 1)]
    for text in (help_text, commands):
        for code in ("0", "1", "2", "141"):
            assert re.search(rf"^\s*\|?\s*`?{code}`?\s", text, re.M), (code, text[-800:])


# --- 5. a closed pipe ---------------------------------------------------------------------------------

@pytest.fixture
def many_papers(tmp_path, served) -> Path:
    """3000 stored papers: far more output than a pipe holds, so the writer meets the closed end."""
    path = write_config(tmp_path, served.url)
    now = datetime.now(UTC)
    papers = [Paper(title=f"Paper number {i} on efficient inference of rather large language models",
                    abstract="An abstract.", arxiv_id=f"2411.{i:05d}", published=now) for i in range(3000)]
    with App.from_config(path) as app, app.store.write() as w:
        w.record_papers("hf", papers, now)
    return path


@pytest.mark.parametrize("argv", [["papers"], ["papers", "--json"], ["subs", "test", "everything"]])
def test_a_reader_that_stops_early_gets_no_traceback(many_papers, argv):
    process = subprocess.Popen([sys.executable, "-m", "digestbot", "-c", str(many_papers), *argv], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    err = process.stderr.read().decode()
    process.wait(timeout=120)
    assert first.strip() and process.returncode == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err and err == ""


# --- 6. a command alone -------------------------------------------------------------------------------

def test_a_command_alone(tmp_path, served, capsys):
    path = write_config(tmp_path, served.url)
    code, out, _ = run_main(capsys)
    assert code == 0 and out.startswith("usage: digestbot") and "exit codes:" in out and "subs" in out
    code, out, _ = run_main(capsys, "-c", str(path), "subs")
    assert code == 0 and out == run_main(capsys, "-c", str(path), "subs", "list")[1] and "bayes" in out
    code, out, _ = run_main(capsys, "topics", "-c", str(path))
    assert code == 0 and out.startswith("vision") and "used by: nobody" in out
    code, out, _ = run_main(capsys, "sources")
    assert code == 0 and out.startswith("usage: digestbot sources") and "check" in out
    code, out, _ = run_main(capsys, "db")
    assert code == 0 and out.startswith("usage: digestbot db") and "current" in out and "upgrade" in out


# --- the demo still reports through the command line's report_run -------------------------------------

def test_the_demo_still_reports_through_report_run(tmp_path):
    result = digestbot("demo", "--dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "machine-inference: 91 papers listed, 91 new" in result.stdout
    assert "wrote 'Top papers': 5 papers for bob@example.org to the outbox (email; not sent)" in result.stdout
