"""Property-based tests (Hypothesis) of the sampler, the loaders, the evaluation and the records.

Each property is checked on many generated cases; a failure is shrunk to a smallest example.
The loaders' property flips one random bit of small ORL-like and FSDD-like zips built here, so it
needs no data directory. ``database=None``: nothing is written into the checkout.
"""

import hashlib
import io
import json
import math
import string
import tempfile
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlbook_utils import data, evaluation
from mlbook_utils.data import FewShotDataset
from mlbook_utils.episodes import EpisodeSampler, sample_episode

FAST = settings(max_examples=60, deadline=None, database=None)
SLOW = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------- the sampler


@st.composite
def requests(draw):
    """A ragged dataset (item value = its index) and an episode request it can satisfy."""
    counts = draw(st.lists(st.integers(1, 8), min_size=1, max_size=10))
    n_way = draw(st.integers(1, len(counts)))
    most = sorted(counts, reverse=True)[n_way - 1]  # n_way classes have at least this many
    need = draw(st.integers(1, most))
    k_shot = draw(st.integers(1, need))
    y = np.repeat(np.arange(len(counts)), counts)
    y = y[np.random.default_rng(draw(st.integers(0, 1000))).permutation(len(y))]
    ds = FewShotDataset(np.arange(len(y), dtype=np.float32)[:, None], y,
                        [f"c{i}" for i in range(len(counts))], "ragged")
    return ds, n_way, k_shot, need - k_shot


@FAST
@given(req=requests(), batch=st.none() | st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_any_valid_request_gives_well_formed_episodes(req, batch, seed):
    ds, n_way, k_shot, n_query = req
    ep = sample_episode(ds, n_way, k_shot, n_query, seed=seed, batch=batch)
    b = 1 if batch is None else batch
    support = ep.support.reshape(b, n_way * k_shot).astype(int)
    query = ep.query.reshape(b, n_way * n_query).astype(int)
    s_lab = ep.support_labels.reshape(b, -1)
    q_lab = ep.query_labels.reshape(b, -1)
    classes = ep.classes.reshape(b, n_way)
    for i in range(b):
        items = np.concatenate([support[i], query[i]])
        assert len(np.unique(items)) == len(items), "support and query share an example"
        assert len(set(classes[i].tolist())) == n_way
        assert ((s_lab[i] >= 0) & (s_lab[i] < n_way)).all()
        assert ((q_lab[i] >= 0) & (q_lab[i] < n_way)).all()
        assert np.bincount(s_lab[i], minlength=n_way).tolist() == [k_shot] * n_way
        assert np.bincount(q_lab[i], minlength=n_way).tolist() == [n_query] * n_way
        # every example is of the class its label stands for, and that class was big enough
        np.testing.assert_array_equal(ds.y[support[i]], classes[i][s_lab[i]])
        np.testing.assert_array_equal(ds.y[query[i]], classes[i][q_lab[i]])
        assert (ds.class_counts[classes[i]] >= k_shot + n_query).all()


not_integers = st.one_of(
    st.booleans(), st.none(), st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-50, 50).map(np.float64), st.just(np.bool_(True)), st.text(max_size=3),
    st.integers(1, 5).map(float),
)


@FAST
@given(name=st.sampled_from(["n_way", "k_shot", "n_query"]), bad=not_integers)
def test_anything_but_an_integer_is_a_type_error_naming_the_argument(name, bad):
    ds = FewShotDataset(np.zeros((40, 1)), np.repeat(np.arange(8), 5), list("abcdefgh"))
    kwargs = dict(n_way=3, k_shot=1, n_query=2) | {name: bad}
    with pytest.raises(TypeError, match=f"{name} must be an integer"):
        sample_episode(ds, **kwargs, seed=0)
    with pytest.raises(TypeError, match=f"{name} must be an integer"):
        EpisodeSampler(ds, **kwargs)


@FAST
@given(name=st.sampled_from(["n_way", "k_shot", "n_query"]), value=st.integers(-10**6, 0),
       numpy=st.booleans())
def test_too_small_integers_are_a_value_error_naming_the_argument(name, value, numpy):
    if name == "n_query" and value == 0:
        value = -1  # n_query=0 is a valid request (support set only)
    ds = FewShotDataset(np.zeros((40, 1)), np.repeat(np.arange(8), 5), list("abcdefgh"))
    kwargs = dict(n_way=3, k_shot=1, n_query=2) | {name: np.int64(value) if numpy else value}
    with pytest.raises(ValueError, match=f"{name} must be"):
        sample_episode(ds, **kwargs, seed=0)


# ---------------------------------------------------------------------------- the loaders


def _orl_like() -> bytes:
    """40 people x 10 tiny PGM faces, laid out like the book's orl_faces.zip."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for s in range(1, 41):
            for i in range(1, 11):
                pixels = rng.integers(0, 256, (3, 2), dtype=np.uint8).tobytes()
                zf.writestr(f"orl_faces/s{s}/{i}.pgm", b"P5\n2 3\n255\n" + pixels)
    return buf.getvalue()


def _fsdd_like() -> bytes:
    """A few tiny 8 kHz 16-bit mono recordings, laid out like fsdd_recordings.zip."""
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for d in (0, 7):
            for spk in ("george", "theo"):
                for t in (0, 1):
                    wav = io.BytesIO()
                    with wave.open(wav, "wb") as w:
                        w.setnchannels(1)
                        w.setsampwidth(2)
                        w.setframerate(8000)
                        w.writeframes(rng.integers(-3000, 3000, 24, dtype="<i2").tobytes())
                    zf.writestr(f"recordings/{d}_{spk}_{t}.wav", wav.getvalue())
    return buf.getvalue()


@pytest.fixture(scope="module")
def small_zips(tmp_path_factory):
    """For each loader: the good zip's bytes, its Source and what the loader returns for it."""
    folder = tmp_path_factory.mktemp("small_zips")
    out = {}
    for key, raw, suffix, assemble in (
        (("orl_faces", "orl_faces.zip"), _orl_like(), ".pgm", "orl_files"),
        (("fsdd", "fsdd_recordings.zip"), _fsdd_like(), ".wav", "fsdd_archive"),
    ):
        path = folder / key[1]
        path.write_bytes(raw)
        src = data.Source(*key, hashlib.sha256(raw).hexdigest(), len(raw),
                          "file:///nowhere/", tree_sha256=data.zip_tree_sha256(path, suffix),
                          tree_suffix=suffix, assemble=assemble)
        out[key] = (raw, src, None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLBOOK_DATA", str(folder / "data"))
        for key, (raw, src, _) in out.items():
            (folder / "data" / key[0]).mkdir(parents=True)
            (folder / "data" / key[0] / key[1]).write_bytes(raw)
            mp.setitem(data.SOURCES, key, src)
            mp.setenv("MLBOOK_CACHE", str(folder / f"cache-{key[0]}"))
            out[key] = (raw, src, _load(key))
    return out


def _load(key):
    if key[0] == "orl_faces":
        return data.load_orl_faces().x
    return data.load_fsdd().waves


@SLOW
@given(dataset=st.sampled_from(["orl_faces", "fsdd"]), where=st.sampled_from(["data", "cache"]),
       bit=st.integers(0, 2**40), repeat=st.booleans())
def test_a_single_flipped_bit_gives_data_error_or_the_right_data(small_zips, dataset, where,
                                                                  bit, repeat):
    key = next(k for k in small_zips if k[0] == dataset)
    raw, src, expected = small_zips[key]
    bit %= 8 * len(raw)
    bad = bytearray(raw)
    bad[bit // 8] ^= 1 << (bit % 8)
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        tmp = Path(tmp)
        folder = tmp / ("data" if where == "data" else "cache/data") / dataset
        folder.mkdir(parents=True)
        path = folder / key[1]
        path.write_bytes(bytes(bad))
        mp.setitem(data.SOURCES, key, src)
        mp.setenv("MLBOOK_DATA", str(tmp / "data"))
        mp.setenv("MLBOOK_CACHE", str(tmp / "cache"))
        mp.setattr(data.urllib.request, "urlopen", _no_download)
        for _ in range(2 if repeat else 1):  # a second run after a failure fails cleanly too
            try:
                got = _load(key)
            except data.DataError as exc:
                event("DataError")
                assert "Fix:" in str(exc)
                if where == "data":
                    assert path.read_bytes() == bytes(bad), "the data directory is never touched"
                else:
                    assert not path.exists(), "a bad file in the user cache is deleted"
                    assert "deleted" in str(exc)
                    break
            else:
                # The flip missed the data (a timestamp, say): the loader gives the right data.
                event("loaded")
                if dataset == "orl_faces":
                    np.testing.assert_array_equal(got, expected)
                else:
                    assert len(got) == len(expected)
                    for a, b in zip(got, expected):
                        np.testing.assert_array_equal(a, b)


def _no_download(*args, **kwargs):
    raise AssertionError("no download should be tried here")


# ---------------------------------------------------------------------------- the evaluation


@st.composite
def score_batches(draw, finite=True):
    n_way = draw(st.integers(1, 5))
    n_query = draw(st.integers(1, 4))
    b = draw(st.integers(1, 4))
    elements = st.floats(allow_nan=not finite, allow_infinity=not finite, width=64)
    scores = draw(arrays(np.float64, (b, n_way * n_query, n_way), elements=elements))
    labels = np.broadcast_to(np.repeat(np.arange(n_way), n_query), (b, n_way * n_query))
    return scores, labels, n_way


@FAST
@given(batch=score_batches())
def test_finite_scores_give_the_directly_counted_accuracy(batch):
    scores, labels, n_way = batch
    acc = evaluation.episode_accuracy(scores, labels, n_way) * 100
    for i in range(len(scores)):
        correct = sum(int(np.argmax(row)) == lab for row, lab in zip(scores[i], labels[i]))
        assert acc[i] == pytest.approx(100 * correct / labels.shape[1], abs=1e-9)
        assert 0 <= acc[i] <= 100


@FAST
@given(batch=score_batches(), poison=st.lists(st.tuples(st.integers(0, 10**6),
                                                         st.sampled_from([np.nan, np.inf,
                                                                          -np.inf])),
                                               min_size=1, max_size=6))
def test_non_finite_scores_are_divergence_with_a_count(batch, poison):
    scores, labels, n_way = batch
    scores = scores.copy()
    flat = scores.reshape(-1)
    for where, value in poison:
        flat[where % flat.size] = value
    bad_episodes = int((~np.isfinite(scores)).any(axis=(1, 2)).sum())
    with pytest.raises(evaluation.DivergedError, match=f"in {bad_episodes} of {len(scores)} "):
        evaluation.episode_accuracy(scores, labels, n_way)


@FAST
@given(n_way=st.integers(1, 6), k_shot=st.integers(1, 2), n_query=st.integers(1, 3),
       episodes=st.integers(1, 7), batch=st.integers(1, 5), seed=st.integers(0, 2**31),
       ties=st.booleans())
def test_evaluate_reports_the_count_of_correct_arg_maxes(n_way, k_shot, n_query, episodes,
                                                          batch, seed, ties):
    ds = FewShotDataset(np.zeros((30, 1), np.float32), np.repeat(np.arange(6), 5), list("abcdef"))
    rng = np.random.default_rng(seed)
    seen = []

    def predict(support, support_labels, query, n_way):
        shape = (*query.shape[:2], n_way)
        s = rng.integers(0, 2, shape).astype(float) if ties else rng.normal(size=shape) * 1e6
        seen.append(s)
        return s

    res = evaluation.evaluate(predict, ds, n_way, k_shot, n_query, episodes, batch=batch,
                              progress=False)
    scores = np.concatenate(seen)
    labels = np.repeat(np.arange(n_way), n_query)
    direct = 100 * (scores.argmax(-1) == labels).mean()
    assert res.accuracy == pytest.approx(direct, abs=1e-9)
    assert 0 <= res.accuracy <= 100 and res.episodes == episodes == len(scores)
    assert math.isnan(res.ci95) if episodes == 1 else res.ci95 >= 0


# ---------------------------------------------------------------------------- the records

numpy_numbers = st.one_of(
    st.integers(-2**31, 2**31 - 1).map(np.int64), st.integers(-2**31, 2**31 - 1).map(np.int32),
    st.integers(0, 255).map(np.uint8),
    st.floats(allow_nan=True, allow_infinity=True).map(np.float64),
    st.floats(width=32, allow_nan=True, allow_infinity=True).map(np.float32),
)
numpy_scalars = numpy_numbers | st.booleans().map(np.bool_)
plain = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.text(max_size=5),
                  st.floats(allow_nan=True, allow_infinity=True))
values = st.recursive(
    plain | numpy_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3)
    | arrays(np.float64, st.integers(0, 3)),
    max_leaves=8,
)
field_names = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8).filter(
    lambda k: k not in evaluation.RECORD_FIELDS and k != "accuracy")
numbers = st.floats(allow_nan=True, allow_infinity=True) | numpy_numbers


def _strict(line):
    def refuse(name):
        raise AssertionError(f"{name} in a record is not JSON")

    return json.loads(line, parse_constant=refuse)


@FAST
@given(value=numbers, ci95=numbers | st.none(), n_way=st.none() | st.integers(1, 50).map(np.int64),
       episodes=st.integers(1, 10**6).map(np.int64), wall_s=numbers,
       metric=st.sampled_from(["accuracy", "final_loss", "mse", "bit_error", "success_rate"]),
       extra=st.dictionaries(field_names, values, max_size=4), tamper=numbers)
def test_any_record_round_trips_as_strict_json(value, ci95, n_way, episodes, wall_s, metric,
                                               extra, tamper):
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLBOOK_RESULTS", tmp)
        mp.setattr(evaluation.config, "device", lambda: "CPU (test)")  # no TensorFlow import
        rec = evaluation.make_record("m", "d", n_way, None, value, ci95, episodes, wall_s,
                                     metric=metric, **extra)
        assert list(rec)[: len(evaluation.RECORD_FIELDS)] == list(evaluation.RECORD_FIELDS)
        assert rec["metric"] == metric
        path = evaluation.append_record("01_9_prop", rec)
        # A hand-made record, with numpy values or NaN put back into its fields, is written too.
        hand = {**rec, "value": tamper, "ci95": tamper}
        evaluation.append_record("01_9_prop", hand)
        lines = path.read_text().splitlines()
        assert [_strict(line) for line in lines] == evaluation.read_records("01_9_prop")
        assert evaluation.read_records("01_9_prop") == [rec, evaluation.to_json_value(hand)]
