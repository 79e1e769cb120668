"""Accuracy over many test episodes, with a 95% confidence interval, and result records.

Every chapter, and the book's reproduction table, use one record format, appended as a JSON line
to ``results/<chapter>.jsonl``::

    method, dataset, n_way, k_shot, metric, value, ci95, episodes, scale, device, backend,
    wall_s, date

``metric`` names what ``value`` measures: ``"accuracy"`` (in %, as every classification record),
``"final_loss"`` (chapter 1.3), and later ``"mse"``, ``"bit_error"``, ``"success_rate"``...
``ci95`` is the half-width of the 95% confidence interval of ``value``, in its units; it is
``null`` when there is none (an evaluation over a single episode). Extra fields (training
episodes per second, say) follow these, in the order they were given.

Records are strict JSON: numpy scalars and arrays are written as plain numbers and lists, and a
non-finite float (NaN, inf), which JSON cannot hold, is written as ``null``. Records in the older
form (an ``accuracy`` field instead of ``metric`` and ``value``) are read as the new form by
:func:`read_records`; ``scripts/migrate_records.py`` rewrites files in place.

:func:`evaluate` refuses what cannot be scored: a batch size, episode or query count that is not
a positive integer, predictions of the wrong shape or width, labels outside 0..n_way-1 or not
integers, and a model whose scores are NaN or infinite (:class:`DivergedError`), which would
otherwise score exactly chance.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import config
from .data import FewShotDataset
from .episodes import check_int, check_request, episode_from_indices, sample_indices

RESULTS_ENV = "MLBOOK_RESULTS"
RECORD_FIELDS = (
    "method", "dataset", "n_way", "k_shot", "metric", "value", "ci95", "episodes",
    "scale", "device", "backend", "wall_s", "date",
)


class DivergedError(ValueError):
    """A model's scores are NaN or infinite: it has diverged, and has no accuracy to report."""


def mean_ci95(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (normal approximation)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values")
    if values.size == 1:
        return float(values[0]), float("nan")
    return float(values.mean()), float(1.96 * values.std(ddof=1) / np.sqrt(values.size))


#: Student's t quantile 0.975 for 1 to 30 degrees of freedom (beyond them, 1.96 is within 4 %).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def paired_difference(a, b) -> tuple[float, float, int]:
    """The mean of ``a - b`` over pairs (the same seed, or the same test task, in both arms),
    the half-width of its 95 % confidence interval, and the number of pairs. With few pairs
    (three seeds) the interval uses Student's t, not 1.96: 4.30 standard errors for 3 pairs."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = d.size
    if n < 2:
        raise ValueError("a paired difference needs at least two pairs")
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return float(d.mean()), float(t * d.std(ddof=1) / np.sqrt(n)), int(n)


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
        ci = f"± {self.ci95:.2f} %" if math.isfinite(self.ci95) else "% (no interval)"
        return (
            f"{self.n_way}-way {self.k_shot}-shot: {self.accuracy:.2f} {ci} "
            f"over {self.episodes} episodes (chance {100 / self.n_way:.1f} %)"
        )


Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


def episode_accuracy(
    predictions: np.ndarray, query_labels: np.ndarray, n_way: int | None = None
) -> np.ndarray:
    """Fraction correct per episode. ``predictions`` are labels, or scores over the n_way classes
    (last axis), in which case the arg-max is taken over the classes, never over the queries.

    Raises ValueError for predictions that cannot be labels: scores whose last axis is not
    ``n_way`` wide, labels outside 0..n_way-1 or not integers, a shape that does not match the
    queries; and :class:`DivergedError` for NaN or infinite scores (whose arg-max is class 0,
    which would score exactly chance)."""
    query_labels = np.asarray(query_labels)
    predictions = np.asarray(predictions)
    if predictions.dtype.kind in "bUSOMmc":  # bool, text, objects, dates, complex
        raise ValueError(
            f"predictions must be integer labels or float scores, got dtype {predictions.dtype}"
        )
    if predictions.dtype.kind not in "iuf":  # e.g. bfloat16 from JAX (ml_dtypes)
        predictions = predictions.astype(np.float64)
    bad = _nonfinite_episodes(predictions, query_labels.ndim)
    if bad.any():
        raise DivergedError(
            f"the model has diverged: its predictions are NaN or infinite in {int(bad.sum())} "
            f"of {bad.size} episodes, so there is no accuracy to report (NaN scores would "
            "otherwise count as class 0, i.e. exactly chance)"
        )
    if predictions.ndim == query_labels.ndim + 1:
        if n_way is not None and predictions.shape[-1] != n_way:
            raise ValueError(
                f"scores must have n_way={n_way} columns (one per class, last axis), but they "
                f"have shape {predictions.shape}"
            )
        predictions = predictions.argmax(axis=-1)
    elif predictions.shape == query_labels.shape:
        if np.issubdtype(predictions.dtype, np.floating) and (
            predictions != np.round(predictions)
        ).any():
            raise ValueError(
                "predicted labels must be integers 0..n_way-1, but some are fractional "
                f"(e.g. {predictions[predictions != np.round(predictions)].flat[0]!r}); return "
                "either labels or a score per class (last axis n_way wide)"
            )
        top = n_way if n_way is not None else np.inf
        if predictions.size and (predictions.min() < 0 or predictions.max() >= top):
            raise ValueError(
                f"predicted labels must lie in 0..{'n_way-1' if n_way is None else n_way - 1}, "
                f"but they range from {predictions.min()} to {predictions.max()}"
            )
    if predictions.shape != query_labels.shape:
        raise ValueError(
            f"predictions have shape {predictions.shape}, query labels {query_labels.shape}: "
            "return a label per query, or a score per query and class (last axis n_way wide)"
        )
    return (predictions == query_labels).mean(axis=-1)


def _nonfinite_episodes(predictions: np.ndarray, label_ndim: int) -> np.ndarray:
    """Per episode (the first ``label_ndim - 1`` axes), whether any prediction is not finite."""
    if not np.issubdtype(predictions.dtype, np.floating):
        return np.zeros(predictions.shape[: max(label_ndim - 1, 0)], dtype=bool)
    finite = np.isfinite(predictions)
    axes = tuple(range(max(label_ndim - 1, 0), predictions.ndim))
    return ~finite.all(axis=axes) if axes else ~finite


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

    Before anything is predicted, counts that are not positive integers (``episodes``, ``batch``,
    ``n_query``, ``n_way``, ``k_shot``) raise TypeError or ValueError. Predictions that cannot be
    labels raise ValueError (see :func:`episode_accuracy`), and NaN or infinite scores raise
    :class:`DivergedError`, naming how many episodes of the batch had them: a diverged model has
    no accuracy (its NaN scores would otherwise come out as exactly chance).
    """
    from tqdm.auto import tqdm

    # Every argument is checked before any work: a bad one used to loop forever (batch <= 0) or
    # record nan ± nan (episodes=0, n_query=0).
    episodes = check_int("episodes", episodes, 1)
    batch = check_int("batch", batch, 1)
    n_query = check_int("n_query", n_query, 1)
    n_way, k_shot, n_query = check_request(dataset, n_way, k_shot, n_query)
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
            try:
                accs.append(episode_accuracy(pred, ep.query_labels, n_way))
            except DivergedError as exc:
                raise DivergedError(
                    f"{exc} (in episodes {done + 1}-{done + b} of {episodes}; evaluation stopped)"
                ) from None
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
    value: float,
    ci95: float | None,
    episodes: int,
    wall_s: float,
    *,
    metric: str = "accuracy",
    **extra,
) -> dict:
    """A record in the book's one format (scale, device, backend and date are filled in).

    ``value`` is the figure that ``metric`` names (accuracy in %, by default), ``ci95`` its 95%
    confidence half-width, or NaN/None when there is none (one episode): it is stored as
    ``null``. Numpy scalars and arrays in any field become plain JSON values, and non-finite
    floats become ``None``, so the record is exactly what :func:`read_records` gives back."""
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"metric must be a non-empty string such as 'accuracy', got {metric!r}")
    if "accuracy" in extra:
        raise ValueError(
            "records no longer have an 'accuracy' field: pass the figure as `value` and what it "
            "is as `metric` (default 'accuracy')"
        )
    rec = {
        "method": method,
        "dataset": dataset,
        "n_way": n_way,
        "k_shot": k_shot,
        "metric": metric,
        "value": _rounded(value, 3),
        "ci95": _rounded(ci95, 3),
        "episodes": int(episodes),
        "scale": config.scale(),
        "device": config.device(),
        "backend": config.backend(),
        "wall_s": _rounded(wall_s, 2),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    rec.update(extra)
    return to_json_value(rec)


def _rounded(value, digits: int) -> float | None:
    """``value`` as a float rounded to ``digits``; None for None, NaN or inf (JSON has none)."""
    if value is None:
        return None
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def to_json_value(obj):
    """``obj`` with numpy scalars and arrays made plain Python, non-finite floats made None, and
    tuples made lists: what ``json.loads(json.dumps(obj))`` gives back, in strict JSON."""
    if isinstance(obj, dict):
        return {str(k): to_json_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_value(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_json_value(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
        if isinstance(obj, bytes):
            obj = obj.decode("utf-8", errors="replace")
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def append_record(chapter: str, record: dict) -> Path:
    """Append ``record`` as one JSON line to ``<results_dir>/<chapter>.jsonl``; return the path.

    The record must have every field of :data:`RECORD_FIELDS` (``metric`` and ``value`` among
    them) and no ``accuracy`` field (the old form). Numpy values are written as plain JSON and
    non-finite floats as ``null``; a value that JSON cannot hold raises TypeError before anything
    is written."""
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        raise ValueError(
            f"record lacks the fields {missing} (a record has {', '.join(RECORD_FIELDS)}; "
            "make it with make_record)"
        )
    if "accuracy" in record:
        raise ValueError(
            "record has an 'accuracy' field, which is the old form: the figure goes in 'value' "
            "and what it is in 'metric'"
        )
    if not isinstance(record["metric"], str) or not record["metric"]:
        raise ValueError(f"record's metric must be a non-empty string, got {record['metric']!r}")
    try:
        line = json.dumps(to_json_value(record), sort_keys=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"record cannot be written as JSON: {exc}") from exc
    path = results_dir() / f"{chapter}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    return path


def record_result(
    chapter: str, method: str, dataset: str, result: EvalResult, **extra
) -> dict:
    """Make the record (metric "accuracy", in %) for an :class:`EvalResult` and append it;
    return the record."""
    if extra.pop("metric", "accuracy") != "accuracy":
        raise ValueError(
            "record_result records an EvalResult's accuracy; make a record of another metric "
            "with make_record(..., metric=...) and append_record"
        )
    rec = make_record(
        method, dataset, result.n_way, result.k_shot, result.accuracy, result.ci95,
        result.episodes, result.wall_s, metric="accuracy", **extra,
    )
    append_record(chapter, rec)
    return rec


def upgrade_record(record: dict) -> dict:
    """A record in the current form: an old record's ``accuracy`` becomes ``value``, with
    ``metric`` "accuracy" unless the record names its metric (chapter 1.3's "final_loss"); the
    fields of :data:`RECORD_FIELDS` come first, in that order, then the extras in their order.
    A non-finite float (Python's json reads ``NaN``) becomes None. A record already in the current
    form comes back equal (so upgrading twice changes nothing)."""
    rec = to_json_value(dict(record))
    if "accuracy" in rec:
        if "value" in rec:
            raise ValueError(f"record has both 'accuracy' and 'value': {record}")
        rec["value"] = rec.pop("accuracy")
        rec.setdefault("metric", "accuracy")
    head = {f: rec.pop(f) for f in RECORD_FIELDS if f in rec}
    return {**head, **rec}


def read_records(chapter: str | None = None, folder: Path | None = None) -> list[dict]:
    """All records of one chapter (or of every chapter) from ``folder`` (default: results_dir),
    in the current form (see :func:`upgrade_record`)."""
    folder = folder or results_dir()
    files = [folder / f"{chapter}.jsonl"] if chapter else sorted(folder.glob("*.jsonl"))
    out = []
    for f in files:
        if f.exists():
            lines = f.read_text(encoding="utf-8").splitlines()
            out += [upgrade_record(json.loads(line)) for line in lines if line.strip()]
    return out
