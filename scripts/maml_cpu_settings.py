"""How chapter 6.1's `cpu`-scale MAML settings were chosen: one 5-way model, meta-trained on
1-shot tasks for a fixed wall-clock budget, tested at 5-way 1-shot and 5-shot.

    python scripts/maml_cpu_settings.py --meta-batch 4 --cosine          # the chosen settings
    python scripts/maml_cpu_settings.py --meta-batch 8                   # constant Adam 1e-3
    python scripts/maml_cpu_settings.py --meta-batch 8 --queries 15      # the paper's queries

Everything not given on the command line is `maml.MAML_SETTINGS["cpu"]` (inner lr 0.4, one
inner step, 10 steps at test, 64 filters, seed 0). ``--cosine`` decays the outer (Adam) learning
rate to 0 along half a cosine over the budget, as MAML++ does; without it the rate is constant.
On TensorFlow the tasks of a meta-batch run side by side (``config.task_parallel_threads``), as
in the chapter. Prints the meta-steps, the speed and the two test accuracies (600 episodes, the
book's test seed). Run it alone on the machine: the budget is wall-clock time.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meta-batch", type=int, default=4)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of training")
    parser.add_argument("--meta-lr", type=float, default=1e-3)
    parser.add_argument("--cosine", action="store_true", help="decay the meta learning rate")
    parser.add_argument("--test-episodes", type=int, default=600)
    args = parser.parse_args()

    from mlbook_utils import config

    print(config.task_parallel_threads())
    from mlbook_utils import maml, registry
    from mlbook_utils.evaluation import evaluate

    s = dict(maml.MAML_SETTINGS["cpu"], meta_lr=args.meta_lr, meta_lr_decay=args.cosine,
             attack=False)
    run = dict(s["runs"][0], n_query=args.queries, meta_batch_size=args.meta_batch,
               budget_s=args.budget)
    print(f"{config.device()} | {config.backend()} | meta-batch {args.meta_batch}, "
          f"{args.queries} queries per class, meta lr {args.meta_lr:g}"
          f"{' cosine-decayed to 0' if args.cosine else ' constant'}, {args.budget:g} s")
    train = registry.omniglot(None, "train")
    test = registry.omniglot(None, "test")
    net, hist = maml.train_omniglot(s, run, train, progress=False)
    print(f"{hist['steps']} meta-steps in {hist['wall_s']:.0f} s "
          f"({hist['steps_per_s']:.2f}/s)")
    for k in (1, 5):
        res = evaluate(maml.predictor_for(s, net, run), test, 5, k, s["test_query"],
                       args.test_episodes, seed=s["test_seed"], progress=False)
        print(res)


if __name__ == "__main__":
    main()
