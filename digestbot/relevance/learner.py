"""`LearningMatcher`: the query matcher (and `like` topics), then each learning subscription's votes.

It runs where matches are made (pipeline.poll, `subs test`, `preview --days`): at poll time, with the
votes recorded until then, once per subscription (not per recipient: every recipient of a
subscription gets the same selection, and their votes pool). A subscription learns unless it says
`learn = false`; one without enough examples (model.MIN_POSITIVE) gets exactly the query's matches,
and when no subscription has enough, `match` returns the wrapped matcher's result untouched.

Votes exist only for papers a digest showed (the links are in the digest; `digestbot feedback` is
the same vote by hand), so learning never uses a paper its readers were not shown.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..matching import PaperMatcher
from ..models import Hit, Match, Paper
from ..store import Vote
from .model import MIN_POSITIVE, Example, Taste, Verdicts, judge_all
from .space import Space

log = logging.getLogger(__name__)
LEARNED = "learned"  # Hit.field of a learned choice: the why line names the rated paper instead of terms


@dataclass(frozen=True)
class Learner:
    """A subscription that learns, and the `like` examples of its topics (paper key -> topic)."""
    subscription_id: str
    like: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HeldBack:
    match: Match
    reason: str


def examples_of(learner: Learner, votes: Sequence[Vote]) -> dict[str, tuple[bool, str]]:
    """Paper key -> (liked, how), the votes of all its recipients pooled: a paper with as many ups as
    downs says nothing. A vote beats a `like` example (the reader has the last word)."""
    tally: Counter[str] = Counter()
    for vote in votes:
        tally[vote.paper] += 1 if vote.vote == "up" else -1
    chosen = {key: (True, f"an example of topic {topic}") for key, topic in learner.like.items()}
    for key, balance in tally.items():
        if balance:
            chosen[key] = (balance > 0, "you marked more like this" if balance > 0 else "you marked not for me")
    return chosen


TITLE_SHOWN = 40  # the rated paper's title in a why line, which should stay near 80 characters


def short_title(title: str) -> str:
    if len(title) <= TITLE_SHOWN:
        return title
    head = title[:TITLE_SHOWN - 1]
    return (head.rsplit(" ", 1)[0] if " " in head else head).rstrip(",;:") + "…"


def learned_hit(example: Example) -> Hit:
    return Hit(f"like '{short_title(example.paper.title)}' that {example.how}".replace("that an example",
                                                                                       "an example"), LEARNED)


class LearningMatcher:
    """The `base` matcher's matches, then each learner's verdicts (same `match(papers)` contract)."""

    def __init__(self, base: PaperMatcher, learners: Sequence[Learner], votes: Callable[[], dict[str, list[Vote]]],
                 papers_by_keys: Callable[[list[str]], list[Paper]], space: Callable[[], Space]):
        self.base, self.learners = base, list(learners)
        self.votes, self.papers_by_keys, self.space = votes, papers_by_keys, space
        self.held_back: list[HeldBack] = []  # of the last match(): query matches a subscription's votes held back

    @property
    def per_paper(self) -> bool:
        """A poll may match its papers a slice at a time (PaperMatcher.per_paper) only while no
        subscription learns: each slice would build every learning subscription's taste again."""
        return self.base.per_paper and not self._ready()[1]

    def _ready(self) -> tuple[dict[str, dict[str, tuple[bool, str]]], list[Learner]]:
        """Each learner's examples, and the learners with enough of them to learn."""
        votes = self.votes()  # one query for every subscription: a campus has thousands
        chosen = {lr.subscription_id: examples_of(lr, votes.get(lr.subscription_id, [])) for lr in self.learners}
        return chosen, [lr for lr in self.learners
                        if sum(liked for liked, _ in chosen[lr.subscription_id].values()) >= MIN_POSITIVE]

    def match(self, papers: Sequence[Paper]) -> list[Match]:
        matches = self.base.match(papers)
        self.held_back = []
        if not papers or not self.learners:
            return matches
        chosen, ready = self._ready()
        if not ready:
            return matches
        space = self.space()
        keys = sorted({key for lr in ready for key in chosen[lr.subscription_id]})
        stored = {p.key: p for p in self.papers_by_keys(keys)}
        example_vectors = dict(zip(stored, space.vectors(list(stored.values())), strict=True))
        vectors = space.vectors(papers)
        by_sub: dict[str, dict[str, Match]] = {}
        for m in matches:
            by_sub.setdefault(m.subscription_id, {})[m.paper.key] = m
        tastes, owns = [], []
        for lr in ready:
            found = [(Example(stored[k], liked, how), example_vectors[k])
                     for k, (liked, how) in sorted(chosen[lr.subscription_id].items()) if k in stored]
            tastes.append(Taste(space, [e for e, _ in found], [v for _, v in found]))
            owns.append(by_sub.get(lr.subscription_id, {}))
        verdicts = judge_all(space, tastes, vectors, [[p.key in own for p in papers] for own in owns])
        changed = {lr.subscription_id: self._apply(lr.subscription_id, papers, own, judged)
                   for lr, taste, own, judged in zip(ready, tastes, owns, verdicts, strict=True) if taste.learns}
        if not changed:
            return matches
        kept = [m for m in matches if m.subscription_id not in changed]
        return kept + [m for sub in changed.values() for m in sub]

    def _apply(self, sub: str, papers: Sequence[Paper], own: dict[str, Match],
               verdicts: Verdicts) -> list[Match]:
        """The subscription's matches after its verdicts, scored by predicted relevance."""
        result = []
        for index in verdicts.considered():
            paper, verdict = papers[index], verdicts[index]
            match = own.get(paper.key)
            if match is not None and not verdict.keep:
                assert verdict.because is not None
                self.held_back.append(HeldBack(match, f"like '{verdict.because.paper.title}' that "
                                                      f"{verdict.because.how}"))
                continue
            if match is None and not verdict.keep:
                continue
            if match is None:
                assert verdict.because is not None
                match = Match(sub, paper, 0.0, (learned_hit(verdict.because),))
            match.score = round(verdict.relevance, 6) + min(max(paper.upvotes, 0), 1000) / 1e7
            result.append(match)
        return result
