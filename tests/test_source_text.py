"""The `text` source parses the four real saved listings (tests/data/seeds) and rejects bad input."""
from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest
from fixtures import SEED_FILES, seed_bytes
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from digestbot.errors import FetchError, ParseError
from digestbot.models import SourceMemory
from digestbot.sources import load_all
from digestbot.sources.text import TextOptions, TextSource, parse_date

TODAY = date(2026, 11, 20)
LARGE, MACHINE, PRIVACY, REASONING = SEED_FILES
# Counted independently of the parser: every abstract is the one line over 200 characters per paper
# (`awk 'length > 200' FILE | wc -l`), and each such line follows its title line.
COUNTS = {LARGE: 447, MACHINE: 91, PRIVACY: 66, REASONING: 92}
# (title, abstract length, abstract start, abstract end) of the first and the last paper of each file.
FIRST_LAST = {
    LARGE: [("How Stable is Stable Diffusion under Recursive InPainting (RIP)?", 1790,
             "Generative Artificial Intelligence image models have achieve",
             "he inpainting masks, and the number of iterations."),
            ("Towards an Understanding of Stepwise Inference in Transformers: A Synthetic Graph Navigation Model",
             1290, "Stepwise inference protocols, such as scratchpads and chain-",
             "ion for a deeper understanding of this phenomenon.")],
    MACHINE: [("Assessment of Data Consistency through Cascades of Independently Recurrent Inference Machines "
               "for fast and robust accelerated MRI reconstruction", 1846,
               "Machine Learning methods can learn how to reconstruct Magnet",
               " times, which is crucial in the clinical workflow."),
              ("LLM-Adapters: An Adapter Family for Parameter-Efficient Fine-Tuning of Large Language Models",
               1828, "The success of large language models (LLMs), like GPT-3 and ",
               "able practical applications to real-world systems.")],
    PRIVACY: [("Verifiable by Design: Aligning Language Models to Quote from Pre-Training Data", 1632,
               "For humans to trust the fluent generations of large language",
               " LLM trustworthiness through better verifiability."),
              ("IRWE: Inductive Random Walk for Joint Inference of Identity and Position Network Embedding",
               1398, "Network embedding, which maps graphs to distributed represen",
               "ive inference of identity and position embeddings.")],
    REASONING: [("LLaSA: Large Language and E-Commerce Shopping Assistant", 1675,
                 "The e-commerce platform has evolved rapidly due to its wides",
                 "al to be competent e-commerce shopping assistants."),
                ("How FaR Are Large Language Models From Agents with Theory-of-Mind?", 1584,
                 '"Thinking is for Doing." Humans can infer other people\'s men',
                 "er methods including few-shot in-context learning.")],
}


def source(today: date | None = TODAY, **options: str) -> TextSource:
    src = TextSource(TextOptions(name="saved", kind="text", **(options or {"path": "listing.txt"})))
    src.today = today
    return src


def parse(name: str, today: date = TODAY) -> list:
    return source(today).parse(seed_bytes(name))


@pytest.mark.parametrize("name", SEED_FILES)
def test_every_seed_parses_to_its_number_of_papers(name: str) -> None:
    papers = parse(name)
    assert len(papers) == COUNTS[name]
    assert all(p.title and len(p.abstract) > 500 and p.authors == () and p.arxiv_id is None for p in papers)
    assert all(p.sources == ("saved",) and p.key == p.slug for p in papers)


@pytest.mark.parametrize("name", SEED_FILES)
def test_first_and_last_paper(name: str) -> None:
    papers = parse(name)
    for paper, (title, length, start, end) in zip((papers[0], papers[-1]), FIRST_LAST[name], strict=True):
        assert paper.title == title
        assert (len(paper.abstract), paper.abstract[:60], paper.abstract[-50:]) == (length, start, end)


def test_glued_subscribe_and_header_without_blank_lines() -> None:
    papers = parse(LARGE)  # "SubscribeHow Stable is ..." and no blank line anywhere
    assert not any(p.title.startswith(("Subscribe", "Get trending")) for p in papers)
    assert papers[1].title == "Universal Self-Adaptive Prompting"
    assert all(p.published is None and p.upvotes == 0 for p in papers)  # no dates in this listing
    abstract = seed_bytes(MACHINE).decode().splitlines()[12]
    for glued, title in (("SubscribeA Title", "A Title"), ("Subscriber Churn Models", "Subscriber Churn Models")):
        [paper] = source().parse(f"Get trending papers in your email inbox!\n{glued}\n{abstract}".encode())
        assert paper.title == title


def test_listing_date_applies_to_papers_without_a_date_line() -> None:
    assert {p.published for p in parse(MACHINE)} == {datetime(2026, 3, 21, tzinfo=UTC)}
    assert {p.published for p in parse(REASONING)} == {datetime(2026, 3, 14, tzinfo=UTC)}


def test_bylines_dates_and_upvotes() -> None:
    papers = {p.title: p for p in parse(PRIVACY)}
    day = lambda y, m, d: datetime(y, m, d, tzinfo=UTC)  # noqa: E731
    expected = {  # title prefix: (published, upvotes), from the date lines as the listing shows them
        "Verifiable by Design": (day(2024, 4, 4), 0),  # `Apr 4, 2024`
        "Efficient Differentially Private Fine-Tuning": (day(2026, 7, 30), 2),  # `Jul 30 2`: this year
        "Turning Trash into Treasure": (day(2024, 8, 16), 2),  # `Aug 16, 2024 2`
        "TrimR": (day(2026, 5, 22), 0),  # `May 22`: the day, not May 2 with 2 upvotes
        "MiniCPM4": (day(2026, 6, 9), 5),  # organisation byline `openbmb OpenBMB`, then `Jun 9 5`
        "Denotational validation": (day(2017, 11, 8), 0),
        "The Surprising Effectiveness": (day(2026, 11, 12), 0),  # no date line: the listing's `Nov 12`
    }
    for prefix, want in expected.items():
        [paper] = [p for t, p in papers.items() if t.startswith(prefix)]
        assert (paper.published, paper.upvotes) == want, prefix
        assert paper.authors == ()  # `• 5 authors` is a count and an organisation is not an author
    assert sum(p.upvotes for p in papers.values()) == 49  # 17 date lines carry a count
    assert sum(p.upvotes > 0 for p in papers.values()) == 17
    assert "Týr-the-Pruner: Structural Pruning LLMs via Global Sparsity Distribution Optimization" in papers


def test_year_less_dates_belong_to_the_listing_year() -> None:
    papers = {p.title[:20]: p for p in parse(PRIVACY, today=date(2026, 3, 1))}
    # Read in March 2026, the header `Nov 12` is Nov 12 2025, and `Jul 30 2` is in 2025 too.
    assert papers["The Surprising Effec"].published == datetime(2025, 11, 12, tzinfo=UTC)
    assert papers["Efficient Differenti"].published == datetime(2025, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize("line, expected", [
    ("Jul 30 2", (date(2026, 7, 30), 2)), ("Aug 16, 2024 2", (date(2024, 8, 16), 2)),
    ("May 22", (date(2026, 5, 22), None)), ("Apr 4, 2024", (date(2024, 4, 4), None)),
    ("Dec 24", (date(2025, 12, 24), None)),  # after the reference day: last year's
    ("Feb 30", None), ("Foo 3", None), ("May", None), ("2 May", None),
])
def test_parse_date(line: str, expected: object) -> None:
    assert parse_date(line, date(2026, 11, 20)) == expected


def test_layout_variants_parse_alike() -> None:
    text = seed_bytes(PRIVACY).decode()
    base = parse(PRIVACY)
    for variant in (text.replace("\n\n", "\n"), text.replace("\n", "\r\n"), "\ufeff" + text):
        assert source().parse(variant.encode()) == base


@pytest.mark.parametrize("body, reason", [
    (b"", "empty"), (b" \n\n \t", "empty"),
    (b"Title\n\xff\xfe abstract", "not UTF-8"),
    (seed_bytes(MACHINE).decode().encode("utf-16"), "not UTF-8"),
    (b"Get trending papers in your email inbox!\nSubscribe\nMar 21\nA title\nshort text", "no papers found"),
    (b"<!doctype html><html><body>" + b"x" * 300 + b"</body></html>", "HTML"),
])
def test_bad_input_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as error:
        source().parse(body)
    assert reason in str(error.value) and error.value.source == "saved"


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(), st.text().map(str.encode),
                 st.lists(st.sampled_from(["Title", "·", "• 3 authors", "Jul 30 2", "x" * 250, "", "Subscribe"]))
                 .map(lambda lines: "\n".join(lines).encode())))
def test_parse_raises_only_parse_error(body: bytes) -> None:
    try:
        papers = source().parse(body)
    except ParseError:
        return
    assert papers and all(p.title and p.abstract for p in papers)


def test_options_need_exactly_one_of_path_and_url() -> None:
    for bad in ({}, {"path": "a.txt", "url": "https://example.org/a.txt"}, {"path": "a.txt", "file": "b"}):
        with pytest.raises(ValidationError):
            TextOptions(name="saved", kind="text", **bad)
    assert load_all()["text"] is TextSource


def test_collect_reads_the_file(tmp_path) -> None:
    path = tmp_path / "listing.txt"
    path.write_bytes(seed_bytes(MACHINE))
    src = source(today=None, path=str(path))
    papers = src.collect(datetime(2026, 11, 20, 8, tzinfo=UTC), SourceMemory())
    assert len(papers) == COUNTS[MACHINE] and src.today == date(2026, 11, 20)
    with pytest.raises(FetchError, match="cannot read"):
        source(path=str(tmp_path / "missing.txt")).collect(datetime.now(UTC), SourceMemory())


class _Http:
    """The shape of digestbot.http.Http that the source relies on: get(url, params, *, source)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def get(self, url: str, params: dict | None = None, *, source: str) -> httpx.Response:
        self.calls.append((url, source))
        return httpx.get(url, params=params)


def test_collect_downloads_the_url(http_server) -> None:
    http_server.route("/saved.txt", seed_bytes(REASONING))
    http = _Http()
    src = TextSource(TextOptions(name="saved", kind="text", url=f"{http_server.url}/saved.txt"), http)
    papers = src.collect(datetime(2026, 11, 20, tzinfo=UTC), SourceMemory())
    assert len(papers) == COUNTS[REASONING]
    assert http.calls == [(f"{http_server.url}/saved.txt", "saved")]
