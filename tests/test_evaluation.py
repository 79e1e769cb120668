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
    assert list(rec)[len(evaluation.RECORD_FIELDS):] == ["train_eps"]
    assert rec["metric"] == "accuracy" and rec["value"] == 97.123 and "accuracy" not in rec
    assert rec["scale"] == "cpu" and rec["train_eps"] == 33.3
    line = (tmp_path / "01_9_test.jsonl").read_text().splitlines()
    assert json.loads(line[0]) == rec
    assert evaluation.read_records("01_9_test") == [rec]
    with pytest.raises(ValueError, match="lacks"):
        evaluation.append_record("01_9_test", {"method": "x"})


def test_records_name_their_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    # The 5th positional argument is the value; the metric is a keyword, "accuracy" by default.
    loss = evaluation.make_record("SGD optimizer", "quadratic-10d", None, None, 0.9473, 0.1, 500,
                                  2.0, metric="final_loss", steps=100)
    assert loss["metric"] == "final_loss" and loss["value"] == 0.947
    assert list(loss) == [*evaluation.RECORD_FIELDS, "steps"]
    acc = evaluation.make_record("pixel NN", "omniglot", 5, 1, 43.4771, 0.56, 1000, 0.6)
    assert acc["metric"] == "accuracy" and acc["value"] == 43.477
    # A record without metric or value, or in the old form, is refused.
    for field in ("metric", "value"):
        broken = {k: v for k, v in acc.items() if k != field}
        with pytest.raises(ValueError, match=field):
            evaluation.append_record("01_9_test", broken)
    old = {**{k: v for k, v in acc.items() if k not in ("metric", "value")}, "accuracy": 43.4}
    with pytest.raises(ValueError):
        evaluation.append_record("01_9_test", old)
    assert not (tmp_path / "01_9_test.jsonl").exists(), "nothing written for a refused record"


def test_old_form_records_are_read_in_the_new_form(tmp_path):
    old = [{"method": "m", "dataset": "d", "n_way": 5, "k_shot": 1, "accuracy": 90.0,
            "ci95": 0.5, "episodes": 10, "scale": "cpu", "device": "CPU", "backend": "tf",
            "wall_s": 1.0, "date": "2026-01-01T00:00:00+00:00", "runner": "x"},
           {"method": "SGD", "dataset": "q", "n_way": None, "k_shot": None, "accuracy": 0.9,
            "ci95": 0.1, "episodes": 10, "scale": "cpu", "device": "CPU", "backend": "tf",
            "wall_s": 1.0, "date": "2026-01-01T00:00:00+00:00", "runner": "r",
            "metric": "final_loss"}]
    (tmp_path / "x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    a, b = evaluation.read_records("x", folder=tmp_path)
    assert (a["metric"], a["value"], b["metric"], b["value"]) == ("accuracy", 90.0,
                                                                 "final_loss", 0.9)
    assert list(a) == [*evaluation.RECORD_FIELDS, "runner"] == list(b)
    assert evaluation.upgrade_record(a) == a, "upgrading twice changes nothing"


def _strict_json(line):
    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_committed_results_are_in_the_new_form():
    root = evaluation.repo_root(evaluation.Path(__file__).resolve().parent)
    files = sorted((root / "results").glob("*.jsonl"))
    assert files
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), start=1):
            rec = _strict_json(line)
            where = f"{f.name}:{n}"
            fields = list(evaluation.RECORD_FIELDS)
            assert list(rec)[: len(fields)] == fields, where
            assert "accuracy" not in rec, where
            assert isinstance(rec["metric"], str) and rec["metric"], where
            assert rec["value"] is None or isinstance(rec["value"], (int, float)), where


# ---------------------------------------------------------------------------- bad input


def _never_called(*args):
    raise AssertionError("predict was called before the arguments were checked")


@pytest.mark.parametrize("kwargs,message", [
    (dict(batch=0), "batch must be a positive integer"),
    (dict(batch=-3), "batch must be a positive integer"),
    (dict(episodes=0), "episodes must be a positive integer"),
    (dict(n_query=0), "n_query must be a positive integer"),
    (dict(batch=2.0), "batch must be an integer"),
])
def test_bad_counts_are_refused_before_any_prediction(kwargs, message):
    # batch <= 0 used to loop for ever on empty batches; episodes=0 and n_query=0 gave a numpy
    # error or "nan ± nan". Now nothing is predicted: predict raises if it is ever called.
    args = dict(n_query=2, episodes=10, progress=False) | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        evaluation.evaluate(_never_called, toy(), 5, 1, **args)


def test_nan_scores_are_reported_as_divergence_not_chance():
    def diverged(support, support_labels, query, n_way):
        return np.full((*query.shape[:2], n_way), np.nan, dtype=np.float32)

    with pytest.raises(evaluation.DivergedError, match="diverged.* 7 of 7 episodes") as err:
        evaluation.evaluate(diverged, toy(), 5, 1, 3, 20, batch=7, progress=False)
    assert isinstance(err.value, ValueError)

    def partly(support, support_labels, query, n_way):
        scores = np.zeros((*query.shape[:2], n_way))
        scores[1, 0, 2] = np.inf
        return scores

    with pytest.raises(evaluation.DivergedError, match="in 1 of 4 episodes"):
        evaluation.evaluate(partly, toy(), 5, 1, 3, 4, progress=False)


@pytest.mark.parametrize("bad,message", [
    (lambda q, n: np.zeros((*q.shape[:2], n + 1)), "n_way=5 columns"),
    (lambda q, n: np.full(q.shape[:2], n), r"must lie in 0\.\.4"),
    (lambda q, n: np.full(q.shape[:2], -1), r"must lie in 0\.\.4"),
    (lambda q, n: np.full(q.shape[:2], 0.5), "fractional"),
    (lambda q, n: np.zeros(q.shape[:2], dtype=bool), "integer labels or float scores"),
])
def test_predictions_that_cannot_be_labels_are_refused(bad, message):
    def predict(support, support_labels, query, n_way):
        return bad(query, n_way)

    with pytest.raises(ValueError, match=message):
        evaluation.evaluate(predict, toy(), 5, 1, 3, 10, progress=False)


def test_integer_valued_float_labels_are_still_accepted():
    def predict(support, support_labels, query, n_way):
        return np.repeat(np.arange(n_way, dtype=np.float64), query.shape[1] // n_way)[None] \
            * np.ones((query.shape[0], 1))

    assert evaluation.evaluate(predict, toy(), 5, 1, 3, 4, progress=False).accuracy == 100.0


def test_numpy_values_and_non_finite_floats_are_written_as_json(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    rec = evaluation.make_record(
        "m", "d", np.int64(5), np.int32(1), np.float32(97.5), np.float64(np.nan), np.int64(1),
        np.float64(0.5), train_episodes=np.int64(700), flag=np.bool_(True),
        curve=np.array([1.0, np.inf]), lr=np.float32(0.25))
    assert rec["ci95"] is None and rec["curve"] == [1.0, None] and rec["flag"] is True
    path = evaluation.append_record("01_9_test", rec)
    (line,) = path.read_text().splitlines()
    assert _strict_json(line) == rec == evaluation.read_records("01_9_test")[0]
    assert type(rec["n_way"]) is int and type(rec["train_episodes"]) is int
    # A hand-made record with numpy values and NaN is converted in the same way.
    hand = {**rec, "value": np.float64(50.0), "ci95": float("nan"), "extra": np.int16(3)}
    evaluation.append_record("01_9_test", hand)
    back = evaluation.read_records("01_9_test")[1]
    assert back["value"] == 50.0 and back["ci95"] is None and back["extra"] == 3
    with pytest.raises(TypeError, match="JSON"):
        evaluation.append_record("01_9_test", {**rec, "bad": object()})
    assert len(path.read_text().splitlines()) == 2, "a refused record writes nothing"


def test_a_one_episode_evaluation_records_a_null_interval(tmp_path, monkeypatch):
    from mlbook_utils.baselines import nearest_neighbour

    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    res = evaluation.evaluate(nearest_neighbour, toy(), 5, 1, 2, 1, progress=False)
    assert math.isnan(res.ci95) and "no interval" in str(res)
    rec = evaluation.record_result("01_9_test", "nn", "toy", res)
    assert rec["ci95"] is None
    (line,) = (tmp_path / "01_9_test.jsonl").read_text().splitlines()
    assert _strict_json(line)["ci95"] is None


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


def test_bfloat16_scores_are_scored_like_floats():
    ml_dtypes = pytest.importorskip("ml_dtypes")  # what JAX's mixed precision returns
    scores = np.eye(3, dtype=ml_dtypes.bfloat16)[None]
    assert evaluation.episode_accuracy(scores, np.array([[0, 1, 2]]), 3).tolist() == [1.0]


def _migrate_script():
    import importlib.util

    root = evaluation.repo_root(evaluation.Path(__file__).resolve().parent)
    spec = importlib.util.spec_from_file_location("migrate_records",
                                                  root / "scripts" / "migrate_records.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migration_script_is_idempotent_and_keeps_every_field(tmp_path):
    migrate = _migrate_script()
    old = [{"method": "m", "dataset": "d", "n_way": 5, "k_shot": 1, "accuracy": 90.0,
            "ci95": float("nan"), "episodes": 1, "scale": "cpu", "device": "CPU",
            "backend": "tf", "wall_s": 1.0, "date": "2026-01-01T00:00:00+00:00", "zeta": 1,
            "alpha": [1, 2]},
           {"method": "SGD", "dataset": "q", "n_way": None, "k_shot": None, "accuracy": 0.9,
            "ci95": 0.1, "episodes": 10, "scale": "cpu", "device": "CPU", "backend": "tf",
            "wall_s": 1.0, "date": "2026-01-01T00:00:00+00:00", "runner": "r",
            "metric": "final_loss", "steps": 100}]
    path = tmp_path / "01_9_x.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in old))  # NaN, as the old code wrote
    assert migrate.main([str(tmp_path), "--check"]) == 1
    assert migrate.main([str(tmp_path)]) == 0
    first = path.read_text()
    a, b = (_strict_json(line) for line in first.splitlines())
    assert list(a) == [*evaluation.RECORD_FIELDS, "zeta", "alpha"]
    assert (a["metric"], a["value"], a["ci95"], a["alpha"]) == ("accuracy", 90.0, None, [1, 2])
    assert list(b) == [*evaluation.RECORD_FIELDS, "runner", "steps"]
    assert (b["metric"], b["value"]) == ("final_loss", 0.9)
    assert not list(tmp_path.glob(".*.part")), "no temporary file is left"
    stamp = path.stat().st_mtime_ns
    assert migrate.main([str(tmp_path), "--check"]) == 0
    assert migrate.main([str(tmp_path)]) == 0
    assert path.read_text() == first and path.stat().st_mtime_ns == stamp, "second run: no-op"
