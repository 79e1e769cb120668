"""Accuracy over many test episodes, with a 95% confidence interval, and result records.

Every chapter, and the book's reproduction table, use one record format, appended as a JSON line
to ``results/<chapter>.jsonl``::

    method, dataset, n_way, k_shot, accuracy, ci95, episodes, scale, device, backend, wall_s, date

``accuracy`` and ``ci95`` are percentages. Extra fields (training episodes per second, say) may
follow.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import config
from .data import FewShotDataset
from .episodes import episode_from_indices, sample_indices

RESULTS_ENV = "MLBOOK_RESULTS"
RECORD_FIELDS = (
    "method", "dataset", "n_way", "k_shot", "accuracy", "ci95", "episodes",
    "scale", "device", "backend", "wall_s", "date",
)


def mean_ci95(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (normal approximation)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values")
    if values.size == 1:
        return float(values[0]), float("nan")
    return float(values.mean()), float(1.96 * values.std(ddof=1) / np.sqrt(values.size))


@dataclass
class EvalResult:
    """Accuracy (in %) over ``episodes`` test episodes, with its 95% confidence interval."""

    accuracy: float
    ci95: float
    episodes: int
    n_way: int
    k_shot: int
    wall_s: float
    per_episode: np.ndarray

    def __str__(self) -> str:
        return (
            f"{self.n_way}-way {self.k_shot}-shot: {self.accuracy:.2f} ± {self.ci95:.2f} % "
            f"over {self.episodes} episodes (chance {100 / self.n_way:.1f} %)"
        )


Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


def episode_accuracy(predictions: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    """Fraction correct per episode. ``predictions`` are labels, or scores over the n_way classes
    (last axis), in which case the arg-max is taken over the classes, never over the queries."""
    predictions = np.asarray(predictions)
    if predictions.ndim == query_labels.ndim + 1:
        predictions = predictions.argmax(axis=-1)
    if predictions.shape != query_labels.shape:
        raise ValueError(
            f"predictions have shape {predictions.shape}, query labels {query_labels.shape}"
        )
    return (predictions == query_labels).mean(axis=-1)


def evaluate(
    predict: Predictor,
    dataset: FewShotDataset,
    n_way: int,
    k_shot: int,
    n_query: int = 15,
    episodes: int = 1000,
    *,
    seed: int = 0,
    batch: int = 50,
    progress: bool = True,
    desc: str | None = None,
) -> EvalResult:
    """Accuracy of ``predict`` over ``episodes`` episodes drawn from ``dataset``.

    ``predict(support, support_labels, query, n_way)`` receives a batch of episodes (arrays with a
    leading batch axis) and returns, for every query, a label or a vector of n_way scores. The
    same ``seed`` gives the same test episodes, so two methods can be compared on the same tasks.
    """
    from tqdm.auto import tqdm

    # The test episodes depend only on the seed (not on ``batch``), so every method that is
    # evaluated with the same seed sees the same tasks.
    rng = np.random.default_rng(seed)
    drawn = [sample_indices(dataset, n_way, k_shot, n_query, rng, min(100, episodes - i))
             for i in range(0, episodes, 100)]
    all_classes = np.concatenate([c for c, _ in drawn])
    all_index = np.concatenate([ix for _, ix in drawn])
    accs = []
    start = time.perf_counter()
    with tqdm(
        total=episodes, desc=desc or f"{n_way}-way {k_shot}-shot",
        disable=not show_progress(progress), leave=False, unit="episode",
    ) as bar:
        done = 0
        while done < episodes:
            b = min(batch, episodes - done)
            ep = episode_from_indices(
                dataset, all_classes[done : done + b], all_index[done : done + b], k_shot
            )
            pred = predict(ep.support, ep.support_labels, ep.query, n_way)
            accs.append(episode_accuracy(pred, ep.query_labels))
            done += b
            bar.update(b)
    wall = time.perf_counter() - start
    per_episode = np.concatenate(accs) * 100.0
    mean, ci = mean_ci95(per_episode)
    return EvalResult(mean, ci, episodes, n_way, k_shot, wall, per_episode)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def show_progress(progress: bool = True) -> bool:
    """False when ``progress`` is False or ``$TQDM_DISABLE`` is set (stored runs set it)."""
    return bool(progress) and os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true")


def repo_root(start: Path | None = None) -> Path | None:
    """The book's root (the folder with ``_toc.yml``), searched upwards from ``start`` or cwd."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").exists() and (folder / "mlbook_utils").is_dir():
            return folder
    return None


def results_dir() -> Path:
    """Where records go: ``$MLBOOK_RESULTS``; else the book's ``results/`` for ``cpu`` and
    ``full`` runs; else (``quick`` runs, or outside the book) the user cache, so that CI's quick
    runs never touch the committed records."""
    value = os.environ.get(RESULTS_ENV)
    if value:
        return Path(value).expanduser()
    root = repo_root()
    if root is not None and config.scale() != "quick":
        return root / "results"
    from .data import cache_dir

    return cache_dir() / "results"


def make_record(
    method: str,
    dataset: str,
    n_way: int | None,
    k_shot: int | None,
    accuracy: float,
    ci95: float,
    episodes: int,
    wall_s: float,
    **extra,
) -> dict:
    """A record in the book's one format (scale, device, backend and date are filled in)."""
    rec = {
        "method": method,
        "dataset": dataset,
        "n_way": n_way,
        "k_shot": k_shot,
        "accuracy": round(float(accuracy), 3),
        "ci95": round(float(ci95), 3),
        "episodes": int(episodes),
        "scale": config.scale(),
        "device": config.device(),
        "backend": config.backend(),
        "wall_s": round(float(wall_s), 2),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    rec.update(extra)
    return rec


def append_record(chapter: str, record: dict) -> Path:
    """Append ``record`` as one JSON line to ``<results_dir>/<chapter>.jsonl``; return the path."""
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        raise ValueError(f"record lacks the fields {missing}")
    path = results_dir() / f"{chapter}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=False) + "\n")
    return path


def record_result(
    chapter: str, method: str, dataset: str, result: EvalResult, **extra
) -> dict:
    """Make the record for an :class:`EvalResult` and append it; return the record."""
    rec = make_record(
        method, dataset, result.n_way, result.k_shot, result.accuracy, result.ci95,
        result.episodes, result.wall_s, **extra,
    )
    append_record(chapter, rec)
    return rec


def read_records(chapter: str | None = None, folder: Path | None = None) -> list[dict]:
    """All records of one chapter (or of every chapter) from ``folder`` (default: results_dir)."""
    folder = folder or results_dir()
    files = [folder / f"{chapter}.jsonl"] if chapter else sorted(folder.glob("*.jsonl"))
    out = []
    for f in files:
        if f.exists():
            out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out
