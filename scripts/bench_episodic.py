"""Benchmark: chapters 1.2 and 4.1's models in the one episodic loop, against their old loop.

    python scripts/bench_episodic.py                       # CPU, 20-way 1-shot 5-query
    python scripts/bench_episodic.py --episodes 2000 --repeats 3    # e.g. on a GPU

For chapter 1.2's prototypical network, the relation network and the matching network (FCE)
it times, in episodes per second, (a) the loop these models used before this change: episodes
sampled as image arrays on the host and fed one at a time to ``train_on_batch``, whose loss is
read back after every step (written out here, since the library no longer has it), and (b) the
book's one loop, ``metric.train_indexed`` with the model wrapped in ``metric.IndexedEpisodes``
(index arrays in, images gathered inside the compiled step, ``model.fit`` over segments).
Each variant runs once per round, in turn, so that a slow spell of a shared machine hits them
all alike; round 0 compiles and is not timed; medians of ``--repeats`` rounds. Compare the
ratios within one run.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=60, help="episodes per timed run")
    parser.add_argument("--n-way", type=int, default=20)
    parser.add_argument("--k-shot", type=int, default=1)
    parser.add_argument("--n-query", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["protonet", "relation", "matching"])
    args = parser.parse_args()

    import numpy as np

    from mlbook_utils import config, data, metric, models
    from mlbook_utils import relation_matching as rm

    print(config.device_report())
    train = data.load_omniglot("train")
    store = metric.image_store(train.x)

    def build(kind):
        if kind == "protonet":
            return metric.PrototypicalNetwork(models.conv4_embedding()), metric.compile_model
        if kind == "relation":
            return rm.RelationNetwork(rm.relation_embedding()), rm.compile_relation
        return (rm.MatchingNetwork(models.conv4_embedding(), fce=True, steps=5, scale=10.0),
                rm.compile_matching)

    def host_arrays(kind):  # the old loop: host-sampled image arrays, train_on_batch per step
        model, compile_fn = build(kind)
        compile_fn(model, 1e-3)
        rng = np.random.default_rng(0)

        def run(rep):
            start = time.perf_counter()
            done = 0
            while done < args.episodes:
                n = min(50, args.episodes - done)
                x, y = metric.episode_arrays(train, args.n_way, args.k_shot, args.n_query,
                                             rng, n)
                for i in range(n):
                    logs = model.train_on_batch(tuple(a[i : i + 1] for a in x), y[i : i + 1],
                                                return_dict=True)
                    float(logs["loss"])
                done += n
            return done / (time.perf_counter() - start)
        return run

    def indexed(kind):  # the one loop
        model, compile_fn = build(kind)
        fed = compile_fn(metric.IndexedEpisodes(model, store), 1e-3)

        def run(rep):
            hist = metric.train_indexed(fed, train, args.n_way, args.k_shot, args.n_query,
                                        args.episodes, seed=rep, progress=False)
            return hist["episodes"] / hist["wall_s"]
        return run

    variants = {}
    for kind in args.models:
        variants[kind, "host arrays"] = host_arrays(kind)
        variants[kind, "train_indexed"] = indexed(kind)
    rates = {key: [] for key in variants}
    for rep in range(args.repeats + 1):
        for key, run in variants.items():
            rate = run(rep)
            if rep:
                rates[key].append(rate)
    print(f"{args.n_way}-way {args.k_shot}-shot {args.n_query}-query episodes, "
          f"{args.episodes} per run, median of {args.repeats}:")
    for (kind, loop), r in rates.items():
        print(f"  {kind:9s} {loop:14s} {statistics.median(r):7.2f} episodes/s "
              f"({', '.join(f'{v:.2f}' for v in r)})")
    for kind in args.models:
        ratio = (statistics.median(rates[kind, "train_indexed"])
                 / statistics.median(rates[kind, "host arrays"]))
        print(f"  {kind}: train_indexed / host arrays = {ratio:.2f}x")


if __name__ == "__main__":
    main()
