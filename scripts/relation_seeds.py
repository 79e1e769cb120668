"""Seed spread of chapter 4.1's relation network at the `cpu` scale, in both training loops.

    python scripts/relation_seeds.py --loop indexed --seeds 11 12
    python scripts/relation_seeds.py --loop host --seeds 10

Chapter 4.1's relation network moved from the old loop (episodes sampled as image arrays on the
host and fed to ``train_on_batch`` one at a time) to the book's one loop (``metric.train_indexed``
with ``metric.IndexedEpisodes``), and its `cpu`-scale accuracy moved by more than the test
episodes' confidence interval. This script trains it with the chapter's `cpu` settings (1100
20-way 1-shot episodes, cosine-decayed Adam) for each seed (the seed sets both the initial
weights and the training episodes) in the loop asked for, and tests it on the book's 5-way and
20-way 1-shot test episodes (1000 each). The spread across seeds says whether a change of a few
points is the loop or the draw.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loop", choices=("indexed", "host"), default="indexed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    parser.add_argument("--test-episodes", type=int, default=1000)
    args = parser.parse_args()

    import keras
    import numpy as np

    from mlbook_utils import config, data, evaluation, metric, registry
    from mlbook_utils import relation_matching as rm

    print(config.device_report())
    train, test = data.load_omniglot("train"), data.load_omniglot("test")
    for seed in args.seeds:
        s = registry.get("relation").settings_for("cpu", seed=seed)
        model = rm.build(s)
        start = time.perf_counter()
        if args.loop == "indexed":
            hist = rm.train(model, train, s, progress=False)
            last = float(np.mean(hist["accuracy"][-50:]))
        else:  # the loop chapter 4.1 used before: host arrays, one train_on_batch per episode
            lr = keras.optimizers.schedules.CosineDecay(s["learning_rate"],
                                                        decay_steps=s["train_episodes"],
                                                        alpha=s["lr_alpha"])
            rm.compile_relation(model, lr)
            rng, accs = np.random.default_rng(seed), []
            for _ in range(0, s["train_episodes"], 50):
                x, y = metric.episode_arrays(train, s["train_way"], s["train_shot"],
                                             s["train_query"], rng, 50)
                for i in range(50):
                    logs = model.train_on_batch(tuple(a[i : i + 1] for a in x), y[i : i + 1],
                                                return_dict=True)
                    accs.append(float(logs["accuracy"]))
            last = float(np.mean(accs[-50:]))
        wall = time.perf_counter() - start
        predict = rm.make_predictor(model, model.relate, test)
        res = {n: evaluation.evaluate(predict, test, n, 1, 15, args.test_episodes,
                                      seed=registry.TEST_SEED, progress=False)
               for n in (5, 20)}
        print(f"loop={args.loop} seed={seed}: trained {s['train_episodes']} episodes in "
              f"{wall:.0f} s, last-50 training-query accuracy {100 * last:.1f} %; "
              f"5-way 1-shot {res[5].accuracy:.1f} ± {res[5].ci95:.1f} %, "
              f"20-way 1-shot {res[20].accuracy:.1f} ± {res[20].ci95:.1f} %", flush=True)


if __name__ == "__main__":
    main()
