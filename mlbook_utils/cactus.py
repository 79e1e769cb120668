"""Chapter 9.3: CACTUs, unsupervised meta learning (Hsu, Levine & Finn 2019).

Meta learning needs tasks, and tasks need labels. CACTUs ("clustering to automatically
construct tasks for unsupervised meta-learning") makes them without labels:

1. learn an embedding of the training images with no labels (the paper used ACAI, BiGAN,
   DeepCluster and InfoGAN; here a small convolutional **autoencoder**, :func:`train_encoder`);
2. cluster the embeddings with k-means (:func:`kmeans`); every cluster is a pseudo-class;
3. meta-train on tasks drawn from the clusters, as if they were classes (here chapter 1.2's
   prototypical network, :func:`train_on_labels`);
4. test on the usual labelled test episodes.

The controls, on the same test episodes: the embedding's own nearest-neighbour accuracy (no
meta learning), tasks from **random clusters** of the same sizes (meta learning on noise), and
the supervised prototypical network trained on the true labels for the same number of episodes
(the upper reference). The paper's figures use ACAI embeddings, 500 clusters and (for
ProtoNets) 100 partitions; ours are a simpler encoder and one partition (the authors' own
Omniglot script uses one, "since 100 partitions takes a while"), so we expect to fall short.
"""

from __future__ import annotations

import time

import numpy as np

from . import registry
from .data import FewShotDataset

CHAPTER = "09_3_cactus"

ARMS = ("embedding", "cactus", "random", "supervised")
NAMES = {"embedding": "autoencoder embedding, nearest class mean",
         "cactus": "CACTUs-ProtoNets (k-means clusters)",
         "random": "ProtoNets on random clusters",
         "supervised": "ProtoNets on the true labels"}

_TESTS = dict(test_query=15, test_seed=registry.TEST_SEED)
#: ``ae_images`` training images (a random subset; all when None) train the autoencoder for
#: ``ae_epochs`` epochs (Adam ``ae_lr``, batch ``ae_batch``), once, with seed 0. Its 64-d codes
#: are standardised and clustered into ``clusters`` clusters by k-means (``kmeans_iters``
#: Lloyd iterations from a k-means++ start). Each trained arm is a prototypical network trained
#: from scratch on ``episodes`` ``n_way``-way ``k_shot``-shot episodes of its labels (Adam
#: ``learning_rate``), one per seed of ``seeds``; every model is tested on ``test_episodes``
#: episodes of each of ``tests``. The paper meta-trained on 20-way 1-shot cluster tasks with 5
#: queries and 500 clusters on Omniglot (the authors' scripts).
SETTINGS = {
    scale: dict(ae_images=ae_images, ae_epochs=ae_epochs, ae_batch=128, ae_lr=1e-3,
                clusters=clusters, kmeans_iters=iters, n_way=20, k_shot=1, n_query=5,
                episodes=episodes, learning_rate=1e-3, seeds=seeds, tests=tests,
                test_episodes=test_episodes, eval_classes=eval_classes,
                time_budget_s=None, **_TESTS)
    for scale, ae_images, ae_epochs, clusters, iters, episodes, seeds, tests, test_episodes,
    eval_classes in (
        ("quick", 6000, 1, 100, 10, 60, (0, 1), ((5, 1),), 50, 300),
        ("cpu", 40_000, 2, 500, 20, 600, (0, 1, 2), ((5, 1), (5, 5), (20, 1), (20, 5)), 300,
         None),
        ("full", None, 20, 500, 50, 30_000, (0, 1, 2, 3, 4),
         ((5, 1), (5, 5), (20, 1), (20, 5)), 1000, None),
    )
}


# --------------------------------------------------------------------------------------------
# 1. An embedding without labels: a convolutional autoencoder
# --------------------------------------------------------------------------------------------


def autoencoder(input_shape=(28, 28, 1)):
    """``(model, encoder)``: the book's conv-4 embedding (64-d for 28x28 images) as the
    encoder, and a small decoder (dense to 7x7x32, two transposed convolutions) that rebuilds
    the image from the code; the model outputs logits per pixel."""
    import keras
    from keras import layers

    from .models import conv4_embedding

    encoder = conv4_embedding(input_shape, name="ae_encoder")
    inputs = keras.Input(shape=input_shape)
    z = encoder(inputs)
    h = layers.Dense(7 * 7 * 32, activation="relu")(z)
    h = layers.Reshape((7, 7, 32))(h)
    h = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(h)
    logits = layers.Conv2DTranspose(1, 3, strides=2, padding="same")(h)
    return keras.Model(inputs, logits, name="autoencoder"), encoder


def train_encoder(x: np.ndarray, s: dict, *, seed: int = 0, progress: bool = True):
    """Train the autoencoder on images ``x`` (no labels) with the settings ``s``; returns
    ``(model, encoder, history)``: the autoencoder, its encoder, and the reconstruction loss
    (binary cross-entropy per pixel) of every epoch with the wall time."""
    import keras

    from . import config

    config.seed_everything(seed)
    rng = np.random.default_rng(seed)
    n = len(x) if s["ae_images"] is None else min(len(x), s["ae_images"])
    sub = np.asarray(x[rng.choice(len(x), n, replace=False)], dtype=np.float32)
    model, encoder = autoencoder(sub.shape[1:])
    model.compile(optimizer=keras.optimizers.Adam(s["ae_lr"]),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    from tqdm.auto import tqdm

    from .evaluation import show_progress

    steps = -(-n // s["ae_batch"]) * s["ae_epochs"]
    with tqdm(total=steps, desc="autoencoder", unit="batch", leave=False,
              disable=not show_progress(progress)) as bar:

        class Bar(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                bar.update(1)

        start = time.perf_counter()
        fit = model.fit(sub, sub, batch_size=s["ae_batch"], epochs=s["ae_epochs"],
                        shuffle=True, verbose=0, callbacks=[Bar()])
    return model, encoder, {"loss": list(map(float, fit.history["loss"])), "images": n,
                            "wall_s": time.perf_counter() - start}


def encode(encoder, x: np.ndarray, batch: int = 2048) -> np.ndarray:
    """The codes of ``x`` (inference mode), as float64, shape (len(x), 64)."""
    out = [np.asarray(encoder.predict_on_batch(np.asarray(x[i:i + batch], dtype=np.float32)))
           for i in range(0, len(x), batch)]
    return np.concatenate(out).astype(np.float64)


# --------------------------------------------------------------------------------------------
# 2. Pseudo-classes: k-means
# --------------------------------------------------------------------------------------------


def _sq_dists(z: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum((z * z).sum(1)[:, None] - 2 * z @ c.T + (c * c).sum(1)[None, :], 0.0)


def kmeans(z: np.ndarray, k: int, iters: int = 20, seed: int = 0,
           chunk: int = 8192) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Lloyd's k-means on the rows of ``z`` from a k-means++ start; returns ``(labels,
    centres, inertia)`` with the mean squared distance to the nearest centre after each
    iteration (it never rises). An emptied cluster is restarted at the point farthest from its
    centre."""
    rng = np.random.default_rng(seed)
    n = len(z)
    if not 0 < k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    centres = [z[rng.integers(n)]]
    d2 = _sq_dists(z, centres[0][None])[:, 0]
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else None
        centres.append(z[rng.choice(n, p=p)])
        d2 = np.minimum(d2, _sq_dists(z, centres[-1][None])[:, 0])
    c = np.stack(centres)
    inertia = []
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        best = np.empty(n)
        for i in range(0, n, chunk):
            d = _sq_dists(z[i:i + chunk], c)
            labels[i:i + chunk] = d.argmin(1)
            best[i:i + chunk] = d[np.arange(len(d)), labels[i:i + chunk]]
        inertia.append(float(best.mean()))
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(c)
        np.add.at(sums, labels, z)
        for j in np.flatnonzero(counts == 0):
            far = int(best.argmax())
            sums[j], counts[j], best[far] = z[far], 1, 0.0
        c = sums / counts[:, None]
    return labels, c, inertia


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
    """The fraction of images whose cluster's most common true class is their own (1: every
    cluster is one class; the share of the largest class when the clusters are random)."""
    k = int(labels.max()) + 1
    table = np.zeros((k, int(truth.max()) + 1), dtype=np.int64)
    np.add.at(table, (labels, truth), 1)
    return float(table.max(1).sum() / len(labels))


def as_dataset(x: np.ndarray, labels: np.ndarray, name: str) -> FewShotDataset:
    """The training images with ``labels`` as their classes (pseudo-classes ``cluster i``)."""
    k = int(labels.max()) + 1
    return FewShotDataset(x, labels, [f"cluster {i}" for i in range(k)], name)


def random_like(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Random clusters with exactly the sizes of ``labels``' clusters: the labels shuffled
    across images."""
    return np.random.default_rng(seed).permutation(labels)


# --------------------------------------------------------------------------------------------
# 3. Meta-training on the clusters, and the experiment
# --------------------------------------------------------------------------------------------


def train_on_labels(ds: FewShotDataset, s: dict, seed: int, *, progress=True):
    """Chapter 1.2's prototypical network, from scratch, on ``ds``'s classes (true or
    pseudo): ``s["episodes"]`` episodes of ``n_way``-way ``k_shot``-shot with ``n_query``
    queries, Adam at a constant ``learning_rate``; returns ``(embedding, history)``."""
    from . import config, metric

    config.seed_everything(seed)
    ps = dict(n_way=s["n_way"], k_shot=s["k_shot"], n_query=s["n_query"],
              episodes=s["episodes"], learning_rate=s["learning_rate"], decay_every=None,
              val_every=0, time_budget_s=s["time_budget_s"], seed=seed)
    model, hist = metric.train_protonet(ds, ps, progress=progress, seed=seed)
    return model.embedding, hist


def experiment(settings: dict, *, tests=None, data=None, runner=None,
               progress=True) -> registry.Outcome:
    """The autoencoder and k-means once (seed 0), then every trained arm with every seed, all
    tested on the same episodes. Results keyed ``(arm, n_way, k_shot, seed)`` (the embedding
    arm with seed None), metric ``accuracy``; paired differences over seeds (CACTUs minus each
    control) in ``extra["paired", other, n_way, k_shot]``, metric ``accuracy_difference``;
    ``extra`` also holds the encoder's losses, the k-means inertia and the clusters' purity."""
    from . import metric
    from .evaluation import append_record, evaluate, make_record, paired_difference

    s = settings
    tests = list(tests or s["tests"])
    train = registry.omniglot(data, "train")
    test, dataset_name = metric.eval_set(registry.omniglot(data, "test"), s)
    out = registry.Outcome(settings=s)
    extra = registry.run_fields(runner)

    ae, encoder, ae_hist = train_encoder(train.x, s, progress=progress)
    out.models["autoencoder"] = ae
    start = time.perf_counter()
    z = encode(encoder, train.x)
    z = (z - z.mean(0)) / (z.std(0) + 1e-8)
    labels, _, inertia = kmeans(z, s["clusters"], s["kmeans_iters"], seed=0)
    kmeans_s = time.perf_counter() - start
    rand = random_like(labels, seed=0)
    sizes = np.bincount(labels, minlength=s["clusters"])
    out.extra.update(ae=ae_hist, inertia=inertia, kmeans_s=kmeans_s, sizes=sizes, labels=labels,
                     purity={"cactus": purity(labels, train.y), "random": purity(rand, train.y)})
    if runner:
        print(f"autoencoder: {ae_hist['images']} images, loss {ae_hist['loss'][-1]:.4f}, "
              f"{ae_hist['wall_s']:.0f} s; k-means {s['clusters']} clusters in {kmeans_s:.0f} s, "
              f"purity {out.extra['purity']['cactus']:.3f}")
    label_sets = {"cactus": as_dataset(train.x, labels, "omniglot-train k-means clusters"),
                  "random": as_dataset(train.x, rand, "omniglot-train random clusters"),
                  "supervised": train}

    def test_all(arm, embedding, seed, hist=None):
        predict = metric.make_predictor(embedding, test)
        for n_way, k_shot in tests:
            res = evaluate(predict, test, n_way, k_shot, s["test_query"], s["test_episodes"],
                           seed=s["test_seed"], progress=progress,
                           desc=f"{arm} {n_way}w{k_shot}s")
            out.results[arm, n_way, k_shot, seed] = res
            fields = {} if hist is None else registry.train_fields(
                hist, way=s["n_way"], shot=s["k_shot"], query=s["n_query"],
                planned=s["episodes"], budget=s["time_budget_s"])
            rec = make_record(NAMES[arm], dataset_name, n_way, k_shot, res.accuracy, res.ci95,
                              res.episodes, res.wall_s, arm=arm, seed=seed,
                              clusters=s["clusters"] if arm in ("cactus", "random") else None,
                              purity=round(out.extra["purity"][arm], 4)
                              if arm in ("cactus", "random") else None,
                              encoder_images=ae_hist["images"], encoder_epochs=s["ae_epochs"],
                              **fields, **extra)
            append_record(CHAPTER, rec)
            out.records.append(rec)
            if runner:
                print(f"{NAMES[arm]} seed {seed}: {n_way}w{k_shot}s {res}")

    test_all("embedding", encoder, None)
    for seed in s["seeds"]:
        for arm in ("cactus", "random", "supervised"):
            emb, hist = train_on_labels(label_sets[arm], s, seed, progress=progress)
            out.histories[arm, seed] = hist
            out.models[arm, seed] = emb
            test_all(arm, emb, seed, hist)
    if len(s["seeds"]) >= 2:
        for n_way, k_shot in tests:
            a = [out.results["cactus", n_way, k_shot, sd].accuracy for sd in s["seeds"]]
            for other in ("embedding", "random", "supervised"):
                b = [out.results[other, n_way, k_shot, None if other == "embedding" else sd]
                     .accuracy for sd in s["seeds"]]
                mean, ci, n = paired_difference(a, b)
                out.extra["paired", other, n_way, k_shot] = (mean, ci, n)
                rec = make_record(f"CACTUs-ProtoNets minus {NAMES[other]} (paired over seeds)",
                                  dataset_name, n_way, k_shot, mean, ci, n, 0.0,
                                  metric="accuracy_difference", pairs="seeds",
                                  seeds=list(s["seeds"]), **extra)
                append_record(CHAPTER, rec)
                out.records.append(rec)
    return out


registry.register("cactus", chapter=CHAPTER, settings=SETTINGS,
                  aliases={"train_episodes": "episodes"},
                  describe="CACTUs: autoencoder + k-means tasks, ProtoNets; against the "
                           "embedding's nearest neighbour, random clusters and supervised "
                           "ProtoNets")(experiment)
