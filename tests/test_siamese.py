"""Siamese networks (chapter 2.1): pairs, losses, the twin model, evaluation, audio, the checker."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mlbook_utils import evaluation, models, siamese  # noqa: E402
from mlbook_utils.data import FewShotDataset  # noqa: E402
from mlbook_utils.exercises import ch02_1  # noqa: E402


def _toy(n_classes=6, per_class=5, shape=(16, 16, 1), seed=0):
    """Class c lights pixel block c, plus noise: easy to tell apart once learned."""
    rng = np.random.default_rng(seed)
    x = rng.random((n_classes * per_class, *shape)).astype(np.float32) * 0.3
    y = np.repeat(np.arange(n_classes), per_class)
    for k, c in enumerate(y):
        r, col = divmod(int(c), 3)
        x[k, 8 * r : 8 * r + 6, 5 * col : 5 * col + 4] += 1.0
    return FewShotDataset(x, y, [f"c{c}" for c in range(n_classes)], name="toy")


# Pairs ---------------------------------------------------------------------------------------


def test_pairs_are_balanced_and_labelled_right():
    ds = _toy()
    i, j, same = siamese.sample_pairs(ds, 1001, np.random.default_rng(0))
    assert i.shape == j.shape == same.shape == (1001,)
    assert same.sum() == 500
    np.testing.assert_array_equal(ds.y[i] == ds.y[j], same.astype(bool))
    assert (i != j).all(), "a same pair must hold two distinct examples"
    # Same pairs cover many positions within classes, not only a fixed one.
    assert len(np.unique(i[same == 1])) > 20


def test_unique_pairs_have_no_duplicate_and_stay_balanced():
    ds = _toy(n_classes=3, per_class=4)  # only 3 * 6 = 18 distinct same pairs
    i, j, same = siamese.unique_pairs(ds, 100, np.random.default_rng(1))
    assert same.sum() == 18 and (1 - same).sum() == 18
    keys = {(min(a, b), max(a, b)) for a, b in zip(i.tolist(), j.tolist())}
    assert len(keys) == len(i)


# Losses --------------------------------------------------------------------------------------


def test_contrastive_loss_values_and_gradient():
    d = np.array([0.5, 0.3, 1.5], np.float32)
    s = np.array([1.0, 0.0, 0.0], np.float32)
    got = float(keras.ops.convert_to_numpy(siamese.contrastive_loss(s, d, margin=1.0)))
    # same pair: 0.5**2 / 2; different at 0.3: 0.7**2 / 2; different beyond the margin: 0
    assert got == pytest.approx((0.125 + 0.245 + 0.0) / 3, rel=1e-5)
    assert got == pytest.approx(ch02_1.reference_contrastive_loss(d, s, 1.0), rel=1e-5)
    # d/dd of the mean loss: s d / P - (1 - s) max(0, m - d) / P (numerical check)
    eps = 1e-3
    for k, want in enumerate([0.5 / 3, -0.7 / 3, 0.0]):
        up, down = d.copy(), d.copy()
        up[k] += eps
        down[k] -= eps
        num = (ch02_1.reference_contrastive_loss(up, s) -
               ch02_1.reference_contrastive_loss(down, s)) / (2 * eps)
        assert num == pytest.approx(want, abs=1e-4)


def test_binary_crossentropy_matches_formula():
    logit = np.array([2.0, -1.0], np.float32)
    same = np.array([1.0, 0.0], np.float32)
    got = float(keras.ops.convert_to_numpy(siamese.binary_crossentropy_loss(same, logit)))
    want = np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0))])
    assert got == pytest.approx(want, rel=1e-4)


# The model -------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", siamese.HEADS)
def test_model_is_symmetric_and_matches_the_predictor(head):
    emb = models.conv4_embedding(input_shape=(16, 16, 1), filters=4)
    model = siamese.SiameseNetwork(emb, head, normalize=True)
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 5, 16, 16, 1)).astype(np.float32)
    ab = keras.ops.convert_to_numpy(model((a, b), training=False))
    ba = keras.ops.convert_to_numpy(model((b, a), training=False))
    assert ab.shape == (5,)
    np.testing.assert_allclose(ab, ba, rtol=1e-4, atol=1e-5)
    if head == "contrastive":
        assert (ab >= 0).all() and (ab <= 2 + 1e-4).all()  # unit vectors: distances in [0, 2]
    # The one-shot predictor scores query k against support k with minus the same dissimilarity.
    scores = siamese.make_predictor(model)(a[None], np.arange(5)[None], b[None], 5)
    want = ab if head == "contrastive" else -ab
    np.testing.assert_allclose(-np.diagonal(scores[0]), want, rtol=1e-3, atol=1e-4)


def test_bad_head_is_refused():
    with pytest.raises(ValueError, match="head must be one of"):
        siamese.SiameseNetwork(models.conv4_embedding(input_shape=(16, 16, 1), filters=2), "cosine")


def test_training_solves_a_tiny_problem():
    keras.utils.set_random_seed(0)
    ds = _toy()
    emb = models.conv4_embedding(input_shape=(16, 16, 1), filters=8)
    model = siamese.compile_model(siamese.SiameseNetwork(emb, normalize=True), 3e-3)
    hist = siamese.train(model, ds, steps=60, batch_size=32, chunk=30, progress=False)
    assert hist["steps"] == 60 and hist["pairs"] == 60 * 32 and len(hist["loss"]) == 60
    assert hist["loss"][-10:].mean() < 0.5 * hist["loss"][:10].mean()
    i, j, same = siamese.unique_pairs(ds, 100, np.random.default_rng(3))
    d = siamese.pair_dissimilarity(model, ds, i, j)
    acc, _ = siamese.verification_accuracy(d, same, siamese.best_threshold(d, same))
    assert acc > 85
    res = evaluation.evaluate(siamese.make_predictor(model, ds), ds, 5, 1, 2, 40, progress=False)
    assert res.accuracy > 60  # chance is 20 %


# Thresholds ----------------------------------------------------------------------------------


def test_best_threshold_separates_separable_pairs():
    d = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 1.0])
    same = np.array([1, 1, 1, 0, 0, 0], np.float32)
    t = siamese.best_threshold(d, same)
    assert 0.3 < t < 0.8
    acc, ci = siamese.verification_accuracy(d, same, t)
    assert acc == 100.0
    # All pairs different: saying "different" always is best, so the threshold is below them all.
    assert siamese.best_threshold(d, np.zeros(6)) < d.min()
    assert siamese.verification_accuracy(d, same, -1.0)[0] == 50.0  # balanced: chance is 50 %


# Images and audio ------------------------------------------------------------------------------


def test_downsample_averages_blocks():
    x = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6, 1)
    y = siamese.downsample(x, 2)
    assert y.shape == (2, 2, 3, 1)
    assert y[0, 0, 0, 0] == pytest.approx(np.mean([0, 1, 6, 7]))


def test_random_flip_mirrors_about_half():
    x = np.arange(200 * 3 * 2, dtype=np.float32).reshape(200, 3, 2, 1)
    y = siamese.random_flip(x, np.random.default_rng(0))
    flipped = (y != x).any(axis=(1, 2, 3))
    assert 60 < flipped.sum() < 140
    np.testing.assert_array_equal(y[flipped], x[flipped][:, :, ::-1])


def test_mel_filterbank_is_triangular_and_ordered():
    fb = siamese.mel_filterbank(20, 256, 8000)
    assert fb.shape == (20, 129)
    assert fb.max() <= 1.0 + 1e-6 and fb.min() >= 0.0
    peaks = fb.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] > peaks[0]
    assert (fb.sum(axis=1) > 0).all(), "every filter must cover at least one frequency bin"
    assert siamese.mel_to_hz(siamese.hz_to_mel(1000.0)) == pytest.approx(1000.0)


def test_log_mel_finds_a_tone_in_the_right_band():
    sr = 8000
    t = np.arange(sr // 2) / sr
    spec = siamese.log_mel(np.sin(2 * np.pi * 1000 * t), sr, n_mels=40)
    assert spec.shape == (40, 1 + (sr // 2 - 256) // 128)
    centres = siamese.mel_to_hz(np.linspace(0, siamese.hz_to_mel(sr / 2), 42))[1:-1]
    band = int(spec.mean(axis=1).argmax())
    assert abs(centres[band] - 1000) < 150


def test_audio_features_have_fixed_length():
    rng = np.random.default_rng(0)
    waves = [rng.normal(size=n).astype(np.float32) * 0.1 for n in (100, 3000, 20000)]
    f = siamese.audio_features(waves, 8000, n_mels=16, n_frames=24)
    assert f.shape == (3, 16, 24, 1) and f.dtype == np.float32
    assert np.isfinite(f).all()


# The checker -----------------------------------------------------------------------------------


def test_checker_passes_the_reference():
    fb = ch02_1.check_contrastive_loss(ch02_1.reference_contrastive_loss)
    assert fb.passed, str(fb)


def _swapped(d, s, m=1.0):
    return ch02_1.reference_contrastive_loss(d, 1 - s, m)


def _no_clamp(d, s, m=1.0):
    return float(np.mean(0.5 * (s * d**2 + (1 - s) * (m - d) ** 2)))


def _summed(d, s, m=1.0):
    return ch02_1.reference_contrastive_loss(d, s, m) * len(d)


def _per_pair(d, s, m=1.0):
    return 0.5 * (s * d**2 + (1 - s) * np.maximum(m - d, 0) ** 2)


def _fixed_margin(d, s, m=1.0):
    return ch02_1.reference_contrastive_loss(d, s, 1.0)


def _stub(d, s, m=1.0):
    raise NotImplementedError("write it")


@pytest.mark.parametrize("fn, message", [
    (_swapped, "swapped"),
    (_no_clamp, "clamp at zero"),
    (_summed, "*sum*"),
    (_per_pair, "one number"),
    (_fixed_margin, "margin of 1"),
    (_stub, "NotImplementedError"),
])
def test_checker_names_typical_mistakes(fn, message):
    fb = ch02_1.check_contrastive_loss(fn)
    assert not fb.passed
    assert message in (fb.problem + " " + (fb.hint or "")), fb.problem


# Chapter 2.1's settings and experiment (ported from tests/test_runner_methods.py) -------------

SCALES = ("quick", "cpu", "full")


def test_settings_cover_every_scale_and_data_set():
    from mlbook_utils import registry

    method = registry.get("siamese")
    assert method.experiment is siamese.experiment and method.chapter == siamese.CHAPTER
    assert method.settings is siamese.SETTINGS
    assert method.key("train_episodes") == "train_steps"  # --train-episodes: training steps
    keys = set(siamese.SETTINGS["quick"])
    for scale in SCALES:
        s = siamese.SETTINGS[scale]
        assert set(s) == keys, scale
        assert set(registry.COMMON_KEYS) - {"train_episodes"} <= keys
        assert tuple(s["datasets"]) == siamese.DATASETS
        for value in s.values():  # a per-data-set value names every data set
            if isinstance(value, dict):
                assert set(value) == set(siamese.DATASETS), (scale, value)
        for name in siamese.DATASETS:
            ds = siamese.dataset_settings(s, name)
            assert ds["tests"] and all(k == 1 for _, k in ds["tests"]), (scale, name)
            assert {w for w, _ in ds["tests"]} == set(ds["n_ways"]), (scale, name)
            assert ds["train_steps"] > 0 and ds["batch"] > 0
            assert ds["augment"] in siamese.AUGMENTATIONS
    # The chapter's recipe: an ORL person has 10 photographs (1 support + 5 queries), Omniglot
    # tests 20-way with 15 queries; twice the batch for Omniglot; a wall-clock cap only on cpu.
    cpu = siamese.SETTINGS["cpu"]
    assert cpu["test_query"] == dict(faces=5, audio=5, omniglot=15)
    assert cpu["batch"] == dict(faces=32, audio=32, omniglot=64)
    assert siamese.SETTINGS["quick"]["time_budget_s"] is None
    assert set(cpu["time_budget_s"]) == set(siamese.DATASETS)
    assert [siamese.SETTINGS[s]["test_episodes"] for s in SCALES] == [200, 1000, 5000]
    table = siamese.settings_by_dataset(cpu)
    assert list(table.columns) == list(siamese.DATASETS) and table.loc["filters", "faces"] == 32


def test_notebook_calls_the_experiment_and_restates_no_setting():
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "chapters" / f"{siamese.CHAPTER}.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "registry.settings_table(siamese.SETTINGS)" in code
    for name in siamese.DATASETS:
        assert f'settings_for(datasets=("{name}",))' in code
    assert code.count("siamese.experiment(") == 3
    # Only the chapter's own check thresholds are by scale; no training or test number is.
    assert code.count("by_scale(") == 1 and "need = config.by_scale(" in code
    for stale in ("siamese.train(", "evaluation.evaluate(", "record_result(", "repo_root()"):
        assert stale not in code, stale
    assert "config.committed_results()" in code and 'r["value"]' in code


def test_method_names_are_the_chapters_and_name_variants():
    s = siamese.SETTINGS["cpu"]
    names = [siamese.method_name(siamese.dataset_settings(s, n), n) for n in siamese.DATASETS]
    assert names == ["siamese contrastive conv4-32", "siamese contrastive conv4-32 log-mel",
                     "siamese contrastive conv4"]
    koch = siamese.dataset_settings(dict(s, head="learned", normalize=False), "omniglot")
    assert siamese.method_name(koch, "omniglot") == "siamese learned-L1 conv4 (normalize=False)"


def test_verification_fits_the_threshold_away_from_the_test_pairs():
    keras.utils.set_random_seed(0)
    ds = _toy()
    model = siamese.SiameseNetwork(models.conv4_embedding(input_shape=(16, 16, 1), filters=4),
                                   normalize=True)
    v = siamese.verification(model, ds.subset(range(3)), ds.subset(range(3, 6)), 20, seed=0,
                             fit_pairs=40)
    assert v.pairs == 20 and v.same.sum() == 10 and v.dissim.shape == (20,)
    assert 0 <= v.value <= 100 and v.accuracy == v.value and v.peek >= v.value
    again = siamese.verification(model, ds.subset(range(3)), ds.subset(range(3, 6)), 20, seed=0,
                                 fit_pairs=40)
    assert again.threshold == v.threshold and again.value == v.value


def _small_omniglot():
    """Omniglot-shaped splits (28x28, 20-way tests with 15 queries) from toy classes: loading
    Omniglot and embedding its 33,840 test images would take longer than the whole test."""
    toy = _toy(n_classes=63, per_class=16, shape=(28, 28, 1))
    return siamese.Split(toy.subset(range(20)), toy.subset(range(40, 63)),
                         toy.subset(range(20, 40)), "val-split pairs", "omniglot-vinyals-test")


@pytest.fixture
def quick_results(monkeypatch, tmp_path):
    monkeypatch.setenv("MLBOOK_SCALE", "quick")
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path


def _check_records(records, folder, expected):
    """``expected``: (method, dataset, n_way, k_shot) of every record, in order."""
    assert [(r["method"], r["dataset"], r["n_way"], r["k_shot"]) for r in records] == expected
    assert evaluation.read_records(siamese.CHAPTER, folder=folder) == records
    for r in records:
        assert r["metric"] == "accuracy" and "accuracy" not in r
        assert 0 <= r["value"] <= 100 and r["scale"] == "quick"


SMALL = dict(train_steps=1, test_episodes=2, verification_pairs=20, threshold_pairs=40)
CONV32, LOGMEL, CONV64 = ("siamese contrastive conv4-32", "siamese contrastive conv4-32 log-mel",
                          "siamese contrastive conv4")


def test_experiment_writes_the_chapters_records(quick_results, data_dir):
    faces = siamese.faces_split()
    settings = dict(siamese.SETTINGS["quick"], datasets=("faces", "omniglot"), **SMALL)
    out = siamese.experiment(settings, data={"faces": faces, "omniglot": _small_omniglot()},
                             progress=False)
    _check_records(out.records, quick_results, [
        (CONV32, "orl-unseen-people", None, None),
        (CONV32, "orl-unseen-people", 5, 1), (CONV32, "orl-unseen-people", 10, 1),
        ("pixel nearest neighbour", "orl-unseen-people", 5, 1),
        ("pixel nearest neighbour", "orl-unseen-people", 10, 1),
        (CONV64, "omniglot-vinyals-test", None, None), (CONV64, "omniglot-vinyals-test", 20, 1),
        ("pixel nearest neighbour", "omniglot-vinyals-test", 20, 1),
    ])
    for r in out.records:
        batch = 64 if r["dataset"] == "omniglot-vinyals-test" else 32
        if r["n_way"] is None:  # verification: balanced test pairs, threshold from elsewhere
            assert r["episodes"] == 20 and r["task"].startswith("verification")
            assert r["threshold_from"] == ("val-split pairs" if batch == 64
                                           else "training-class pairs")
        else:
            assert r["episodes"] == 2 and r["n_query"] == (15 if r["n_way"] == 20 else 5)
        if r["method"].startswith("siamese"):
            assert r["train_steps"] == r["train_steps_planned"] == 1
            assert r["train_unit"] == "pair" and r["train_episodes"] == batch  # pairs trained
            assert r.get("time_budget_s") is None  # no cap
        else:
            assert "train_steps" not in r
        assert "runner" not in r  # a notebook's record
    assert set(out.models) == set(out.histories) == {"faces", "omniglot"}
    assert out.results[CONV32, 5, 1].episodes == 2
    assert out.results[CONV32, None, None] is out.extra["faces"]["verification"]
    assert out.extra["faces"]["split"] is faces
    assert out.extra["omniglot"]["baseline"] == "pixel nearest neighbour"
    text = siamese.summary(out)
    assert "verification on 20 balanced pairs of orl-test-people" in text
    assert "20-way 1-shot" in text


def test_experiment_on_spoken_digits(quick_results, data_dir):
    audio = siamese.audio_split()
    assert (audio.train.n_classes, len(audio.train), len(audio.test)) == (10, 2000, 1000)
    assert set(audio.test.info["speaker"]) == set(siamese.TEST_SPEAKERS)
    assert not set(audio.train.info["speaker"]) & set(siamese.TEST_SPEAKERS)
    assert abs(float(audio.train.x.mean())) < 1e-3  # normalised with the training speakers
    settings = dict(siamese.SETTINGS["quick"], datasets=("audio",), tests=((5, 1),), **SMALL)
    out = siamese.experiment(settings, data={"audio": audio}, progress=False)
    _check_records(out.records, quick_results, [
        (LOGMEL, "fsdd-unseen-speakers", None, None), (LOGMEL, "fsdd-unseen-speakers", 5, 1),
        ("log-mel nearest neighbour", "fsdd-unseen-speakers", 5, 1)])


def test_runner_one_dataset_with_a_time_budget(quick_results, data_dir, capsys):
    from mlbook_utils import reproduce

    assert reproduce.main(["siamese", "--scale", "quick", "--dataset", "faces", "--n-way", "5",
                           "--train-episodes", "50", "--time-budget", "0", "--episodes", "2",
                           "--set", "verification_pairs=20", "--set", "threshold_pairs=40",
                           "--set", "baselines=False"]) == 0
    records = evaluation.read_records(siamese.CHAPTER, folder=quick_results)
    _check_records(records, quick_results, [
        ("siamese contrastive conv4-32", "orl-unseen-people", None, None),
        ("siamese contrastive conv4-32", "orl-unseen-people", 5, 1)])
    for r in records:
        assert r["runner"] == "reproduce" and r["peak_host_mib"] > 0
        assert r["train_steps"] == 0 and r["train_steps_planned"] == 50
        assert r["train_episodes_planned"] == 50 * 32 and r["time_budget_s"] == 0.0
    assert "siamese contrastive conv4-32: 5-way 1-shot" in capsys.readouterr().out


def test_experiment_refuses_bad_requests_before_training(quick_results, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained before the request was checked")

    monkeypatch.setattr(siamese, "train", no_training)
    toy = _toy(n_classes=6, per_class=5)
    split = siamese.Split(toy, toy, toy, "training-class pairs", "toy")
    with pytest.raises(ValueError, match="data set must be one of|dataset must be one of"):
        siamese.experiment(dict(siamese.SETTINGS["quick"], datasets=("mnist",)))
    # 1 support + 15 queries per class: a toy class has only 5 examples.
    with pytest.raises(ValueError, match="examples per class"):
        siamese.experiment(dict(siamese.SETTINGS["quick"], datasets=("faces",), test_query=15),
                           data={"faces": split}, progress=False)
    # A test setting that no chosen data set takes: nothing is trained or recorded.
    out = siamese.experiment(dict(siamese.SETTINGS["quick"], datasets=("faces",)),
                             tests=[(20, 1)], data={"faces": split}, progress=False)
    assert out.records == [] and out.models == {}
