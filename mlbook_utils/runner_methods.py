"""The headless runner's methods for chapters 1.3, 1.4, 2.1 and 4.1.

Each ``run_xxx(args) -> list[dict]`` trains and evaluates one chapter's method the way its
notebook does, with the same library functions (no second copy of a training loop), and appends
records in the shared format with the chapter's chapter id, method name and data set name, plus
``runner="reproduce"``, the training figures the chapter records and the peak memory. The
registry :data:`METHODS_INFO` maps a runner name to ``(chapter, description, run)``.

``args`` is an ``argparse.Namespace`` with ``episodes`` (test episodes per setting; None: the
chapter's number for the scale), ``n_query`` (queries per class in the test episodes), ``n_way``
and ``k_shot`` (test only these settings), ``train_episodes`` (override of the training length,
in the chapter's unit: episodes, steps or iterations) and ``time_budget`` (seconds: a cap on each
model's training time; None: no cap, or the chapter's own budget at the ``cpu`` scale where it
has one); ``dataset`` (chapter 2.1 only, optional) picks one of its three data sets. The scale
is :func:`config.scale` (``$MLBOOK_SCALE``).

The settings dicts below (one per method, keyed by scale) mirror the chapters' code cells,
``config.by_scale(quick=..., cpu=..., full=...)`` included; ``tests/test_runner_methods.py``
compares them with the notebooks' source.
"""

from __future__ import annotations

import time

import numpy as np

TEST_SEED = 2024  # the book's test episodes (reproduce.TEST_SEED): every chapter uses them
SETTINGS_4 = ((5, 1), (5, 5), (20, 1), (20, 5))

# --------------------------------------------------------------------------------------------
# Settings: mirror the chapters' code cells, at every scale
# --------------------------------------------------------------------------------------------

#: Chapter 4.1 (relation network). These mirror the chapter: ``TRAIN_WAY, TRAIN_SHOT,
#: TRAIN_QUERY = 20, 1, 5``; ``EPISODES["relation network"] = by_scale(100, 1100, 20000)``;
#: Adam with a cosine decay from 3e-3 to 3e-4 (``alpha=0.1``) over the run; training seed 10
#: (``seed=10 + i``, the first model trained); ``TEST_EPISODES = by_scale(100, 1000, 5000)``;
#: at ``quick`` scale the test set is the first 300 test classes (``test.subset(range(300))``).
#: The construction: ``relation_embedding(filters=64, pooled_blocks=3)`` and
#: ``RelationNetwork(..., filters=64, hidden=8, combine="mean")``.
_RELATION_FIXED = dict(train_way=20, train_shot=1, train_query=5, learning_rate=3e-3,
                       lr_alpha=0.1, train_seed=10, filters=64, pooled_blocks=3, hidden=8,
                       combine="mean", test_settings=SETTINGS_4, time_budget_s=None)
RELATION_SETTINGS = {
    "quick": dict(_RELATION_FIXED, train_episodes=100, test_episodes=100, eval_classes=300),
    "cpu": dict(_RELATION_FIXED, train_episodes=1100, test_episodes=1000, eval_classes=None),
    "full": dict(_RELATION_FIXED, train_episodes=20000, test_episodes=5000, eval_classes=None),
}

#: Chapter 4.1 (matching network with full-context embeddings). These mirror the chapter:
#: ``EPISODES["matching network (FCE)"] = by_scale(60, 700, 20000)``, 20-way 1-shot training
#: episodes with 5 queries, the same cosine decay, training seed 11 (the second model trained);
#: ``MatchingNetwork(conv4_embedding(name="matching_conv4"), fce=True, steps=5, scale=10.0)``.
_MATCHING_FIXED = dict(train_way=20, train_shot=1, train_query=5, learning_rate=3e-3,
                       lr_alpha=0.1, train_seed=11, fce_steps=5, cosine_scale=10.0,
                       test_settings=SETTINGS_4, time_budget_s=None)
MATCHING_SETTINGS = {
    "quick": dict(_MATCHING_FIXED, train_episodes=60, test_episodes=100, eval_classes=300),
    "cpu": dict(_MATCHING_FIXED, train_episodes=700, test_episodes=1000, eval_classes=None),
    "full": dict(_MATCHING_FIXED, train_episodes=20000, test_episodes=5000, eval_classes=None),
}

#: Chapter 2.1 (Siamese networks). These mirror the chapter: ``BATCH = 32`` pairs per step
#: (Omniglot: ``2 * BATCH``); ``FACE_STEPS``, ``AUDIO_STEPS``, ``OMNI_STEPS``, ``BUDGET_S`` and
#: ``EPISODES`` (test episodes per setting) by scale; Adam at 1e-3, contrastive head on unit-length
#: embeddings, margin 1; model seeds 1, 2, 3 (``config.seed_everything`` and ``siamese.train``).
#: One-shot identification: ORL and FSDD 5- and 10-way with 5 queries per class (an ORL person
#: has only 10 images), Omniglot 20-way with 15.
_SIAMESE_FIXED = dict(
    batch=32, learning_rate=1e-3, margin=1.0,
    faces=dict(seed=1, filters=32, batch=32, n_ways=(5, 10), n_query=5),
    audio=dict(seed=2, filters=32, batch=32, n_ways=(5, 10), n_query=5),
    omniglot=dict(seed=3, filters=64, batch=64, n_ways=(20,), n_query=15),
)
SIAMESE_SETTINGS = {
    "quick": dict(_SIAMESE_FIXED, steps=dict(faces=60, audio=60, omniglot=80), budget_s=None,
                  test_episodes=200),
    "cpu": dict(_SIAMESE_FIXED, steps=dict(faces=500, audio=500, omniglot=1200),
                budget_s=dict(faces=150, audio=180, omniglot=270), test_episodes=1000),
    "full": dict(_SIAMESE_FIXED, steps=dict(faces=5000, audio=5000, omniglot=30000),
                 budget_s=None, test_episodes=5000),
}

#: Chapter 1.4 (LSTM meta-learner). These mirror the chapter: ``N_WAY, N_QUERY = 5, 15``;
#: ``INNER_STEPS``, ``K_SHOTS``, ``TRAIN_EPISODES`` (per shot) and ``TEST_EPISODES`` by scale;
#: ``META_LR = 5e-3``; ``INPUT_BIAS = (-2.0, -1.0)``; the learner has 4 blocks of 16 filters and
#: the meta-learner 20 hidden units; sampler and model seeds are the shot.
_LSTM_FIXED = dict(n_way=5, n_query=15, meta_lr=5e-3, input_bias=(-2.0, -1.0), filters=16,
                   blocks=4, hidden=20, time_budget_s=None)
LSTM_META_LEARNER_SETTINGS = {
    "quick": dict(_LSTM_FIXED, inner_steps=5, k_shots=(1,), train_episodes={1: 100, 5: 0},
                  test_episodes=50),
    "cpu": dict(_LSTM_FIXED, inner_steps=5, k_shots=(1, 5), train_episodes={1: 700, 5: 400},
                test_episodes=600),
    "full": dict(_LSTM_FIXED, inner_steps=8, k_shots=(1, 5),
                 train_episodes={1: 20000, 5: 20000}, test_episodes=1000),
}

#: Chapter 1.3 (learned optimizer), 10-D quadratics only. These mirror the chapter:
#: ``STEPS = 100``; ``N_TUNE``, ``N_TEST``, ``META_ITERS``, ``META_BATCH`` by scale;
#: ``LR_GRID = np.logspace(-4, 0, 13)``; ``UNROLL = 20``; meta-learning rate 1e-3; the optimizer
#: is ``init_lstm_optimizer(hidden=20, layers=2, seed=0)``, meta-trained with seed 1; tuning
#: problems from seed 101, test problems from seed 2024.
_LEARNED_OPTIMIZER_FIXED = dict(dim=10, steps=100, lr_grid=(-4, 0, 13), unroll=20,
                                meta_lr=1e-3, hidden=20, layers=2, init_seed=0, meta_seed=1,
                                tune_seed=101, test_seed=2024, time_budget_s=None)
LEARNED_OPTIMIZER_SETTINGS = {
    "quick": dict(_LEARNED_OPTIMIZER_FIXED, n_tune=100, n_test=100, meta_iters=15,
                  meta_batch=64),
    "cpu": dict(_LEARNED_OPTIMIZER_FIXED, n_tune=200, n_test=500, meta_iters=150,
                meta_batch=128),
    "full": dict(_LEARNED_OPTIMIZER_FIXED, n_tune=1000, n_test=1000, meta_iters=2000,
                 meta_batch=128),
}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _scale() -> str:
    from . import config

    return config.scale()


def _memory() -> dict:
    from .reproduce import peak_memory  # lazily: reproduce imports this module

    return peak_memory()


def _filter(settings, args) -> list[tuple[int, int]]:
    """The (n_way, k_shot) test settings, restricted to ``args.n_way`` / ``args.k_shot``."""
    n_way, k_shot = getattr(args, "n_way", None), getattr(args, "k_shot", None)
    return [s for s in settings if (not n_way or s[0] == n_way)
            and (not k_shot or s[1] == k_shot)]


def _budget(args, chapter_budget: float | None = None) -> float | None:
    """``args.time_budget`` when given, else the chapter's own budget (None: no cap)."""
    value = getattr(args, "time_budget", None)
    return float(value) if value is not None else chapter_budget


def _test_episodes(args, chapter_value: int) -> int:
    value = getattr(args, "episodes", None)
    return int(value) if value is not None else int(chapter_value)


def _n_query(args, default: int = 15) -> int:
    value = getattr(args, "n_query", None)
    return int(value) if value is not None else default


# --------------------------------------------------------------------------------------------
# Chapter 4.1: relation and matching networks
# --------------------------------------------------------------------------------------------

CHAPTER_4_1 = "04_1_relation_matching_networks"


def _chapter_4_1_models(rel: dict, mat: dict):
    """The relation network and the matching network (FCE), built as the chapter builds them:
    after ``config.seed_everything(0)``, the matching network first (its cell comes first), then
    the relation network, so that Keras draws the same initial weights as in the chapter."""
    from . import config, models
    from . import relation_matching as rm

    config.seed_everything(0)
    matching = rm.MatchingNetwork(models.conv4_embedding(name="matching_conv4"), fce=True,
                                  steps=mat["fce_steps"], scale=mat["cosine_scale"])
    relation = rm.RelationNetwork(
        rm.relation_embedding(filters=rel["filters"], pooled_blocks=rel["pooled_blocks"]),
        filters=rel["filters"], hidden=rel["hidden"], combine=rel["combine"])
    return relation, matching


def _run_4_1(args, which: str) -> list[dict]:
    import keras

    from . import config, data, evaluation, metric
    from . import relation_matching as rm

    scale = _scale()
    rel, mat = RELATION_SETTINGS[scale], MATCHING_SETTINGS[scale]
    s = rel if which == "relation" else mat
    name = "relation network" if which == "relation" else "matching network (FCE)"
    tests = _filter(s["test_settings"], args)
    if not tests:
        print(f"{name}: no test setting left after the --n-way/--k-shot filter")
        return []
    train = data.load_omniglot("train")
    test = data.load_omniglot("test")
    eval_set = test if s["eval_classes"] is None else test.subset(range(s["eval_classes"]))
    episodes = int(args.train_episodes) if getattr(args, "train_episodes", None) \
        else s["train_episodes"]
    budget = _budget(args, s["time_budget_s"])
    relation, matching = _chapter_4_1_models(rel, mat)
    # The chapter's learning rate: cosine decay from 3e-3 to 3e-4 over the run's episodes.
    lr = keras.optimizers.schedules.CosineDecay(s["learning_rate"], decay_steps=episodes,
                                                alpha=s["lr_alpha"])
    if which == "relation":
        model, head = rm.compile_relation(relation, lr), relation.relate
    else:
        model, head = rm.compile_matching(matching, lr), matching.match
    cpu_start = time.process_time()
    h = metric.train(model, train, s["train_way"], s["train_shot"], s["train_query"], episodes,
                     seed=s["train_seed"], time_budget_s=budget)
    cpu_s = time.process_time() - cpu_start
    print(f"{name}: trained {h['episodes']} of {episodes} {s['train_way']}-way episodes in "
          f"{h['wall_s']:.0f} s ({h['episodes_per_s']:.2f} episodes/s) on {config.device()}")
    predict = rm.make_predictor(model, head, eval_set)
    n_test, n_query = _test_episodes(args, s["test_episodes"]), _n_query(args)
    records = []
    for n_way, k_shot in tests:
        res = evaluation.evaluate(predict, eval_set, n_way, k_shot, n_query, n_test,
                                  seed=TEST_SEED, desc=f"{name} {n_way}w{k_shot}s")
        records.append(evaluation.record_result(
            CHAPTER_4_1, name, "omniglot-vinyals-test", res, runner="reproduce",
            train_way=s["train_way"], train_shot=s["train_shot"], train_query=s["train_query"],
            train_episodes=int(h["episodes"]), train_episodes_planned=int(episodes),
            train_wall_s=round(h["wall_s"], 1), train_cpu_s=round(cpu_s, 1),
            train_episodes_per_s=round(h["episodes_per_s"], 2), time_budget_s=budget,
            n_query=n_query, **_memory()))
        print(f"{name}: {res}")
    return records


def run_relation(args) -> list[dict]:
    """Chapter 4.1's relation network: built and compiled as in the chapter (Adam, cosine-decay
    learning rate), ``metric.train`` on 20-way 1-shot episodes, ``relation_matching
    .make_predictor`` with ``model.relate``, tested on 5w1s, 5w5s, 20w1s and 20w5s with the
    book's test episodes (seed 2024). Settings: :data:`RELATION_SETTINGS`."""
    return _run_4_1(args, "relation")


def run_matching(args) -> list[dict]:
    """Chapter 4.1's matching network with full-context embeddings, as :func:`run_relation`
    (``model.match`` as the head). Settings: :data:`MATCHING_SETTINGS`. The chapter's ablation
    without FCE is not run."""
    return _run_4_1(args, "matching")


# --------------------------------------------------------------------------------------------
# Chapter 2.1: Siamese networks
# --------------------------------------------------------------------------------------------

CHAPTER_2_1 = "02_1_siamese_networks"
SIAMESE_DATASETS = ("faces", "audio", "omniglot")


def siamese_faces():
    """Chapter 2.1's ORL split: images downsampled 2x (56x46), 30 training people and 10 unseen
    test people from ``np.random.default_rng(0).permutation``."""
    from . import data, siamese

    faces = data.load_orl_faces()
    faces.x = siamese.downsample(faces.x, 2)  # 112x92 -> 56x46
    people = np.random.default_rng(0).permutation(faces.n_classes)
    return (faces.subset(people[:30], name="orl-train-people"),
            faces.subset(people[30:], name="orl-test-people"))


def siamese_audio():
    """Chapter 2.1's FSDD split: 40x40 log-mel spectrograms, normalised with the training
    speakers' mean and standard deviation; speakers 4 and 5 are the unseen test speakers."""
    from . import data, siamese

    audio = data.load_fsdd()
    spectrograms = siamese.audio_features(audio.waves, audio.sample_rate, n_mels=40, n_frames=40)
    is_test = np.isin(audio.speaker, [4, 5])
    mean, std = spectrograms[~is_test].mean(), spectrograms[~is_test].std()
    spectrograms = (spectrograms - mean) / std
    digits = [str(d) for d in range(10)]
    return (data.FewShotDataset(spectrograms[~is_test], audio.digit[~is_test], digits,
                                "fsdd-4-speakers"),
            data.FewShotDataset(spectrograms[is_test], audio.digit[is_test], digits,
                                "fsdd-2-unseen-speakers"))


def run_siamese(args) -> list[dict]:
    """Chapter 2.1's three Siamese networks (ORL faces, FSDD spoken digits, Omniglot), with the
    chapter's settings (:data:`SIAMESE_SETTINGS`), data preparation and splits, and its one-shot
    identification records (``siamese.make_predictor`` and ``evaluation.evaluate``, seed 2024).

    The verification records (balanced same/different pairs, threshold from training or
    validation pairs) are not reproduced: that procedure is a function defined in the notebook
    (``verification``), not in the library. ``args.dataset`` (optional) picks one of "faces",
    "audio", "omniglot". ORL and FSDD are tested with the chapter's 5 queries per class (an ORL
    person has 10 images); Omniglot with ``args.n_query`` (the chapter: 15). At the ``cpu``
    scale each model has the chapter's time budget unless ``args.time_budget`` is given.
    """
    from . import config, data, evaluation, models, siamese

    s = SIAMESE_SETTINGS[_scale()]
    only = getattr(args, "dataset", None)
    if only is not None and only not in SIAMESE_DATASETS:
        raise ValueError(f"dataset must be one of {SIAMESE_DATASETS}, got {only!r}")
    names = [only] if only else list(SIAMESE_DATASETS)
    n_test = _test_episodes(args, s["test_episodes"])
    config.seed_everything(0)
    records = []
    for key in names:
        d = s[key]
        tests = _filter([(n, 1) for n in d["n_ways"]], args)
        if not tests:
            continue
        if key == "faces":
            train, test = siamese_faces()
            method, dataset = "siamese contrastive conv4-32", "orl-unseen-people"
            emb_name, augment = "face_conv4", siamese.random_flip
        elif key == "audio":
            train, test = siamese_audio()
            method, dataset = "siamese contrastive conv4-32 log-mel", "fsdd-unseen-speakers"
            emb_name, augment = "audio_conv4", None
        else:
            train, test = data.load_omniglot("train"), data.load_omniglot("test")
            method, dataset = "siamese contrastive conv4", "omniglot-vinyals-test"
            emb_name, augment = "omniglot_conv4", None
        steps = int(args.train_episodes) if getattr(args, "train_episodes", None) \
            else s["steps"][key]
        budget = _budget(args, None if s["budget_s"] is None else s["budget_s"][key])
        config.seed_everything(d["seed"])
        model = siamese.SiameseNetwork(
            models.conv4_embedding(input_shape=train.x.shape[1:], filters=d["filters"],
                                   name=emb_name),
            head="contrastive", normalize=True)
        siamese.compile_model(model, learning_rate=s["learning_rate"], margin=s["margin"])
        hist = siamese.train(model, train, steps, d["batch"], seed=d["seed"],
                             time_budget_s=budget, augment=augment)
        print(f"{key}: trained {hist['steps']} of {steps} steps ({hist['pairs']} pairs) in "
              f"{hist['wall_s']:.0f} s ({hist['pairs_per_s']:.0f} pairs/s) on {config.device()}")
        predict = siamese.make_predictor(model, test)
        n_query = d["n_query"] if key != "omniglot" else _n_query(args, d["n_query"])
        for n_way, k_shot in tests:
            res = evaluation.evaluate(predict, test, n_way, k_shot, n_query=n_query,
                                      episodes=n_test, seed=TEST_SEED,
                                      desc=f"{key} {n_way}w{k_shot}s")
            records.append(evaluation.record_result(
                CHAPTER_2_1, method, dataset, res, runner="reproduce",
                train_wall_s=round(hist["wall_s"], 1), train_episodes=int(hist["pairs"]),
                train_episodes_per_s=round(hist["pairs_per_s"], 1), train_unit="pair",
                train_steps=int(hist["steps"]), train_steps_planned=int(steps),
                time_budget_s=budget, n_query=n_query, **_memory()))
            print(f"{method}: {res}")
    return records


# --------------------------------------------------------------------------------------------
# Chapter 1.4: the LSTM meta-learner
# --------------------------------------------------------------------------------------------

CHAPTER_1_4 = "01_4_lstm_meta_learner"


def run_lstm_meta_learner(args) -> list[dict]:
    """Chapter 1.4's LSTM meta-learner: one model per shot of the scale (``K_SHOTS``), each
    meta-trained with ``LSTMMetaLearner.fit`` on 5-way episodes from an ``EpisodeSampler`` as in
    the chapter, and tested with ``model.predict`` on 5-way episodes of the test classes (seed
    2024). Settings: :data:`LSTM_META_LEARNER_SETTINGS`. The chapter's fine-tuning baselines
    (SGD and Adam from c_0) and the gate traces are not run."""
    from . import config, data, episodes, evaluation
    from . import lstm_meta_learner as lml

    s = LSTM_META_LEARNER_SETTINGS[_scale()]
    n_way = s["n_way"]
    tests = _filter([(n_way, k) for k in s["k_shots"]], args)
    if not tests:
        print(f"LSTM meta-learner: the chapter trains {n_way}-way models with "
              f"{', '.join(map(str, s['k_shots']))} shot(s) at this scale; nothing to run")
        return []
    config.seed_everything(0)
    train = data.load_omniglot("train")
    test = data.load_omniglot("test")
    n_test, n_query = _test_episodes(args, s["test_episodes"]), _n_query(args)
    budget = _budget(args, s["time_budget_s"])
    records = []
    for _, k_shot in tests:
        planned = int(args.train_episodes) if getattr(args, "train_episodes", None) \
            else s["train_episodes"][k_shot]
        sampler = episodes.EpisodeSampler(train, n_way, k_shot, s["n_query"], seed=k_shot)
        model = lml.LSTMMetaLearner(n_way=n_way, filters=s["filters"], blocks=s["blocks"],
                                    hidden=s["hidden"], inner_steps=s["inner_steps"],
                                    meta_lr=s["meta_lr"], seed=k_shot,
                                    input_bias=s["input_bias"])
        model.fit(sampler.sample, planned, desc=f"{n_way}-way {k_shot}-shot",
                  time_budget_s=budget)
        eps = model.train_episodes / model.train_wall_s if model.train_wall_s else 0.0
        print(f"LSTM meta-learner {n_way}-way {k_shot}-shot: trained {model.train_episodes} of "
              f"{planned} episodes in {model.train_wall_s:.0f} s ({eps:.2f} episodes/s) on "
              f"{config.device()}")
        res = evaluation.evaluate(model.predict, test, n_way, k_shot, n_query, n_test,
                                  seed=TEST_SEED, desc=f"test {n_way}w{k_shot}s")
        records.append(evaluation.record_result(
            CHAPTER_1_4, "LSTM meta-learner", "omniglot-vinyals-test", res, runner="reproduce",
            inner_steps=s["inner_steps"], train_episodes=int(model.train_episodes),
            train_episodes_planned=planned, train_wall_s=round(model.train_wall_s, 1),
            train_episodes_per_s=round(eps, 2), time_budget_s=budget, n_query=n_query,
            **_memory()))
        print(f"LSTM meta-learner: {res}")
    return records


# --------------------------------------------------------------------------------------------
# Chapter 1.3: the learned optimizer, on 10-D quadratics
# --------------------------------------------------------------------------------------------

CHAPTER_1_3 = "01_3_learned_optimizer"


def run_learned_optimizer(args) -> list[dict]:
    """Chapter 1.3's learned optimizer on 10-D quadratics: the hand-designed optimizers (SGD,
    RMSprop, Adam, NAG) tuned on the chapter's learning-rate grid and tuning problems, then
    tested (``learned_optimizer.tune_and_test``); the LSTM optimizer meta-trained
    (``learned_optimizer.meta_train``) and tested (``run_learned``) on the same test problems.
    Records: mean final loss after 100 steps (``metric="final_loss"``), as the chapter's.

    ``args.episodes`` is the number of test quadratics (the chapter's ``N_TEST``);
    ``args.train_episodes`` the number of meta-training iterations (``META_ITERS``, each of
    ``META_BATCH`` quadratics); ``n_way`` and ``k_shot`` do not apply. The chapter's MLP part is
    not run. Settings: :data:`LEARNED_OPTIMIZER_SETTINGS`."""
    from . import config, evaluation
    from . import learned_optimizer as lo

    s = LEARNED_OPTIMIZER_SETTINGS[_scale()]
    config.seed_everything(0)
    steps = s["steps"]
    n_test = _test_episodes(args, s["n_test"])
    iters = int(args.train_episodes) if getattr(args, "train_episodes", None) \
        else s["meta_iters"]
    budget = _budget(args, s["time_budget_s"])
    lr_grid = np.logspace(*s["lr_grid"]).astype("float32")
    quad = lo.Quadratic(dim=s["dim"])
    quad_tune = quad.sample(np.random.default_rng(s["tune_seed"]), s["n_tune"], steps)
    quad_test = quad.sample(np.random.default_rng(s["test_seed"]), n_test, steps)
    start = time.perf_counter()
    quad_base = lo.tune_and_test(quad, lr_grid, quad_tune, quad_test, steps)
    quad_base_wall = time.perf_counter() - start

    phi0 = lo.init_lstm_optimizer(hidden=s["hidden"], layers=s["layers"], seed=s["init_seed"])
    phi, hist = lo.meta_train(quad, phi0, iterations=iters, batch=s["meta_batch"], steps=steps,
                              unroll_steps=s["unroll"], meta_lr=s["meta_lr"],
                              seed=s["meta_seed"], time_budget_s=budget)
    done = int(hist["iterations"])
    print(f"LSTM optimizer: meta-trained {done} of {iters} iterations of {s['meta_batch']} "
          f"quadratics in {hist['wall_s']:.1f} s ({hist['trajectories_per_s']:.0f} "
          f"trajectories/s) on {config.device()}")
    start = time.perf_counter()
    curves = {"LSTM": lo.run_learned(quad, phi, *quad_test, steps)}
    lstm_eval_s = time.perf_counter() - start
    curves.update({name: r["curves"] for name, r in quad_base.items()})

    records = []
    for method, c in curves.items():
        mean, ci = evaluation.mean_ci95(c[-1])
        extra = dict(metric="final_loss", steps=steps)
        if method == "LSTM":
            name = "LSTM optimizer (learned)"
            extra.update(train_wall_s=round(hist["wall_s"], 1),
                         train_trajectories_per_s=round(hist["trajectories_per_s"], 1),
                         train_episodes=done * s["meta_batch"], train_iterations=done,
                         train_iterations_planned=iters, meta_batch=s["meta_batch"],
                         time_budget_s=budget)
            wall = lstm_eval_s
        else:
            name = f"{method} optimizer"
            extra.update(lr=quad_base[method]["lr"], lr_grid=[float(v) for v in lr_grid],
                         wall_s_is="grid tuning + test of all four baselines")
            wall = quad_base_wall
        rec = evaluation.make_record(name, "quadratic-10d", None, None, mean, ci, n_test, wall,
                                     runner="reproduce", **extra, **_memory())
        evaluation.append_record(CHAPTER_1_3, rec)
        records.append(rec)
        print(f"{name}: final loss {mean:.3f} ± {ci:.3f} over {n_test} test quadratics")
    return records


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

METHODS_INFO = {
    "relation": (CHAPTER_4_1, "relation network, 20-way 1-shot training, cosine-decay Adam",
                 run_relation),
    "matching": (CHAPTER_4_1, "matching network with full-context embeddings (FCE)",
                 run_matching),
    "siamese": (CHAPTER_2_1, "Siamese networks on ORL faces, FSDD digits and Omniglot "
                "(one-shot identification; --dataset picks one)", run_siamese),
    "lstm-meta-learner": (CHAPTER_1_4, "LSTM meta-learner (Ravi & Larochelle), 5-way, the "
                          "scale's shots", run_lstm_meta_learner),
    "learned-optimizer": (CHAPTER_1_3, "LSTM optimizer and tuned baselines on 10-D quadratics "
                          "(final loss)", run_learned_optimizer),
}
