"""Topics by example (`like = [...]`): TF-IDF cosine over the stored papers, through the real store."""
from __future__ import annotations

from datetime import UTC, datetime

from fixtures import daily_items

from digestbot import config as config_module
from digestbot.app import build_matcher
from digestbot.sources.hf_json import paper_from_item
from digestbot.store import Store

EXAMPLES = ["2411.01019", "2411.01023"]  # two membership-inference papers
NEW = {"2411.01045": True, "2411.01035": True,  # membership inference attacks: alike
       "2411.01053": False, "2411.01016": False}  # Markov jump processes, diffusion scaling: not alike


def test_like_topic_matches_lookalikes_and_only_them(tmp_path):
    papers = [paper_from_item(item, i, None, "hf") for i, item in enumerate(daily_items())]
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.create_tables()
    with store.write() as w:
        w.record_papers("hf", [p for p in papers if p.arxiv_id not in NEW], datetime.now(UTC))
    path = tmp_path / "config.toml"
    path.write_text(f"""
[topics.membership]
like = {EXAMPLES!r}

[[subscriptions]]
name = "Privacy"
topics = ["membership"]
email = ["p@example.org"]

[[subscriptions]]
name = "Splitwise fan"
query = 'splitwise'
email = ["s@example.org"]
""".replace("'", '"'))
    matcher = build_matcher(config_module.load(path), store)
    new = [p for p in papers if p.arxiv_id in NEW]
    matches = matcher.match(new)
    privacy = {m.paper.arxiv_id: m for m in matches if m.subscription_id == "privacy"}
    assert set(privacy) == {k for k, alike in NEW.items() if alike}
    for match in privacy.values():
        assert [h.field for h in match.hits] == ["topic"] and match.hits[0].text == "membership"
        assert match.score > 0
    assert {m.subscription_id for m in matches} == {"privacy"}  # the like-only subscription is not "everything"


def test_a_like_topic_needs_examples_or_a_query(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[topics.empty]\nmin_similarity = 0.3\n')
    import pytest

    from digestbot.errors import ConfigError
    with pytest.raises(ConfigError) as info:
        config_module.load(path)
    assert ":1: topics.empty: give a query, or like" in str(info.value)


def test_examples_may_be_given_as_people_paste_them(tmp_path):
    """An arXiv link, a Hugging Face paper page or "arXiv:...v2" names the same paper as its bare id."""
    path = tmp_path / "config.toml"
    pasted = ["https://arxiv.org/abs/2411.01019v2", "https://huggingface.co/papers/2411.01023",
              "arXiv:2411.01045v1", "https://arxiv.org/pdf/2411.01035v3.pdf", "a-paper-without-arxiv-id"]
    path.write_text(f"[topics.membership]\nlike = {pasted!r}\n".replace("'", '"'))
    assert config_module.load(path).topics["membership"].like == [
        "2411.01019", "2411.01023", "2411.01045", "2411.01035", "a-paper-without-arxiv-id"]
    path.write_text("")
    import subprocess
    import sys
    added = subprocess.run([sys.executable, "-m", "digestbot", "-c", str(path), "topics", "add", "mi",
                            "--like", "https://arxiv.org/abs/2411.01019v2", "--like", "2411.01023"],
                           capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    assert 'like = ["2411.01019", "2411.01023"]' in path.read_text()
