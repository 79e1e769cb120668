"""Benchmark: what ``model.fit`` is fed, on TensorFlow, for the protonet's segments.

    python scripts/bench_fit_inputs.py --rounds 6

Each round makes two ``fit`` calls of ``--episodes`` 20-way 1-shot episodes (one per step), in
turn: one given the index arrays directly (Keras builds its own ``tf.data`` pipeline, which
prefetches with autotuning), one given ``metric.fit_inputs`` (a pipeline without prefetching or
autotuning threads). It prints the seconds per step of every call, so that calls that ran slow
show up one by one, and the medians. Round 0 compiles and is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--episodes", type=int, default=64)
    args = parser.parse_args()

    import keras
    import numpy as np

    from mlbook_utils import config, data, metric
    from mlbook_utils.models import conv4_embedding

    print(config.device_report())
    train = data.load_omniglot("train")
    model = metric.IndexedPrototypicalNetwork(conv4_embedding(), metric.image_store(train.x))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=metric.episode_loss,
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    rng = np.random.default_rng(0)
    feeds = {"Keras's array pipeline": lambda x, y: {"x": x, "y": y, "batch_size": 1},
             "metric.fit_inputs": lambda x, y: metric.fit_inputs(x, y, 1)}
    per_step = {name: [] for name in feeds}
    for rnd in range(args.rounds + 1):
        for name, feed in feeds.items():
            x, y = metric.index_batches(train, 20, 1, 5, rng, args.episodes)
            start = time.perf_counter()
            model.fit(**feed(x, y), epochs=1, shuffle=False, verbose=0)
            if rnd:
                per_step[name].append((time.perf_counter() - start) / args.episodes)
    for name, values in per_step.items():
        print(f"{name}: s per step, call by call: {', '.join(f'{v:.3f}' for v in values)}; "
              f"median {statistics.median(values):.3f}")


if __name__ == "__main__":
    main()
