"""Benchmark: the prototypical network's training step, in episodes per second.

    python scripts/bench_protonet.py --before --plain     # CPU: episode step vs plain step
    python scripts/bench_protonet.py --mbs 1 16 64 --spe 1 8 --episodes 2000   # e.g. on a GPU

For each meta-batch size (episodes per compiled step) and each ``steps_per_execution`` it
trains a fresh conv-4 protonet with ``metric.train_indexed`` (the chapters' training loop:
index arrays sampled in batches, images gathered inside the compiled step, ``model.fit`` over
segments, nothing read back between steps) and reports episodes per second, median of
``--repeats`` timed runs after one warm-up run. The variants run in turn, one run each per
round, so that a slow spell of a shared machine hits them all alike. With ``--before`` it also
times the loop that ``train_indexed`` used before (one ``train_on_batch`` per step, whose loss
is read back to the host after every step), on the same index arrays. With ``--plain`` it also
times a plain ``train_on_batch`` of the same number of images (n_way x (k_shot + n_query))
through the same embedding with a dense classification head, fed from NumPy arrays, and prints
the ratio: the cost of an episode over the cost of an ordinary supervised step on the same
images. Machines here are shared and noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mbs", type=int, nargs="+", default=[1])
    parser.add_argument("--spe", type=int, nargs="+", default=[1],
                        help="steps_per_execution values to try")
    parser.add_argument("--before", action="store_true",
                        help="also time the earlier loop: train_on_batch, loss read every step")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per timed run")
    parser.add_argument("--n-way", type=int, default=60)
    parser.add_argument("--k-shot", type=int, default=1)
    parser.add_argument("--n-query", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain", action="store_true", help="also time plain train_on_batch")
    args = parser.parse_args()

    import keras
    import numpy as np

    from mlbook_utils import config, data, metric
    from mlbook_utils.models import conv4_embedding

    print(config.device_report())
    train = data.load_omniglot("train")
    per_episode = args.n_way * (args.k_shot + args.n_query)
    results = {}

    def fresh_model(spe=1):
        embedding = conv4_embedding(input_shape=train.x.shape[1:])
        model = metric.IndexedPrototypicalNetwork(embedding, metric.image_store(train.x))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=metric.episode_loss,
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                      steps_per_execution=spe)
        return model

    def indexed(mbs, spe):  # the chapters' loop
        model = fresh_model(spe)
        n = max(args.episodes // (mbs * spe) * mbs * spe, mbs * spe)

        def run(rep):
            hist = metric.train_indexed(model, train, args.n_way, args.k_shot, args.n_query, n,
                                        meta_batch_size=mbs, seed=rep, progress=False)
            return hist["episodes"] / hist["wall_s"]
        return run

    def before(mbs):  # the earlier loop: one train_on_batch per step, loss read every step
        model = fresh_model()
        rng = np.random.default_rng(0)
        n = max(args.episodes // mbs * mbs, mbs)

        def run(rep):
            (s_idx, q_idx), labels = metric.index_batches(
                train, args.n_way, args.k_shot, args.n_query, rng, n)
            start = time.perf_counter()
            for i in range(0, n, mbs):
                sl = slice(i, i + mbs)
                logs = model.train_on_batch((s_idx[sl], q_idx[sl]), labels[sl],
                                            return_dict=True)
                float(logs["loss"])
            return n / (time.perf_counter() - start)
        return run

    def plain():  # an ordinary supervised step on as many images (steps/s)
        embedding = conv4_embedding(input_shape=train.x.shape[1:])
        inputs = keras.Input(train.x.shape[1:])
        model = keras.Model(inputs, keras.layers.Dense(args.n_way)(embedding(inputs)))
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        rng = np.random.default_rng(0)
        batches = [(train.x[rng.integers(0, len(train.x), per_episode)],
                    rng.integers(0, args.n_way, per_episode)) for _ in range(20)]

        def run(rep):
            start = time.perf_counter()
            for i in range(args.episodes):
                model.train_on_batch(*batches[i % len(batches)])
            return args.episodes / (time.perf_counter() - start)
        return run

    variants = {}  # key -> (label, run)
    for mbs in args.mbs:
        for spe in args.spe:
            variants[mbs if spe == 1 else (mbs, spe)] = (
                f"protonet {args.n_way}-way {args.k_shot}-shot {args.n_query}-query, "
                f"{mbs} episode(s)/step, {spe} step(s)/execution", indexed(mbs, spe))
        if args.before:
            variants["before", mbs] = (
                f"before: train_on_batch per step, loss read each step, {mbs} episode(s)/step",
                before(mbs))
    if args.plain:
        variants["plain"] = (f"plain train_on_batch of {per_episode} images (steps/s)", plain())

    # Interleaved: every variant runs once per round, so a slow spell of a shared machine hits
    # them all alike. Round 0 compiles and is not timed.
    rates = {key: [] for key in variants}
    for rep in range(args.repeats + 1):
        for key, (_, run) in variants.items():
            rate = run(rep)
            if rep:
                rates[key].append(rate)
    for key, (label, _) in variants.items():
        results[key] = statistics.median(rates[key])
        print(f"{label}: {results[key]:.1f} episodes/s (median of {args.repeats}: "
              f"{', '.join(f'{r:.1f}' for r in rates[key])})")
    for mbs in args.mbs:
        if ("before", mbs) in results and mbs in results:
            print(f"speed-up of train_indexed over the earlier loop ({mbs}/step): "
                  f"{results[mbs] / results['before', mbs]:.2f}x")
    if "plain" in results:
        for key, rate in results.items():
            if key != "plain":
                print(f"cost of an episode step / a plain step ({key}): "
                      f"{results['plain'] / rate:.2f}x")


if __name__ == "__main__":
    main()
