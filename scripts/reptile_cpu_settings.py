"""How chapter 7.2's `cpu`-scale Reptile settings were chosen: one 5-way model, meta-trained
for a fixed wall-clock budget (the meta step annealed to 0 over it), tested at 5-way 1-shot on
200 episodes, without and with transduction.

    python scripts/reptile_cpu_settings.py --inner-lr 0.001 --chain --budget 150  # the paper's
    python scripts/reptile_cpu_settings.py --inner-lr 0.003 --chain --budget 150
    python scripts/reptile_cpu_settings.py --inner-lr 0.006 --chain --budget 150
    python scripts/reptile_cpu_settings.py --inner-lr 0.003 --budget 150          # the chosen
    python scripts/reptile_cpu_settings.py --inner-lr 0.003 --budget 600

Everything not given on the command line is `reptile.SETTINGS["cpu"]` (10 training shots,
5 inner Adam steps on minibatches of 10, meta-batch 5, meta step 1 annealed to 0, 50 steps at
test, seed 0). ``--chain`` carries the inner Adam's state from task to task, as the reference
code does; without it every task of a meta-batch starts from the same state and the tasks run
side by side on TensorFlow (``config.task_parallel_threads``). Run it alone on the machine: the
budget is wall-clock time.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inner-lr", type=float, default=0.003)
    parser.add_argument("--chain", action="store_true",
                        help="chain the inner Adam's state through the tasks (reference code)")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds of training")
    parser.add_argument("--test-episodes", type=int, default=200)
    args = parser.parse_args()

    from mlbook_utils import config

    print(config.task_parallel_threads())
    from mlbook_utils import registry, reptile
    from mlbook_utils.evaluation import evaluate

    s = dict(reptile.SETTINGS["cpu"], inner_lr=args.inner_lr, chain_adam=args.chain)
    run = dict(s["runs"][0], budget_s=args.budget)
    print(f"{config.device()} | {config.backend()} | inner lr {args.inner_lr:g}, Adam state "
          f"{'chained through the tasks' if args.chain else 'per task'}, {args.budget:g} s")
    train = registry.omniglot(None, "train")
    test = registry.omniglot(None, "test")
    config.seed_everything(s["seed"])
    net, trainer, hist = reptile.train_omniglot(s, run, train, progress=False)
    print(f"{hist['steps']} meta-steps in {hist['wall_s']:.0f} s "
          f"({hist['steps_per_s']:.2f}/s)")
    predict = reptile.predictors(net, trainer.values(), trainer.adam(), inner_lr=s["inner_lr"],
                                 eval_iters=s["eval_iters"], eval_batch=s["eval_batch"])
    for transductive in (False, True):
        res = evaluate(predict[transductive], test, 5, 1, s["test_query"], args.test_episodes,
                       seed=s["test_seed"], progress=False)
        print(f"{reptile.label(transductive)}: {res}")


if __name__ == "__main__":
    main()
