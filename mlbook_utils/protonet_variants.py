"""Variants of the prototypical network (chapter 3): Gaussian and semi-supervised prototypes.

*Gaussian prototypical network* (Fort 2017). The encoder outputs, besides the embedding
``z`` (D numbers), D more channels ``r`` that are mapped to a positive diagonal *precision*
``s = 1 + softplus(r)``: how sure the network is about each coordinate of this example. A
class's prototype is the precision-weighted mean of its support embeddings, its precision the sum
of theirs, and a query's distance to the class is weighted by that precision::

    p_c = sum_i s_i * z_i / sum_i s_i,   S_c = sum_i s_i,   d(q, c) = sum_d S_cd (q_d - p_cd)^2

(elementwise over the D dimensions). Training reuses ``metric.train_protonet``.

*Semi-supervised prototypes* (Ren et al. 2018). Each episode also has unlabeled examples, some
from the episode's classes and some from *distractor* classes that are not among them. One soft
k-means step refines the prototypes: each unlabeled embedding is softly assigned to the classes
(softmax over minus its squared distances to the prototypes) and joins their means with that
weight::

    p~_c = (sum_i z_i [y_i = c] + sum_j w_jc u_j) / (sum_i [y_i = c] + sum_j w_jc)

Here it is applied at evaluation time to a trained protonet's embedding (no separate training).

Chapter 3.1's two variant experiments live here too, with their settings by scale:
``ABLATION_SETTINGS`` / :func:`ablation_experiment` (Euclidean, cosine and Gaussian protonets at
one short budget) and ``SEMI_SETTINGS`` / :func:`semisupervised_experiment`.
"""

from __future__ import annotations

import time

import numpy as np

from . import metric, registry
from .data import FewShotDataset
from .evaluation import EvalResult, mean_ci95

# --------------------------------------------------------------------------------------------
# Gaussian prototypical network
# --------------------------------------------------------------------------------------------


def split_embedding(z, xp=None):
    """Split an encoder output (..., 2D) into the embedding (..., D) and precision (..., D).

    The precision is ``1 + softplus(raw)``: positive, at least 1 + ln 2 for ReLU outputs.
    Works on Keras tensors (``xp=None``) and on numpy arrays (``xp=np``).
    """
    d = z.shape[-1] // 2
    emb, raw = z[..., :d], z[..., d:]
    if xp is np:
        return emb, 1.0 + np.logaddexp(0.0, raw)
    from keras import ops

    return emb, 1.0 + ops.softplus(raw)


def gaussian_prototypes(z_support, s_support, axis=-2):
    """Precision-weighted prototypes and class precisions.

    ``z_support`` and ``s_support`` are (..., K, D), the K shots of each class along ``axis``:
    returns ``(p, S)``, each (..., D): p = sum s*z / sum s and S = sum s.
    """
    from keras import ops

    total = ops.sum(s_support, axis=axis)
    return ops.sum(s_support * z_support, axis=axis) / total, total


def gaussian_scores(z_query, prototypes, precisions):
    """Minus the precision-weighted squared distance: (B, Q, D), (B, N, D), (B, N, D) -> (B, Q, N).

    sum_d S_cd (q_d - p_cd)^2 = q^2 . S_c - 2 q . (S_c p_c) + sum_d S_cd p_cd^2, as matmuls.
    """
    from keras import ops

    t = ops.swapaxes
    q2 = ops.matmul(z_query * z_query, t(precisions, -1, -2))
    qp = ops.matmul(z_query, t(precisions * prototypes, -1, -2))
    p2 = ops.sum(precisions * prototypes * prototypes, axis=-1)[..., None, :]
    return -ops.maximum(q2 - 2.0 * qp + p2, 0.0)


def _gaussian_model_class():
    base = metric._indexed_model_class()

    class GaussianPrototypicalNetwork(base):
        """An index-fed protonet whose encoder emits an embedding and a diagonal precision."""

        def scores(self, z_support, z_query):
            emb_s, prec_s = split_embedding(z_support)  # (B, N, K, D) each
            emb_q, _ = split_embedding(z_query)  # the query's own precision is not used
            p, s = gaussian_prototypes(emb_s, prec_s, axis=2)  # (B, N, D)
            return gaussian_scores(emb_q, p, s)

    return GaussianPrototypicalNetwork


def GaussianPrototypicalNetwork(embedding, images, distance="gaussian", **kwargs):  # noqa: N802
    """A Gaussian prototypical network around ``embedding`` (whose output has 2D channels)."""
    return _gaussian_model_class()(embedding, images, distance, **kwargs)


def gaussian_embedding(input_shape=(28, 28, 1), dim: int = 64, name="gaussian_conv4"):
    """Conv-4 whose last block has 2 * ``dim`` channels: ``dim`` embedding + ``dim`` precision."""
    from .models import conv4_embedding

    return conv4_embedding(input_shape, filters=64, name=name, out_filters=2 * dim)


def make_gaussian_predictor(embedding, dataset: FewShotDataset | None = None):
    """A batch predictor (numpy) for ``evaluation.evaluate`` with Gaussian prototypes."""
    if dataset is not None:
        cache = metric.EmbeddingCache(embedding, dataset.x)
    else:
        def cache(images):
            return metric.embed(embedding, images)

    def predict(support, support_labels, query, n_way):
        b, s, q = support.shape[0], support.shape[1], query.shape[1]
        z = cache(np.concatenate([support.reshape(b * s, *support.shape[2:]),
                                  query.reshape(b * q, *query.shape[2:])]))
        emb, prec = split_embedding(z, xp=np)
        oh = metric.onehot(support_labels, n_way)  # (B, S, N)
        e_s, p_s = emb[: b * s].reshape(b, s, -1), prec[: b * s].reshape(b, s, -1)
        total = np.einsum("bsn,bsd->bnd", oh, p_s)
        proto = np.einsum("bsn,bsd->bnd", oh, p_s * e_s) / total
        e_q = emb[b * s :].reshape(b, q, -1)
        diff = e_q[:, :, None, :] - proto[:, None]  # (B, Q, N, D)
        return -(total[:, None] * diff * diff).sum(-1)

    return predict


def train_gaussian_protonet(train_ds, settings=None, val_ds=None, progress=True, *, dim=64,
                            seed=0):
    """``metric.train_protonet`` with the Gaussian model, embedding and predictor."""
    s = dict(settings or metric.settings_for())
    s["distance"] = "gaussian"
    return metric.train_protonet(
        train_ds, s, val_ds, progress,
        embedding=gaussian_embedding(train_ds.x.shape[1:], dim),
        model_class=GaussianPrototypicalNetwork, predictor=make_gaussian_predictor, seed=seed,
    )


# --------------------------------------------------------------------------------------------
# Semi-supervised prototypes: episodes with unlabeled examples and distractors, soft k-means
# --------------------------------------------------------------------------------------------


def sample_semisupervised_indices(dataset: FewShotDataset, n_way, k_shot, n_query, n_unlabeled,
                                  n_distractors, rng, batch):
    """Index arrays for ``batch`` semi-supervised episodes.

    Draws ``n_way + n_distractors`` distinct classes. The first ``n_way`` give ``k_shot`` support,
    ``n_query`` query and ``n_unlabeled`` unlabeled examples each (all distinct); the distractor
    classes give ``n_unlabeled`` unlabeled examples each and nothing else. Returns
    ``support`` (B, n_way, k_shot), ``query`` (B, n_way, n_query) and ``unlabeled``
    (B, (n_way + n_distractors) * n_unlabeled, distractors last), and ``is_distractor`` (same
    shape as ``unlabeled``, bool).
    """
    from .episodes import sample_indices

    need = k_shot + n_query + n_unlabeled
    _, index = sample_indices(dataset, n_way + n_distractors, need, 0, rng, batch)
    support = index[:, :n_way, :k_shot]
    query = index[:, :n_way, k_shot : k_shot + n_query]
    unl_episode = index[:, :n_way, k_shot + n_query :].reshape(batch, -1)
    unl_distract = index[:, n_way:, :n_unlabeled].reshape(batch, -1)
    unlabeled = np.concatenate([unl_episode, unl_distract], axis=1)
    is_distractor = np.zeros(unlabeled.shape, bool)
    is_distractor[:, unl_episode.shape[1] :] = True
    return support, query, unlabeled, is_distractor


def soft_kmeans_refine(prototypes, counts, z_unlabeled):
    """One soft k-means step (Ren et al. 2018), numpy, batched.

    ``prototypes`` (B, N, D) are the support means, ``counts`` (B, N) the number of support
    examples behind each, ``z_unlabeled`` (B, U, D). Each unlabeled point is assigned to the
    classes with weights softmax_c(-||u - p_c||^2) and added to their means with that weight.
    Returns the refined prototypes (B, N, D).
    """
    d = ((z_unlabeled[:, :, None, :] - prototypes[:, None]) ** 2).sum(-1)  # (B, U, N)
    logits = -d - (-d).max(axis=-1, keepdims=True)
    w = np.exp(logits)
    w /= w.sum(axis=-1, keepdims=True)  # soft assignment of each unlabeled point to the classes
    sums = prototypes * counts[..., None] + np.einsum("bun,bud->bnd", w, z_unlabeled)
    return sums / (counts + w.sum(axis=1))[..., None]


def evaluate_semisupervised(z_all: np.ndarray, dataset: FewShotDataset, n_way, k_shot,
                            n_query=10, n_unlabeled=5, n_distractors=0, episodes=1000, *,
                            seed=2024, batch=100, scale: float = 1.0) -> dict:
    """Accuracy of plain and soft-k-means-refined prototypes on semi-supervised episodes.

    ``z_all`` holds the embedding of every image of ``dataset`` (row i = ``dataset.x[i]``).
    ``scale`` divides the squared distances inside the soft assignment (a temperature; 1 is
    the paper's). Both methods see the same episodes. Returns ``{"plain": EvalResult,
    "soft k-means": EvalResult}``.
    """
    rng = np.random.default_rng(seed)
    accs = {"plain": [], "soft k-means": []}
    start = time.perf_counter()
    for done in range(0, episodes, batch):
        b = min(batch, episodes - done)
        s_idx, q_idx, u_idx, _ = sample_semisupervised_indices(
            dataset, n_way, k_shot, n_query, n_unlabeled, n_distractors, rng, b)
        protos = z_all[s_idx].mean(axis=2)  # (B, N, D)
        zq = z_all[q_idx].reshape(b, n_way * n_query, -1)
        labels = np.repeat(np.arange(n_way), n_query)
        counts = np.full((b, n_way), float(k_shot))
        zu = z_all[u_idx] / np.sqrt(scale)
        refined = soft_kmeans_refine(protos / np.sqrt(scale), counts, zu) * np.sqrt(scale)
        for name, p in (("plain", protos), ("soft k-means", refined)):
            d = ((zq[:, :, None, :] - p[:, None]) ** 2).sum(-1)
            accs[name].append((d.argmin(-1) == labels).mean(axis=1) * 100.0)
    wall = time.perf_counter() - start
    out = {}
    for name, a in accs.items():
        a = np.concatenate(a)
        mean, ci = mean_ci95(a)
        out[name] = EvalResult(mean, ci, episodes, n_way, k_shot, wall, a)
    return out


# --------------------------------------------------------------------------------------------
# Chapter 3.1's variant experiments
# --------------------------------------------------------------------------------------------

VARIANT_NAMES = {"euclidean": "protonet, squared Euclidean", "cosine": "protonet, cosine",
                 "gaussian": "Gaussian protonet"}

#: The ablation: every variant trained from the same seed on the same short budget
#: (``metric.ABLATION_SETTINGS``: the protonet's settings with fewer episodes), then tested on
#: three settings.
ABLATION_SETTINGS = {
    scale: dict(metric.ABLATION_SETTINGS[scale], variants=tuple(VARIANT_NAMES),
                tests=((5, 1), (5, 5), (20, 1)), variant_seed=1)
    for scale in registry.SCALES
}

#: Semi-supervised episodes, scored with the main protonet's embedding: ``semi_query`` queries,
#: ``semi_unlabeled`` unlabeled examples per class, and 0 or 5 distractor classes
#: (``semi_distractors``), in 5-way episodes of each shot of ``tests``. The base network, when
#: the experiment trains it itself (the runner), has the protonet's settings.
SEMI_SETTINGS = {
    scale: dict(metric.SETTINGS[scale], tests=((5, 1), (5, 5)), semi_query=10,
                semi_unlabeled=5, semi_distractors=(0, 5))
    for scale in registry.SCALES
}


@registry.register("protonet-ablation", chapter=metric.CHAPTER_3_1, settings=ABLATION_SETTINGS,
                   aliases={"train_episodes": "episodes"},
                   describe="Euclidean vs cosine vs Gaussian protonets at one short budget")
def ablation_experiment(settings: dict, *, tests=None, data=None, runner=None,
                        progress=True) -> registry.Outcome:
    """Train each of ``settings["variants"]`` (each after ``config.seed_everything(
    variant_seed)``, with the same episodes) and test it; outcome keyed by variant."""
    from . import config

    s = settings
    train = registry.omniglot(data, "train")
    test_set, dataset_name = metric.eval_set(registry.omniglot(data, "test"), s)
    out = registry.Outcome(settings=s)
    for variant in s["variants"]:
        config.seed_everything(s["variant_seed"])
        if variant == "gaussian":
            model, log = train_gaussian_protonet(train, s, progress=progress)
            predict = make_gaussian_predictor(model.embedding, test_set)
        else:
            model, log = metric.train_protonet(train, dict(s, distance=variant),
                                               progress=progress)
            predict = metric.make_predictor(model.embedding, test_set, distance=variant)
        out.models[variant], out.histories[variant] = model, log
        if runner:
            print(f"{variant}: {log['episodes']} episodes in {log['wall_s']:.0f} s")
        registry.test_and_record(
            out, f"{VARIANT_NAMES[variant]} (ablation budget)", predict, test_set, s,
            chapter=metric.CHAPTER_3_1, dataset_name=dataset_name, tests=tests, runner=runner,
            progress=progress,
            **registry.train_fields(log, way=s["n_way"], shot=s["k_shot"], query=s["n_query"],
                                    planned=s["episodes"], budget=s["time_budget_s"]))
    return out


@registry.register("protonet-semisupervised", chapter=metric.CHAPTER_3_1,
                   settings=SEMI_SETTINGS, aliases={"train_episodes": "episodes"},
                   describe="plain vs soft k-means prototypes on semi-supervised episodes")
def semisupervised_experiment(settings: dict, *, tests=None, data=None, runner=None,
                              progress=True, embedding=None,
                              base_log: dict | None = None) -> registry.Outcome:
    """Score plain and soft-k-means-refined prototypes (:func:`evaluate_semisupervised`) on
    5-way semi-supervised test episodes, with and without distractor classes. ``embedding``:
    the trained protonet's embedding (the chapter passes its own, with its training log
    ``base_log``); without it, one is trained first with the protonet's settings. Results are
    keyed ``(name, k_shot, n_distractors)``."""
    from .evaluation import record_result

    s = settings
    test_set, dataset_name = metric.eval_set(registry.omniglot(data, "test"), s)
    if embedding is None:
        val = None if s["trainval"] else registry.omniglot(data, "val")
        train = registry.omniglot(data, "trainval" if s["trainval"] else "train")
        embedding, base_log = metric.train_with_checkpoints(train, s, val, None, progress)
    z_all = metric.make_predictor(embedding, test_set).cache.z  # every test image, embedded once
    fields = {} if base_log is None else registry.train_fields(
        base_log, way=s["n_way"], shot=s["k_shot"], query=s["n_query"])
    out = registry.Outcome(settings=s, models={"base": embedding})
    for n_way, k_shot in tests or s["tests"]:
        for n_distractors in s["semi_distractors"]:
            res = evaluate_semisupervised(
                z_all, test_set, n_way, k_shot, n_query=s["semi_query"],
                n_unlabeled=s["semi_unlabeled"], n_distractors=n_distractors,
                episodes=s["test_episodes"], seed=s["test_seed"])
            for name, r in res.items():
                out.results[name, k_shot, n_distractors] = r
                out.records.append(record_result(
                    metric.CHAPTER_3_1,
                    f"protonet + {name} prototypes (semi-supervised episodes)", dataset_name, r,
                    n_query=s["semi_query"], n_unlabeled=s["semi_unlabeled"],
                    n_distractors=n_distractors, refinement="evaluation time only", **fields,
                    **registry.run_fields(runner)))
                if runner:
                    print(f"{name}, {k_shot}-shot, {n_distractors} distractor classes: {r}")
    return out
