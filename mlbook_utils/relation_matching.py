"""Relation networks (Sung et al. 2018) and matching networks (Vinyals et al. 2016).

Both are Keras models with the calling convention of :mod:`mlbook_utils.metric`'s prototypical
network, ``model((support, support_onehot, query))`` -> scores of shape (B, Q, n_way), so they
train in the book's one episodic loop, ``metric.train_indexed``, wrapped in
``metric.IndexedEpisodes`` (index arrays in, images gathered on the device)::

    rn = RelationNetwork(relation_embedding())
    fed = compile_relation(metric.IndexedEpisodes(rn, metric.image_store(train_set.x)))
    metric.train_indexed(fed, train_set, 5, 1, 19, episodes=2000)   # MSE on one-hot targets

    mn = MatchingNetwork(models.conv4_embedding(), fce=True, steps=5)
    fed = compile_matching(metric.IndexedEpisodes(mn, metric.image_store(train_set.x)))
    metric.train_indexed(fed, train_set, 20, 1, 5, episodes=1000)   # -log attention mass

Chapter 4.1's settings (``RELATION_SETTINGS``, ``MATCHING_SETTINGS``,
``MATCHING_PLAIN_SETTINGS``) and its experiment (:func:`experiment`) live here too.

Relation network. The embedding keeps a spatial map: the first three blocks of the conv-4 net
(with pooling, 28 -> 14 -> 7 -> 3) and a fourth block without pooling, so an image becomes a
3x3x64 map. The relation module takes the depth-wise concatenation of a class's map and a
query's map (3x3x128) through two conv blocks (the first pools 3x3 -> 1x1; the second works
on the 1x1 map, so it has nothing to pool, and its 3x3 convolution would use only its centre
tap: it is written as a 1x1 convolution) and two dense layers (8 ReLU units, 1 sigmoid unit).

A convolution of a concatenation is the sum of two convolutions,
``conv([a; b]) = conv_a(a) + conv_b(b)``, so the first convolution is applied once per class
and once per query, and the Q x N pairs are formed by broadcasting a sum before batch
normalisation. This is exactly the paper's relation module, only cheaper: without it, 20-way
test episodes (6000 pairs each) would take minutes per thousand on a CPU. The 2x2 max pooling
of a 3x3 map reads only its top-left 2x2 window, so the maps are cropped to it before the pairs
are formed: the same scores at test time; in training, batch normalisation's statistics are
then taken over those positions only.

Matching network. Cosine attention over the support set, with the full-context embeddings of
the paper's appendix: a bidirectional LSTM g over the support embeddings, and an attention LSTM
f that reads the support set K times for each query. Everything uses ``keras.ops`` and
``keras.layers``, so it runs on any Keras backend.
"""

from __future__ import annotations

import numpy as np

from . import registry
from .data import FewShotDataset
from .metric import class_prototypes, episode_embedder

# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


def conv_bn_relu(x, filters: int, name: str, pool: bool = True):
    """The conv-4 block of :func:`models.conv_block`, with the max pooling optional."""
    from keras import layers

    from .models import conv_block

    if pool:
        return conv_block(x, filters, name)
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def relation_embedding(input_shape=(28, 28, 1), filters: int = 64, pooled_blocks: int = 3,
                       name: str = "relation_embedding"):
    """The conv-4 net with pooling in the first ``pooled_blocks`` blocks only: a spatial map.

    For 28x28 inputs and the default 3 pooled blocks the output is 3x3x``filters``.
    """
    import keras

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i in range(4):
        x = conv_bn_relu(x, filters, name=f"block{i + 1}", pool=i < pooled_blocks)
    return keras.Model(inputs, x, name=name)


def _embed_episodes(embedding, support, query, training):
    """Support (B, S, ...) and query (B, Q, ...) through ``embedding`` in one pass."""
    from keras import ops

    b, s, q = ops.shape(support)[0], ops.shape(support)[1], ops.shape(query)[1]
    image = tuple(support.shape[2:])
    images = ops.concatenate(
        [ops.reshape(support, (-1, *image)), ops.reshape(query, (-1, *image))], axis=0
    )
    z = embedding(images, training=training)
    feat = tuple(z.shape[1:])
    return ops.reshape(z[: b * s], (b, s, *feat)), ops.reshape(z[b * s :], (b, q, *feat))


# --------------------------------------------------------------------------------------------
# Relation network
# --------------------------------------------------------------------------------------------


def _relation_class():
    import keras
    from keras import layers, ops

    class RelationNetwork(keras.Model):
        """``call((support, support_onehot, query))`` -> relation scores in (0, 1), (B, Q, N).

        ``combine`` says how the k support maps of a class become one: ``"sum"`` (the paper)
        or ``"mean"`` (which keeps the scale of 1-shot features, so a 1-shot model transfers
        to 5-shot tests).
        """

        def __init__(self, embedding, filters: int = 64, hidden: int = 8,
                     combine: str = "mean", **kwargs):
            super().__init__(**kwargs)
            if combine not in ("sum", "mean"):
                raise ValueError(f"combine must be 'sum' or 'mean', got {combine!r}")
            self.embedding, self.combine = embedding, combine
            # Block 1 of the relation module: one 3x3 convolution on the concatenation
            # [class map; query map], written as the sum of its two halves.
            self.conv1_class = layers.Conv2D(filters, 3, padding="same", name="rel1_conv_class")
            self.conv1_query = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                             name="rel1_conv_query")
            self.bn1 = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="rel1_bn")
            self.pool1 = layers.MaxPooling2D(2, name="rel1_pool")
            # Block 2, on the 1x1 map left by the pooling (nothing to pool). On a 1x1 map a 3x3
            # convolution with "same" padding only uses its centre tap: a 1x1 convolution.
            self.conv2 = layers.Conv2D(filters, 1, name="rel2_conv")
            self.bn2 = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="rel2_bn")
            self.fc1 = layers.Dense(hidden, activation="relu", name="rel_fc1")
            self.fc2 = layers.Dense(1, activation="sigmoid", name="rel_fc2")

        def call(self, inputs, training=None):
            support, support_onehot, query = inputs
            f_support, f_query = _embed_episodes(self.embedding, support, query, training)
            return self.relate(f_support, support_onehot, f_query, training=training)

        def relate(self, f_support, support_onehot, f_query, training=None):
            """Relation scores from feature maps: (B, S, h, w, c), (B, S, N), (B, Q, h, w, c)."""
            b, q = ops.shape(f_query)[0], ops.shape(f_query)[1]
            n = ops.shape(support_onehot)[-1]
            fmap = tuple(f_support.shape[2:])
            flat = ops.reshape(f_support, (b, ops.shape(f_support)[1], -1))
            classes = class_prototypes(flat, support_onehot)  # (B, N, h*w*c): class means
            if self.combine == "sum":
                classes = classes * ops.sum(support_onehot, axis=-2)[..., None]
            a = self.conv1_class(ops.reshape(classes, (-1, *fmap)))  # (B*N, h, w, F)
            c = self.conv1_query(ops.reshape(f_query, (-1, *fmap)))  # (B*Q, h, w, F)
            # 2x2 max pooling (no padding) reads only the top-left 2*(h//2) x 2*(w//2) window:
            # crop before forming the pairs (the same result, less memory).
            h2, w2 = 2 * (fmap[0] // 2), 2 * (fmap[1] // 2)
            a, c = a[:, :h2, :w2], c[:, :h2, :w2]
            out = tuple(a.shape[1:])
            pairs = (ops.reshape(c, (b, q, 1, *out)) + ops.reshape(a, (b, 1, n, *out)))
            x = ops.reshape(pairs, (-1, *out))  # (B*Q*N, h, w, F): conv1 of [class; query]
            x = self.pool1(ops.relu(self.bn1(x, training=training)))
            x = ops.relu(self.bn2(self.conv2(x), training=training))
            x = self.fc2(self.fc1(ops.reshape(x, (-1, int(np.prod(x.shape[1:]))))))
            return ops.reshape(x, (b, q, n))

    return RelationNetwork


def RelationNetwork(embedding, filters: int = 64, hidden: int = 8, combine: str = "mean",
                    **kwargs):  # noqa: N802 - builds a keras.Model subclass
    """A relation network around ``embedding`` (a Keras model: images -> feature maps)."""
    return _relation_class()(embedding, filters, hidden, combine, **kwargs)


def relation_mse(query_labels, scores):
    """Mean squared error between relation scores (B, Q, N) and the one-hot query labels."""
    from keras import ops

    n = ops.shape(scores)[-1]
    target = ops.cast(
        ops.equal(ops.cast(query_labels, "int32")[..., None], ops.arange(n, dtype="int32")),
        scores.dtype,
    )
    return ops.mean(ops.square(scores - target))


def compile_relation(model, learning_rate=1e-3, global_clipnorm=None):
    """Adam (``learning_rate``: a float or a Keras schedule; gradients clipped to a global norm
    of ``global_clipnorm`` when given) and the relation MSE, with the training-query accuracy as
    the metric."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate,
                                                  global_clipnorm=global_clipnorm),
                  loss=relation_mse,
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return model


# --------------------------------------------------------------------------------------------
# Matching network
# --------------------------------------------------------------------------------------------


def cosine_similarity(a, b, eps: float = 1e-8):
    """Cosine similarities between (..., M, D) and (..., N, D): shape (..., M, N)."""
    from keras import ops

    a = a / ops.sqrt(ops.sum(a * a, axis=-1, keepdims=True) + eps)
    b = b / ops.sqrt(ops.sum(b * b, axis=-1, keepdims=True) + eps)
    return ops.matmul(a, ops.swapaxes(b, -1, -2))


def attention_label_distribution(f_query, g_support, support_onehot, scale=1.0):
    """Matching networks' classifier: p(y | x, S) = sum_i a(x, x_i) y_i, a = softmax(cosine).

    (B, Q, D), (B, S, D), (B, S, N) -> (B, Q, N), each row a probability distribution. The
    cosine similarities are multiplied by ``scale`` before the softmax (1 in the paper).
    """
    from keras import ops

    similarity = scale * cosine_similarity(f_query, g_support)  # (B, Q, S)
    attention = ops.softmax(similarity, axis=-1)  # over the support set
    return ops.matmul(attention, support_onehot)


def _matching_class():
    import keras
    from keras import layers, ops

    class MatchingNetwork(keras.Model):
        """``call((support, support_onehot, query))`` -> log p(y | query, S), (B, Q, N).

        With ``fce=True``, the full-context embeddings of Vinyals et al. (2016, appendix):
        g(x_i, S) = h_fwd_i + h_bwd_i + g'(x_i), a bidirectional LSTM over the support set, and
        f(x, S) = h_K from an attention LSTM that reads the support set ``steps`` times.
        g' = f' = ``embedding`` (shared). With ``fce=False``, f = f' and g = g'.

        ``scale``: the cosine similarities are multiplied by a learned scale, initialised at
        ``scale``, before the softmax; ``None`` keeps the paper's plain cosine (scale 1).
        """

        def __init__(self, embedding, fce: bool = True, steps: int = 5,
                     scale: float | None = None, **kwargs):
            super().__init__(**kwargs)
            self.embedding, self.fce, self.steps = embedding, fce, steps
            self.scale = None
            if scale is not None:
                self.scale = self.add_weight(
                    shape=(), initializer=keras.initializers.Constant(scale),
                    name="cosine_scale")
            dim = int(embedding.output.shape[-1])
            self.dim = dim
            if fce:
                self.support_lstm = layers.Bidirectional(
                    layers.LSTM(dim, return_sequences=True), merge_mode="sum", name="g_bilstm"
                )
                # The attention LSTM's gates: W [f'(x)] + U [h_{k-1}; r_{k-1}] + b.
                self.att_input = layers.Dense(4 * dim, name="f_lstm_input")
                self.att_recurrent = layers.Dense(4 * dim, use_bias=False, name="f_lstm_state")

        def call(self, inputs, training=None):
            support, support_onehot, query = inputs
            z_support, z_query = _embed_episodes(self.embedding, support, query, training)
            return self.match(z_support, support_onehot, z_query, training=training)

        def match(self, z_support, support_onehot, z_query, training=None):
            """log p(y | x, S) from embeddings (B, S, D), one-hot (B, S, N), (B, Q, D)."""
            g, f = z_support, z_query
            if self.fce:
                g = self.full_context_support(z_support, training=training)
                f = self.full_context_query(z_query, g)
            scale = 1.0 if self.scale is None else self.scale
            p = attention_label_distribution(f, g, support_onehot, scale)
            return ops.log(p + 1e-8)

        def full_context_support(self, z_support, training=None):
            """g(x_i, S) = h_fwd_i + h_bwd_i + g'(x_i): a bidirectional LSTM over the set."""
            return z_support + self.support_lstm(z_support, training=training)

        def full_context_query(self, z_query, g):
            """f(x, S): K steps of an LSTM whose state is [h; r], r read from g by attention."""
            h = ops.zeros_like(z_query)  # h_0
            c = ops.zeros_like(z_query)  # c_0
            x_gates = self.att_input(z_query)
            for _ in range(self.steps):
                read = ops.softmax(ops.matmul(h, ops.swapaxes(g, -1, -2)), axis=-1)  # a(h, g_i)
                r = ops.matmul(read, g)  # r_{k-1} = sum_i a(h_{k-1}, g_i) g_i
                gates = x_gates + self.att_recurrent(ops.concatenate([h, r], axis=-1))
                i, fg, cand, o = ops.split(gates, 4, axis=-1)
                c = ops.sigmoid(fg) * c + ops.sigmoid(i) * ops.tanh(cand)
                h = ops.sigmoid(o) * ops.tanh(c) + z_query  # h_k = h_hat_k + f'(x)
            return h

    return MatchingNetwork


def MatchingNetwork(embedding, fce: bool = True, steps: int = 5, scale: float | None = None,
                    **kwargs):  # noqa: N802 - builds a keras.Model subclass
    """A matching network around ``embedding`` (a Keras model: images -> vectors)."""
    return _matching_class()(embedding, fce, steps, scale, **kwargs)


def matching_nll(query_labels, log_probs):
    """Mean of -log p(y* | x*, S) over the queries; ``log_probs`` is (B, Q, N)."""
    from keras import ops

    n = ops.shape(log_probs)[-1]
    target = ops.cast(
        ops.equal(ops.cast(query_labels, "int32")[..., None], ops.arange(n, dtype="int32")),
        log_probs.dtype,
    )
    return -ops.mean(ops.sum(target * log_probs, axis=-1))


def compile_matching(model, learning_rate=1e-3):
    """Adam (``learning_rate``: a float or a Keras schedule) and the negative log-likelihood,
    with the training-query accuracy as the metric."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=matching_nll,
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return model


# --------------------------------------------------------------------------------------------
# Prediction for evaluation.evaluate
# --------------------------------------------------------------------------------------------


def make_predictor(model, head, dataset: FewShotDataset | None = None, batch: int = 10,
                   chunk: int = 1024):
    """A batch predictor for ``evaluation.evaluate`` from a model's embedding and its ``head``.

    ``head(f_support, support_onehot, f_query)`` is ``model.relate`` or ``model.match``: the
    part that compares. In inference mode an image's embedding does not depend on the rest of
    the batch, so with a ``dataset`` its images are embedded once (``metric.EmbeddingCache``);
    the head then runs on ``batch`` episodes at a time.
    """
    from keras import ops

    from .metric import onehot

    embed_episodes = episode_embedder(model.embedding, dataset, chunk)

    def predict(support, support_labels, query, n_way):
        zs, zq = embed_episodes(support, query)
        b = zs.shape[0]
        oh = onehot(support_labels, n_way)
        out = [ops.convert_to_numpy(head(zs[i : i + batch], oh[i : i + batch],
                                         zq[i : i + batch], training=False))
               for i in range(0, b, batch)]
        return np.concatenate(out)

    return predict


# --------------------------------------------------------------------------------------------
# Chapter 4.1's settings and experiment
# --------------------------------------------------------------------------------------------

CHAPTER = "04_1_relation_matching_networks"

_TESTS = dict(tests=registry.TEST_SETTINGS, test_query=15, test_seed=registry.TEST_SEED,
              meta_batch_size=1, time_budget_s=None)
#: The chapter's recipe at ``quick`` and ``cpu`` (20-way 1-shot training with 5 queries per
#: class; Adam with a cosine decay of the learning rate from 3e-3 to 3e-4 over the run), and at
#: ``full`` the relation network's own recipe (Sung et al. 2018, their Omniglot code): 5-way
#: 1-shot episodes with 19 queries per class, Adam at 1e-3 halved every 100,000 episodes,
#: gradients clipped to norm 0.5, for 1,000,000 episodes. Test: ``test_episodes`` episodes per
#: setting with ``test_query`` queries per class, on the first ``eval_classes`` test classes
#: (None: all of them).
_CHAPTER_RECIPE = dict(train_way=20, train_shot=1, train_query=5, learning_rate=3e-3,
                       lr_schedule="cosine", lr_alpha=0.1, decay_every=None,
                       global_clipnorm=None, **_TESTS)
_SCALES = dict(quick=dict(test_episodes=100, eval_classes=300),
               cpu=dict(test_episodes=1000, eval_classes=None),
               full=dict(test_episodes=5000, eval_classes=None))
RELATION_SETTINGS = {
    scale: dict(_CHAPTER_RECIPE, model="relation", train_episodes=episodes, seed=10,
                filters=64, pooled_blocks=3, hidden=8, combine="mean", **_SCALES[scale])
    for scale, episodes in (("quick", 300), ("cpu", 1100), ("full", 1_000_000))
}
RELATION_SETTINGS["full"].update(train_way=5, train_query=19, learning_rate=1e-3,
                                 lr_schedule="halving", decay_every=100_000,
                                 global_clipnorm=0.5)
MATCHING_SETTINGS = {
    scale: dict(_CHAPTER_RECIPE, model="matching", train_episodes=episodes, seed=11, fce=True,
                fce_steps=5, cosine_scale=10.0, **_SCALES[scale])
    for scale, episodes in (("quick", 60), ("cpu", 700), ("full", 20000))
}
#: The ablation: the matching network without full-context embeddings, a smaller budget.
MATCHING_PLAIN_SETTINGS = {
    scale: dict(MATCHING_SETTINGS[scale], model="matching-no-fce", train_episodes=episodes,
                seed=12, fce=False)
    for scale, episodes in (("quick", 40), ("cpu", 400), ("full", 20000))
}
NAMES = {"relation": "relation network", "matching": "matching network (FCE)",
         "matching-no-fce": "matching network (no FCE)"}


def build(settings: dict, input_shape=(28, 28, 1)):
    """The untrained model that ``settings["model"]`` names, seeded with ``settings["seed"]``."""
    from . import config, models

    s = settings
    config.seed_everything(s["seed"])
    if s["model"] == "relation":
        return RelationNetwork(
            relation_embedding(input_shape, filters=s["filters"],
                               pooled_blocks=s["pooled_blocks"]),
            filters=s["filters"], hidden=s["hidden"], combine=s["combine"])
    if s["model"] in ("matching", "matching-no-fce"):
        name = "matching_conv4" if s["fce"] else "plain_conv4"
        return MatchingNetwork(models.conv4_embedding(input_shape=input_shape, name=name),
                               fce=s["fce"], steps=s["fce_steps"], scale=s["cosine_scale"])
    raise ValueError(f"unknown model {s['model']!r}; known: {sorted(NAMES)}")


def train(model, train_set: FewShotDataset, settings: dict, progress: bool = True) -> dict:
    """Train a relation or matching network with ``settings`` in ``metric.train_indexed``;
    return the history (with ``cpu_s``, the process CPU time of training)."""
    import time

    import keras

    from . import metric

    s = settings
    fed = metric.IndexedEpisodes(model, metric.image_store(train_set.x))
    steps = -(-int(s["train_episodes"]) // int(s["meta_batch_size"]))
    if s["lr_schedule"] == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(s["learning_rate"], decay_steps=steps,
                                                    alpha=s["lr_alpha"])
        halving = {}
    elif s["lr_schedule"] == "halving":
        lr = s["learning_rate"]
        halving = dict(learning_rate=lr, decay_every=s["decay_every"])
    else:
        raise ValueError(f"lr_schedule must be 'cosine' or 'halving', got {s['lr_schedule']!r}")
    if s["model"] == "relation":
        compile_relation(fed, lr, global_clipnorm=s["global_clipnorm"])
    else:
        compile_matching(fed, lr)
    cpu_start = time.process_time()
    hist = metric.train_indexed(fed, train_set, s["train_way"], s["train_shot"],
                                s["train_query"], s["train_episodes"],
                                meta_batch_size=s["meta_batch_size"], seed=s["seed"],
                                time_budget_s=s["time_budget_s"], progress=progress, **halving)
    hist["cpu_s"] = time.process_time() - cpu_start
    return hist


def _experiment(settings: dict, *, tests=None, data=None, model=None, runner=None,
                progress=True) -> registry.Outcome:
    """Chapter 4.1: build (or take) the model that ``settings["model"]`` names, train it on
    Omniglot's training classes (:func:`train`), and test it on the book's test episodes.

    ``data``: ``{"train": ..., "test": ...}`` when loaded already. The outcome's ``models`` and
    ``histories`` are keyed by the model's name (:data:`NAMES`)."""
    from . import config, metric

    s = settings
    name = NAMES[s["model"]]
    train_set = registry.omniglot(data, "train")
    test_set, dataset_name = metric.eval_set(registry.omniglot(data, "test"), s)
    model = model if model is not None else build(s, train_set.x.shape[1:])
    hist = train(model, train_set, s, progress)
    if runner:
        print(f"{name}: trained {hist['episodes']} of {s['train_episodes']} "
              f"{s['train_way']}-way episodes in {hist['wall_s']:.0f} s "
              f"({hist['episodes_per_s']:.2f} episodes/s) on {config.device()}")
    head = model.relate if s["model"] == "relation" else model.match
    out = registry.Outcome(settings=s, histories={name: hist}, models={name: model})
    registry.test_and_record(
        out, name, make_predictor(model, head, test_set), test_set, s, chapter=CHAPTER,
        dataset_name=dataset_name, tests=tests, runner=runner, progress=progress,
        train_cpu_s=round(hist["cpu_s"], 1),
        **registry.train_fields(hist, way=s["train_way"], shot=s["train_shot"],
                                query=s["train_query"], planned=s["train_episodes"],
                                budget=s["time_budget_s"]))
    return out


experiment = _experiment
registry.register("relation", chapter=CHAPTER, settings=RELATION_SETTINGS,
                  describe="relation network (chapter recipe; the paper's 5-way recipe at full)",
                  )(_experiment)
registry.register("matching", chapter=CHAPTER, settings=MATCHING_SETTINGS,
                  describe="matching network with full-context embeddings (FCE)")(_experiment)
registry.register("matching-no-fce", chapter=CHAPTER, settings=MATCHING_PLAIN_SETTINGS,
                  describe="matching network without FCE (the chapter's ablation)")(_experiment)
