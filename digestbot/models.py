"""Value objects that flow between the stages: Paper, Hit, Match, Digest, Message.

They are plain, immutable-by-convention dataclasses: no database, no network, no config.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.headerregistry import Address
from email.utils import parsedate_to_datetime
from typing import Any

from slugify import slugify

KEY_FORMAT = "%Y-%m-%dT%H:%M"  # a scheduled digest's period: the local wall-clock time it fires (schedule.py)
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


# Characters that change how the text around them is shown without being seen themselves: bidirectional
# embeddings, overrides and isolates (U+202E shows "cod.exe" as "exe.doc"), direction marks, zero-width
# spaces and joiners, the word joiner and the byte-order mark; and control characters (a raw ESC reaches
# a terminal through `digestbot papers`). Whitespace controls are not here: clean_text collapses them.
_INVISIBLE = dict.fromkeys(
    [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C, *range(0x200B, 0x200E), 0x2060,
     0xFEFF, *(c for c in [*range(0x20), *range(0x7F, 0xA0)] if not chr(c).isspace())])


def neutralised(text: str) -> str:
    """`text` without invisible formatting characters (bidi overrides, zero-width) and control characters."""
    return text.translate(_INVISIBLE)


def clean_text(text: object) -> str:
    """Collapse arXiv's hard line breaks and indentation into single spaces; drop invisible characters.
    Anything that is not text is no text."""
    return _SPACE.sub(" ", neutralised(text)).strip() if isinstance(text, str) else ""


def title_slug(title: str) -> str:
    return slugify(title, max_length=200, word_boundary=True)


MAX_COUNT = 2**31 - 1  # PostgreSQL's INTEGER is 32-bit (SQLite's 64): a count both databases can store
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)  # arXiv began in 1991: an earlier date is a placeholder


def linkable_id(raw: object) -> str | None:
    """The bare arXiv id when `raw` is one (`2407.13168v2`, `arXiv:hep-th/9901001`); else None.

    Only such an id is ever put into a link: `../../x`, `x?y`, `a%2Fb` would become a path or a query.
    """
    bare = bare_arxiv_id(raw) if isinstance(raw, str) else None
    return bare if bare and _ARXIV_ID.match(bare) else None


def as_count(value: Any) -> tuple[int, str | None]:
    """A count a source reported, as an int in 0..MAX_COUNT, and what was wrong with it (None if nothing)."""
    if type(value) is int and 0 <= value <= MAX_COUNT:  # the common case, first
        return value, None
    if value is None:
        return 0, None
    number: int | None = None
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip()) if len(value.strip()) <= 18 else MAX_COUNT + 1
    elif type(value) is int:
        number = value
    if number is None:
        return 0, f"is {_shown(value)}, not a count; read as 0"
    if number < 0:
        return 0, f"is {number}, below 0; read as 0"
    if number > MAX_COUNT:
        return MAX_COUNT, f"is {_shown(value)}, over {MAX_COUNT}; stored as {MAX_COUNT}"
    return number, None


def as_moment(value: Any) -> tuple[datetime | None, str | None]:
    """A date a source reported as an aware UTC datetime (ISO 8601, RFC 2822, a date or a datetime; a
    naive one is UTC), and what was wrong with it: a value that is no date, or one before EARLIEST."""
    moment: datetime | None = None
    if value is None or value == "":
        return None, None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = _parse_moment(value.strip())
    if moment is None:
        return None, f"{_shown(value)} is not a date; kept without a date"
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is past the last datetime in UTC
        return None, f"{_shown(value)} is out of range; kept without a date"
    if moment < EARLIEST:
        return None, f"{_shown(value)} is before {EARLIEST.year} (a placeholder?); kept without a date"
    return moment, None


def _parse_moment(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)  # Python 3.11 reads a trailing Z
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _shown(value: Any) -> str:
    """A source's value in a message: its repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


Reported = Any  # a value as a source read it, before Paper checked it


@dataclass(slots=True)
class Paper:
    """One paper as a source reported it (or as the store remembers it).

    Construction checks every value (sources pass what they read, the store what it holds, so a paper
    stored by an older version is checked when it is read back, before any digest or command shows
    it): text loses invisible characters,
    a count is clamped into 0..MAX_COUNT, a date that is no date is dropped, an id that is not an
    arXiv id is dropped (it never reaches a link). What was changed is listed in `problems`, for the
    source to report; a title that is not text raises ValueError.
    """

    title: str
    abstract: str = ""
    arxiv_id: str | None = None
    authors: tuple[str, ...] = ()
    # A source passes the date and the count as it read them (`Reported`); once made, they are a UTC
    # datetime or None and an int in 0..MAX_COUNT.
    published: datetime | None | Reported = None  # the arXiv date when known, else the listing date
    url: str | None = None  # the page a reader should open (Hugging Face paper page, arXiv abs, feed link)
    upvotes: int | Reported = 0
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    github: str | None = None
    project_page: str | None = None
    sources: tuple[str, ...] = ()  # names of the configured sources that listed it
    first_seen: datetime | None = None  # set by the store
    # A new version of an older paper (arXiv RSS `replace`): it may update a stored paper, but it is
    # never stored as a new one (we never saw its first announcement, so it is no news either).
    update_only: bool = False
    problems: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.title, str):
            # A bad value from a source, not a programming error: sources.read_items reports it as such.
            raise ValueError(f"its title is {_shown(self.title)}, not text")  # noqa: TRY004
        self.title = clean_text(self.title)
        self.abstract = clean_text(self.abstract)
        self.authors = tuple(a for a in map(clean_text, self.authors) if a)
        self.ai_summary = clean_text(self.ai_summary) or None
        self.ai_keywords = tuple(k for k in map(clean_text, self.ai_keywords) if k)
        self._check_id_and_url()
        self.upvotes, problem = as_count(self.upvotes)
        if problem:
            self.problems.append(f"upvotes {problem}")
        self.published, problem = as_moment(self.published)
        if problem:
            self.problems.append(f"date {problem}")

    def _check_id_and_url(self) -> None:
        raw = self.arxiv_id
        self.arxiv_id = linkable_id(raw)
        if raw and self.arxiv_id is None:
            self.problems.append(f"id {_shown(raw)} is not an arXiv id; kept without an id (no arXiv link)")
        if self.url is not None and not isinstance(self.url, str):
            self.url = None
        elif self.url and _PAPER_PAGE.match(self.url) and arxiv_id_of(self.url) is None:
            self.problems.append(f"link {_shown(self.url)} names no arXiv id; dropped")
            self.url = None

    @property
    def key(self) -> str:
        """The paper's identity: bare arXiv id, else the slug of its title."""
        return self.arxiv_id or self.slug

    @property
    def slug(self) -> str:
        return title_slug(self.title)

    # The id is checked again where it becomes a link (one match: these run for every paper rendered),
    # so that an id set after construction cannot become a path either.
    def _link_id(self) -> str | None:
        return self.arxiv_id if self.arxiv_id and _ARXIV_ID.match(self.arxiv_id) else None

    @property
    def hf_url(self) -> str | None:
        return f"https://huggingface.co/papers/{arxiv_id}" if (arxiv_id := self._link_id()) else None

    @property
    def arxiv_url(self) -> str | None:
        return f"https://arxiv.org/abs/{arxiv_id}" if (arxiv_id := self._link_id()) else None

    @property
    def pdf_url(self) -> str | None:
        return f"https://arxiv.org/pdf/{arxiv_id}" if (arxiv_id := self._link_id()) else None

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
    subscription_id: str  # the subscription's id (its slug); a Digest carries its display name too
    paper: Paper
    score: float = 0.0
    hits: tuple[Hit, ...] = ()


@dataclass(frozen=True, slots=True)
class VoteLinks:
    """A paper's two feedback links in one reader's digest ("more like this", "not for me")."""
    paper: str  # the paper's key
    up: str
    down: str


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
    more_url: str = ""  # where "and N more" links: the listing the papers came from, or the reader's own list
    more_label: str = "see the listing"  # the words of that link in the HTML
    unsubscribe_url: str = ""  # https (one click) or mailto
    manage: str = ""  # how to change the subscription, in words
    # Personal links (digest.py: only in a digest rendered for one email recipient, when `digestbot serve`
    # answers them): the "manage" page, and per match (same order, may be shorter) its vote links.
    manage_url: str = ""
    vote_links: tuple[VoteLinks, ...] = ()
    # Slack digests through the bot token when [slack] signing_secret_env is set: each paper ends with the
    # "More like this" / "Not for me" buttons `digestbot serve` answers (web/slack_actions.py)
    slack_buttons: bool = False

    @property
    def total(self) -> int:
        return len(self.matches) + self.more


Block = dict[str, Any]  # a Slack Block Kit block, as its JSON


@dataclass(slots=True)
class SlackPost:
    text: str  # the top-level fallback text (notifications, screen readers)
    blocks: list[Block] = field(default_factory=list)


@dataclass(slots=True)
class Message:
    """A rendered digest in every format; each channel takes the parts it needs."""

    subject: str
    text: str
    html: str = ""
    slack_posts: list[SlackPost] = field(default_factory=list)  # the first is top-level, the rest its thread
    # (list id, sender, the email's shared part as email_wire.shared_part makes it, stuffed): made with the
    # rendering when that runs in a process of its own (render/apart.py), else None (the channel makes it)
    email_part: tuple[str, Address, bytes] | None = None


@dataclass(slots=True)
class SourceMemory:
    """What a source remembers between polls; the store loads it and saves it after a success.

    `validators` maps a URL to its (ETag, Last-Modified) from the last successfully processed body;
    a source puts fresh ones into `new_validators`, which the store saves only with the papers.
    """

    last_success: datetime | None = None
    validators: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    new_validators: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
