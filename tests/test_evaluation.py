import json
import math

import numpy as np
import pytest

from mlbook_utils import evaluation
from mlbook_utils.data import FewShotDataset


def toy(n_classes=20, per_class=10, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per_class)
    centres = rng.normal(size=(n_classes, 8)) * 5
    x = (centres[y] + noise * rng.normal(size=(len(y), 8))).astype(np.float32)
    return FewShotDataset(x, y, [str(i) for i in range(n_classes)], "toy")


def test_mean_ci95_matches_the_formula():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    mean, ci = evaluation.mean_ci95(values)
    assert mean == 2.5
    assert ci == pytest.approx(1.96 * values.std(ddof=1) / 2)
    assert math.isnan(evaluation.mean_ci95([5.0])[1])
    with pytest.raises(ValueError):
        evaluation.mean_ci95([])


def test_argmax_is_over_the_classes_not_the_queries():
    # 2 queries, 3 classes. Arg-max over the queries (axis 0) would give [0, 1, 1].
    scores = np.array([[[0.9, 0.0, 0.1], [0.5, 0.8, 0.7]]])
    labels = np.array([[0, 1]])
    assert evaluation.episode_accuracy(scores, labels).tolist() == [1.0]
    with pytest.raises(ValueError, match="shape"):
        evaluation.episode_accuracy(np.zeros((1, 3)), labels)


def test_oracle_scores_100_and_random_guessing_scores_chance():
    ds = toy()
    from mlbook_utils.baselines import nearest_neighbour

    perfect = evaluation.evaluate(nearest_neighbour, ds, 5, 1, 5, 200, progress=False)
    assert perfect.accuracy == 100.0 and perfect.ci95 == 0.0

    rng = np.random.default_rng(0)

    def guess(support, support_labels, query, n_way):
        return rng.integers(0, n_way, size=query.shape[:2])

    chance = evaluation.evaluate(guess, ds, 5, 1, 5, 2000, progress=False)
    assert abs(chance.accuracy - 20.0) < 3 * chance.ci95
    assert chance.episodes == 2000 and len(chance.per_episode) == 2000


def test_same_seed_same_test_episodes():
    ds = toy(noise=4.0)
    from mlbook_utils.baselines import nearest_neighbour

    a = evaluation.evaluate(nearest_neighbour, ds, 5, 1, 3, 100, seed=5, progress=False)
    b = evaluation.evaluate(nearest_neighbour, ds, 5, 1, 3, 100, seed=5, batch=7, progress=False)
    np.testing.assert_array_equal(a.per_episode, b.per_episode)


def test_records_have_the_shared_format(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    monkeypatch.setenv("MLBOOK_SCALE", "cpu")
    res = evaluation.EvalResult(97.123456, 0.4567, 1000, 5, 1, 12.345, np.zeros(3))
    rec = evaluation.record_result("01_9_test", "protonet", "omniglot", res, train_eps=33.3)
    assert list(rec)[: len(evaluation.RECORD_FIELDS)] == list(evaluation.RECORD_FIELDS)
    assert rec["accuracy"] == 97.123 and rec["scale"] == "cpu" and rec["train_eps"] == 33.3
    line = (tmp_path / "01_9_test.jsonl").read_text().splitlines()
    assert json.loads(line[0]) == rec
    assert evaluation.read_records("01_9_test") == [rec]
    with pytest.raises(ValueError, match="lacks"):
        evaluation.append_record("01_9_test", {"method": "x"})


def test_quick_runs_never_write_into_the_books_results(tmp_path, monkeypatch):
    root = tmp_path / "book"
    (root / "mlbook_utils").mkdir(parents=True)
    (root / "_toc.yml").write_text("root: intro\n")
    (root / "chapters").mkdir()
    monkeypatch.chdir(root / "chapters")
    monkeypatch.delenv("MLBOOK_RESULTS", raising=False)
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLBOOK_SCALE", "cpu")
    assert evaluation.results_dir() == root / "results"
    monkeypatch.setenv("MLBOOK_SCALE", "quick")
    assert evaluation.results_dir() == tmp_path / "cache" / "results"
