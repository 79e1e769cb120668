"""Learning the metric space: a prototypical network, trained episodically (Snell et al. 2017).

An embedding network f maps every image to a vector. In an episode, the prototype of class c is
the mean embedding of its support examples, and a query's score for class c is minus the squared
Euclidean distance from its embedding to that prototype. A softmax over these scores, and the
cross-entropy on the query labels, train f::

    model = PrototypicalNetwork(models.conv4_embedding())
    fed = IndexedEpisodes(model, image_store(train_set.x))   # fed by index arrays
    compile_model(fed, learning_rate=1e-3)
    history = train_indexed(fed, train_set, n_way=60, k_shot=1, n_query=5, episodes=2000)
    evaluation.evaluate(make_predictor(model.embedding), test_set, 5, 1)

Everything is written with ``keras.ops`` and ``keras.layers``, so it runs on any Keras backend.
There is one episodic training loop for every metric-based model of the book,
:func:`train_indexed`: episodes are drawn as index arrays, the images are gathered on the device
inside the compiled step, and ``model.fit`` runs segment after segment without reading anything
back between steps. :class:`IndexedEpisodes` lets any model that takes
``(support, support_onehot, query)`` (chapter 1.2's protonet, chapter 4's relation and matching
networks) train in that loop.

The module also owns two methods' settings and experiments: chapter 1.2's learned metric space
(``METRIC_SPACE_SETTINGS``, :func:`metric_space_experiment`) and chapter 3.1's prototypical
network (``SETTINGS``, :func:`protonet_experiment`).
"""

from __future__ import annotations

import time

import numpy as np

from . import registry
from .baselines import nearest_class_mean
from .data import FewShotDataset
from .episodes import sample_episode


def squared_distances(a, b):
    """Squared Euclidean distances between (..., M, D) and (..., N, D): shape (..., M, N)."""
    from keras import ops

    a2 = ops.sum(a * a, axis=-1)[..., :, None]
    b2 = ops.sum(b * b, axis=-1)[..., None, :]
    ab = ops.matmul(a, ops.swapaxes(b, -1, -2))
    return ops.maximum(a2 - 2.0 * ab + b2, 0.0)


def class_prototypes(support_embeddings, support_onehot):
    """Mean support embedding of each class: (B, S, D) and one-hot (B, S, N) -> (B, N, D)."""
    from keras import ops

    sums = ops.matmul(ops.swapaxes(support_onehot, -1, -2), support_embeddings)  # (B, N, D)
    counts = ops.sum(support_onehot, axis=-2)[..., None]  # (B, N, 1)
    return sums / counts


def onehot(labels: np.ndarray, n_way: int) -> np.ndarray:
    """Integer labels (..., S) -> float32 one-hot (..., S, n_way)."""
    return (np.asarray(labels)[..., None] == np.arange(n_way)).astype(np.float32)


def _model_class():
    import keras
    from keras import ops

    class PrototypicalNetwork(keras.Model):
        """``call((support, support_onehot, query))`` -> scores (B, Q, n_way).

        ``support`` is (B, S, H, W, C), ``support_onehot`` (B, S, n_way), ``query``
        (B, Q, H, W, C); the score of class c is minus the squared distance from the query's
        embedding to the prototype of c. Support and query go through the embedding in one pass.
        """

        def __init__(self, embedding, **kwargs):
            super().__init__(**kwargs)
            self.embedding = embedding

        def call(self, inputs, training=None):
            support, support_onehot, query = inputs
            # Sizes through ops.shape: they change between 5-way and 20-way episodes.
            b, s, q = ops.shape(support)[0], ops.shape(support)[1], ops.shape(query)[1]
            image = tuple(support.shape[2:])
            images = ops.concatenate(
                [ops.reshape(support, (-1, *image)), ops.reshape(query, (-1, *image))], axis=0
            )
            z = self.embedding(images, training=training)  # (B*S + B*Q, D)
            d = ops.shape(z)[-1]
            z_support = ops.reshape(z[: b * s], (b, s, d))
            z_query = ops.reshape(z[b * s :], (b, q, d))
            prototypes = class_prototypes(z_support, support_onehot)  # (B, n_way, D)
            return -squared_distances(z_query, prototypes)  # (B, Q, n_way)

    return PrototypicalNetwork


def PrototypicalNetwork(embedding, **kwargs):  # noqa: N802 - builds a keras.Model subclass
    """A prototypical network around ``embedding`` (a Keras model: images -> vectors)."""
    return _model_class()(embedding, **kwargs)


def episode_loss(query_labels, scores):
    """Mean cross-entropy of the softmax over the classes' scores, over all queries."""
    from keras import ops

    return ops.mean(
        ops.sparse_categorical_crossentropy(query_labels, scores, from_logits=True)
    )


def compile_model(model, learning_rate: float = 1e-3):
    """Adam and the episode loss, with accuracy on the training queries as the metric."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=episode_loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def episode_arrays(dataset: FewShotDataset, n_way, k_shot, n_query, rng, batch):
    """``batch`` episodes as arrays: ((support, support_onehot, query), query_labels)."""
    ep = sample_episode(dataset, n_way, k_shot, n_query, seed=rng, batch=batch)
    return (ep.support, onehot(ep.support_labels, n_way), ep.query), ep.query_labels


def embed(embedding, images: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Embeddings of ``images`` (N, H, W, C), in inference mode, ``chunk`` images per call.

    Every call's batch is padded with zeros to ``chunk`` images, and the padding's embeddings
    are dropped: Keras compiles one predict function per input shape, so the odd-sized last
    chunk of each new set of images would otherwise compile again (and TensorFlow warns of
    "retracing"). In inference mode an image's embedding does not depend on the others in its
    batch, so padding changes nothing but the time of a small call."""
    out = []
    for i in range(0, len(images), chunk):
        part = images[i : i + chunk]
        size = chunk
        if size > len(part):
            part = np.concatenate([part, np.zeros((size - len(part), *part.shape[1:]), part.dtype)])
        out.append(np.asarray(embedding.predict_on_batch(part))[: min(chunk, len(images) - i)])
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


class EmbeddingCache:
    """The embeddings of every image of a dataset, computed once and looked up by pixel content.

    In inference mode (``training=False``) batch normalisation uses its stored statistics, so an
    image's embedding does not depend on the other images in the batch: embedding each of the
    dataset's images once, and looking them up, gives exactly the same scores as embedding every
    episode, many times faster (test episodes reuse the same 33,840 images again and again).
    Images not in the dataset are embedded on the fly.
    """

    def __init__(self, embedding, images: np.ndarray, chunk: int = 1024):
        self.embedding, self.chunk = embedding, chunk
        self.z = embed(embedding, images, chunk)
        self.index = {img.tobytes(): i for i, img in enumerate(images)}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        rows = np.array([self.index.get(img.tobytes(), -1) for img in images])
        missing = rows < 0
        if not missing.any():
            return self.z[rows]
        z = np.empty((len(images), self.z.shape[1]), np.float32)
        z[~missing] = self.z[rows[~missing]]
        z[missing] = embed(self.embedding, images[missing], self.chunk)
        return z


def episode_embedder(embedding, dataset: FewShotDataset | None = None, chunk: int = 1024):
    """``embed_episodes(support, query) -> (z_support, z_query)`` for a batch of episodes,
    shapes (B, S, ...) and (B, Q, ...), in inference mode. With a ``dataset`` its images are
    embedded once up front (:class:`EmbeddingCache`); without, each call embeds its images."""
    if dataset is not None:
        cache = EmbeddingCache(embedding, dataset.x, chunk)
    else:
        def cache(images):
            return embed(embedding, images, chunk)

    def embed_episodes(support, query):
        b, s, q = support.shape[0], support.shape[1], query.shape[1]
        images = np.concatenate([support.reshape(b * s, *support.shape[2:]),
                                 query.reshape(b * q, *query.shape[2:])])
        z = cache(images)
        return z[: b * s].reshape(b, s, *z.shape[1:]), z[b * s :].reshape(b, q, *z.shape[1:])

    return embed_episodes


def numpy_prototypes(z_support, support_labels, n_way):
    """Mean support embedding per class, numpy: (B, S, D), (B, S) -> (B, n_way, D)."""
    oh = onehot(support_labels, n_way)
    return np.einsum("bsc,bsd->bcd", oh, z_support) / oh.sum(axis=1)[..., None]


def make_predictor(embedding, dataset: FewShotDataset | None = None, chunk: int = 1024,
                   distance: str = "euclidean"):
    """A batch predictor for ``evaluation.evaluate``: nearest prototype in the learned space.

    ``predict(support, support_labels, query, n_way)`` embeds all support and query images of the
    batch of episodes, then scores each query by minus its squared distance to each class's mean
    support embedding: nearest class mean, in the embedding space instead of pixel space. With a
    ``dataset``, its images are embedded once up front (see :class:`EmbeddingCache`). With
    ``distance="cosine"`` the scores are cosine similarities to the prototypes instead.
    """
    if distance not in ("euclidean", "cosine"):
        raise ValueError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")
    if dataset is not None:
        cache = EmbeddingCache(embedding, dataset.x, chunk)
    else:
        def cache(images):
            return embed(embedding, images, chunk)

    def predict(support, support_labels, query, n_way):
        b, s, q = support.shape[0], support.shape[1], query.shape[1]
        images = np.concatenate([support.reshape(b * s, *support.shape[2:]),
                                 query.reshape(b * q, *query.shape[2:])])
        z = cache(images)
        z_support, z_query = z[: b * s].reshape(b, s, -1), z[b * s :].reshape(b, q, -1)
        if distance == "euclidean":
            return nearest_class_mean(z_support, support_labels, z_query, n_way)
        p = numpy_prototypes(z_support, support_labels, n_way)
        p = p / (np.linalg.norm(p, axis=-1, keepdims=True) + 1e-6)
        zq = z_query / (np.linalg.norm(z_query, axis=-1, keepdims=True) + 1e-6)
        return np.einsum("bqd,bcd->bqc", zq, p)

    predict.cache = cache  # with a dataset: its embeddings are ``predict.cache.z``
    return predict


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project the rows of ``x`` (N, D) on their first two principal components (numpy SVD)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return (x @ vt[:2].T).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Chapter 3: fast episodic training from index arrays, and the per-scale settings
# --------------------------------------------------------------------------------------------

#: Training settings of the prototypical network, one place for every scale. ``n_way``,
#: ``k_shot`` and ``n_query`` shape the training episodes (Snell et al. 2017: 60-way, 5 queries,
#: the test's number of shots); the learning rate starts at ``learning_rate`` and is halved every
#: ``decay_every`` episodes; every ``val_every`` episodes the model is scored on
#: ``val_episodes`` 5-way episodes of the validation classes and the best weights are kept;
#: ``time_budget_s`` (seconds of training, None = no limit) stops a run early on a slow or busy
#: machine (the learning-rate decay then runs on time, see ``halvings``). The ``cpu`` scale
#: trains 20-way episodes: on 2 CPU cores a 60-way episode costs three times as much, and at a
#: fixed budget more 20-way episodes served better (chapter 1.2). ``matched_shot``: also train
#: a separate model with 5-shot episodes for the 5-shot tests, as the paper did.
_PROTONET_TESTS = dict(tests=registry.TEST_SETTINGS, test_query=15, test_seed=registry.TEST_SEED,
                      meta_batch_size=1, steps_per_execution=1, trainval=False,
                      checkpoint_dir=None)
SETTINGS = {
    "quick": dict(n_way=20, k_shot=1, n_query=5, episodes=200, learning_rate=2e-3,
                  decay_every=100, val_every=0, val_episodes=100, time_budget_s=45,
                  matched_shot=False, test_episodes=100, eval_classes=300, **_PROTONET_TESTS),
    "cpu": dict(n_way=20, k_shot=1, n_query=5, episodes=3000, learning_rate=2e-3,
                decay_every=750, val_every=750, val_episodes=300, time_budget_s=480,
                matched_shot=False, test_episodes=1000, eval_classes=None, **_PROTONET_TESTS),
    "full": dict(n_way=60, k_shot=1, n_query=5, episodes=20000, learning_rate=1e-3,
                 decay_every=2000, val_every=1000, val_episodes=600, time_budget_s=None,
                 matched_shot=True, test_episodes=5000, eval_classes=None, **_PROTONET_TESTS),
}
#: ``test_episodes`` test episodes per setting with ``test_query`` queries per class, on the
#: first ``eval_classes`` test classes (None: all of them; the quick scale is a smoke test);
#: ``trainval``: train on train+val without model selection (full scale, optional);
#: ``checkpoint_dir``: save after each learning-rate segment and resume an interrupted run.

#: Shorter runs for the ablations (cosine against Euclidean distance, Gaussian prototypes): the
#: same episodes for every variant, so that they compare at one budget.
ABLATION_SETTINGS = {
    "quick": dict(SETTINGS["quick"], episodes=60, decay_every=0, time_budget_s=15),
    "cpu": dict(SETTINGS["cpu"], episodes=250, decay_every=125, val_every=0, time_budget_s=150),
    "full": dict(SETTINGS["full"], episodes=5000, decay_every=2000, val_every=0),
}


def settings_for(scale: str | None = None, ablation: bool = False, **overrides) -> dict:
    """The protonet's training settings for ``scale`` (default: the current scale), updated
    with ``overrides`` (e.g. ``k_shot=5``); ``ablation=True`` gives the shorter ablation runs."""
    from .config import scale as current_scale

    s = dict((ABLATION_SETTINGS if ablation else SETTINGS)[scale or current_scale()])
    unknown = set(overrides) - set(s) - {"distance", "seed"}
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(s)}")
    s.update(overrides)
    return s


def cosine_similarities(a, b):
    """Cosine similarities between (..., M, D) and (..., N, D): shape (..., M, N)."""
    from keras import ops

    a = a / ops.sqrt(ops.sum(a * a, axis=-1, keepdims=True) + 1e-12)
    b = b / ops.sqrt(ops.sum(b * b, axis=-1, keepdims=True) + 1e-12)
    return ops.matmul(a, ops.swapaxes(b, -1, -2))


def prototype_scores(z_query, prototypes, distance: str = "euclidean"):
    """Scores (..., Q, N): minus squared Euclidean distance, or cosine similarity."""
    if distance == "euclidean":
        return -squared_distances(z_query, prototypes)
    if distance == "cosine":
        return cosine_similarities(z_query, prototypes)
    raise ValueError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")


def image_store(x: np.ndarray):
    """The training images as one non-trainable Keras variable, kept on the device.

    Omniglot's pixels are multiples of 1/255, so they are stored as uint8 (4x smaller) whenever
    that is exact, and turned back into floats inside the compiled step.
    """
    import keras

    x = np.asarray(x)
    q = np.round(x * 255.0)
    if x.dtype != np.uint8 and np.array_equal(q / 255.0, x.astype(np.float64)):
        return keras.Variable(q.astype(np.uint8), trainable=False, dtype="uint8",
                              name="images_uint8")
    return keras.Variable(x.astype(np.float32), trainable=False, dtype="float32", name="images")


def gather_images(store, index):
    """Images ``store[index]`` as float32 in [0, 1]; ``index`` of any shape -> index.shape + HWC."""
    from keras import ops

    flat = ops.take(store, ops.reshape(index, (-1,)), axis=0)
    if store.dtype == "uint8":
        flat = ops.cast(flat, "float32") / 255.0
    else:
        flat = ops.cast(flat, "float32")
    return ops.reshape(flat, (*ops.shape(index), *store.shape[1:]))


def _indexed_model_class():
    import keras
    from keras import ops

    class IndexedPrototypicalNetwork(keras.Model):
        """A prototypical network that reads its images from a store by index.

        ``call((support_index, query_index))`` takes int32 arrays of shape (B, n_way, k_shot) and
        (B, n_way, n_query), indices into the image store (the training set, kept on the device
        as one variable), gathers the images inside the compiled step, embeds support and query
        in one pass and returns the scores (B, n_way * n_query, n_way). Queries are class-major,
        so query ``i * n_query + j`` has label ``i``.
        """

        def __init__(self, embedding, images, distance="euclidean", **kwargs):
            super().__init__(**kwargs)
            self.embedding, self.distance = embedding, distance
            self.images = images

        def call(self, inputs, training=None):
            support_index, query_index = inputs
            b, n, k = ops.shape(support_index)
            q = ops.shape(query_index)[2]
            images = ops.concatenate(
                [ops.reshape(support_index, (-1,)), ops.reshape(query_index, (-1,))], axis=0
            )
            z = self.embedding(gather_images(self.images, images), training=training)
            d = ops.shape(z)[-1]
            z_support = ops.reshape(z[: b * n * k], (b, n, k, d))
            z_query = ops.reshape(z[b * n * k :], (b, n * q, d))
            return self.scores(z_support, z_query)

        def scores(self, z_support, z_query):
            """(B, N, K, D) support and (B, Q, D) query embeddings -> scores (B, Q, N)."""
            prototypes = ops.mean(z_support, axis=2)  # (B, N, D)
            return prototype_scores(z_query, prototypes, self.distance)

    return IndexedPrototypicalNetwork


def IndexedPrototypicalNetwork(embedding, images, distance="euclidean", **kwargs):  # noqa: N802
    """See ``_indexed_model_class``: a protonet fed with index arrays into ``images``."""
    return _indexed_model_class()(embedding, images, distance, **kwargs)


def _indexed_episodes_class():
    import keras
    from keras import ops

    class IndexedEpisodes(keras.Model):
        """Feeds an episode model from index arrays, so that it trains in :func:`train_indexed`.

        ``call((support_index, query_index))`` takes int32 arrays (B, n_way, k_shot) and
        (B, n_way, n_query) of indices into ``images`` (an :func:`image_store`), gathers the
        images inside the compiled step and returns ``model((support, support_onehot, query))``
        with support and query class-major: support item ``i * k_shot + j`` and query
        ``i * n_query + j`` belong to class ``i``. ``model`` is any episode model of the book
        (chapter 1.2's ``PrototypicalNetwork``, the relation and matching networks); its weights
        are this model's weights, so training this one trains ``model``.
        """

        def __init__(self, model, images, **kwargs):
            super().__init__(**kwargs)
            self.model, self.images = model, images

        def call(self, inputs, training=None):
            support_index, query_index = inputs
            b, n, k = ops.shape(support_index)
            q = ops.shape(query_index)[2]
            support = gather_images(self.images, ops.reshape(support_index, (b, n * k)))
            query = gather_images(self.images, ops.reshape(query_index, (b, n * q)))
            owner = ops.expand_dims(ops.arange(n * k) // k, 1)  # the class of each support item
            support_onehot = ops.cast(ops.equal(owner, ops.expand_dims(ops.arange(n), 0)),
                                      "float32")
            support_onehot = ops.broadcast_to(ops.expand_dims(support_onehot, 0), (b, n * k, n))
            return self.model((support, support_onehot, query), training=training)

    return IndexedEpisodes


def IndexedEpisodes(model, images, **kwargs):  # noqa: N802 - builds a keras.Model subclass
    """See ``_indexed_episodes_class``: ``model`` fed with index arrays into ``images``."""
    return _indexed_episodes_class()(model, images, **kwargs)


def index_batches(dataset: FewShotDataset, n_way, k_shot, n_query, rng, batch):
    """``batch`` episodes as index arrays: ((support_index, query_index), query_labels).

    support_index is (B, n_way, k_shot), query_index (B, n_way, n_query), int32 indices into
    ``dataset.x``; query_labels (B, n_way * n_query) are class-major. Vectorised numpy sampling
    (``episodes.sample_indices``): no images are copied.
    """
    from .episodes import sample_indices

    _, index = sample_indices(dataset, n_way, k_shot, n_query, rng, batch)
    index = index.astype(np.int32)
    labels = np.broadcast_to(np.repeat(np.arange(n_way, dtype=np.int32), n_query),
                             (batch, n_way * n_query))
    return (index[:, :, :k_shot], index[:, :, k_shot:]), np.ascontiguousarray(labels)


def halvings(done: int, elapsed_s: float, decay_every: int | None, episodes: int,
             time_budget_s: float | None = None) -> int:
    """How many times the learning rate has been halved after ``done`` episodes.

    Once every ``decay_every`` episodes; when a ``time_budget_s`` is set, the schedule also runs
    on time (``elapsed_s / time_budget_s * episodes`` episode-equivalents), so a run that is cut
    short by the budget on a slow or busy machine still goes through its decay.
    """
    if not decay_every:
        return 0
    progress = done
    if time_budget_s:
        progress = max(progress, int(elapsed_s / time_budget_s * episodes))
    return progress // decay_every


class _StepLog:
    """Collects what ``model.fit`` reports after each compiled execution, without waiting for it.

    Keras reports running means since the start of each ``fit`` call; :meth:`per_step` turns
    them back into the value of each execution (one step, or ``steps_per_execution`` steps).
    On JAX the callback is dispatched asynchronously (``async_safe``), so the host never waits
    for the device between steps, unless a time budget has to be checked after every step.
    """

    def __init__(self, bar, deadline: float | None):
        import threading

        self.bar, self.deadline = bar, deadline
        self.lock = threading.Lock()
        self.rows: list[tuple[int, float, float]] = []
        self.n_steps, self.mbs = 0, 1

    def callback(self):
        import keras

        log = self

        class Callback(keras.callbacks.Callback):
            async_safe = log.deadline is None

            def on_train_batch_end(self, batch, logs=None):
                steps = min(int(batch) + 1, log.n_steps)
                with log.lock:
                    done_before = max((r[0] for r in log.rows), default=0)
                    log.rows.append((steps, float(logs["loss"]), float(logs["accuracy"])))
                    log.bar.update(max(0, steps - done_before) * log.mbs)
                if log.deadline is not None and time.perf_counter() > log.deadline:
                    self.model.stop_training = True

        return Callback()

    def start(self, n_steps: int, mbs: int):
        self.rows, self.n_steps, self.mbs = [], n_steps, mbs

    def per_step(self):
        """(steps, loss, accuracy) of each execution of the last ``fit`` call, in order."""
        rows = sorted(set(self.rows))
        out, prev_t, prev_l, prev_a = [], 0, 0.0, 0.0
        for t, m_l, m_a in rows:
            k = t - prev_t
            if k > 0:
                acc = (t * m_a - prev_t * prev_a) / k  # float32 rounding: clip to [0, 1]
                out.append((k, (t * m_l - prev_t * prev_l) / k, min(max(acc, 0.0), 1.0)))
                prev_t, prev_l, prev_a = t, m_l, m_a
        return out


def fit_inputs(x, y, batch_size: int) -> dict:
    """The arguments that give ``model.fit`` the arrays ``x``, ``y`` in batches, in order.

    On TensorFlow, a ``tf.data`` pipeline without prefetching or autotuning: the pipeline that
    Keras builds for arrays prefetches with autotuning, and on a 2-core CPU its background
    thread took a core in about half of the ``fit`` calls (0.16 s per 20-way step instead of
    0.09: ``scripts/bench_fit_inputs.py``). On other backends, the arrays themselves.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return {"x": x, "y": y, "batch_size": batch_size}
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return {"x": ds.with_options(options)}


def train_indexed(
    model,
    dataset: FewShotDataset,
    n_way: int,
    k_shot: int,
    n_query: int,
    episodes: int,
    *,
    meta_batch_size: int = 1,
    chunk: int | None = None,
    seed: int = 0,
    learning_rate: float | None = None,
    decay_every: int | None = None,
    time_budget_s: float | None = None,
    callback=None,
    callback_every: int = 0,
    progress: bool = True,
) -> dict:
    """Train a compiled index-fed ``model`` (e.g. ``IndexedPrototypicalNetwork``).

    Training runs as a sequence of ``model.fit`` calls, one per segment of at most ``chunk``
    episodes (default 100 with a time budget, else 1000); segments also end where the learning
    rate halves and where ``callback`` is due. For each segment the index arrays of all its
    episodes are drawn at once, and each compiled step (``meta_batch_size`` episodes; the model
    may be compiled with ``steps_per_execution``) gathers its images on the device. The host
    reads nothing back between steps, so on a GPU the steps queue up without waiting.

    Every ``callback_every`` episodes ``callback(episodes_done)`` is called (validation; its
    time is excluded from the training wall time). With ``learning_rate`` and ``decay_every``
    the rate is halved every ``decay_every`` episodes (see :func:`halvings`), set between
    segments. Training stops after ``episodes`` episodes or ``time_budget_s`` seconds. Returns
    the history: ``episode`` (episodes seen after each execution), ``loss`` and ``accuracy``
    (mean over that execution's queries, in [0, 1]), ``learning_rate``, ``wall_s``,
    ``episodes`` and ``episodes_per_s``.
    """
    from tqdm.auto import tqdm

    from .evaluation import show_progress

    rng = np.random.default_rng(seed)
    mbs = int(meta_batch_size)
    chunk = chunk or (100 if time_budget_s else 1000)
    chunk = max(mbs, chunk // mbs * mbs)
    hist = {"episode": [], "loss": [], "accuracy": [], "learning_rate": []}
    done, excluded = 0, 0.0
    start = time.perf_counter()
    next_callback = callback_every if callback_every else None
    with tqdm(total=episodes, desc=f"training ({n_way}-way {k_shot}-shot)", leave=False,
              disable=not show_progress(progress), unit="episode") as bar:
        deadline = None if time_budget_s is None else start + time_budget_s
        log = _StepLog(bar, deadline)
        cb = log.callback()
        while done < episodes:
            elapsed = time.perf_counter() - start - excluded
            if time_budget_s is not None and elapsed > time_budget_s:
                break
            n = min(chunk, episodes - done)
            if decay_every:
                n = min(n, decay_every - done % decay_every)
            if next_callback is not None and callback is not None:
                n = min(n, next_callback - done)
            lr = None
            if learning_rate is not None:
                lr = learning_rate * 0.5 ** halvings(done, elapsed, decay_every, episodes,
                                                     time_budget_s)
                model.optimizer.learning_rate = lr  # assigns the optimizer's variable
            (s_idx, q_idx), labels = index_batches(dataset, n_way, k_shot, n_query, rng, n)
            log.start(-(-n // mbs), mbs)
            if deadline is not None:
                log.deadline = start + excluded + time_budget_s
            model.fit(**fit_inputs((s_idx, q_idx), labels, mbs), epochs=1, shuffle=False,
                      verbose=0, callbacks=[cb])
            steps = log.per_step()
            seen = 0
            for k, loss, acc in steps:
                seen = min(n, seen + k * mbs)
                hist["episode"].append(done + seen)
                hist["loss"].append(loss)
                hist["accuracy"].append(acc)
                hist["learning_rate"].append(lr if lr is not None else np.nan)
            done += seen
            if progress and hist["loss"]:
                bar.set_postfix(loss=f"{np.mean(hist['loss'][-len(steps):]):.3f}",
                                refresh=False)
            if next_callback is not None and callback is not None and done >= next_callback:
                t0 = time.perf_counter()
                callback(done)
                excluded += time.perf_counter() - t0
                next_callback += callback_every
            if seen < n:  # stopped by the time budget inside the segment
                break
    wall = time.perf_counter() - start - excluded
    hist = {k: np.asarray(v) for k, v in hist.items()}
    hist.update(wall_s=wall, episodes=done, episodes_per_s=done / max(wall, 1e-9))
    return hist


def train_protonet(
    train_ds: FewShotDataset,
    settings: dict | None = None,
    val_ds: FewShotDataset | None = None,
    progress: bool = True,
    *,
    embedding=None,
    model_class=None,
    predictor=None,
    seed: int = 0,
):
    """Train a prototypical network with ``settings`` (default: ``SETTINGS`` at this scale).

    Returns ``(model, log)``: ``model`` is an :class:`IndexedPrototypicalNetwork` (its
    ``.embedding`` is what the predictors need), ``log`` the training history plus, when
    ``val_ds`` is given, ``val_episode`` and ``val_accuracy`` (5-way episodes of the settings'
    shot on the validation classes, %). With validation the weights with the best validation
    accuracy are restored at the end (model selection on ``val``, as in the paper).

    ``model_class(embedding, images, distance)`` and ``predictor(embedding, dataset)`` let the
    variants of chapter 3 (``protonet_variants``) reuse this one training loop.
    """
    import keras

    from . import evaluation
    from .models import conv4_embedding

    s = dict(settings or settings_for())
    distance = s.get("distance", "euclidean")
    mbs = int(s.get("meta_batch_size", 1))
    embedding = embedding or conv4_embedding(input_shape=train_ds.x.shape[1:])
    model_class = model_class or IndexedPrototypicalNetwork
    model = model_class(embedding, image_store(train_ds.x), distance)
    if predictor is None:
        def predictor(emb, ds):
            return make_predictor(emb, ds, distance=distance)
    model.compile(
        optimizer=keras.optimizers.Adam(s["learning_rate"]),
        loss=episode_loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=int(s.get("steps_per_execution", 1)),
    )
    val = {"val_episode": [], "val_accuracy": []}
    best = {"acc": -1.0, "weights": None}

    def validate(done):
        predict = predictor(embedding, val_ds)
        res = evaluation.evaluate(predict, val_ds, 5, s["k_shot"], 15, s["val_episodes"],
                                  seed=1, progress=False)
        val["val_episode"].append(done)
        val["val_accuracy"].append(res.accuracy)
        if res.accuracy > best["acc"]:
            best["acc"], best["weights"] = res.accuracy, embedding.get_weights()

    use_val = val_ds is not None and s.get("val_every")
    hist = train_indexed(
        model, train_ds, s["n_way"], s["k_shot"], s["n_query"], s["episodes"],
        meta_batch_size=mbs, seed=s.get("seed", seed), learning_rate=s["learning_rate"],
        decay_every=s["decay_every"], time_budget_s=s.get("time_budget_s"),
        callback=validate if use_val else None,
        callback_every=s["val_every"] if use_val else 0, progress=progress,
    )
    if use_val:
        if not val["val_episode"] or val["val_episode"][-1] != hist["episodes"]:
            validate(int(hist["episodes"]))
        embedding.set_weights(best["weights"])
        hist["best_val_episode"] = val["val_episode"][int(np.argmax(val["val_accuracy"]))]
    hist.update({k: np.asarray(v) for k, v in val.items()})
    hist["settings"] = s
    return model, hist


def train_with_checkpoints(train_ds, settings: dict, val_ds, ckpt=None, progress=True):
    """:func:`train_protonet`, optionally in segments between learning-rate halvings with the
    weights saved after each segment in ``ckpt`` (a folder), so that an interrupted run resumes
    where it stopped. Model selection on the validation classes keeps the best weights seen at
    the end of any segment. Returns ``(embedding, log)``: without ``ckpt`` the log is
    :func:`train_protonet`'s history; with it, a summary (``episodes``, ``wall_s``,
    ``episodes_per_s``, ``best_val``, ``segment``, ``val``)."""
    import json
    import os
    from pathlib import Path

    from . import evaluation
    from .models import conv4_embedding

    if ckpt is None:  # one call: train_protonet does the decay and the model selection itself
        model, log = train_protonet(train_ds, settings, val_ds, progress)
        log["best_val"] = (float(np.max(log["val_accuracy"])) if len(log["val_accuracy"])
                           else None)
        return model.embedding, log
    ckpt = Path(ckpt)
    total, every = int(settings["episodes"]), int(settings.get("decay_every") or 0)
    seg_len = every if every and every < total else total
    n_segments = -(-total // seg_len)
    embedding = conv4_embedding(input_shape=train_ds.x.shape[1:])
    state = {"segment": 0, "train_wall_s": 0.0, "best_val": -1.0, "val": [], "episodes": 0}
    ckpt.mkdir(parents=True, exist_ok=True)
    if (ckpt / "state.json").exists():
        state = dict(state, **json.loads((ckpt / "state.json").read_text()))
        embedding.load_weights(ckpt / "last.weights.h5")
        print(f"resuming after segment {state['segment']} of {n_segments}")
    done_now = 0
    for seg in range(state["segment"], n_segments):
        episodes = min(seg_len, total - seg * seg_len)
        seg_settings = dict(settings, episodes=episodes, decay_every=0, val_every=0,
                            learning_rate=settings["learning_rate"] * 0.5 ** seg)
        _, log = train_protonet(train_ds, seg_settings, None, progress, embedding=embedding,
                                seed=int(settings.get("seed", 0)) + seg)
        done_now += int(log["episodes"])
        state["train_wall_s"] += float(log["wall_s"])
        state["episodes"] += int(log["episodes"])
        state["segment"] = seg + 1
        if val_ds is not None:
            predict = make_predictor(embedding, val_ds,
                                     distance=settings.get("distance", "euclidean"))
            res = evaluation.evaluate(predict, val_ds, 5, settings["k_shot"], 15,
                                      settings.get("val_episodes", 600), seed=1, progress=False)
            state["val"].append([(seg + 1) * seg_len, res.accuracy])
            if res.accuracy > state["best_val"]:
                state["best_val"] = res.accuracy
                embedding.save_weights(ckpt / "best.weights.h5")
        embedding.save_weights(ckpt / "last.weights.h5")
        tmp = ckpt / "state.json.part"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, ckpt / "state.json")
    if val_ds is not None and (ckpt / "best.weights.h5").exists():
        embedding.load_weights(ckpt / "best.weights.h5")
    wall = state["train_wall_s"]
    log = dict(state, episodes=done_now, episodes_total=state["episodes"], wall_s=wall,
               episodes_per_s=state["episodes"] / wall if wall else 0.0,
               best_val=state["best_val"] if val_ds is not None else None)
    return embedding, log


# --------------------------------------------------------------------------------------------
# The experiments: chapter 1.2's learned metric space and chapter 3.1's prototypical network
# --------------------------------------------------------------------------------------------

CHAPTER_1_2 = "01_2_metric_space"
CHAPTER_3_1 = "03_1_prototypical_networks"

#: Chapter 1.2's settings: a conv-4 prototypical network trained on ``train_way``-way
#: ``train_shot``-shot episodes with ``train_query`` queries per class, ``train_episodes``
#: episodes of Adam at a constant ``learning_rate`` (the plainest recipe; chapter 3.1 adds the
#: paper's schedule and model selection), then tested on the four settings.
METRIC_SPACE_SETTINGS = {
    scale: dict(train_way=way, train_shot=1, train_query=5, train_episodes=episodes,
                learning_rate=1e-3, seed=1, time_budget_s=None, tests=registry.TEST_SETTINGS,
                test_episodes=test_episodes, test_query=15, test_seed=registry.TEST_SEED)
    for scale, way, episodes, test_episodes in (("quick", 20, 200, 100),
                                                ("cpu", 20, 1200, 1000),
                                                ("full", 60, 20000, 5000))
}


@registry.register("metric-space", chapter=CHAPTER_1_2, settings=METRIC_SPACE_SETTINGS,
                   describe="chapter 1.2's learned metric: a conv-4 protonet, constant-rate Adam")
def metric_space_experiment(settings: dict, *, tests=None, data=None, model=None, runner=None,
                            progress=True) -> registry.Outcome:
    """Train chapter 1.2's prototypical network (``model``, or a new conv-4 one) on Omniglot's
    training classes with :func:`train_indexed`, then test it on the book's test episodes.

    ``data``: ``{"train": ..., "test": ...}`` when the caller has them loaded. Returns the
    :class:`registry.Outcome`: ``histories`` and ``models`` under the method's name."""
    from . import config, models

    s = settings
    train, test = registry.omniglot(data, "train"), registry.omniglot(data, "test")
    name = "prototypical network (learned metric)"
    if model is None:
        config.seed_everything(0)
        model = PrototypicalNetwork(models.conv4_embedding(input_shape=train.x.shape[1:],
                                                           name="conv4"))
    fed = IndexedEpisodes(model, image_store(train.x))
    compile_model(fed, learning_rate=s["learning_rate"])
    hist = train_indexed(fed, train, s["train_way"], s["train_shot"], s["train_query"],
                         s["train_episodes"], seed=s["seed"], time_budget_s=s["time_budget_s"],
                         progress=progress)
    if runner:
        print(f"{name}: trained {hist['episodes']} {s['train_way']}-way episodes in "
              f"{hist['wall_s']:.0f} s ({hist['episodes_per_s']:.1f} episodes/s) on "
              f"{config.device()}")
    out = registry.Outcome(settings=s, histories={name: hist}, models={name: model})
    registry.test_and_record(
        out, name, make_predictor(model.embedding, test), test, s, chapter=CHAPTER_1_2,
        dataset_name="omniglot-vinyals-test", tests=tests, runner=runner, progress=progress,
        **registry.train_fields(hist, way=s["train_way"], shot=s["train_shot"],
                                query=s["train_query"], planned=s["train_episodes"],
                                budget=s["time_budget_s"]))
    return out


def eval_set(test: FewShotDataset, settings: dict) -> tuple[FewShotDataset, str]:
    """The evaluation classes of ``settings`` (all test classes, or the first
    ``eval_classes``, for a quick smoke test) and the name records give them."""
    n = settings.get("eval_classes")
    if n is None:
        return test, "omniglot-vinyals-test"
    return test.subset(range(n), name=f"test[:{n}]"), f"omniglot-vinyals-test[:{n}]"


@registry.register("protonet", chapter=CHAPTER_3_1, settings=SETTINGS,
                   aliases={"train_episodes": "episodes"},
                   describe="prototypical network, the paper's recipe at full scale "
                            "(LR halving, model selection on val, matched shot)")
def protonet_experiment(settings: dict, *, tests=None, data=None, runner=None,
                        progress=True) -> registry.Outcome:
    """Chapter 3.1's prototypical network: train with :func:`train_protonet` (one model, or one
    per test shot when ``matched_shot``; with model selection on the validation classes unless
    ``trainval``; resumable with ``checkpoint_dir``), then test on the book's test episodes.

    ``data``: ``{"train", "val", "test"}`` (or ``"trainval"``) datasets already loaded. The
    outcome's ``models`` and ``histories`` are keyed by the training shot."""
    from pathlib import Path

    from . import config

    s = settings
    split = "trainval" if s["trainval"] else "train"
    train = registry.omniglot(data, split)
    val = None if s["trainval"] else registry.omniglot(data, "val")
    test_set, dataset_name = eval_set(registry.omniglot(data, "test"), s)
    tests = list(tests or s["tests"])
    shots = sorted({k for _, k in tests}) if s["matched_shot"] else [s["k_shot"]]
    name = "prototypical network (Euclidean)"
    out = registry.Outcome(settings=s)
    for k_train in shots:
        st = dict(s, k_shot=k_train)
        ckpt = (Path(s["checkpoint_dir"]) / f"protonet-{k_train}shot" if s["checkpoint_dir"]
                else None)
        embedding, log = train_with_checkpoints(train, st, val, ckpt, progress)
        out.models[k_train], out.histories[k_train] = embedding, log
        if runner:
            print(f"trained {log['episodes']} {s['n_way']}-way {k_train}-shot episodes in "
                  f"{log['wall_s']:.0f} s ({log['episodes_per_s']:.0f} episodes/s) on "
                  f"{config.device()}")
        mine = [t for t in tests if not s["matched_shot"] or t[1] == k_train]
        best = log.get("best_val")
        registry.test_and_record(
            out, name, make_predictor(embedding, test_set), test_set, s, chapter=CHAPTER_3_1,
            dataset_name=dataset_name, tests=mine, runner=runner, progress=progress,
            train_split=split, meta_batch_size=s["meta_batch_size"],
            steps_per_execution=s["steps_per_execution"],
            best_val_accuracy=None if best is None else round(best, 2),
            **registry.train_fields(log, way=s["n_way"], shot=k_train, query=s["n_query"],
                                    planned=s["episodes"], budget=s["time_budget_s"]))
    return out
