"""Chapter 2.1, ORL faces: does longer training overfit the 30 training people?

    python scripts/siamese_faces_budget.py                 # 250 ... 5000 steps, 1000 episodes

The chapter's `cpu` run trains 500 steps of 32 pairs and reaches about 90 % on 5-way 1-shot
identification of the 10 unseen people; the `full` run (5000 steps, on a GPU) fell to 83.5 %.
This script trains one network with the chapter's `cpu` settings (``siamese.SETTINGS``: seed 1,
Adam 1e-3, contrastive loss, random flips) in segments, and after each segment tests 5-way
1-shot identification (5 queries per person, the book's test seed) on the 10 unseen people
and on the 30 training people (whose photographs it trained on: all ten of each person go into
its pairs). If training longer lifts the training people while the unseen ones fall, the network
is fitting the people it trains on rather than learning faces.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000, 2000, 3500, 5000])
    parser.add_argument("--episodes", type=int, default=1000)
    args = parser.parse_args()

    from mlbook_utils import config, evaluation, registry, siamese

    ds = siamese.dataset_settings(siamese.SETTINGS["cpu"], "faces")
    split = siamese.faces_split()
    model = siamese.build(ds, split.train.x.shape[1:], "faces")
    print(f"{config.device()} | {config.backend()} | faces: {split.train.n_classes} training "
          f"people, {split.test.n_classes} unseen; batch {ds['batch']}, seed {ds['seed']}")
    done, wall = 0, 0.0
    for target in args.steps:
        # Each segment draws its own pairs (seed + steps done), so no segment repeats another.
        hist = siamese.train(model, split.train, target - done, ds["batch"],
                             seed=ds["seed"] + done, augment=siamese.AUGMENTATIONS[ds["augment"]],
                             progress=False)
        done, wall = target, wall + hist["wall_s"]
        row = [f"{done:5d} steps ({done * ds['batch']:6d} pairs, {wall:4.0f} s), "
               f"loss {hist['loss'][-50:].mean():.3f}"]
        for name, people in (("unseen", split.test), ("training people", split.train)):
            res = evaluation.evaluate(siamese.make_predictor(model, people), people, 5, 1, 5,
                                      args.episodes, seed=registry.TEST_SEED, progress=False)
            row.append(f"{name} {res.accuracy:.1f} ± {res.ci95:.1f}")
        print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
