"""Feedback for the coding exercises' checkers (shared by every chapter).

A checker runs a learner's function on small cases whose right answers are known and returns a
:class:`Feedback`: what passed, and for the first thing that failed, what is wrong in terms a
learner can act on (a shape, an invariant, a value on a small case), never only "incorrect".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Feedback:
    """The outcome of a checker. ``passed`` is True only if every check passed."""

    exercise: str
    passed_checks: list[str] = field(default_factory=list)
    problem: str | None = None
    hint: str | None = None

    @property
    def passed(self) -> bool:
        return self.problem is None

    def __str__(self) -> str:
        lines = [f"{self.exercise}: " + ("all checks passed" if self.passed else "not yet")]
        lines += [f"  ✓ {c}" for c in self.passed_checks]
        if self.problem:
            lines.append(f"  ✗ {self.problem}")
            if self.hint:
                lines.append(f"    hint: {self.hint}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html

        colour = "#1a7f37" if self.passed else "#cf222e"
        items = "".join(f"<li>✓ {html.escape(c)}</li>" for c in self.passed_checks)
        if self.problem:
            items += f"<li><b>✗ {html.escape(self.problem)}</b>"
            if self.hint:
                items += f"<br><i>hint:</i> {html.escape(self.hint)}"
            items += "</li>"
        verdict = "all checks passed" if self.passed else "not yet"
        return (f"<div style='border-left:4px solid {colour};padding-left:8px'>"
                f"<b>{html.escape(self.exercise)}: {verdict}</b><ul>{items}</ul></div>")


class _Fail(Exception):
    def __init__(self, problem: str, hint: str | None = None):
        super().__init__(problem)
        self.problem, self.hint = problem, hint


def _one_number(out, what: str, reduce_hint: str) -> float:
    """A reader's function's result as one float, or a ``_Fail`` that says what is wrong
    (``None``, or an array of more than one element; ``reduce_hint`` says how to reduce it)."""
    if out is None:
        raise _Fail("your function returned None", f"return {what}, one number")
    out = np.asarray(out, dtype=np.float64)
    if out.size != 1:
        raise _Fail(f"expected one number, got an array of shape {out.shape}", reduce_hint)
    return float(out)


def _run_checks(exercise: str, checks: list[tuple[str, Callable[[], None]]]) -> Feedback:
    fb = Feedback(exercise)
    for name, check in checks:
        try:
            check()
        except _Fail as f:
            fb.problem, fb.hint = f.problem, f.hint
            return fb
        except Exception as exc:  # the learner's code raised: say where, not only that it failed
            fb.problem = f"while checking that {name}, your function raised {exc!r}"
            return fb
        fb.passed_checks.append(name)
    return fb


