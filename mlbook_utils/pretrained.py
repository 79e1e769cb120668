"""Strong baselines: a network pretrained to classify every training class, then a simple
classifier on its features (Chen et al. 2019, "A Closer Look at Few-shot Classification";
Tian et al. 2020, "Rethinking Few-Shot Image Classification: a Good Embedding Is All You Need").

No episodes and no meta-learning in training: the book's conv-4 with a dense layer of one logit
per training class (4112 for Omniglot: 1028 characters times 4 rotations) is trained with plain
mini-batch cross-entropy through ``model.fit`` (:func:`pretrain`). The dense layer is then thrown
away, and a new task is solved on the 64-dimensional features of the conv-4:

- :func:`nearest_centroid`: each query goes to the closest class mean of L2-normalised support
  features (a prototypical network's rule, on features learned without episodes);
- :func:`logistic_regression`: multinomial logistic regression fitted on the normalised support
  features, L2-penalised as scikit-learn's default (``C = 1``), as Tian et al. did;
- :func:`cosine_classifier`: a classifier whose logits are a scale factor times the cosine
  between the feature and one weight vector per class (Baseline++ of Chen et al.), fitted on the
  support set; the scale factor is chosen on the validation classes (:func:`tune_scale`);
- :func:`make_finetuner`: the whole network (conv-4 and a new head that starts as the nearest
  centroid rule) fine-tuned on the support set for a few steps of Adam.

All four classifiers take a batch of episodes and return scores of shape (B, Q, n_way), so
``evaluation.evaluate`` scores them on the same test episodes as every other chapter. The
chapter's settings by scale (:data:`SETTINGS`) and its experiment (:func:`experiment`, the
runner's ``pretrained``) live here too.
"""

from __future__ import annotations

import time

import numpy as np

from . import registry
from .metric import onehot as _onehot

CHAPTER = "04_2_strong_baselines"
DATASETS = ("omniglot", "faces", "audio")

NEAREST = "pretrained conv-4 + nearest centroid"
LOGREG = "pretrained conv-4 + logistic regression"
COSINE = "pretrained conv-4 + cosine classifier (Baseline++)"
FINETUNE = "pretrained conv-4 + fine-tuning"
CLASSIFIERS = (NEAREST, LOGREG, COSINE, FINETUNE)


# --------------------------------------------------------------------------------------------
# Pretraining: plain classification of every training class with model.fit
# --------------------------------------------------------------------------------------------


def build_classifier(input_shape, n_classes: int, *, filters: int = 64, learning_rate=1e-3,
                     seed: int = 0):
    """``(model, embedding)``: the book's conv-4 (``models.conv4_embedding``) followed by a dense
    layer of ``n_classes`` logits, compiled with Adam and sparse cross-entropy; ``embedding`` is
    the conv-4 alone (the same layers, so it sees every update of ``model``)."""
    import keras

    from . import config, models

    config.seed_everything(seed)
    embedding = models.conv4_embedding(input_shape=input_shape, filters=filters)
    logits = keras.layers.Dense(n_classes, name="classifier")(embedding.output)
    model = keras.Model(embedding.input, logits, name="pretrained_classifier")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model, embedding


def pretrain(model, dataset, *, epochs: int, batch_size: int = 64, seed: int = 0,
             time_budget_s: float | None = None, augment=None, progress: bool = True) -> dict:
    """Train ``model`` to classify ``dataset`` (all its classes) with ``model.fit``, one call per
    epoch on a fresh shuffle, ``batch_size`` images per step, until ``epochs`` epochs are done or
    ``time_budget_s`` seconds have passed (a callback stops ``fit`` mid-epoch). ``augment(x,
    rng)`` transforms each epoch's images (e.g. ``siamese.random_flip``).

    Returns the history: the loss and accuracy of every step on its own batch (``step``,
    ``loss``, ``accuracy``; not Keras's running means over the epoch), ``epochs`` (completed,
    fractional), ``images`` seen, ``wall_s``, ``images_per_s``; and ``episodes`` and
    ``episodes_per_s`` (here: images) for the records."""
    import keras
    from tqdm.auto import tqdm

    from .evaluation import show_progress
    from .metric import fit_inputs

    rng = np.random.default_rng(seed)
    n = len(dataset)
    steps_per_epoch = -(-n // batch_size)
    rows: list[tuple[float, float]] = []
    start = time.perf_counter()
    deadline = None if time_budget_s is None else start + time_budget_s

    class Log(keras.callbacks.Callback):
        """Each step's own loss and accuracy. Keras logs their running means over the epoch so
        far, m_t after step t (from 0), so step t's own value is (t + 1) m_t - t m_(t-1)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.means = (0.0, 0.0)

        def on_train_batch_end(self, batch, logs=None):
            means = (float(logs["loss"]), float(logs["accuracy"]))
            rows.append(tuple((batch + 1) * m - batch * old for m, old in zip(means, self.means)))
            self.means = means
            bar.update(1)
            if len(rows) % 50 == 0:
                bar.set_postfix(loss=f"{np.mean([r[0] for r in rows[-50:]]):.3f}",
                                refresh=False)
            if deadline is not None and time.perf_counter() > deadline:
                self.model.stop_training = True

    with tqdm(total=epochs * steps_per_epoch, desc="pretraining", unit="step", leave=False,
              disable=not show_progress(progress)) as bar:
        for _ in range(epochs):
            order = rng.permutation(n)
            x = dataset.x[order]
            if augment is not None:
                x = augment(x, rng)
            model.fit(**fit_inputs(x, dataset.y[order].astype("int32"), batch_size), epochs=1,
                      shuffle=False, verbose=0, callbacks=[Log()])
            if deadline is not None and time.perf_counter() > deadline:
                break
    wall = time.perf_counter() - start
    steps = len(rows)
    images = min(steps * batch_size, n * epochs)
    loss, acc = (np.array([r[i] for r in rows]) for i in (0, 1))
    return {"step": np.arange(1, steps + 1), "loss": loss, "accuracy": acc, "steps": steps,
            "epochs": images / n, "images": images, "wall_s": wall,
            "images_per_s": images / max(wall, 1e-9), "episodes": images,
            "episodes_per_s": images / max(wall, 1e-9)}


# --------------------------------------------------------------------------------------------
# Classifiers on frozen features, for a batch of episodes: (B, S, D), (B, S), (B, Q, D)
# --------------------------------------------------------------------------------------------


def l2_normalise(z: np.ndarray) -> np.ndarray:
    """Each feature vector (last axis) divided by its length."""
    return z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def nearest_centroid(zs, ys, zq, n_way: int) -> np.ndarray:
    """Minus the squared distance from each normalised query feature to each class mean of the
    normalised support features: (B, Q, n_way)."""
    zs, zq = l2_normalise(zs), l2_normalise(zq)
    oh = _onehot(ys, n_way)
    means = np.einsum("bsc,bsd->bcd", oh, zs) / oh.sum(axis=1)[..., None]
    d = (np.sum(zq**2, -1)[..., None] - 2 * np.einsum("bqd,bcd->bqc", zq, means)
         + np.sum(means**2, -1)[:, None, :])
    return -d


def fit_logistic_regression(zs, ys, n_way: int, *, c: float = 1.0, steps: int = 300):
    """Multinomial logistic regression fitted on each episode's support features ``zs`` (B, S,
    D), already normalised: ``(W, b)`` of shapes (B, D, n_way) and (B, 1, n_way).

    The objective is scikit-learn's ``LogisticRegression(C=c)``, divided by the number of
    support items S: the mean cross-entropy plus ``|W|^2 / (2 c S)`` (the intercept is not
    penalised). It is convex; Nesterov's accelerated gradient with step ``1 / L`` (L bounds its
    curvature for features of unit length) solves all the episodes of the batch at once."""
    b, s, d = zs.shape
    y = _onehot(ys, n_way)
    lam = 1.0 / (c * s)
    lr = 1.0 / (1.0 + lam)  # softmax curvature <= 1/2, times |[z, 1]|^2 = 2
    w = np.zeros((b, d, n_way), np.float32)
    bias = np.zeros((b, 1, n_way), np.float32)
    w_prev, bias_prev = w, bias
    for t in range(steps):
        mom = t / (t + 3.0)
        vw, vb = w + mom * (w - w_prev), bias + mom * (bias - bias_prev)
        err = (_softmax(zs @ vw + vb) - y) / s
        w_prev, bias_prev = w, bias
        w = vw - lr * (np.einsum("bsd,bsc->bdc", zs, err) + lam * vw)
        bias = vb - lr * err.sum(axis=1, keepdims=True)
    return w, bias


def logistic_regression(zs, ys, zq, n_way: int, *, c: float = 1.0, steps: int = 300
                        ) -> np.ndarray:
    """Tian et al.'s classifier: features L2-normalised, logistic regression fitted on the
    support set (:func:`fit_logistic_regression`); the queries' logits (B, Q, n_way)."""
    w, bias = fit_logistic_regression(l2_normalise(zs), ys, n_way, c=c, steps=steps)
    return l2_normalise(zq) @ w + bias


def cosine_classifier(zs, ys, zq, n_way: int, *, scale: float, steps: int = 100,
                      lr: float = 0.1, seed: int = 0) -> np.ndarray:
    """Baseline++'s classifier fitted on each episode's support set: logits ``scale * cos(z,
    w_c)``, one weight vector ``w_c`` per class, started at random (``seed``) and fitted by
    ``steps`` steps of gradient descent (rate ``lr``) on the support cross-entropy. Returns the
    queries' logits (B, Q, n_way)."""
    zs, zq = l2_normalise(zs), l2_normalise(zq)
    b, s, d = zs.shape
    y = _onehot(ys, n_way)
    w = np.random.default_rng(seed).normal(size=(b, d, n_way)).astype(np.float32)
    for _ in range(steps):
        norm = np.linalg.norm(w, axis=1, keepdims=True)
        wh = w / norm
        err = (_softmax(scale * zs @ wh) - y) / s
        g_wh = scale * np.einsum("bsd,bsc->bdc", zs, err)
        # through the normalisation: remove the radial part, divide by the length
        g = (g_wh - wh * np.sum(g_wh * wh, axis=1, keepdims=True)) / norm
        w = w - lr * g * norm**2  # a step of the same angular size whatever |w| is
    return scale * zq @ l2_normalise(np.swapaxes(w, 1, 2)).swapaxes(1, 2)


FEATURE_CLASSIFIERS = {NEAREST: nearest_centroid, LOGREG: logistic_regression,
                       COSINE: cosine_classifier}


def feature_predictor(embedding, classifier, dataset=None, **kwargs):
    """A predictor for ``evaluation.evaluate``: embed the episodes' images with the frozen
    ``embedding`` (inference mode; each image of ``dataset`` once, ``metric.EmbeddingCache``),
    then ``classifier(zs, ys, zq, n_way, **kwargs)``."""
    from .metric import episode_embedder

    embed_episodes = episode_embedder(embedding, dataset)

    def predict(support, support_labels, query, n_way):
        zs, zq = embed_episodes(support, query)
        return classifier(zs, support_labels, zq, n_way, **kwargs)

    return predict


def tune_scale(embedding, val, scales, *, n_way: int, k_shot: int, n_query: int,
               episodes: int, seed: int, progress: bool = True) -> dict:
    """The cosine classifier's accuracy on validation-class episodes for each scale factor:
    ``{scale: EvalResult}``. The chapter takes the best one for every test setting."""
    from .evaluation import evaluate
    from .metric import episode_embedder

    embed_episodes = episode_embedder(embedding, val)  # each validation image once

    def predictor(scale):
        def predict(support, support_labels, query, n_way):
            zs, zq = embed_episodes(support, query)
            return cosine_classifier(zs, support_labels, zq, n_way, scale=scale)

        return predict

    return {s: evaluate(predictor(s), val, n_way, k_shot, n_query, episodes, seed=seed,
                        progress=progress, desc=f"scale {s:g}") for s in scales}


# --------------------------------------------------------------------------------------------
# Fine-tuning the whole network on the support set
# --------------------------------------------------------------------------------------------


def make_finetuner(embedding, *, steps: int, lr: float, scale: float):
    """A predictor for ``evaluation.evaluate`` that fine-tunes the whole network on each
    episode's support set: a new head ``scale * normalise(f(x)) @ W + b`` whose ``W`` starts as
    the normalised class means of the support features (so that, before any step, it is the
    nearest centroid rule), then ``steps`` steps of Adam (``inner_loop.adam_step``, beta1 0.9)
    at rate ``lr`` on every weight of the conv-4 and the head, on the support cross-entropy.

    Batch normalisation keeps its pretrained statistics (inference mode). Each episode starts
    from the pretrained weights; they are never changed (a pure function through
    ``stateless_call``). Episodes run one at a time (``inner_loop.batched``)."""
    from keras import ops

    from . import inner_loop as il
    from .autodiff import value_and_grad

    trainable = [ops.convert_to_tensor(v.value) for v in embedding.trainable_variables]
    frozen = [ops.convert_to_tensor(v.value) for v in embedding.non_trainable_variables]

    def features(body, x):
        z, _ = embedding.stateless_call(list(body), frozen, x, training=False)
        return z / ops.sqrt(ops.sum(ops.square(z), axis=-1, keepdims=True) + 1e-12)

    def episode_fn(n_way: int):
        def episode(body, xs, ys, xq):
            oh = ops.one_hot(ops.cast(ys, "int32"), n_way, dtype="float32")
            zs = features(body, xs)
            means = ops.matmul(ops.transpose(oh), zs) / ops.sum(oh, axis=0)[:, None]
            w = ops.transpose(
                means / ops.sqrt(ops.sum(ops.square(means), -1, keepdims=True) + 1e-12))
            params = list(body) + [w, ops.zeros((n_way,), "float32")]

            def loss(p):
                logits = scale * ops.matmul(features(p[:-2], xs), p[-2]) + p[-1]
                return il.cross_entropy(ys, logits)

            state = il.adam_state(params)
            for _ in range(steps):
                _, grads = value_and_grad(loss, params)
                params, state = il.adam_step(params, grads, state, lr, beta1=0.9)
            return scale * ops.matmul(features(params[:-2], xq), params[-2]) + params[-1]

        return episode

    runners: dict = {}  # one compiled function per n_way (a static shape)

    def predict(support, support_labels, query, n_way):
        if n_way not in runners:
            runners[n_way] = il.batched(episode_fn(n_way), chunk=10)
        return runners[n_way](trainable, support.astype("float32"),
                              support_labels.astype("int32"), query.astype("float32"))

    return predict


# --------------------------------------------------------------------------------------------
# The chapter's settings and experiment
# --------------------------------------------------------------------------------------------

#: Chapter 4.2's settings by scale. A value is either one for every data set or a dict by data
#: set (``siamese.dataset_settings`` resolves it the same way). Pretraining: ``epochs`` epochs of
#: ``batch_size`` images, Adam at ``learning_rate``, capped at ``time_budget_s`` seconds (None:
#: no cap), ``seed`` seeds the network and the shuffles, ``augment="flip"`` mirrors faces; the
#: data sets and their splits are chapter 2.1's (ORL: 30 training and 10 unseen people; FSDD:
#: 4 training and 2 unseen speakers) and Omniglot's Vinyals split. Cosine classifier: the scale
#: factor of ``cosine_scales`` best on ``val_episodes`` 5-way 1-shot episodes of Omniglot's
#: validation classes (``val_seed``), used on every data set. Logistic regression: ``logreg_c``
#: as scikit-learn's C. Fine-tuning: ``finetune_steps`` Adam steps at ``finetune_lr`` with the
#: head's scale ``finetune_scale``, tested on ``finetune_episodes`` of the test episodes (it is
#: the slow one). Tests: the book's episodes (``test_seed``), ``test_episodes`` per setting.
_FIXED = dict(
    filters=dict(omniglot=64, faces=32, audio=32), batch_size=dict(omniglot=128, faces=32,
                                                                    audio=32),
    learning_rate=1e-3, augment=dict(omniglot=None, faces="flip", audio=None),
    seed=dict(omniglot=0, faces=1, audio=2),
    tests=dict(omniglot=registry.TEST_SETTINGS, faces=((5, 1), (10, 1)), audio=((5, 1), (10, 1))),
    test_query=dict(omniglot=15, faces=5, audio=5), test_seed=registry.TEST_SEED,
    cosine_scales=(2.0, 5.0, 10.0, 20.0, 40.0), val_seed=11, logreg_c=1.0,
    finetune_steps=10, finetune_lr=1e-4, finetune_scale=10.0,
)
SETTINGS = {
    scale: dict(datasets=DATASETS, epochs=dict(zip(DATASETS, epochs)), time_budget_s=budget,
                test_episodes=tests, finetune_episodes=finetune, val_episodes=val, **_FIXED)
    for scale, epochs, budget, tests, finetune, val in (
        ("quick", (1, 20, 10), dict(omniglot=40, faces=6, audio=6), 100, 20, 100),
        ("cpu", (5, 60, 30), dict(omniglot=420, faces=60, audio=60), 1000, 200, 300),
        # Omniglot: Chen et al.'s author stopped "within 5 epochs" (it overfits; issue #14 of
        # wyharveychen/CloserLookFewShot), so the full scale does too.
        ("full", (5, 200, 100), None, 5000, 1000, 1000),
    )
}


def dataset_settings(settings: dict, name: str) -> dict:
    """The settings of data set ``name``: every per-data-set dict replaced by its entry."""
    if name not in DATASETS:
        raise ValueError(f"data set must be one of {DATASETS}, got {name!r}")
    return {k: (v[name] if isinstance(v, dict) else v) for k, v in settings.items()
            if k != "datasets"}


def settings_by_dataset(settings: dict):
    """The settings of one scale as a ``pandas.DataFrame``, one column per data set."""
    return registry.settings_by_name({name: dataset_settings(settings, name)
                                      for name in settings["datasets"]})


def committed_results():
    """The book's committed ``results/`` folder (a checkout's), or None where there is none
    (an installed package, as on Colab): the chapter compares with the other chapters' records
    only where they are."""
    from pathlib import Path

    from .evaluation import repo_root

    root = repo_root() or repo_root(Path(__file__).resolve().parent)
    return root / "results" if root is not None and (root / "results").is_dir() else None


def _split(name: str):
    """``(train, val or None, test, records' data set name)`` of data set ``name``."""
    from . import data, siamese

    if name == "omniglot":
        return (data.load_omniglot("train"), data.load_omniglot("val"),
                data.load_omniglot("test"), "omniglot-vinyals-test")
    split = siamese.faces_split() if name == "faces" else siamese.audio_split()
    return split.train, None, split.test, split.dataset_name


@registry.register("pretrained", chapter=CHAPTER, settings=SETTINGS,
                   aliases={"train_episodes": "epochs"},
                   describe="a conv-4 pretrained on every training class, then nearest "
                            "centroid, logistic regression, Baseline++ or fine-tuning "
                            "(Omniglot, ORL faces, FSDD)")
def experiment(settings: dict, *, tests=None, data=None, runner=None,
               progress=True) -> registry.Outcome:
    """Chapter 4.2: for each data set of ``settings["datasets"]``, pretrain a conv-4 to classify
    its training classes (:func:`pretrain`), then test the four classifiers of its features on
    its unseen classes, on the book's test episodes. On Omniglot the cosine classifier's scale
    factor is first chosen on the validation classes (:func:`tune_scale`); the other data sets
    use that choice (or the median of ``cosine_scales`` when Omniglot is not run first: see
    ``extra[name]["scale_from"]``).

    ``data``: a dict by data set of ``(train, val, test, dataset_name)`` when the caller has them
    loaded. The outcome's ``models`` hold ``(classifier, embedding)``, ``histories`` the
    pretraining histories, ``extra`` the scale sweep, by data set; ``results`` are keyed by
    ``(method, n_way, k_shot)`` for Omniglot and ``(method, n_way, k_shot, data set)`` for
    the others."""
    from . import config
    from .siamese import AUGMENTATIONS

    names = list(settings["datasets"])
    bad = [n for n in names if n not in DATASETS]
    if bad:
        raise ValueError(f"dataset must be one of {DATASETS}, got {bad}")
    out = registry.Outcome(settings=settings)
    scale, scale_from = float(np.median(settings["cosine_scales"])), "the settings' median"
    for name in names:
        ds = dataset_settings(settings, name)
        mine = [t for t in ds["tests"] if tests is None or tuple(t) in set(map(tuple, tests))]
        if not mine:
            continue
        train, val, test, dataset_name = registry.given(data, name, lambda n=name: _split(n))
        model, embedding = build_classifier(train.x.shape[1:], train.n_classes,
                                            filters=ds["filters"],
                                            learning_rate=ds["learning_rate"], seed=ds["seed"])
        hist = pretrain(model, train, epochs=ds["epochs"], batch_size=ds["batch_size"],
                        seed=ds["seed"], time_budget_s=ds["time_budget_s"],
                        augment=AUGMENTATIONS[ds["augment"]], progress=progress)
        out.models[name], out.histories[name] = (model, embedding), hist
        if runner:
            print(f"{name}: pretrained {hist['epochs']:.2f} epochs ({hist['images']} images) in "
                  f"{hist['wall_s']:.0f} s ({hist['images_per_s']:.0f} images/s) on "
                  f"{config.device()}")
        extra = dict(name=name, dataset_name=dataset_name, train_classes=train.n_classes)
        if val is not None:
            sweep = tune_scale(embedding, val, ds["cosine_scales"], n_way=5, k_shot=1,
                               n_query=ds["test_query"], episodes=ds["val_episodes"],
                               seed=ds["val_seed"], progress=progress)
            scale = max(sweep, key=lambda s: sweep[s].accuracy)
            scale_from = f"5-way 1-shot on {ds['val_episodes']} episodes of {val.name}"
            extra["sweep"] = sweep
        extra.update(scale=scale, scale_from=scale_from)
        out.extra[name] = extra
        fields = dict(registry.train_fields(hist, unit="image", budget=ds["time_budget_s"]),
                      train_epochs=round(hist["epochs"], 2), train_classes=train.n_classes,
                      filters=ds["filters"])
        predictors = {
            NEAREST: (feature_predictor(embedding, nearest_centroid, test), {}),
            LOGREG: (feature_predictor(embedding, logistic_regression, test, c=ds["logreg_c"]),
                     dict(logreg_c=ds["logreg_c"])),
            COSINE: (feature_predictor(embedding, cosine_classifier, test, scale=scale),
                     dict(scale_factor=scale, scale_from=scale_from)),
            FINETUNE: (make_finetuner(embedding, steps=ds["finetune_steps"],
                                      lr=ds["finetune_lr"], scale=ds["finetune_scale"]),
                       dict(finetune_steps=ds["finetune_steps"], finetune_lr=ds["finetune_lr"])),
        }
        tested = registry.Outcome()
        for method, (predict, more) in predictors.items():
            run = dict(ds, test_episodes=ds["finetune_episodes"]) if method == FINETUNE else ds
            registry.test_and_record(tested, method, predict, test, run, chapter=CHAPTER,
                                     dataset_name=dataset_name, tests=mine, runner=runner,
                                     progress=progress, **fields, **more)
        for key, res in tested.results.items():
            out.results[key if name == "omniglot" else (*key, name)] = res
        out.records += tested.records
    return out
