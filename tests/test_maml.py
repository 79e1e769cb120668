"""Chapter 6.1's methods end to end at tiny size, and the chapter's exercise checker."""

import json

import numpy as np
import pytest

from mlbook_utils import registry
from mlbook_utils.exercises import ch06_1


def _records(tmp_path):
    from mlbook_utils import maml

    return [json.loads(line) for line in (tmp_path / f"{maml.CHAPTER}.jsonl").read_text()
            .splitlines()]


@pytest.mark.plumbing  # the experiment's bookkeeping; its steps are tested on every backend
@pytest.mark.parametrize("name", ["caml", "adml"])
def test_an_omniglot_method_end_to_end(name, data_dir, tmp_path, monkeypatch):
    pytest.importorskip("keras")
    from mlbook_utils import maml

    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    # ADML also keeps a copy at once (compare_s=0), which is then tested and attacked.
    settings = registry.settings_at(maml.RUNNER_METHODS[name][0], "quick", test_episodes=4,
                                    meta_steps=3, filters=8,
                                    compare_s=0.0 if name == "adml" else None)
    out = maml.omniglot_experiment(settings, runner="test", progress=False)
    records = _records(tmp_path)
    assert records == out.records
    clean = [r for r in records if r["metric"] == "accuracy"]
    assert clean and all((r["n_way"], r["k_shot"], r["episodes"]) == (5, 1, 4) for r in clean)
    # The copy kept at 0 s is the weights after the first (compiling) meta-step.
    assert all(r["train_meta_steps"] == (1 if "after" in r["method"] else 3)
               and 0 <= r["value"] <= 100 for r in records)
    # A method with ``attack`` (MAML, ADML) also measures the accuracy on FGSM queries, and
    # names that metric; the other variants do not.
    adv = [r for r in records if r["metric"] == "adversarial_accuracy"]
    assert bool(adv) == settings["attack"] == (name == "adml")
    assert all(r["epsilon"] == 0.1 for r in adv)
    if name == "caml":
        assert all(r["context_params"] == 100 for r in records)
    else:
        assert {r["method"] for r in records} == {"ADML", "ADML after 0 s"}
        assert [r["snapshot_s"] for r in clean if "after" in r["method"]] == [0.0]


@pytest.mark.plumbing  # the experiment's bookkeeping; its steps are tested on every backend
def test_the_sinusoid_experiment_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("keras")
    from mlbook_utils import maml

    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    settings = registry.settings_at(maml.SINUSOID_SETTINGS, "quick", test_tasks=20,
                                    meta_steps=5, pretrain_steps=5, time_budget_s=None)
    maml.sinusoid_experiment(settings, progress=False)
    records = _records(tmp_path)
    assert {r["method"] for r in records} == {"MAML (sinusoid)", "pretrained (sinusoid)",
                                              "random init (sinusoid)"}
    assert all(r["metric"] == "mse" and r["value"] >= 0 and r["episodes"] == 20
               for r in records)
    assert sorted({r["inner_steps_at_test"] for r in records}) == [0, 1, 10]


def test_the_runner_methods_have_the_same_keys_at_every_scale():
    from mlbook_utils import maml

    for name, (settings, _, _) in maml.RUNNER_METHODS.items():
        keys = set(settings["quick"])
        assert all(set(settings[s]) == keys for s in registry.SCALES), name
        assert {"time_budget_s"} <= keys, name


def test_the_meta_gradient_checker():
    assert ch06_1.check_meta_gradient(ch06_1.reference_meta_gradient).passed
    fb = ch06_1.check_meta_gradient(ch06_1._first_order)
    assert not fb.passed and "first-order" in fb.problem
    fb = ch06_1.check_meta_gradient(ch06_1._no_adaptation)
    assert not fb.passed and "no inner step" in fb.problem
    fb = ch06_1.check_meta_gradient(lambda *a: None)
    assert not fb.passed and "None" in fb.problem
    fb = ch06_1.check_meta_gradient(lambda t, s, q, lr: np.zeros(len(t) + 1))
    assert not fb.passed and "shape" in fb.problem


def test_the_reference_meta_gradient_matches_finite_differences():
    theta, support, query = ch06_1._case(3, 6, 5, 7)
    lr, eps = 0.2, 1e-6

    def loss(t):
        (xs, ys), (xq, yq) = support, query
        fast = t - lr * 2 / len(ys) * xs.T @ (xs @ t - ys)
        return np.mean((xq @ fast - yq) ** 2)

    fd = [(loss(theta + eps * e) - loss(theta - eps * e)) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(ch06_1.reference_meta_gradient(theta, support, query, lr), fd,
                               rtol=1e-5)
