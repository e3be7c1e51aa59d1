"""Build daily_papers.json (the `GET /api/daily_papers` item shape) from the saved seed listings.

    python tests/data/make_fixtures.py [--count N]     (N=0: every distinct paper, ~616)

Writes tests/data/daily_papers.json and digestbot/demo/daily_papers.json. Titles, abstracts, author
counts, organisation bylines and upvotes come from the listings (through the `text` source's parser);
everything the listings lack (arXiv ids, author names, ids, dates) is synthetic but deterministic, so
re-running the script reproduces the files byte for byte.

Dates are written relative to BASE (2026-11-20): the top-level `publishedAt` (the day the paper
reached Daily Papers) is BASE, `paper.publishedAt` (the arXiv date) one to three days earlier. The
"no flood" rule drops papers older than 7 days at first sighting, so tests must shift them:
`tests/fixtures.py: daily_items(published=...)` rewrites both to the day a test needs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import the package from this tree

from digestbot.models import clean_text, title_slug  # noqa: E402
from digestbot.sources.text import ListingEntry, parse_listing  # noqa: E402

BASE = date(2026, 11, 20)
SEEDS = ROOT / "tests" / "data" / "seeds"
OUTPUTS = (ROOT / "tests" / "data" / "daily_papers.json", ROOT / "digestbot" / "demo" / "daily_papers.json")
FIRST = ("Wei", "Anna", "Rahul", "Sofia", "Kenji", "Maria", "David", "Yuki", "Omar", "Lena", "Chen",
         "Priya", "Lucas", "Fatima", "Jonas", "Mei", "Ivan", "Sara", "Tomas", "Aisha", "Hao", "Elena")
LAST = ("Zhang", "Müller", "Patel", "Rossi", "Tanaka", "García", "Kim", "Novak", "Haddad", "Berg",
        "Li", "Sharma", "Silva", "Okafor", "Schmidt", "Wang", "Ivanova", "Dubois", "Nakamura", "Liu")
USERS = ("akhaliq", "taesiri", "amber1120", "nielsr", "reach-vb", "jeffboudier")
STOP = {"a", "an", "and", "the", "of", "for", "in", "on", "via", "with", "to", "by", "from", "is",
        "are", "at", "as", "can", "do", "does", "your", "we", "our", "all", "you", "not", "its", "into"}


def h(*parts: object) -> int:
    """A stable hash (Python's own hash() is salted per process)."""
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest(), 16)


def oid(*parts: object) -> str:
    """A 24-hex-digit id shaped like Hugging Face's Mongo ids."""
    return f"{h('oid', *parts):064x}"[:24]


def select(count: int) -> list[ListingEntry]:
    """Round-robin over the listings so every file (and the privacy file's bylines) is represented."""
    listings = [parse_listing(p.read_text("utf-8"), BASE).entries for p in sorted(SEEDS.glob("*.txt"))]
    seen: set[str] = set()
    chosen: list[ListingEntry] = []
    for i in range(max(map(len, listings))):
        for entries in listings:
            if i < len(entries) and (slug := title_slug(entries[i].title)) not in seen:
                seen.add(slug)
                chosen.append(entries[i])
    if not count:
        return chosen
    # Keep the rare shapes a small selection would miss: organisation bylines, non-ASCII titles.
    rare = [e for e in chosen[count:] if e.organisation or not e.title.isascii()]
    return chosen[: count - len(rare)] + rare


def user(name: str) -> dict:
    return {"_id": oid("user", name), "avatarUrl": f"/avatars/{oid('avatar', name)}.svg", "isPro": False,
            "fullname": name.replace("-", " ").title(), "user": name, "type": "user", "name": name}


def authors(entry: ListingEntry, participating: bool) -> list[dict]:
    n = entry.author_count or 1 + h("n", entry.title) % 6
    result = []
    for i in range(n):
        k = h("author", entry.title, i)
        name = f"{FIRST[k % len(FIRST)]} {LAST[(k >> 8) % len(LAST)]}"
        result.append({"_id": oid("author", entry.title, i), "name": name, "hidden": False})
    if participating:  # claimed authors carry a status and a user object (relative avatarUrl)
        result[0] |= {"status": "claimed_verified", "statusLastChangedAt": "2026-11-19T08:12:40.114Z",
                      "user": user(result[0]["name"].lower().replace(" ", "-"))}
    return result


def keywords(title: str) -> list[str]:
    words = [w.lower() for w in re.split(r"[^A-Za-z0-9-]+", title) if len(w) > 2 and w.lower() not in STOP]
    return list(dict.fromkeys(words))[:5]


def wrap(text: str, width: int, indent: str = "") -> str:
    """arXiv's hard line breaks: what clean_text must undo."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return f"\n{indent}".join(lines + [line])


def item(i: int, entry: ListingEntry) -> dict:
    k = h("item", entry.title)
    arxiv_id = f"2411.0{1001 + i}"
    title, summary = clean_text(entry.title), clean_text(entry.abstract)
    day = datetime(BASE.year, BASE.month, BASE.day)
    arxiv_day = day - timedelta(days=1 + k % 3, hours=(k >> 4) % 24, minutes=(k >> 9) % 60)
    submitter = user(USERS[(k >> 14) % len(USERS)])
    participating = (k >> 20) % 4 == 0
    paper: dict = {
        "id": arxiv_id,
        "authors": authors(entry, participating),
        "publishedAt": arxiv_day.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "submittedOnDailyAt": f"{BASE.isoformat()}T00:00:00.000Z",
        "submittedOnDailyBy": submitter,
        "title": title,
        "summary": wrap(summary, 80) if i % 3 == 0 else summary,
        "upvotes": entry.upvotes if entry.upvotes is not None else (k >> 24) % 45,
        "discussionId": oid("discussion", arxiv_id),
    }
    if i % 6 != 5:  # the freshest papers have no AI summary yet
        first = re.split(r"(?<=\.)\s", summary, maxsplit=1)[0]
        paper |= {"ai_summary": first[:300], "ai_keywords": keywords(title),
                  "ai_summary_model": "Qwen/Qwen2.5-Coder-32B-Instruct"}
    slug = title_slug(title)[:40].strip("-")
    if (k >> 30) % 6 == 0:
        owner = LAST[(k >> 34) % len(LAST)].lower().replace("ü", "u").replace("í", "i")
        paper["githubRepo"] = f"https://github.com/{owner}/{slug}"
        paper["githubStars"] = (k >> 40) % 900
    if (k >> 44) % 8 == 0:
        paper["projectPage"] = f"https://{slug}.github.io/"
    top: dict = {"paper": paper, "publishedAt": f"{BASE.isoformat()}T00:00:00.000Z", "title": title,
                 "summary": paper["summary"],
                 "thumbnail": f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{arxiv_id}.png",
                 "numComments": (k >> 50) % 5, "submittedBy": submitter,
                 "isAuthorParticipating": participating}
    if entry.organisation:
        name, _, full = entry.organisation.partition(" ")
        org = {"_id": oid("org", name), "name": name, "fullname": full or name,
               "avatar": f"https://cdn-avatars.huggingface.co/v1/production/uploads/{oid('oa', name)}.png"}
        paper["organization"] = top["organization"] = org
    return top


def build(count: int) -> list[dict]:
    items = [item(i, entry) for i, entry in enumerate(select(count))]
    if not any(it["paper"]["upvotes"] == 0 for it in items):
        items[-1]["paper"]["upvotes"] = 0  # real lists have fresh papers nobody upvoted yet
    items.sort(key=lambda it: -it["paper"]["upvotes"])  # `date=` answers come ordered by upvotes
    wrapped = 0
    for it in items:  # two titles keep arXiv's hard line break and indentation
        if wrapped < 2 and len(it["title"]) > 70:
            it["title"] = it["paper"]["title"] = wrap(it["title"], 60, indent="  ")
            wrapped += 1
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=80, help="number of papers (0: all)")
    items = build(parser.parse_args().count)
    # One item per line: small, and a regenerated file diffs line by line.
    text = "[\n" + ",\n".join(json.dumps(it, ensure_ascii=False) for it in items) + "\n]\n"
    for out in OUTPUTS:
        out.write_text(text, "utf-8")
        print(f"wrote {len(items)} items to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
