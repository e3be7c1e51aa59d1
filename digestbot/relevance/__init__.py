"""Relevance that learns from readers' votes (README, "What your votes do").

    space.py    representations of papers: TF-IDF (always), sentence embeddings (embed.py, the extra)
    model.py    one subscription's examples -> a verdict per new paper (keep?, relevance, why)
    learner.py  LearningMatcher: the query matcher's matches, then each learning subscription's verdicts
"""
from digestbot.relevance.learner import HeldBack, Learner, LearningMatcher
from digestbot.relevance.model import MIN_NEGATIVE, MIN_POSITIVE
from digestbot.relevance.space import LexicalSpace, Space

__all__ = ["MIN_NEGATIVE", "MIN_POSITIVE", "HeldBack", "Learner", "LearningMatcher", "LexicalSpace", "Space"]
