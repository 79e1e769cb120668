"""Chapter 9.4: learning in the concept space (deep meta-learning, DEML; Zhou, Wu and Li 2018).

Three parts: a *concept generator* (the conv-4 embedding of chapter 3.1), a *meta-learner*
working on the concepts (a prototypical network: nearest prototype in the embedding space) and
a *concept discriminator* (a softmax head on the embedding) trained on an external labelled
set. The three are trained jointly on

    loss = protonet episode loss + lambda * cross-entropy of the discriminator on external images.

The paper used CIFAR-100 and CUB-200 with ImageNet as the external set; neither is available
offline, so this is a new measurement on Omniglot. The Vinyals *training* split's alphabets are
cut into two disjoint groups: meta-training episodes (and validation episodes, from a few held-out
alphabets of that group) come from group A, the external labelled set from group B. The test
classes (the Vinyals test split) overlap neither.
"""

from __future__ import annotations

import time

import numpy as np

from . import metric, registry
from .data import FewShotDataset

CHAPTER = "09_4_concept_space"


def alphabet_groups(train: FewShotDataset, n_val_alphabets: int = 3, seed: int = 0):
    """Split ``train``'s alphabets into (meta-training, validation, external) class datasets.

    Alphabets are shuffled with ``seed``; the first half (less ``n_val_alphabets``) is the
    meta-training group, the next ``n_val_alphabets`` the validation group, the rest the external
    set. No alphabet (hence no character) is in two groups."""
    alpha = np.array([n.split("/")[0] for n in train.class_names])
    names = sorted(set(alpha))
    order = np.random.default_rng(seed).permutation(len(names))
    half = len(names) // 2
    meta_a = [names[i] for i in order[: half - n_val_alphabets]]
    val_a = [names[i] for i in order[half - n_val_alphabets : half]]
    ext_a = [names[i] for i in order[half:]]

    def classes(alphabets, tag):
        idx = [c for c in range(train.n_classes) if alpha[c] in set(alphabets)]
        return train.subset(idx, name=f"omniglot-train-{tag}")

    return classes(meta_a, "meta"), classes(val_a, "val"), classes(ext_a, "external")


def joint_loss(query_labels, scores, external_labels, external_logits, lam):
    """DEML's objective: the protonet episode loss plus ``lam`` times the concept
    discriminator's cross-entropy on a batch of external labelled images."""
    from keras import ops

    disc = ops.mean(ops.sparse_categorical_crossentropy(external_labels, external_logits,
                                                        from_logits=True))
    return metric.episode_loss(query_labels, scores) + lam * disc


def _model_class():
    import keras

    class ConceptSpaceModel(keras.Model):
        """``call((support, support_onehot, query, external))`` -> (scores, external_logits).

        The prototypical network scores the episode's queries; the concept discriminator
        (a dense softmax head on the same embedding) classifies the external images."""

        def __init__(self, embedding, n_external, **kwargs):
            super().__init__(**kwargs)
            self.embedding = embedding
            self.protonet = metric.PrototypicalNetwork(embedding)
            self.discriminator = keras.layers.Dense(n_external, name="concept_discriminator")

        def call(self, inputs, training=None):
            support, support_onehot, query, external = inputs
            scores = self.protonet((support, support_onehot, query), training=training)
            logits = self.discriminator(self.embedding(external, training=training))
            return scores, logits

    return ConceptSpaceModel


def ConceptSpaceModel(embedding, n_external, **kwargs):  # noqa: N802 - builds a keras.Model
    """DEML's three parts around ``embedding`` (the concept generator)."""
    return _model_class()(embedding, n_external, **kwargs)


def train_deml(meta: FewShotDataset, external: FewShotDataset | None, s: dict, lam: float,
               seed: int, progress: bool = True, desc: str = "DEML"):
    """Train the concept generator for ``s["episodes"]`` episodes of ``meta`` with the joint
    loss (``lam`` = 0 or ``external`` None: a plain prototypical network). One episode and
    ``s["external_batch"]`` external images per step, Adam at ``s["learning_rate"]``; training
    stops early once ``s["time_budget_s"]`` seconds (if set) have passed.
    Returns (embedding, history)."""
    import keras
    from tqdm.auto import tqdm

    from .evaluation import show_progress
    from .models import conv4_embedding

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    embedding = conv4_embedding(meta.x.shape[1:])
    n_ext = external.n_classes if external is not None else 1
    model = ConceptSpaceModel(embedding, n_ext)
    weight = float(lam) if external is not None else 0.0
    model.compile(optimizer=keras.optimizers.Adam(s["learning_rate"]),
                  loss=[metric.episode_loss, keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True)], loss_weights=[1.0, weight])
    nb, budget = s["external_batch"], s.get("time_budget_s")
    losses, start = [], time.perf_counter()
    bar = tqdm(range(s["episodes"]), desc=desc, disable=not show_progress(progress),
               leave=False, unit="episode")
    for _ in bar:
        if budget is not None and time.perf_counter() - start > budget:
            break  # the time cap: the record says how many episodes were done
        (sup, sup_oh, qry), qy = metric.episode_arrays(meta, s["n_way"], s["k_shot"],
                                                       s["n_query"], rng, 1)
        if external is not None:
            pick = rng.integers(0, len(external), nb)
            ex, ey = external.x[pick], external.y[pick]
        else:
            ex, ey = meta.x[:nb], np.zeros(nb, dtype=np.int64)
        out = model.train_on_batch((sup, sup_oh, qry, ex), (qy, ey), return_dict=True)
        losses.append(float(out["loss"]))
    bar.close()
    wall = time.perf_counter() - start
    hist = dict(loss=np.array(losses), episodes=len(losses), wall_s=wall,
                episodes_per_s=len(losses) / max(wall, 1e-9))
    return embedding, hist


#: ``episodes`` training episodes (``n_way``-way ``k_shot``-shot, one per step) per arm;
#: ``lambdas`` the discriminator weights swept on the validation alphabets (seed 0 only), the
#: best of which is run with every seed of ``seeds`` beside lambda = 0; ``union``: also train a
#: protonet on episodes from the union of the meta and external groups (the "more labelled
#: data" control). The budget is kept small on purpose: at convergence everything is near 98 %.
_COMMON = dict(k_shot=1, n_query=5, learning_rate=1e-3, tests=((5, 1), (20, 1)),
               test_query=15, test_seed=registry.TEST_SEED, n_val_alphabets=3)
SETTINGS = {
    "quick": dict(n_way=5, episodes=40, external_batch=32, lambdas=(1.0,), seeds=(0, 1),
                  val_episodes=50, test_episodes=50, union=False, time_budget_s=None, **_COMMON),
    "cpu": dict(n_way=20, episodes=250, external_batch=64, lambdas=(0.3, 1.0, 3.0),
                seeds=(0, 1, 2), val_episodes=300, test_episodes=300, union=True,
                time_budget_s=None, **_COMMON),
    "full": dict(n_way=20, episodes=5000, external_batch=128, lambdas=(0.1, 0.3, 1.0, 3.0),
                 seeds=(0, 1, 2, 3, 4), val_episodes=600, test_episodes=1000, union=True,
                 time_budget_s=None, **_COMMON),
}


@registry.register("concept-space", chapter=CHAPTER, settings=SETTINGS,
                   aliases={"train_episodes": "episodes"},
                   describe="DEML: protonet + concept discriminator on external Omniglot "
                            "alphabets, lambda sweep, paired over seeds")
def experiment(settings: dict, *, tests=None, data=None, runner=None,
               progress=True) -> registry.Outcome:
    """Sweep lambda on validation episodes (seed 0), then train lambda = 0 and the chosen lambda
    (and the union control) with every seed and test each on the book's test episodes. Records:
    metric ``accuracy``, with ``arm``, ``lam`` and ``seed``; ``extra['val']`` holds the sweep
    (validation accuracy by lambda) and ``extra['val_ci95']`` its 95 % half-widths."""
    from .evaluation import evaluate, record_result

    s = settings
    meta, val, ext = alphabet_groups(registry.omniglot(data, "train"), s["n_val_alphabets"])
    test = registry.omniglot(data, "test")
    tests = list(tests or s["tests"])
    out = registry.Outcome(settings=s)
    out.extra["groups"] = {g.name: g.n_classes for g in (meta, val, ext)}

    def val_result(embedding):
        return evaluate(metric.make_predictor(embedding, val), val, 5, 1, 15, s["val_episodes"],
                        seed=1, progress=False)

    sweep, sweep_ci = {}, {}
    trained = {}
    for lam in (0.0, *s["lambdas"]):
        emb, hist = train_deml(meta, ext, s, lam, s["seeds"][0], progress, f"lambda={lam:g}")
        r = val_result(emb)
        sweep[lam], sweep_ci[lam] = r.accuracy, r.ci95
        trained[("deml", lam, s["seeds"][0])] = (emb, hist)
        if runner:
            print(f"lambda={lam:g} seed {s['seeds'][0]}: val 5w1s {sweep[lam]:.2f} %")
    best = max(s["lambdas"], key=lambda k: sweep[k])
    out.extra["val"], out.extra["val_ci95"], out.extra["best_lambda"] = sweep, sweep_ci, best
    arms = [("protonet", 0.0), ("deml", best)]
    for seed in s["seeds"][1:]:
        for _arm, lam in arms:
            trained[("deml", lam, seed)] = train_deml(meta, ext, s, lam, seed, progress,
                                                      f"lambda={lam:g} seed {seed}")
    if s["union"]:
        union = FewShotDataset(np.concatenate([meta.x, ext.x]),
                               np.concatenate([meta.y, ext.y + meta.n_classes]),
                               meta.class_names + ext.class_names, "omniglot-train-meta+external")
        for seed in s["seeds"]:
            trained[("union", 0.0, seed)] = train_deml(union, None, s, 0.0, seed, progress,
                                                       f"union seed {seed}")
    for (kind, lam, seed), (emb, hist) in trained.items():
        arm = "union" if kind == "union" else ("protonet" if lam == 0 else "deml")
        if arm == "deml" and lam != best:
            continue  # sweep-only arms are reported on validation, not tested
        name = f"{arm} lambda={lam:g}"
        predict = metric.make_predictor(emb, test)
        for n_way, k_shot in tests:
            res = evaluate(predict, test, n_way, k_shot, s["test_query"], s["test_episodes"],
                           seed=s["test_seed"], progress=progress, desc=f"{name} {n_way}w")
            out.results[name, n_way, k_shot, seed] = res
            out.records.append(record_result(
                CHAPTER, name, "omniglot-vinyals-test", res, arm=arm, lam=lam, seed=seed,
                val_accuracy_5w1s=round(sweep[lam], 2) if seed == s["seeds"][0]
                and kind == "deml" else None,
                best_lambda=best, **registry.train_fields(
                    hist, way=s["n_way"], shot=s["k_shot"], query=s["n_query"],
                    planned=s["episodes"], budget=s["time_budget_s"]),
                **registry.run_fields(runner)))
            if runner:
                print(f"{name} seed {seed}: {res}")
        out.models[arm, lam, seed], out.histories[arm, lam, seed] = emb, hist
    for n_way, k_shot in tests:
        for other in ("deml", "union"):
            lam_o = best if other == "deml" else 0.0
            a = [out.results.get((f"{other} lambda={lam_o:g}", n_way, k_shot, sd))
                 for sd in s["seeds"]]
            b = [out.results["protonet lambda=0", n_way, k_shot, sd] for sd in s["seeds"]]
            if None in a or len(a) < 2:
                continue
            from .evaluation import paired_difference

            d = paired_difference([r.accuracy for r in a], [r.accuracy for r in b])
            out.extra[f"{other} - protonet", n_way, k_shot] = d
            if runner:
                print(f"{other} - protonet, {n_way}w{k_shot}s: {d[0]:+.2f} ± {d[1]:.2f} "
                      f"(pairs {d[2]})")
    return out
