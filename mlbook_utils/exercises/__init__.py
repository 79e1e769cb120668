"""Checkers for the coding exercises, one module per chapter.

A checker runs a learner's function on small cases whose right answers are known and returns a
:class:`Feedback`: what passed and, for the first thing that failed, what is wrong in terms a
learner can act on (a shape, an invariant, a value on a small case), never only "incorrect".
Each chapter's checkers live in ``exercises/chNN_M.py`` and are re-exported here.
"""

from . import ch01_1, ch01_2, ch01_3, ch01_4, ch02_1, ch03_1, ch04_1, ch04_2, ch06_1, ch07_1  # noqa: I001
from . import ch05_1, ch05_2, ch07_2, ch08_1, ch09_1, ch09_2, ch09_3, ch09_4
from ._feedback import Feedback
from .ch01_1 import check_episode_sampler, reference_episode_sampler
from .ch01_2 import check_prototype_scores, reference_prototype_scores
from .ch01_3 import check_preprocess, reference_preprocess

__all__ = [
    "Feedback", "ch01_1", "ch01_2", "ch01_3", "ch01_4", "ch02_1", "ch03_1", "ch04_1", "ch04_2",
    "ch05_1", "ch05_2", "ch06_1",
    "ch07_1", "ch07_2", "ch08_1", "ch09_1", "ch09_2", "ch09_3", "ch09_4",
    "check_episode_sampler", "reference_episode_sampler",
    "check_prototype_scores", "reference_prototype_scores",
    "check_preprocess", "reference_preprocess",
]
