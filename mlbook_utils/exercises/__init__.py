"""Checkers for the coding exercises, one module per chapter.

A checker runs a learner's function on small cases whose right answers are known and returns a
:class:`Feedback`: what passed and, for the first thing that failed, what is wrong in terms a
learner can act on (a shape, an invariant, a value on a small case), never only "incorrect".
Each chapter's checkers live in ``exercises/chNN_M.py`` and are re-exported here.
"""

from ._feedback import Feedback
from .ch01_1 import check_episode_sampler, reference_episode_sampler

__all__ = ["Feedback", "check_episode_sampler", "reference_episode_sampler"]
