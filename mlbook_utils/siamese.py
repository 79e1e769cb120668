"""Siamese networks: twin embeddings compared by a distance (Hadsell et al. 2006; Koch et al. 2015).

One embedding network f (the "twins" share every weight) maps both items of a pair to vectors.

- ``head="contrastive"``: the model returns the Euclidean distance d = ||f(x1) - f(x2)|| and is
  trained with the contrastive loss of Hadsell et al. (2006): same pairs are pulled together
  (d^2 / 2), different pairs are pushed apart until they are at least ``margin`` away.
- ``head="learned"``: the model returns the logit of "same" from a learned, weighted L1 distance,
  sigmoid(sum_j alpha_j |f(x1)_j - f(x2)_j| + b), trained with binary cross-entropy, as in
  Koch et al. (2015).

Evaluation, in two forms:

- verification: is a pair the same class? A threshold on the dissimilarity, chosen on pairs from
  the training (or validation) classes, never on the test pairs; the figure is the accuracy on
  *balanced* same/different test pairs (not precision);
- one-shot identification (n-way 1-shot): the query goes to the support item at the smallest
  dissimilarity, through ``evaluation.evaluate``.

Pairs are pre-sampled as index arrays with vectorised numpy (no Python generators). Everything
trainable is written with ``keras.ops`` / ``keras.layers``, so it runs on any Keras backend.
The module also holds small numpy audio features (STFT, mel filterbank, log-mel), since librosa
is not a dependency.

Chapter 2.1's data splits (:func:`faces_split`, :func:`audio_split`, :func:`omniglot_split`), its
verification procedure (:func:`verification`), its settings by scale (:data:`SETTINGS`) and its
experiment (:func:`experiment`, the runner's ``siamese``) live here too: the notebook and
``python -m mlbook_utils.reproduce siamese`` call the same function with the same settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import registry
from .data import FewShotDataset
from .episodes import check_request
from .metric import embed, episode_embedder

# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------


def sample_pairs(dataset: FewShotDataset, n_pairs: int, rng: np.random.Generator):
    """``n_pairs`` pairs of indices into ``dataset.x``: half same-class, half different-class.

    Returns ``(i, j, same)``: int arrays ``i``, ``j`` and float32 ``same`` (1 = same class), in a
    random order. Same pairs take two *distinct* examples of one class (classes with at least two
    examples, drawn in proportion to their number of examples); different pairs take one example
    from each of two distinct classes. All draws are vectorised.
    """
    counts = dataset.class_counts
    n_same = n_pairs // 2
    n_diff = n_pairs - n_same
    # Same pairs: a class (weighted by its size), then two distinct positions within it.
    ok = counts >= 2
    if not ok.any():
        raise ValueError("no class has two examples, so no same pair can be drawn")
    weights = np.where(ok, counts, 0) / np.where(ok, counts, 0).sum()
    c = rng.choice(dataset.n_classes, size=n_same, p=weights)
    a = rng.integers(0, counts[c])
    b = (a + 1 + rng.integers(0, counts[c] - 1)) % counts[c]  # any position but a
    same_i, same_j = dataset.class_index[c, a], dataset.class_index[c, b]
    # Different pairs: two examples drawn from the whole set, the second from another class.
    i = rng.integers(0, len(dataset), size=n_diff)
    ci = dataset.y[i]
    cj = (ci + 1 + rng.integers(0, dataset.n_classes - 1, size=n_diff)) % dataset.n_classes
    j = dataset.class_index[cj, rng.integers(0, counts[cj])]
    left = np.concatenate([same_i, i])
    right = np.concatenate([same_j, j])
    same = np.concatenate([np.ones(n_same), np.zeros(n_diff)]).astype(np.float32)
    order = rng.permutation(n_pairs)
    return left[order], right[order], same[order]


def unique_pairs(dataset: FewShotDataset, n_pairs: int, rng: np.random.Generator):
    """Like :func:`sample_pairs`, but no (unordered) pair appears twice, for test sets.

    If the dataset has fewer distinct same pairs than ``n_pairs // 2``, all of them are used and
    as many different pairs are drawn, so the pairs stay balanced.
    """
    n_same_max = int((dataset.class_counts * (dataset.class_counts - 1) // 2).sum())
    want = min(n_pairs // 2, n_same_max)
    picked = {1.0: [], 0.0: []}
    seen: set[tuple[int, int]] = set()
    for _ in range(200):
        i, j, same = sample_pairs(dataset, 4 * n_pairs + 64, rng)
        for a, b, s in zip(i.tolist(), j.tolist(), same.tolist()):
            key = (min(a, b), max(a, b))
            if key not in seen and len(picked[s]) < want:
                seen.add(key)
                picked[s].append((a, b))
        if len(picked[1.0]) >= want and len(picked[0.0]) >= want:
            break
    pairs = np.array(picked[1.0] + picked[0.0], dtype=np.int64).reshape(-1, 2)
    same = np.concatenate([np.ones(len(picked[1.0])), np.zeros(len(picked[0.0]))])
    order = rng.permutation(len(pairs))
    return pairs[order, 0], pairs[order, 1], same[order].astype(np.float32)


# --------------------------------------------------------------------------------------------
# Losses and the twin model
# --------------------------------------------------------------------------------------------


def euclidean_distance(a, b, eps: float = 1e-9):
    """||a - b|| over the last axis (the ``eps`` keeps the gradient finite at a == b)."""
    from keras import ops

    return ops.sqrt(ops.sum(ops.square(a - b), axis=-1) + eps)


def contrastive_loss(same, distance, margin: float = 1.0):
    """Hadsell et al. (2006): mean of  s d^2 / 2 + (1 - s) max(0, margin - d)^2 / 2.

    ``same`` is 1 for a pair of the same class and 0 otherwise; ``distance`` is d >= 0.
    Same pairs are pulled together; different pairs are pushed apart, but only while they are
    closer than ``margin`` (beyond it they cost nothing, so the space does not blow up).
    """
    from keras import ops

    same = ops.cast(same, distance.dtype)
    pull = same * ops.square(distance)
    push = (1.0 - same) * ops.square(ops.maximum(margin - distance, 0.0))
    return ops.mean(0.5 * (pull + push))


def binary_crossentropy_loss(same, logit):
    """Koch et al. (2015): binary cross-entropy of the "same" probability sigmoid(logit)."""
    from keras import ops

    same = ops.cast(same, logit.dtype)
    return ops.mean(ops.binary_crossentropy(same, logit, from_logits=True))


HEADS = ("contrastive", "learned")


def _model_class():
    import keras
    from keras import layers, ops

    class SiameseNetwork(keras.Model):
        """``call((x1, x2))`` -> one number per pair, shape (B,).

        ``head="contrastive"``: the Euclidean distance between the two embeddings (low = same).
        ``head="learned"``: the logit of "same" from a learned weighted L1 distance (high = same).
        Both items of every pair go through the one shared embedding in a single pass.
        """

        def __init__(self, embedding, head: str = "contrastive", normalize: bool = False,
                     **kwargs):
            super().__init__(**kwargs)
            if head not in HEADS:
                raise ValueError(f"head must be one of {HEADS}, got {head!r}")
            self.embedding, self.head, self.normalize = embedding, head, normalize
            # alpha_j and b of Koch et al.: a weighted L1 distance, squashed by the sigmoid.
            self.scorer = layers.Dense(1, name="l1_weights") if head == "learned" else None

        def compare(self, z1, z2):
            """Pair scores from embeddings (..., D) -> (...): distance or "same" logit."""
            if self.normalize:  # on the unit sphere, distances lie in [0, 2]
                z1 = z1 / ops.sqrt(ops.sum(ops.square(z1), axis=-1, keepdims=True) + 1e-12)
                z2 = z2 / ops.sqrt(ops.sum(ops.square(z2), axis=-1, keepdims=True) + 1e-12)
            if self.head == "contrastive":
                return euclidean_distance(z1, z2)
            return ops.squeeze(self.scorer(ops.abs(z1 - z2)), axis=-1)

        def call(self, inputs, training=None):
            x1, x2 = inputs
            n = ops.shape(x1)[0]
            z = self.embedding(ops.concatenate([x1, x2], axis=0), training=training)
            return self.compare(z[:n], z[n:])

    return SiameseNetwork


def SiameseNetwork(embedding, head: str = "contrastive", normalize: bool = False,  # noqa: N802
                   **kwargs):
    """A Siamese network around ``embedding`` (a Keras model: images -> vectors).

    With ``normalize=True`` embeddings are scaled to unit length before they are compared.
    """
    return _model_class()(embedding, head, normalize, **kwargs)


def compile_model(model, learning_rate: float = 1e-3, margin: float = 1.0):
    """Adam, and the loss that goes with the model's head (contrastive or cross-entropy)."""
    import keras

    if model.head == "contrastive":
        def loss(same, distance):
            return contrastive_loss(same, distance, margin)
    else:
        loss = binary_crossentropy_loss
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    return model


def train(
    model,
    dataset: FewShotDataset,
    steps: int,
    batch_size: int = 32,
    *,
    chunk: int = 50,
    seed: int = 0,
    time_budget_s: float | None = None,
    augment=None,
    progress: bool = True,
) -> dict:
    """Train a compiled Siamese ``model`` for ``steps`` steps of ``batch_size`` balanced pairs.

    Pairs are drawn ``chunk`` steps at a time as index arrays (:func:`sample_pairs`), gathered
    into arrays, and fed to ``model.train_on_batch``. Returns the history: ``step``, ``loss``,
    ``wall_s``, ``pairs`` and ``pairs_per_s``. With ``time_budget_s`` training stops early once
    that many seconds have passed. ``augment(images, rng)``, if given, transforms each gathered
    chunk of images (e.g. :func:`random_flip`).
    """
    from tqdm.auto import tqdm

    from .evaluation import show_progress

    rng = np.random.default_rng(seed)
    losses = []
    done = 0
    start = time.perf_counter()
    with tqdm(total=steps, desc=f"training ({model.head})", leave=False,
              disable=not show_progress(progress), unit="step") as bar:
        while done < steps:
            if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
                break
            n = min(chunk, steps - done)
            i, j, same = sample_pairs(dataset, n * batch_size, rng)
            x1, x2 = dataset.x[i], dataset.x[j]
            if augment is not None:
                x1, x2 = augment(x1, rng), augment(x2, rng)
            for k in range(n):
                sl = slice(k * batch_size, (k + 1) * batch_size)
                losses.append(float(model.train_on_batch((x1[sl], x2[sl]), same[sl])))
                done += 1
                bar.update(1)
            if progress:
                bar.set_postfix(loss=f"{np.mean(losses[-n:]):.3f}", refresh=False)
    wall = time.perf_counter() - start
    return {
        "step": np.arange(1, done + 1), "loss": np.asarray(losses), "steps": done,
        "pairs": done * batch_size, "wall_s": wall, "pairs_per_s": done * batch_size / wall,
    }


# --------------------------------------------------------------------------------------------
# Evaluation: verification and one-shot identification
# --------------------------------------------------------------------------------------------


def dissimilarity(model, z1, z2) -> np.ndarray:
    """Dissimilarity of embedded pairs (low = same): the distance, or minus the "same" logit."""
    from keras import ops

    score = ops.convert_to_numpy(model.compare(z1, z2))
    return score if model.head == "contrastive" else -score


def pair_dissimilarity(model, dataset: FewShotDataset, i, j, chunk: int = 1024) -> np.ndarray:
    """Dissimilarity of the pairs (i, j) of ``dataset``, each image embedded once, in inference
    mode."""
    used, inv = np.unique(np.concatenate([i, j]), return_inverse=True)
    z = embed(model.embedding, dataset.x[used], chunk)
    zi, zj = z[inv[: len(i)]], z[inv[len(i):]]
    return dissimilarity(model, zi, zj)


def best_threshold(dissim: np.ndarray, same: np.ndarray) -> float:
    """The threshold t that maximises the accuracy of "same if dissimilarity < t" on these pairs.

    Call it on training or validation pairs; apply the threshold to the test pairs.
    """
    order = np.argsort(dissim)
    d, s = dissim[order], same[order].astype(bool)
    # Threshold just above d[k]: pairs 0..k say "same". Correct = same ones at or below k plus
    # different ones above k.
    correct = np.cumsum(s) + ((~s).sum() - np.cumsum(~s))
    k = int(np.argmax(correct))
    if (~s).sum() > correct[k]:  # saying "different" for every pair is better still
        return float(d[0] - 1.0)
    upper = d[k + 1] if k + 1 < len(d) else d[k] + 1.0
    return float((d[k] + upper) / 2)


def verification_accuracy(dissim: np.ndarray, same: np.ndarray, threshold: float):
    """Accuracy (%) of "same if dissimilarity < threshold" on pairs, with its 95% CI half-width.

    On balanced pairs (as many same as different) chance is 50 %.
    """
    from .evaluation import mean_ci95

    correct = ((dissim < threshold) == same.astype(bool)).astype(np.float64) * 100.0
    return mean_ci95(correct)


def make_predictor(model, dataset: FewShotDataset | None = None, chunk: int = 1024):
    """A batch predictor for ``evaluation.evaluate``: each query goes to the support item with
    the smallest dissimilarity (for k_shot > 1, the class's smallest one).

    Scores returned are minus the dissimilarity, shape (B, Q, n_way). With a ``dataset``, its
    images are embedded once up front (``metric.EmbeddingCache``).
    """
    embed_episodes = episode_embedder(model.embedding, dataset, chunk)

    def predict(support, support_labels, query, n_way):
        zs, zq = embed_episodes(support, query)
        b, s, q = zs.shape[0], zs.shape[1], zq.shape[1]
        zs, zq = zs.reshape(b, 1, s, -1), zq.reshape(b, q, 1, -1)
        d = dissimilarity(model, zq, zs)  # (B, Q, S)
        onehot = support_labels[:, None, :, None] == np.arange(n_way)  # (B, 1, S, n_way)
        return -np.where(onehot, d[..., None], np.inf).min(axis=2)  # (B, Q, n_way)

    return predict


# --------------------------------------------------------------------------------------------
# Images and audio features
# --------------------------------------------------------------------------------------------


def downsample(x: np.ndarray, factor: int = 2) -> np.ndarray:
    """Average ``factor`` x ``factor`` blocks of images (N, H, W, C); H and W are cropped to
    multiples of ``factor``."""
    n, h, w, c = x.shape
    h, w = h // factor * factor, w // factor * factor
    x = x[:, :h, :w].reshape(n, h // factor, factor, w // factor, factor, c)
    return x.mean(axis=(2, 4)).astype(np.float32)


def random_flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror each image (N, H, W, C) left-right with probability 1/2 (a face stays a face)."""
    flip = rng.random(len(x)) < 0.5
    out = x.copy()
    out[flip] = x[flip, :, ::-1]
    return out


def hz_to_mel(f):
    """The HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular filters (n_mels, n_fft // 2 + 1), centres equally spaced on the mel scale.

    Filter m rises linearly from the centre of filter m-1 to its own centre (value 1) and falls to
    the centre of filter m+1.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, centre, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lo) / (centre - lo)
    falling = (hi - freqs[None]) / (hi - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def stft_power(wave: np.ndarray, n_fft: int = 256, hop: int = 128) -> np.ndarray:
    """Power spectrogram |STFT|^2 with a Hann window: (frames, n_fft // 2 + 1).

    A recording shorter than one window is zero-padded to one window.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if len(wave) < n_fft:
        wave = np.pad(wave, (0, n_fft - len(wave)))
    n_frames = 1 + (len(wave) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = wave[idx] * np.hanning(n_fft).astype(np.float32)
    return np.abs(np.fft.rfft(frames, axis=-1)) ** 2


def log_mel(wave: np.ndarray, sample_rate: int, n_mels: int = 40, n_fft: int = 256,
            hop: int = 128, eps: float = 1e-6) -> np.ndarray:
    """Log-mel spectrogram (n_mels, frames): log(mel filterbank @ power spectrum + eps)."""
    fb = mel_filterbank(n_mels, n_fft, sample_rate)
    return np.log(stft_power(wave, n_fft, hop) @ fb.T + eps).T.astype(np.float32)


def fix_length(spec: np.ndarray, n_frames: int, fill: float) -> np.ndarray:
    """Crop (keeping the centre) or pad (both sides, with ``fill``) a (bands, frames) array to
    ``n_frames`` frames."""
    t = spec.shape[1]
    if t >= n_frames:
        start = (t - n_frames) // 2
        return spec[:, start : start + n_frames]
    before = (n_frames - t) // 2
    return np.pad(spec, ((0, 0), (before, n_frames - t - before)), constant_values=fill)


def audio_features(waves, sample_rate: int, n_mels: int = 40, n_frames: int = 40,
                   n_fft: int = 256, hop: int = 128, eps: float = 1e-6) -> np.ndarray:
    """Log-mel spectrograms of fixed length: (N, n_mels, n_frames, 1) float32, not normalised.

    Padding uses each recording's smallest value (its quietest band and frame).
    """
    specs = []
    for w in waves:
        spec = log_mel(w, sample_rate, n_mels, n_fft, hop, eps)
        specs.append(fix_length(spec, n_frames, float(spec.min())))
    return np.stack(specs)[..., None].astype(np.float32)


# --------------------------------------------------------------------------------------------
# Chapter 2.1's data splits, verification procedure, settings and experiment
# --------------------------------------------------------------------------------------------

CHAPTER = "02_1_siamese_networks"
DATASETS = ("faces", "audio", "omniglot")
#: The FSDD speakers (indices into ``AudioSet.speakers``) kept out of training.
TEST_SPEAKERS = (4, 5)


class Split(NamedTuple):
    """One data set of the chapter: the training classes, the unseen test classes, the set whose
    pairs choose the verification threshold (never the test set), and how records name it."""

    train: FewShotDataset
    test: FewShotDataset
    threshold_set: FewShotDataset
    threshold_from: str
    dataset_name: str  # the records' ``dataset``


def faces_split() -> Split:
    """ORL faces, 2x2-averaged to 56x46, split by person: 30 training people and 10 unseen test
    people (``np.random.default_rng(0).permutation`` of the 40)."""
    from . import data

    faces = data.load_orl_faces()
    faces.x = downsample(faces.x, 2)  # 112x92 -> 56x46
    people = np.random.default_rng(0).permutation(faces.n_classes)
    train = faces.subset(people[:30], name="orl-train-people")
    return Split(train, faces.subset(people[30:], name="orl-test-people"), train,
                 "training-class pairs", "orl-unseen-people")


def audio_split(audio=None, test_speakers=TEST_SPEAKERS) -> Split:
    """FSDD spoken digits (``audio``: ``data.load_fsdd()``, loaded when not given) as 40x40
    log-mel spectrograms, normalised with the training speakers' mean and standard deviation;
    the classes are the digits, the split is by speaker. Each dataset's ``info`` holds the
    recordings' ``speaker`` and ``take`` and the ``speakers``' names."""
    from . import data

    audio = data.load_fsdd() if audio is None else audio
    spectrograms = audio_features(audio.waves, audio.sample_rate, n_mels=40, n_frames=40)
    is_test = np.isin(audio.speaker, list(test_speakers))
    mean, std = spectrograms[~is_test].mean(), spectrograms[~is_test].std()  # training only
    spectrograms = (spectrograms - mean) / std
    digits = [str(d) for d in range(10)]

    def part(mask, name):
        info = dict(speaker=audio.speaker[mask], take=audio.take[mask], speakers=audio.speakers)
        return data.FewShotDataset(spectrograms[mask], audio.digit[mask], digits, name, info)

    train = part(~is_test, f"fsdd-{len(set(audio.speaker[~is_test]))}-speakers")
    test = part(is_test, f"fsdd-{len(test_speakers)}-unseen-speakers")
    return Split(train, test, train, "training-class pairs", "fsdd-unseen-speakers")


def omniglot_split() -> Split:
    """Omniglot, Vinyals et al.'s split: train on ``train``, choose the verification threshold
    on ``val``, test on ``test``."""
    from . import data

    train, val, test = (data.load_omniglot(s) for s in ("train", "val", "test"))
    return Split(train, test, val, "val-split pairs", "omniglot-vinyals-test")


SPLITS = {"faces": faces_split, "audio": audio_split, "omniglot": omniglot_split}


@dataclass
class Verification:
    """Verification on balanced test pairs: ``value`` is the accuracy (%) with its 95% CI
    ``ci95``, at a ``threshold`` chosen on other pairs. ``peek`` is the accuracy the best
    threshold *on the test pairs* would give (not a result: it uses the test labels)."""

    value: float
    ci95: float
    pairs: int
    threshold: float
    peek: float
    dissim: np.ndarray
    same: np.ndarray
    wall_s: float

    @property
    def accuracy(self) -> float:
        return self.value


def verification(model, fit_set: FewShotDataset, test_set: FewShotDataset, n_pairs: int,
                 seed: int, fit_pairs: int = 2000) -> Verification:
    """Choose the threshold that maximises accuracy on ``fit_pairs`` balanced pairs of
    ``fit_set`` (training or validation classes), then apply it, unchanged, to ``n_pairs``
    distinct balanced pairs of ``test_set``."""
    rng = np.random.default_rng(seed)
    i, j, same = sample_pairs(fit_set, fit_pairs, rng)
    threshold = best_threshold(pair_dissimilarity(model, fit_set, i, j), same)
    i, j, same = unique_pairs(test_set, n_pairs, rng)
    start = time.perf_counter()
    dissim = pair_dissimilarity(model, test_set, i, j)
    acc, ci = verification_accuracy(dissim, same, threshold)
    peek, _ = verification_accuracy(dissim, same, best_threshold(dissim, same))
    return Verification(acc, ci, len(same), threshold, peek, dissim, same,
                        time.perf_counter() - start)


#: Chapter 2.1's settings by scale. A value is either one for every data set or a dict by data
#: set (:func:`dataset_settings` resolves it). ``train_steps`` steps of ``batch`` balanced pairs
#: (Adam at ``learning_rate``; the contrastive loss with ``margin`` on unit-length embeddings
#: when ``head="contrastive"`` and ``normalize``), each training capped at ``time_budget_s``
#: seconds (None: no cap); ``seed`` seeds the model and its pairs; ``augment="flip"`` mirrors
#: faces at random. Verification: the threshold from ``threshold_pairs`` pairs of the threshold
#: set, the accuracy on ``verification_pairs`` distinct test pairs (``verification_seed``).
#: One-shot identification: each data set is tested on the settings of ``tests`` whose n_way is
#: among its ``n_ways`` (an ORL person has only 10 photographs), with ``test_query`` queries per
#: class, ``test_episodes`` episodes, seed ``test_seed``; with ``baselines`` nearest neighbour in
#: the input space (pixels, log-mel) is tested on the same episodes.
_FIXED = dict(
    head="contrastive", normalize=True, learning_rate=1e-3, margin=1.0,
    filters=dict(faces=32, audio=32, omniglot=64), batch=dict(faces=32, audio=32, omniglot=64),
    augment=dict(faces="flip", audio=None, omniglot=None), seed=dict(faces=1, audio=2, omniglot=3),
    threshold_pairs=2000, verification_seed=dict(faces=5, audio=6, omniglot=7),
    tests=((5, 1), (10, 1), (20, 1)), n_ways=dict(faces=(5, 10), audio=(5, 10), omniglot=(20,)),
    test_query=dict(faces=5, audio=5, omniglot=15), test_seed=registry.TEST_SEED, baselines=True,
)
SETTINGS = {
    scale: dict(datasets=DATASETS, train_steps=dict(zip(DATASETS, steps)), time_budget_s=budget,
                test_episodes=episodes, verification_pairs=pairs, **_FIXED)
    for scale, steps, budget, episodes, pairs in (
        ("quick", (60, 60, 80), None, 200, 600),
        ("cpu", (500, 500, 1200), dict(faces=150, audio=180, omniglot=270), 1000, 2000),
        ("full", (5000, 5000, 30000), None, 5000, 2000),
    )
}
AUGMENTATIONS = {None: None, "flip": random_flip}
EMBEDDING_NAMES = {"faces": "face_conv4", "audio": "audio_conv4", "omniglot": "omniglot_conv4"}
BASELINES = {"faces": "pixel nearest neighbour", "audio": "log-mel nearest neighbour",
             "omniglot": "pixel nearest neighbour"}


def dataset_settings(settings: dict, name: str) -> dict:
    """The settings of data set ``name``: every per-data-set dict replaced by its entry, and
    ``tests`` cut to the settings whose n_way is among the data set's ``n_ways``."""
    if name not in DATASETS:
        raise ValueError(f"data set must be one of {DATASETS}, got {name!r}")
    out = {k: (v[name] if isinstance(v, dict) else v) for k, v in settings.items()
           if k != "datasets"}
    out["tests"] = tuple((w, k) for w, k in out["tests"] if w in out["n_ways"])
    return out


def settings_by_dataset(settings: dict):
    """The settings of one scale as a ``pandas.DataFrame``, one column per data set."""
    return registry.settings_by_name({name: dataset_settings(settings, name)
                                      for name in DATASETS})


def method_name(ds: dict, name: str) -> str:
    """The records' method name of the Siamese network of data set ``name``, e.g.
    ``"siamese contrastive conv4-32"`` (conv-4 with 32 filters; plain ``conv4``: 64). A variant
    (the exercises': no unit-length embeddings, no mirroring) says how it differs from the
    chapter's network, so that its records are not mistaken for the chapter's."""
    head = "contrastive" if ds["head"] == "contrastive" else "learned-L1"
    width = "" if ds["filters"] == 64 else f"-{ds['filters']}"
    out = f"siamese {head} conv4{width}" + (" log-mel" if name == "audio" else "")
    chapter = dataset_settings(_FIXED, name)
    variant = [f"{k}={ds[k]}" for k in ("normalize", "augment") if ds[k] != chapter[k]]
    return out + (f" ({', '.join(variant)})" if variant else "")


def build(ds: dict, input_shape, name: str):
    """The untrained, compiled Siamese network of data set ``name``, seeded with ``ds["seed"]``."""
    from . import config, models

    config.seed_everything(ds["seed"])
    model = SiameseNetwork(
        models.conv4_embedding(input_shape=input_shape, filters=ds["filters"],
                               name=EMBEDDING_NAMES[name]),
        head=ds["head"], normalize=ds["normalize"])
    return compile_model(model, learning_rate=ds["learning_rate"], margin=ds["margin"])


@registry.register("siamese", chapter=CHAPTER, settings=SETTINGS,
                   aliases={"train_episodes": "train_steps"},
                   describe="Siamese networks on ORL faces, FSDD digits and Omniglot "
                            "(verification and one-shot identification; --dataset picks one)")
def experiment(settings: dict, *, tests=None, data=None, runner=None,
               progress=True) -> registry.Outcome:
    """Chapter 2.1: for each data set of ``settings["datasets"]`` (faces, audio, omniglot),
    train a Siamese network on its training classes, then test it on its unseen classes:
    verification (:func:`verification`) and one-shot identification (``evaluation.evaluate``
    on the book's test episodes), with nearest neighbour in the input space on the same
    episodes when ``settings["baselines"]``. Appends one record per result.

    ``tests``: (n_way, k_shot) settings (default ``settings["tests"]``); a data set is tested on
    those whose n_way is among its ``n_ways``, and skipped when there is none. ``data``: a dict
    of :class:`Split` by data set, when the caller has them loaded. The outcome's ``models``,
    ``histories`` and ``extra`` (the :class:`Split`, the method names and the
    :class:`Verification`) are keyed by data set; ``results`` by ``(method, n_way, k_shot)``,
    verification under ``(method, None, None)`` as its record."""
    from . import baselines, config, evaluation

    names = list(settings["datasets"])
    bad = [n for n in names if n not in DATASETS]
    if bad:
        raise ValueError(f"dataset must be one of {DATASETS}, got {bad}")
    tests = list(tests or settings["tests"])
    out = registry.Outcome(settings=settings)
    for name in names:
        ds = dataset_settings(settings, name)
        mine = [(w, k) for w, k in tests if w in ds["n_ways"]]
        if not mine:
            continue
        split = registry.given(data, name, SPLITS[name])
        for w, k in mine:  # refuse an impossible test before any training
            check_request(split.test, w, k, ds["test_query"])
        model = build(ds, split.train.x.shape[1:], name)
        steps = int(ds["train_steps"])
        hist = train(model, split.train, steps, ds["batch"], seed=ds["seed"],
                     time_budget_s=ds["time_budget_s"], augment=AUGMENTATIONS[ds["augment"]],
                     progress=progress)
        method = method_name(ds, name)
        out.models[name], out.histories[name] = model, hist
        pairs = dict(episodes=hist["pairs"], wall_s=hist["wall_s"],
                     episodes_per_s=hist["pairs_per_s"])  # the records count pairs
        fields = dict(registry.train_fields(pairs, unit="pair", planned=steps * ds["batch"],
                                            budget=ds["time_budget_s"]),
                      train_steps=int(hist["steps"]), train_steps_planned=steps)
        if runner:
            print(f"{name}: trained {hist['steps']} of {steps} steps ({hist['pairs']} pairs) in "
                  f"{hist['wall_s']:.0f} s ({hist['pairs_per_s']:.0f} pairs/s) on "
                  f"{config.device()}")
        v = verification(model, split.threshold_set, split.test, ds["verification_pairs"],
                         ds["verification_seed"], ds["threshold_pairs"])
        out.results[method, None, None] = v
        rec = evaluation.make_record(
            method, split.dataset_name, None, None, v.value, v.ci95, v.pairs, v.wall_s,
            task="verification, accuracy on balanced same/different pairs",
            threshold_from=split.threshold_from, threshold=round(v.threshold, 4), **fields,
            **registry.run_fields(runner))
        evaluation.append_record(CHAPTER, rec)
        out.records.append(rec)
        if runner:
            print(f"{method}: verification {v.value:.2f} ± {v.ci95:.2f} % on {v.pairs} pairs")
        predictors = {method: make_predictor(model, split.test)}
        if ds["baselines"]:
            predictors[BASELINES[name]] = baselines.nearest_neighbour
        tested = registry.Outcome()
        for who, predict in predictors.items():
            extra = dict(fields) if who == method else {}
            registry.test_and_record(tested, who, predict, split.test, ds, chapter=CHAPTER,
                                     dataset_name=split.dataset_name, tests=mine, runner=runner,
                                     progress=progress, n_query=ds["test_query"], **extra)
        out.results.update(tested.results)
        out.records += tested.records
        out.extra[name] = dict(split=split, method=method, baseline=BASELINES[name],
                               verification=v, results=tested.results)
    return out


def summary(outcome: registry.Outcome) -> str:
    """What an experiment found, one line per training run and per result."""
    lines = []
    for name, hist in outcome.histories.items():
        e = outcome.extra[name]
        v = e["verification"]
        loss = hist["loss"]
        lines.append(f"{name}: {hist['pairs']} pairs ({hist['steps']} steps) in "
                     f"{hist['wall_s']:.0f} s, {hist['pairs_per_s']:.0f} pairs/s" + (
                         f"; training loss {loss[:20].mean():.3f} (first 20 steps) -> "
                         f"{loss[-20:].mean():.3f} (last 20)" if len(loss) else ""))
        lines.append(f"  verification on {v.pairs} balanced pairs of {e['split'].test.name}: "
                     f"{v.value:.1f} ± {v.ci95:.1f} % (chance 50 %; threshold {v.threshold:.3f} "
                     f"from {e['split'].threshold_from}; the best threshold on the test pairs "
                     f"would give {v.peek:.1f} %)")
        lines += [f"  {who:38s} {res}" for (who, _, _), res in e["results"].items()]
    return "\n".join(lines)
