"""The runner's methods for chapters 1.3, 1.4, 2.1 and 4.1: their settings are the chapters'
(read from the notebooks' code cells), each writes the chapter's records, and the training
functions they added a time budget to stop early."""

import ast
import json
from argparse import Namespace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mlbook_utils import runner_methods as rmeth

ROOT = Path(__file__).resolve().parents[1]
SCALES = ("quick", "cpu", "full")


# --------------------------------------------------------------------------------------------
# The chapters' constants, parsed from the notebooks' code cells
# --------------------------------------------------------------------------------------------


def _is_call(node, dotted: str) -> bool:
    return isinstance(node, ast.Call) and ast.unparse(node.func) == dotted


def _value(node):
    """A constant expression: literals, ``config.by_scale(...)`` -> {scale: value},
    ``dict(...)`` and dict displays; anything else raises ValueError."""
    if _is_call(node, "config.by_scale") or _is_call(node, "dict"):
        if node.args:
            raise ValueError("positional arguments")
        return {kw.arg: _value(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict):
        return {ast.literal_eval(k): _value(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


def chapter(stem: str) -> tuple[dict, str]:
    """``(constants, code)``: the top-level assignments of constant expressions in the code
    cells of ``chapters/<stem>.ipynb``, and the code itself."""
    nb = json.loads((ROOT / "chapters" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    consts, code = {}, []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        # IPython magics (``%pip ...``) are not Python: a ``pass`` at their indentation.
        src = "\n".join(line[: len(line) - len(line.lstrip())] + "pass"
                        if line.lstrip().startswith(("%", "!")) else line
                        for line in src.splitlines())
        code.append(src)
        for node in ast.parse(src).body:
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                pairs = [(target, node.value)]
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts))
                for t, v in pairs:
                    if isinstance(t, ast.Name):
                        try:
                            consts[t.id] = _value(v)
                        except ValueError:
                            pass
    return consts, "\n".join(code)


def test_relation_and_matching_settings_are_the_chapters():
    c, code = chapter(rmeth.CHAPTER_4_1)
    assert c["CHAPTER"] == rmeth.CHAPTER_4_1 and c["DATASET"] == "omniglot-vinyals-test"
    assert "CosineDecay(3e-3, decay_steps=EPISODES[name], alpha=0.1)" in code
    assert "test.subset(range(300))" in code and "seed=10 + i" in code
    for settings, name, seed in ((rmeth.RELATION_SETTINGS, "relation network", 10),
                                 (rmeth.MATCHING_SETTINGS, "matching network (FCE)", 11)):
        assert set(settings) == set(SCALES)
        for scale in SCALES:
            s = settings[scale]
            assert s["train_episodes"] == c["EPISODES"][name][scale], (name, scale)
            assert s["test_episodes"] == c["TEST_EPISODES"][scale], (name, scale)
            assert (s["train_way"], s["train_shot"], s["train_query"]) == (
                c["TRAIN_WAY"], c["TRAIN_SHOT"], c["TRAIN_QUERY"])
            assert [tuple(t) for t in s["test_settings"]] == [tuple(t) for t in c["SETTINGS"]]
            assert (s["learning_rate"], s["lr_alpha"], s["train_seed"]) == (3e-3, 0.1, seed)
            assert s["eval_classes"] == (300 if scale == "quick" else None)
    assert c["N_QUERY"] == 15
    assert ("rm.MatchingNetwork(mn_embedding, fce=True, steps=5, scale=10.0)" in code
            and rmeth.MATCHING_SETTINGS["cpu"]["fce_steps"] == 5
            and rmeth.MATCHING_SETTINGS["cpu"]["cosine_scale"] == 10.0)
    assert "rm.RelationNetwork(rn_embedding, filters=64, hidden=8, combine=\"mean\")" in code
    assert "rm.relation_embedding(filters=64, pooled_blocks=3)" in code


def test_siamese_settings_are_the_chapters():
    c, code = chapter(rmeth.CHAPTER_2_1)
    assert c["CHAPTER"] == rmeth.CHAPTER_2_1
    for scale in SCALES:
        s = rmeth.SIAMESE_SETTINGS[scale]
        assert s["steps"] == {"faces": c["FACE_STEPS"][scale], "audio": c["AUDIO_STEPS"][scale],
                              "omniglot": c["OMNI_STEPS"][scale]}, scale
        assert s["budget_s"] == c["BUDGET_S"][scale], scale
        assert s["test_episodes"] == c["EPISODES"][scale], scale
        assert s["batch"] == c["BATCH"]
        assert s["faces"]["batch"] == s["audio"]["batch"] == c["BATCH"]
        assert s["omniglot"]["batch"] == 2 * c["BATCH"]
    assert "hist_o = siamese.train(omni_model, omni_train, OMNI_STEPS, 2 * BATCH, seed=3" in code
    for seed in (1, 2, 3):
        assert f"config.seed_everything({seed})" in code
    assert "n_query=5, episodes=EPISODES" in code and "20, 1, n_query=15" in code


def test_lstm_meta_learner_settings_are_the_chapters():
    c, code = chapter(rmeth.CHAPTER_1_4)
    assert c["CHAPTER"] == rmeth.CHAPTER_1_4 and c["DATASET"] == "omniglot-vinyals-test"
    for scale in SCALES:
        s = rmeth.LSTM_META_LEARNER_SETTINGS[scale]
        assert s["inner_steps"] == c["INNER_STEPS"][scale], scale
        assert tuple(s["k_shots"]) == tuple(c["K_SHOTS"][scale]), scale
        assert s["train_episodes"] == {k: v[scale] for k, v in c["TRAIN_EPISODES"].items()}
        assert s["test_episodes"] == c["TEST_EPISODES"][scale], scale
        assert (s["n_way"], s["n_query"]) == (c["N_WAY"], c["N_QUERY"])
        assert s["meta_lr"] == c["META_LR"] and tuple(s["input_bias"]) == c["INPUT_BIAS"]
    assert ("lml.LSTMMetaLearner(n_way=N_WAY, filters=16, blocks=4, hidden=20," in code
            and (s["filters"], s["blocks"], s["hidden"]) == (16, 4, 20))


def test_learned_optimizer_settings_are_the_chapters():
    c, code = chapter(rmeth.CHAPTER_1_3)
    assert c["CHAPTER"] == rmeth.CHAPTER_1_3
    for scale in SCALES:
        s = rmeth.LEARNED_OPTIMIZER_SETTINGS[scale]
        assert s["n_tune"] == c["N_TUNE"][scale] and s["n_test"] == c["N_TEST"][scale], scale
        assert s["meta_iters"] == c["META_ITERS"][scale], scale
        assert s["meta_batch"] == c["META_BATCH"][scale], scale
        assert s["steps"] == c["STEPS"] and s["unroll"] == c["UNROLL"]
        assert tuple(s["lr_grid"]) == (-4, 0, 13)
    assert "LR_GRID = np.logspace(-4, 0, 13)" in code
    assert "lo.init_lstm_optimizer(hidden=20, layers=2, seed=0)" in code
    assert "unroll_steps=UNROLL, meta_lr=1e-3, seed=1)" in code
    assert "np.random.default_rng(101), N_TUNE" in code
    assert "np.random.default_rng(2024), N_TEST" in code


def test_registry_and_test_seed():
    from mlbook_utils import reproduce

    assert rmeth.TEST_SEED == reproduce.TEST_SEED
    assert tuple(rmeth.SETTINGS_4) == tuple(reproduce.SETTINGS_4)
    assert set(rmeth.METHODS_INFO) == {"relation", "matching", "siamese", "lstm-meta-learner",
                                       "learned-optimizer"}
    for name, (chapter_id, describe, run) in rmeth.METHODS_INFO.items():
        assert (ROOT / "chapters" / f"{chapter_id}.ipynb").exists(), name
        assert describe and callable(run)


# --------------------------------------------------------------------------------------------
# The time budgets added to the library's training functions
# --------------------------------------------------------------------------------------------


def test_lstm_meta_learner_fit_stops_at_its_time_budget():
    pytest.importorskip("keras")
    import time

    from mlbook_utils import lstm_meta_learner as lml

    rng = np.random.default_rng(0)

    def sample(batch):
        time.sleep(0.2)
        return SimpleNamespace(
            support=rng.uniform(size=(batch, 3, 28, 28, 1)).astype("float32"),
            support_labels=np.tile(np.arange(3), (batch, 1)),
            query=rng.uniform(size=(batch, 3, 28, 28, 1)).astype("float32"),
            query_labels=np.tile(np.arange(3), (batch, 1)))

    model = lml.LSTMMetaLearner(n_way=3, filters=4, blocks=2, hidden=4, inner_steps=1)
    model.fit(sample, 50, progress=False, time_budget_s=0.0)
    assert model.train_episodes == 0 and model.history["loss"] == []
    model.fit(sample, 50, progress=False, time_budget_s=0.3)  # the first step alone is longer
    assert 1 <= model.train_episodes < 50
    assert len(model.history["loss"]) == model.train_episodes
    before = model.train_episodes
    model.fit(sample, 2, progress=False)  # no budget: every episode
    assert model.train_episodes == before + 2


def test_meta_train_stops_at_its_time_budget():
    pytest.importorskip("keras")
    from mlbook_utils import learned_optimizer as lo

    quad = lo.Quadratic(dim=3)
    phi = lo.init_lstm_optimizer(hidden=4, layers=1, seed=0)
    _, hist = lo.meta_train(quad, phi, iterations=5, batch=2, steps=4, unroll_steps=2,
                            progress=False, time_budget_s=0.0)
    assert hist["iterations"] == 0 and len(hist["meta_loss"]) == 0
    _, hist = lo.meta_train(quad, phi, iterations=10**6, batch=2, steps=4, unroll_steps=2,
                            progress=False, time_budget_s=0.5)
    assert 1 <= hist["iterations"] < 10**6 and hist["trajectories"] == 2 * hist["iterations"]
    assert len(hist["meta_loss"]) == hist["iterations"]
    _, hist = lo.meta_train(quad, phi, iterations=3, batch=2, steps=4, unroll_steps=2,
                            progress=False)
    assert hist["iterations"] == 3 and len(hist["meta_loss"]) == 3
    assert hist["trajectories_per_s"] == pytest.approx(6 / hist["wall_s"])


# --------------------------------------------------------------------------------------------
# Each method at the quick scale, with tiny overrides
# --------------------------------------------------------------------------------------------


_OMNIGLOT: dict = {}


@pytest.fixture
def quick(monkeypatch, tmp_path, data_dir):
    """The quick scale, records in ``tmp_path``, and (for speed) each Omniglot split loaded
    once per session, the test split cut to the 300 classes that chapter 4.1's quick runs use
    (so that the runs embed 6,000 test images, not 33,840)."""
    pytest.importorskip("keras")
    from mlbook_utils import data

    real = data.load_omniglot

    def load_omniglot(split="background", **kw):
        if (split, *kw.items()) not in _OMNIGLOT:
            ds = real(split, **kw)
            _OMNIGLOT[split, *kw.items()] = ds.subset(range(300)) if split == "test" else ds
        return _OMNIGLOT[split, *kw.items()]

    monkeypatch.setattr(data, "load_omniglot", load_omniglot)
    monkeypatch.setenv("MLBOOK_SCALE", "quick")
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path


def _args(**kw):
    base = dict(episodes=3, n_query=15, n_way=None, k_shot=None, train_episodes=2,
                time_budget=None)
    return Namespace(**{**base, **kw})


def _check(records, folder, chapter_id, expected):
    """``expected``: (method, dataset, n_way, k_shot) of every record, in order."""
    from mlbook_utils import evaluation

    assert [(r["method"], r["dataset"], r["n_way"], r["k_shot"]) for r in records] == expected
    assert evaluation.read_records(chapter_id, folder=folder) == records
    _, code = chapter(chapter_id)
    for r in records:
        assert r["runner"] == "reproduce" and r["scale"] == "quick"
        assert r["peak_host_mib"] > 0
        assert f'"{r["dataset"]}"' in code  # the chapter's own data set name
        assert f'"{r["method"]}"' in code or f"'{r['method']}'" in code \
            or r["method"].endswith(" optimizer")  # chapter 1.3: f"{method} optimizer"


def test_run_relation(quick):
    records = rmeth.run_relation(_args())
    _check(records, quick, rmeth.CHAPTER_4_1,
           [("relation network", "omniglot-vinyals-test", n, k) for n, k in rmeth.SETTINGS_4])
    for r in records:
        assert r["episodes"] == 3 and r["train_episodes"] == 2 and r["train_way"] == 20
        assert r["train_episodes_planned"] == 2 and "train_episodes_per_s" in r
        assert 0 <= r["accuracy"] <= 100


def test_run_matching_filters_settings(quick):
    records = rmeth.run_matching(_args(n_way=5, k_shot=5, episodes=2))
    _check(records, quick, rmeth.CHAPTER_4_1,
           [("matching network (FCE)", "omniglot-vinyals-test", 5, 5)])
    assert records[0]["episodes"] == 2 and records[0]["train_episodes"] == 2


def test_run_siamese(quick):
    records = rmeth.run_siamese(_args(train_episodes=1, episodes=2))
    _check(records, quick, rmeth.CHAPTER_2_1, [
        ("siamese contrastive conv4-32", "orl-unseen-people", 5, 1),
        ("siamese contrastive conv4-32", "orl-unseen-people", 10, 1),
        ("siamese contrastive conv4-32 log-mel", "fsdd-unseen-speakers", 5, 1),
        ("siamese contrastive conv4-32 log-mel", "fsdd-unseen-speakers", 10, 1),
        ("siamese contrastive conv4", "omniglot-vinyals-test", 20, 1),
    ])
    for r in records:
        assert r["episodes"] == 2 and r["train_steps"] == 1 and r["train_unit"] == "pair"
        batch = 64 if r["n_way"] == 20 else 32
        assert r["train_episodes"] == batch  # pairs of the one step
        assert r["n_query"] == (15 if r["n_way"] == 20 else 5)


def test_run_siamese_one_dataset_and_time_budget(quick):
    records = rmeth.run_siamese(_args(dataset="faces", n_way=5, time_budget=0.0,
                                      train_episodes=50))
    _check(records, quick, rmeth.CHAPTER_2_1,
           [("siamese contrastive conv4-32", "orl-unseen-people", 5, 1)])
    assert records[0]["train_steps"] == 0 and records[0]["train_steps_planned"] == 50
    assert records[0]["time_budget_s"] == 0.0
    with pytest.raises(ValueError, match="dataset"):
        rmeth.run_siamese(_args(dataset="mnist"))


def test_run_lstm_meta_learner(quick):
    records = rmeth.run_lstm_meta_learner(_args())
    _check(records, quick, rmeth.CHAPTER_1_4,
           [("LSTM meta-learner", "omniglot-vinyals-test", 5, 1)])  # quick: 1-shot only
    r = records[0]
    assert r["episodes"] == 3 and r["train_episodes"] == 2 and r["inner_steps"] == 5
    assert rmeth.run_lstm_meta_learner(_args(n_way=20)) == []


def test_run_learned_optimizer(quick):
    records = rmeth.run_learned_optimizer(_args(episodes=20, train_episodes=1))
    names = ["LSTM optimizer (learned)", "SGD optimizer", "RMSprop optimizer",
             "Adam optimizer", "NAG optimizer"]
    _check(records, quick, rmeth.CHAPTER_1_3,
           [(n, "quadratic-10d", None, None) for n in names])
    for r in records:
        assert r["metric"] == "final_loss" and r["steps"] == 100 and r["episodes"] == 20
        assert np.isfinite(r["accuracy"])
    lstm = records[0]
    assert lstm["train_iterations"] == 1 and lstm["train_episodes"] == 64  # META_BATCH, quick
    assert all(r["lr"] in r["lr_grid"] for r in records[1:])
