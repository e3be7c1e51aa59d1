"""The `text` source: a paper listing saved from a web page as plain text.

The format (tests/data/ holds real samples) is what a person gets by selecting a Hugging Face
papers page and saving it: a few header lines, then per paper a title line and an abstract line,
sometimes followed by a byline (`• 5 authors` or an organisation), a `·` line and a date line with an
optional upvote count (`Apr 4, 2024`, `Jul 30 2`, `Aug 16, 2024 2`). Blank lines may or may not
separate the parts, and the first title may be glued to the `Subscribe` button text.

There are no ids and no reliable separators, so the parser anchors on abstracts: an abstract is a long
line (or a shorter line of several sentences), the line right before it is the paper's title, and the
lines between an abstract and the next title are that paper's metadata.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import model_validator

from ..errors import FetchError
from ..models import Paper, SourceMemory
from . import Source, SourceOptions, decoded, read_items

log = logging.getLogger(__name__)

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# `Mar 21`, `Apr 4, 2024`, `Jul 30 2` (2 upvotes), `Aug 16, 2024 2`; the day and the upvote count
# are told apart only by the comma/space layout, so the pattern is anchored on both ends.
_DATE = re.compile(
    r"^(?P<mon>[A-Za-z]{3})[a-z]*\.?\s+(?P<day>\d{1,2})(?:,\s*(?P<year>\d{4}))?(?:\s+(?P<up>\d+))?$"
)
_AUTHORS = re.compile(r"^[•*-]?\s*(?P<n>\d+)\s+authors?$", re.IGNORECASE)
_DOT = "·"
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
# Page chrome that precedes the first paper; the first title can be glued to any of these.
_HEADER_PHRASES = (
    "Get trending papers in your email inbox once a day!",
    "Get trending papers in your email inbox!",
    "byAK and the research community",
    "Daily Papers",
    "Subscribe",
)


@dataclass(slots=True)
class ListingEntry:
    """One paper as the saved listing shows it, before it becomes a `Paper`."""

    title: str
    abstract: str
    published: date | None = None  # from the paper's date line; None when the listing shows none
    upvotes: int | None = None
    author_count: int | None = None  # `• 5 authors`: a count, never names
    organisation: str | None = None  # a byline that is not an author count, e.g. `openbmb OpenBMB`


@dataclass(slots=True)
class Listing:
    entries: list[ListingEntry]
    listing_date: date | None  # the header date (`Mar 21`), resolved to a year; None when absent
    skipped: int = 0  # abstracts without a usable title line


def is_abstract(line: str) -> bool:
    """Titles in real listings stay under ~160 characters; abstracts run to 500-2000."""
    if len(line) > 200:
        return True
    return len(line) >= 100 and len(_SENTENCE_END.findall(line)) >= 2


def parse_date(line: str, reference: date) -> tuple[date, int | None] | None:
    """A date line -> (date, upvotes); None when the line is not one.

    Hugging Face omits the year for dates in the current year, so a year-less date takes the year of
    `reference` (the listing's date), or the year before when that would put it after the reference.
    """
    m = _DATE.match(line)
    if not m or m["mon"].lower() not in _MONTHS:
        return None
    month, day = _MONTHS.index(m["mon"].lower()) + 1, int(m["day"])
    upvotes = _number(m["up"]) if m["up"] else None
    try:
        if m["year"]:
            return date(int(m["year"]), month, day), upvotes
        found = date(reference.year, month, day)
        if found > reference:
            found = date(reference.year - 1, month, day)
        return found, upvotes
    except ValueError:  # Feb 30, or Feb 29 moved to a non-leap year: not a date after all
        return None


def _number(digits: str) -> int:
    """The number a run of digits shows; a run too long for int() is just "too many" (Paper clamps it),
    and a digit int() cannot read (`²`) is none."""
    try:
        return int(digits) if len(digits) <= 18 else 10**18
    except ValueError:
        return 0


def _is_meta(line: str) -> bool:
    return line == _DOT or bool(_AUTHORS.match(line)) or bool(_DATE.match(line)) or line.isdigit()


def _strip_header(title: str) -> str:
    """`SubscribeHow Stable is ...` -> `How Stable is ...` (the page's button text glued on).

    A glued title starts a new word, so `Subscriber Churn ...` (lower-case continuation) is kept.
    """
    changed = True
    while changed:
        changed = False
        for phrase in _HEADER_PHRASES:
            rest = title[len(phrase):]
            if title.startswith(phrase) and rest and not rest[0].islower():
                title, changed = rest.strip(), True
    return title if title not in _HEADER_PHRASES else ""


def _apply_meta(entry: ListingEntry, block: list[str], reference: date) -> None:
    """Read the lines between an abstract and the next title into the entry."""
    for i, line in enumerate(block):
        if line == _DOT:
            continue
        if m := _AUTHORS.match(line):
            entry.author_count = _number(m["n"])
        elif (found := parse_date(line, reference)) is not None:
            entry.published, upvotes = found
            entry.upvotes = upvotes if upvotes is not None else entry.upvotes
        elif line.isdigit():
            entry.upvotes = _number(line)
        elif i + 1 < len(block) and block[i + 1] == _DOT:
            entry.organisation = line  # an organisation byline always comes right before the `·`
        else:
            log.debug("text listing: ignoring unrecognised line %r", line[:80])


def parse_listing(text: str, today: date) -> Listing:
    """Parse a saved listing. `today` resolves the header date, which never carries a year."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    anchors = [i for i, line in enumerate(lines) if is_abstract(line)]
    if not anchors:
        return Listing([], None)

    listing_date = None
    for line in lines[: max(anchors[0] - 1, 0)]:  # the header: everything before the first title
        if (found := parse_date(line, today)) is not None:
            listing_date = found[0]
            break
    reference = listing_date or today

    entries: list[ListingEntry] = []
    skipped = 0
    bounds = anchors[1:] + [len(lines) + 1]  # the last paper's metadata runs to the end of the file
    for n, (at, nxt) in enumerate(zip(anchors, bounds, strict=True)):
        title = lines[at - 1] if at > 0 else ""
        if n == 0:
            title = _strip_header(title)
        # A title must not be another paper's abstract, metadata or the page header.
        if not title or is_abstract(title) or _is_meta(title):
            skipped += 1
            continue
        entry = ListingEntry(title=title, abstract=lines[at])
        _apply_meta(entry, lines[at + 1 : nxt - 1], reference)
        entries.append(entry)
    return Listing(entries, listing_date, skipped)


class TextOptions(SourceOptions):
    path: str | None = None

    @model_validator(mode="after")
    def _path_or_url(self) -> TextOptions:
        if bool(self.path) == bool(self.url):
            raise ValueError("give exactly one of `path` (a file) or `url` (a page to download)")
        return self


class TextSource(Source):
    """A saved listing as plain text: a Hugging Face papers page copied or saved as .txt.

    Set `path = "listing.txt"` (relative to the config file) or `url = "https://..."`. Each paper is a
    title line followed by its abstract (a long line); a byline (`• 5 authors`), a `·` line and a
    date with upvotes (`Apr 4, 2024 12`) may follow. Dates without a year are in the listing's year
    (the year of the header date, e.g. `Mar 21`, or of today); papers without a date line get the
    listing's date. Author counts and organisation bylines carry no names and are not kept; papers
    have no arXiv id, so they are identified by their title.
    """

    kind = "text"
    Options = TextOptions
    options: TextOptions

    today: date | None = None  # the day the listing is read; collect() sets it, tests may pin it

    def parse(self, body: bytes) -> list[Paper]:
        text = decoded(body, self.fail, "a saved listing as UTF-8 text")
        listing = parse_listing(text, self.today or datetime.now(UTC).date())
        if not listing.entries:
            raise self.fail(self._why_empty(text))
        if listing.skipped:
            log.warning("source %r: skipped %d abstract(s) without a title line", self.name, listing.skipped)
        return read_items(self.name, listing.entries, lambda entry, _: self._paper(entry, listing.listing_date))

    def _paper(self, entry: ListingEntry, listing_date: date | None) -> Paper:
        day = entry.published or listing_date
        return Paper(
            title=entry.title,
            abstract=entry.abstract,
            published=datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None,
            upvotes=entry.upvotes or 0,
            sources=(self.name,),
        )

    @staticmethod
    def _why_empty(text: str) -> str:
        if text.lstrip().startswith("<"):
            return "no papers found: this looks like HTML, not a listing saved as plain text"
        return ("no papers found: expected a title line followed by its abstract "
                "(a line of more than 200 characters)")

    def collect(self, now: datetime, memory: SourceMemory) -> list[Paper]:
        self.today = now.date()
        path = self.options.path
        if path:
            try:
                body = Path(path).read_bytes()
            except OSError as e:
                raise FetchError(self.name, f"cannot read {path}: {e.strerror or e}") from None
        else:
            body = self.client().get(self.url, source=self.name).content
        return self.parse(body)
