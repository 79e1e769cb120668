"""Headless runner: train and evaluate a chapter's method without its notebook.

    python -m mlbook_utils.reproduce --list
    python -m mlbook_utils.reproduce protonet --scale cpu
    python -m mlbook_utils.reproduce protonet --scale full --k-shot 5 --checkpoint-dir ckpt/
    python -m mlbook_utils.reproduce pixel-nn --scale cpu --episodes 1000
    python -m mlbook_utils.reproduce relation --scale full --time-budget 200
    python -m mlbook_utils.reproduce siamese --scale cpu --dataset faces

Methods: ``pixel-nn`` (chapter 1.1), ``protonet`` (3.1), and, from
:mod:`mlbook_utils.runner_methods`, ``relation`` and ``matching`` (4.1), ``siamese`` (2.1),
``lstm-meta-learner`` (1.4) and ``learned-optimizer`` (1.3). Each calls the same library
functions as its chapter (``metric.train_protonet``, ``metric.train``, ``siamese.train``,
``LSTMMetaLearner.fit``, ``learned_optimizer.meta_train``, ``evaluation.evaluate``, ...) with
the chapter's settings at that scale, shows a progress bar, and appends records in the shared
format to ``results/<chapter>.jsonl`` (``cpu`` and ``full`` runs; ``quick`` runs go to the user
cache) with training episodes per second and peak memory. ``--time-budget`` caps each model's
training time; records then say how much of the planned training was done. The protonet run
can resume an interrupted run: training is cut into segments at the learning-rate halvings,
and after each segment the Keras weights and the runner's state are saved in
``--checkpoint-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TEST_SEED = 2024  # the book's test episodes: every chapter evaluates on the same tasks
SETTINGS_4 = ((5, 1), (5, 5), (20, 1), (20, 5))


@dataclass
class Method:
    name: str
    chapter: str
    describe: str
    run: object  # (args) -> list of records


def peak_memory() -> dict:
    """Peak host memory of this process (MiB) and, on a JAX GPU, peak device memory (MiB);
    ``concurrent_runs`` when ``MLBOOK_CONCURRENT_RUNS`` says how many runs shared the device."""
    out = {"peak_host_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if os.environ.get("MLBOOK_CONCURRENT_RUNS"):  # set by scripts/gpu_full_run.sh
        out["concurrent_runs"] = int(os.environ["MLBOOK_CONCURRENT_RUNS"])
    try:
        import keras

        if keras.backend.backend() == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                out["peak_device_mib"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
    except Exception:  # memory figures are a courtesy; never fail a run on them
        pass
    return out


def _pixel_nn(args) -> list[dict]:
    from . import baselines, data, evaluation

    test = data.load_omniglot("test")
    records = []
    for name, fn in (("pixel nearest neighbour", baselines.nearest_neighbour),
                     ("pixel nearest class mean", baselines.nearest_class_mean)):
        for n_way, k_shot in _settings(args):
            res = evaluation.evaluate(fn, test, n_way, k_shot, args.n_query, args.episodes,
                                      seed=TEST_SEED, desc=f"{name} {n_way}w{k_shot}s")
            records.append(evaluation.record_result(
                "01_1_few_shot_episodes", name, "omniglot-vinyals-test", res,
                runner="reproduce", **peak_memory()))
            print(f"{name}: {res}")
    return records


def _settings(args) -> list[tuple[int, int]]:
    if args.n_way and args.k_shot:
        return [(args.n_way, args.k_shot)]
    return [s for s in SETTINGS_4 if (not args.n_way or s[0] == args.n_way)
            and (not args.k_shot or s[1] == args.k_shot)]


def train_with_checkpoints(train_ds, settings: dict, val_ds, ckpt: Path | None, progress=True):
    """``metric.train_protonet`` in segments between learning-rate halvings, saving the weights
    after each segment, so that an interrupted run resumes where it stopped. Model selection on
    the validation classes keeps the best weights seen at the end of any segment."""
    import numpy as np

    from . import evaluation, metric
    from .models import conv4_embedding

    if ckpt is None:  # one call: train_protonet does the decay and the model selection itself
        model, log = metric.train_protonet(train_ds, settings, val_ds, progress)
        best = float(np.max(log["val_accuracy"])) if len(log.get("val_accuracy", [])) else -1.0
        state = {"train_wall_s": float(log["wall_s"]), "best_val": best}
        return model.embedding, state, int(log["episodes"])
    total, every = int(settings["episodes"]), int(settings.get("decay_every") or 0)
    seg_len = every if every and every < total else total
    n_segments = -(-total // seg_len)
    embedding = conv4_embedding(input_shape=train_ds.x.shape[1:])
    state = {"segment": 0, "train_wall_s": 0.0, "best_val": -1.0, "val": []}
    if ckpt is not None:
        ckpt.mkdir(parents=True, exist_ok=True)
        if (ckpt / "state.json").exists():
            state = json.loads((ckpt / "state.json").read_text())
            embedding.load_weights(ckpt / "last.weights.h5")
            print(f"resuming after segment {state['segment']} of {n_segments}")
    logs = []
    for seg in range(state["segment"], n_segments):
        episodes = min(seg_len, total - seg * seg_len)
        seg_settings = dict(settings, episodes=episodes, decay_every=0, val_every=0,
                            learning_rate=settings["learning_rate"] * 0.5 ** seg)
        _, log = metric.train_protonet(train_ds, seg_settings, None, progress,
                                       embedding=embedding, seed=int(settings.get("seed", 0)) + seg)
        logs.append(log)
        state["train_wall_s"] += float(log.get("wall_s", 0.0))
        state["segment"] = seg + 1
        if val_ds is not None:
            predict = metric.make_predictor(embedding, val_ds,
                                            distance=settings.get("distance", "euclidean"))
            res = evaluation.evaluate(predict, val_ds, 5, settings["k_shot"], 15,
                                      settings.get("val_episodes", 600), seed=1, progress=False)
            state["val"].append([(seg + 1) * seg_len, res.accuracy])
            if res.accuracy > state["best_val"]:
                state["best_val"] = res.accuracy
                if ckpt is not None:
                    embedding.save_weights(ckpt / "best.weights.h5")
                else:
                    state["_best"] = embedding.get_weights()
        if ckpt is not None:
            embedding.save_weights(ckpt / "last.weights.h5")
            tmp = ckpt / "state.json.part"
            tmp.write_text(json.dumps({k: v for k, v in state.items() if k != "_best"}))
            os.replace(tmp, ckpt / "state.json")
    if val_ds is not None:
        if ckpt is not None and (ckpt / "best.weights.h5").exists():
            embedding.load_weights(ckpt / "best.weights.h5")
        elif "_best" in state:
            embedding.set_weights(state["_best"])
    episodes_done = sum(int(np.asarray(log.get("episodes", 0))) for log in logs)
    return embedding, state, episodes_done


def _protonet(args) -> list[dict]:
    from . import config, data, evaluation, metric

    scale = config.scale()
    train_split = "trainval" if (scale == "full" and args.trainval) else "train"
    train_ds = data.load_omniglot(train_split)
    val_ds = None if train_split == "trainval" else data.load_omniglot("val")
    test = data.load_omniglot("test")
    shots = sorted({k for _, k in _settings(args)})
    base = metric.settings_for(scale)
    if not base.get("matched_shot"):
        shots = [base["k_shot"]]  # one model, trained on the settings' shot, tested on all
    records = []
    for k_train in shots:
        overrides = {"k_shot": k_train}
        if args.train_episodes:
            overrides["episodes"] = args.train_episodes
        if args.meta_batch_size:
            overrides["meta_batch_size"] = args.meta_batch_size
        if args.steps_per_execution:
            overrides["steps_per_execution"] = args.steps_per_execution
        if args.time_budget:
            overrides["time_budget_s"] = args.time_budget
        settings = metric.settings_for(scale, **overrides)
        ckpt = Path(args.checkpoint_dir) / f"protonet-{k_train}shot" if args.checkpoint_dir \
            else None
        start = time.perf_counter()
        embedding, state, done = train_with_checkpoints(train_ds, settings, val_ds, ckpt)
        wall = time.perf_counter() - start
        eps = done / state["train_wall_s"] if state["train_wall_s"] else done / wall
        print(f"trained {done} {settings['n_way']}-way {k_train}-shot episodes in "
              f"{state['train_wall_s']:.0f} s ({eps:.0f} episodes/s) on {config.device()}")
        predict = metric.make_predictor(embedding, test)
        tests = [s for s in _settings(args) if not base.get("matched_shot") or s[1] == k_train]
        for n_way, k_shot in tests:
            res = evaluation.evaluate(predict, test, n_way, k_shot, args.n_query, args.episodes,
                                      seed=TEST_SEED, desc=f"test {n_way}w{k_shot}s")
            records.append(evaluation.record_result(
                "03_1_prototypical_networks", "prototypical network (runner)",
                "omniglot-vinyals-test", res, runner="reproduce",
                train_split=train_split, train_way=settings["n_way"], train_shot=k_train,
                train_episodes=done, train_wall_s=round(state["train_wall_s"], 1),
                train_episodes_per_s=round(eps, 1),
                meta_batch_size=settings.get("meta_batch_size", 1),
                steps_per_execution=settings.get("steps_per_execution", 1),
                time_budget_s=settings.get("time_budget_s"),
                best_val_accuracy=round(state["best_val"], 2) if val_ds is not None else None,
                **peak_memory()))
            print(f"prototypical network: {res}")
    return records


def _methods() -> dict[str, Method]:
    from .runner_methods import METHODS_INFO

    methods = [
        Method("pixel-nn", "01_1_few_shot_episodes",
               "pixel-space nearest neighbour and nearest class mean (no training)", _pixel_nn),
        Method("protonet", "03_1_prototypical_networks",
               "prototypical network, Vinyals split, settings from metric.SETTINGS", _protonet),
    ]
    methods += [Method(name, chapter, describe, run)
                for name, (chapter, describe, run) in METHODS_INFO.items()]
    return {m.name: m for m in methods}


METHODS = _methods()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlbook_utils.reproduce",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", nargs="?", choices=sorted(METHODS))
    parser.add_argument("--list", action="store_true", help="list methods and settings")
    parser.add_argument("--scale", choices=("quick", "cpu", "full"), default=None)
    parser.add_argument("--n-way", type=int, default=None, help="test only this n_way")
    parser.add_argument("--k-shot", type=int, default=None, help="test only this k_shot")
    parser.add_argument("--n-query", type=int, default=15)
    parser.add_argument("--episodes", type=int, default=None,
                        help="test episodes per setting (default: the chapter's; pixel-nn and "
                             "protonet: 100/1000/1000 by scale)")
    parser.add_argument("--train-episodes", type=int, default=None)
    parser.add_argument("--meta-batch-size", type=int, default=None,
                        help="episodes per training step")
    parser.add_argument("--steps-per-execution", type=int, default=None,
                        help="protonet: compiled steps per execution (fewer host round trips)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="cap on each model's training time, in seconds")
    parser.add_argument("--dataset", default=None,
                        help="siamese: only this data set (faces, audio or omniglot)")
    parser.add_argument("--trainval", action="store_true",
                        help="full scale: train on train+val (no model selection)")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="save weights after each segment and resume from there")
    args = parser.parse_args(argv)
    if args.list or not args.method:
        print("methods (python -m mlbook_utils.reproduce METHOD --scale S):")
        for m in METHODS.values():
            print(f"  {m.name:18s} {m.describe} -> results/{m.chapter}.jsonl")
        print(f"test settings: {', '.join(f'{w}-way {k}-shot' for w, k in SETTINGS_4)}; "
              f"scales: quick, cpu, full")
        try:
            from . import metric

            for s in ("quick", "cpu", "full"):
                print(f"  protonet {s}: {metric.settings_for(s)}")
        except Exception as exc:  # pragma: no cover
            print(f"  (protonet settings unavailable: {exc})")
        return 0
    if args.scale:
        os.environ["MLBOOK_SCALE"] = args.scale
    from . import config

    if args.episodes is None and args.method in ("pixel-nn", "protonet"):
        args.episodes = config.by_scale(quick=100, cpu=1000, full=1000)
    # (the other methods use their chapter's number of test episodes by default)
    print(config.device_report())
    start = time.perf_counter()
    records = METHODS[args.method].run(args)
    print(f"{len(records)} record(s) in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
