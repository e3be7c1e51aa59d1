"""Value objects that flow between the stages: Paper, Hit, Match, Digest, Message.

They are plain, immutable-by-convention dataclasses: no database, no network, no config.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from slugify import slugify

_ARXIV_VERSION = re.compile(r"v\d+$")
_SPACE = re.compile(r"\s+")


def bare_arxiv_id(raw: str | None) -> str | None:
    """`2407.13168v2` -> `2407.13168`; `hep-th/9901001v1` -> `hep-th/9901001`; blank -> None."""
    if not raw:
        return None
    raw = raw.strip()
    for prefix in ("arXiv:", "arxiv:", "oai:arXiv.org:"):
        if raw.startswith(prefix):
            raw = raw[len(prefix):]
    return _ARXIV_VERSION.sub("", raw) or None


_PAPER_PAGE = re.compile(r"^https?://(?:www\.|export\.)?(?:arxiv\.org/(?:abs|pdf|html)|huggingface\.co/papers)/"
                         r"([^?#]+?)(?:\.pdf)?/?(?:[?#].*)?$", re.IGNORECASE)
_ARXIV_ID = re.compile(r"^(?:\d{4}\.\d{4,5}|[a-z][a-z.\-]*/\d{7})(?:v\d+)?$", re.IGNORECASE)


def arxiv_id_of(text: str) -> str | None:
    """The bare arXiv id in `text` as people and feeds write it: `2407.13168v2`, `arXiv:...`,
    `oai:arXiv.org:...`, an arxiv.org abs, pdf or html link, a Hugging Face paper page; None if
    it names no arXiv paper."""
    text = text.strip()
    page = _PAPER_PAGE.match(text)
    candidate = page.group(1) if page else text
    bare = bare_arxiv_id(candidate)
    return bare if bare and _ARXIV_ID.match(candidate.split(":")[-1]) else None


def paper_key_of(text: str) -> str:
    """The paper key that a person means by `text`: the bare arXiv id of an id or link they copied
    (`arxiv_id_of`); anything else (a title slug, the key of a paper with no arXiv id) as it is."""
    return arxiv_id_of(text) or text.strip()


def clean_text(text: str | None) -> str:
    """Collapse arXiv's hard line breaks and indentation into single spaces."""
    return _SPACE.sub(" ", text or "").strip()


def title_slug(title: str) -> str:
    return slugify(title, max_length=200, word_boundary=True)


@dataclass(slots=True)
class Paper:
    """One paper as a source reported it (or as the store remembers it)."""

    title: str
    abstract: str = ""
    arxiv_id: str | None = None
    authors: tuple[str, ...] = ()
    published: datetime | None = None  # the arXiv date when known, else the listing date
    url: str | None = None  # the page a reader should open (Hugging Face paper page, arXiv abs, feed link)
    upvotes: int = 0
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    github: str | None = None
    project_page: str | None = None
    sources: tuple[str, ...] = ()  # names of the configured sources that listed it
    first_seen: datetime | None = None  # set by the store
    # A new version of an older paper (arXiv RSS `replace`): it may update a stored paper, but it is
    # never stored as a new one (we never saw its first announcement, so it is no news either).
    update_only: bool = False

    def __post_init__(self) -> None:
        self.title = clean_text(self.title)
        self.abstract = clean_text(self.abstract)
        self.arxiv_id = bare_arxiv_id(self.arxiv_id)

    @property
    def key(self) -> str:
        """The paper's identity (DESIGN 3.3): bare arXiv id, else the slug of its title."""
        return self.arxiv_id or self.slug

    @property
    def slug(self) -> str:
        return title_slug(self.title)

    @property
    def hf_url(self) -> str | None:
        return f"https://huggingface.co/papers/{self.arxiv_id}" if self.arxiv_id else None

    @property
    def arxiv_url(self) -> str | None:
        return f"https://arxiv.org/abs/{self.arxiv_id}" if self.arxiv_id else None

    @property
    def pdf_url(self) -> str | None:
        return f"https://arxiv.org/pdf/{self.arxiv_id}" if self.arxiv_id else None

    @property
    def link(self) -> str | None:
        """Where the title links to: Hugging Face, else arXiv, else what the source gave."""
        return self.hf_url or self.url


@dataclass(frozen=True, slots=True)
class Hit:
    """One reason a paper matched: a term or phrase found in a field, or a topic."""

    text: str
    field: str  # title | abstract | author | keyword | topic | all
    topic: str | None = None


@dataclass(slots=True)
class Match:
    subscription: str  # the subscription's id (its slug)
    paper: Paper
    score: float = 0.0
    hits: tuple[Hit, ...] = ()


@dataclass(slots=True)
class Digest:
    """What one subscriber gets for one period: ranked matches, ready to render."""

    subscription: str  # display name
    subscription_id: str
    period: str  # human label of the period, e.g. "Sun 22 Nov 2026"
    matches: list[Match] = field(default_factory=list)
    more: int = 0  # matches beyond max_papers
    query: str = ""
    topics: tuple[str, ...] = ()
    period_start: datetime | None = None  # local time the period began (subject: "Mon 22 Nov")
    more_url: str = ""  # where "and N more" links: the listing the papers came from
    unsubscribe_url: str = ""  # https (one click) or mailto
    manage: str = ""  # how to change the subscription, in words

    @property
    def total(self) -> int:
        return len(self.matches) + self.more


@dataclass(slots=True)
class SlackPost:
    text: str  # the top-level fallback text (notifications, screen readers)
    blocks: list[dict] = field(default_factory=list)


@dataclass(slots=True)
class Message:
    """A rendered digest in every format; each channel takes the parts it needs."""

    subject: str
    text: str
    html: str = ""
    slack_posts: list[SlackPost] = field(default_factory=list)  # the first is top-level, the rest its thread


@dataclass(slots=True)
class SourceMemory:
    """What a source remembers between polls; the store loads it and saves it after a success.

    `validators` maps a URL to its (ETag, Last-Modified) from the last successfully processed body;
    a source puts fresh ones into `new_validators`, which the store saves only with the papers.
    """

    last_success: datetime | None = None
    validators: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    new_validators: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
