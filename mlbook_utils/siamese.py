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
"""

from __future__ import annotations

import time

import numpy as np

from .data import FewShotDataset
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
