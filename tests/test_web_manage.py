"""The manage page (`digestbot serve`, web/manage.py) for real: the serve process and `digestbot run --once`
in their own processes, on one config file, with plain HTTP forms as a browser without script sends them.

Alice gets "everything" alone (she may change it) and the shared "Lab <list> & co" with Bob (she may only
leave it). A value the validator refuses leaves the file as it was, byte for byte."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from delivery_world import World, init, make_world
from servers import free_port
from test_web import ALICE, BOB, PUBLIC, SECRET_ENV, new_papers, recipients, run_once, start_serve, stop, suppressions

from digestbot import config as config_module
from digestbot.web import tokens
from digestbot.web.manage import FORM_FIELD, form_value

SECRET = "a-secret-only-this-test-knows"
LAB = "Lab <list> & co"


def manage_world(tmp_path: Path, http_server, smtp_server) -> tuple[World, str]:
    port = free_port()
    lab = f'\n[[subscriptions]]\nname = "{LAB}"\nemail = ["{ALICE}", "{BOB}"]\nschedule = "weekly mon 08:00"\n'
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=[ALICE], extra_sub=lab)
    text = world.config.read_text(encoding="utf-8")
    text = text.replace("[bot]\n", f'[bot]\npublic_url = "{PUBLIC}/"\n', 1)
    text = text.replace("[[subscriptions]]\n", f'[web]\nlisten = "127.0.0.1:{port}"\nsecret_env = "{SECRET_ENV}"\n\n'
                        "# Alice's own\n[[subscriptions]]\n", 1)
    text = text.replace("max_papers = 5\n", "max_papers = 5   # a short one\n", 1)
    world.config.write_text(text, encoding="utf-8")
    world.env[SECRET_ENV] = SECRET
    init(world)
    return world, f"http://127.0.0.1:{port}"


@pytest.fixture
def managed(tmp_path, http_server, smtp_server):
    world, base = manage_world(tmp_path, http_server, smtp_server)
    process = start_serve(world, base)
    yield world, base
    err = stop(process)
    assert "token=" not in err and "Traceback" not in err, err


def manage_url(base: str, target: str = ALICE, subscription: str = "everything") -> str:
    return f"{base}/manage?" + urlencode({"token": tokens.sign(SECRET.encode(), "manage", subscription, target)})


def post(url: str, subscription: str, action: str, **fields: str) -> httpx.Response:
    token = url.partition("token=")[2].replace("%3D", "=")
    data = {FORM_FIELD: form_value(SECRET.encode(), token), "subscription": subscription, "action": action, **fields}
    return httpx.post(url, data=data)


def field_error(page: str, name: str) -> str:
    """The error shown right after the field `name` (the input, then its message)."""
    found = re.search(rf'name="{name}"[^>]*class="bad"[^>]*>\s*<p class="error"[^>]*>([^<]*)</p>', page)
    assert found, page
    return found.group(1)


def test_a_reader_changes_pauses_and_resumes_their_own_digest(managed, http_server, smtp_server):
    world, base = managed
    url = manage_url(base)
    page = httpx.get(url)
    assert page.status_code == 200 and "<script" not in page.text
    assert "everything" in page.text and "Lab &lt;list&gt; &amp; co" in page.text and "<list>" not in page.text
    lab_card = page.text.split('id="sub-lab-list-co"')[1]
    assert "This digest is shared" in lab_card and 'name="max_papers"' not in lab_card and "Unsubscribe" in lab_card
    before = world.config.read_text(encoding="utf-8")

    # Refused values: the validator's own words next to the field; the file is untouched.
    refused = post(url, "everything", "save", max_papers="0", schedule="instant")
    assert refused.status_code == 400
    assert field_error(refused.text, "max_papers") == "Input should be greater than or equal to 1"
    assert 'value="0"' in refused.text  # what the reader typed stays in the field
    refused = post(url, "everything", "save", max_papers="5", schedule="fortnightly")
    assert refused.status_code == 400 and "fortnightly" in field_error(refused.text, "schedule")
    assert re.findall(r'name="(\w+)"[^>]*class="bad"', refused.text) == ["schedule"]
    assert post(url, "everything", "save", max_papers="many", schedule="instant").status_code == 400
    assert world.config.read_text(encoding="utf-8") == before

    # No CSRF value, a wrong one, another address's token, a damaged token: nothing changes.
    assert httpx.post(url, data={"subscription": "everything", "action": "pause"}).status_code == 403
    assert httpx.post(url, data={FORM_FIELD: "0" * 64, "subscription": "everything", "action": "pause"}
                      ).status_code == 403
    assert post(manage_url(base, "mallory@example.org"), "everything", "pause").status_code == 404
    assert httpx.get(url[:-4]).status_code == 400 and httpx.get(f"{base}/manage").status_code == 400
    unsubscribe_token = tokens.sign(SECRET.encode(), "unsubscribe", "everything", ALICE)
    assert httpx.get(f"{base}/manage?token={unsubscribe_token}").status_code == 400  # a token has one purpose
    # The shared list is the admin's: Alice may not resize or pause it.
    assert post(url, "lab-list-co", "save", max_papers="3", schedule="instant").status_code == 403
    assert post(url, "lab-list-co", "pause").status_code == 403
    assert world.config.read_text(encoding="utf-8") == before

    # A valid change: saved through the editor, comments and the rest of the file as they were.
    saved = post(url, "everything", "save", max_papers="7", schedule="instant")
    assert saved.status_code == 200 and "Saved." in saved.text
    after = world.config.read_text(encoding="utf-8")
    assert after == before.replace("max_papers = 5   # a short one", "max_papers = 7   # a short one")
    assert world.cli("check").returncode == 0

    # Paused: the next run sends her nothing; resumed: the papers that waited come.
    paused = post(url, "everything", "pause")
    assert paused.status_code == 200 and "Paused: no digests until you resume." in paused.text
    assert "paused: no digests until resumed" in paused.text and 'value="resume"' in paused.text
    assert re.search(r'max_papers = 7 +# a short one\npaused = true\n', world.config.read_text(encoding="utf-8"))
    assert 'value="resume"' in httpx.get(url).text
    assert run_once(world).returncode == 0
    assert recipients(smtp_server, 0) == []
    new_papers(http_server, 9)
    run_once(world)
    assert recipients(smtp_server, 0) == []
    resumed = post(url, "everything", "resume")
    assert resumed.status_code == 200 and "Resumed" in resumed.text and 'value="pause"' in resumed.text
    assert world.config.read_text(encoding="utf-8") == after
    run_once(world)
    assert recipients(smtp_server, 0) == [ALICE]
    [subject] = [m["Subject"] for m in smtp_server.messages]
    assert subject.startswith("7 of 9 new papers")  # the matches that waited, capped at her new size


def test_a_reader_leaves_a_shared_list_from_the_manage_page(managed, smtp_server):
    world, base = managed
    url = manage_url(base, subscription="lab-list-co")
    left = post(url, "lab-list-co", "leave")
    assert left.status_code == 200 and "You have left" in left.text and "/resubscribe?token=" in left.text
    assert suppressions(world) == [("lab-list-co", ALICE)]
    text = world.config.read_text(encoding="utf-8")
    assert f'email = ["{BOB}"]' in text and f'email = ["{ALICE}"]' in text  # her own digest stays
    page = httpx.get(url)
    assert "lab-list-co" not in page.text and 'id="sub-everything"' in page.text


def test_the_unsubscribe_page_links_to_the_manage_page(managed):
    world, base = managed
    token = tokens.sign(SECRET.encode(), "unsubscribe", "everything", ALICE)
    page = httpx.get(f"{base}/unsubscribe?token={token}")
    [link] = re.findall(r'<a href="(/manage\?token=[^"]+)"', page.text)
    manage = httpx.get(base + link.replace("&amp;", "&"))
    assert manage.status_code == 200 and 'id="sub-everything"' in manage.text and ALICE in manage.text
    for response in (manage, httpx.get(f"{base}/manage?token=x")):
        assert "default-src 'none'" in response.headers["content-security-policy"]



def test_the_owner_of_a_subscription_of_their_own_edits_its_query_and_topics(managed):
    """A subscription made on the subscribe page (`owner` = its one reader) has its query and topics on the
    manage page too: a query that does not parse is refused with the parser's caret, an unknown topic with
    the validator's message, the file unchanged; a good one is saved. A subscription the reader does not
    own shows no query field, and a query posted to it anyway changes nothing."""
    world, base = managed
    text = world.config.read_text(encoding="utf-8")
    text = text.replace("# Alice's own\n", '[topics.agents]\nquery = "agent"\n\n# Alice\'s own\n', 1)
    text += (f'\n[[subscriptions]]\nname = "Own: diffusion"\nquery = "diffusion"\nemail = ["{ALICE}"]\n'
             f'owner = "{ALICE}"\n')
    world.config.write_text(text, encoding="utf-8")
    url = manage_url(base, subscription="own-diffusion")
    page = httpx.get(url).text
    assert 'id="query-own-diffusion"' in page and 'value="diffusion"' in page and "agents" in page
    assert 'id="query-everything"' not in page  # Alice's other digest is hers, but its query is the admin's

    refused = post(url, "own-diffusion", "save", max_papers="15", schedule="daily 08:00",
                   query="diffusion AND (video", topics="")
    assert refused.status_code == 400
    [caret] = re.findall(r'<pre class="error" id="query-error-own-diffusion"[^>]*>([^<]*)</pre>', refused.text)
    assert "^" in caret and "diffusion AND (video" in caret.replace("&#34;", '"')
    assert 'value="diffusion AND (video"' in refused.text  # what the reader typed stays in the field
    unknown = post(url, "own-diffusion", "save", max_papers="15", schedule="daily 08:00", query="diffusion",
                   topics="agents, robots")
    assert unknown.status_code == 400 and "no topic &#39;robots&#39;" in unknown.text
    assert world.config.read_text(encoding="utf-8") == text

    saved = post(url, "own-diffusion", "save", max_papers="15", schedule="daily 08:00",
                 query='diffusion AND (video OR "3d")', topics="agents")
    assert saved.status_code == 200 and "Saved." in saved.text
    own = next(s for s in config_module.load(world.config).subscriptions if s.id == "own-diffusion")
    assert (own.query, own.topics) == ('diffusion AND (video OR "3d")', ["agents"])

    before = world.config.read_text(encoding="utf-8")
    ignored = post(manage_url(base), "everything", "save", max_papers="5", schedule="instant", query="hacked")
    assert ignored.status_code == 200 and world.config.read_text(encoding="utf-8") == before
