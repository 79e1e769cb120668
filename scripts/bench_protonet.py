"""Benchmark: the prototypical network's training step, in episodes per second.

    python scripts/bench_protonet.py                      # CPU: episode step vs plain step
    python scripts/bench_protonet.py --mbs 1 16 64 --episodes 2000    # e.g. on a GPU

For each meta-batch size (episodes per compiled step) it trains a fresh conv-4 protonet with
``metric.train_indexed`` (the chapters' training loop: index arrays sampled in batches, images
gathered inside the compiled step) and reports episodes per second, median of ``--repeats``
timed runs after one warm-up run. With ``--plain`` it also times a plain ``train_on_batch`` of
the same number of images (n_way x (k_shot + n_query)) through the same embedding with a dense
classification head, fed from NumPy arrays, and prints the ratio: the cost of an episode over
the cost of an ordinary supervised step on the same images. Machines here are shared and noisy:
compare ratios within one run.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mbs", type=int, nargs="+", default=[1])
    parser.add_argument("--episodes", type=int, default=200, help="episodes per timed run")
    parser.add_argument("--n-way", type=int, default=60)
    parser.add_argument("--k-shot", type=int, default=1)
    parser.add_argument("--n-query", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain", action="store_true", help="also time plain train_on_batch")
    parser.add_argument("--arrays", action="store_true",
                        help="also time the earlier loop (metric.train): episodes sampled as "
                             "image arrays on the host and fed to train_on_batch")
    args = parser.parse_args()

    import keras
    import numpy as np

    from mlbook_utils import config, data, metric
    from mlbook_utils.models import conv4_embedding

    print(config.device_report())
    train = data.load_omniglot("train")
    per_episode = args.n_way * (args.k_shot + args.n_query)
    results = {}
    for mbs in args.mbs:
        embedding = conv4_embedding(input_shape=train.x.shape[1:])
        model = metric.IndexedPrototypicalNetwork(embedding, metric.image_store(train.x))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=metric.episode_loss,
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        n = max(args.episodes // mbs * mbs, mbs)
        rates = []
        for rep in range(args.repeats + 1):  # the first run compiles: not timed
            hist = metric.train_indexed(model, train, args.n_way, args.k_shot, args.n_query, n,
                                        meta_batch_size=mbs, seed=rep, progress=False)
            if rep:
                rates.append(hist["episodes"] / hist["wall_s"])
        results[mbs] = statistics.median(rates)
        print(f"protonet {args.n_way}-way {args.k_shot}-shot {args.n_query}-query, "
              f"{mbs} episode(s)/step: {results[mbs]:.1f} episodes/s "
              f"(median of {args.repeats}: {', '.join(f'{r:.1f}' for r in rates)})")

    if args.arrays:  # "before": chapter 1.2's first loop, images gathered on the host
        embedding = conv4_embedding(input_shape=train.x.shape[1:])
        model = metric.compile_model(metric.PrototypicalNetwork(embedding), 1e-3)
        rates = []
        for rep in range(args.repeats + 1):
            hist = metric.train(model, train, args.n_way, args.k_shot, args.n_query,
                                args.episodes, seed=rep, progress=False)
            if rep:
                rates.append(hist["episodes"] / hist["wall_s"])
        results["arrays"] = statistics.median(rates)
        print(f"protonet, host-gathered image arrays (metric.train), 1 episode/step: "
              f"{results['arrays']:.1f} episodes/s "
              f"(median of {args.repeats}: {', '.join(f'{r:.1f}' for r in rates)})")
        if 1 in results:
            print(f"indexed step speed-up over host arrays: {results[1] / results['arrays']:.2f}x")

    if args.plain:
        embedding = conv4_embedding(input_shape=train.x.shape[1:])
        inputs = keras.Input(train.x.shape[1:])
        plain = keras.Model(inputs, keras.layers.Dense(args.n_way)(embedding(inputs)))
        plain.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        rng = np.random.default_rng(0)
        batches = [(train.x[rng.integers(0, len(train.x), per_episode)],
                    rng.integers(0, args.n_way, per_episode)) for _ in range(20)]
        plain.train_on_batch(*batches[0])  # compile
        rates = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for i in range(args.episodes):
                plain.train_on_batch(*batches[i % len(batches)])
            rates.append(args.episodes / (time.perf_counter() - start))
        plain_rate = statistics.median(rates)
        print(f"plain train_on_batch of {per_episode} images: {plain_rate:.1f} steps/s "
              f"(median of {args.repeats}: {', '.join(f'{r:.1f}' for r in rates)})")
        for mbs, rate in results.items():
            print(f"episode step / plain step ({mbs}): {plain_rate / rate:.2f}x")


if __name__ == "__main__":
    main()
