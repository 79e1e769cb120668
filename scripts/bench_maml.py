"""Benchmark: the cost of one meta-step of MAML, first-order MAML, ANIL, CAML and ADML.

    python scripts/bench_maml.py                      # chapter 6.1's cpu comparison settings
    python scripts/bench_maml.py --methods maml anil --steps 50 --repeats 5

Each method is built exactly as chapter 6.1 trains it at ``--scale`` (default ``cpu``: Omniglot
5-way 1-shot, 5 queries per class, meta-batch 8, 64 filters) and timed over ``--repeats`` runs of
``--steps`` meta-steps after the compiling step; it prints the median seconds per meta-step and
the ratio to MAML's (the methods run in turn, one run each per round, so that a slow spell of a
shared machine hits them all alike: compare ratios, not absolute figures). TensorFlow runs the
tasks side by side as the chapter does (``config.task_parallel_threads``) unless
``--default-threads``.

Memory per meta-step: on JAX, XLA's own account of the compiled meta-step (its temporary
buffers: the activations, gradients and second-order terms that one meta-step holds at its
peak, without the weights and the training images, which are its arguments); that figure does
not depend on the machine's load. ``--memory`` also runs each method in a fresh process and
prints its peak resident memory and that peak's growth over the steps; on TensorFlow on 2 cores
(2026-12-02) that did not resolve one meta-step (the peak is set by loading Omniglot and
compiling, and did not grow), so XLA's figure on JAX is the one to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

METHODS = ("maml", "maml-first-order", "anil", "caml", "adml")


def build(method: str, scale: str):
    """(trainer, sample) for ``method`` at ``scale``, with chapter 6.1's settings."""
    import keras

    from mlbook_utils import inner_loop as il
    from mlbook_utils import maml, registry
    from mlbook_utils.metric import image_store

    s = registry.settings_at(maml.RUNNER_METHODS[method][0], scale)
    run = s["runs"][0]
    train_set = registry.omniglot(None, "train")
    net = maml.omniglot_net(s, run["n_way"])
    trainer = il.MetaTrainer(net.variables, maml.task_loss_for(s, net, run),
                             keras.optimizers.Adam(s["meta_lr"]),
                             data=image_store(train_set.x).value)
    return trainer, maml.omniglot_sampler(train_set, run, s["seed"]), run


def wait(loss) -> float:
    from keras import ops

    return float(ops.convert_to_numpy(loss))


def xla_memory(trainer, tasks) -> dict | None:
    """XLA's memory account of the compiled meta-step (JAX only), in MiB."""
    if trainer.backend != "jax":
        return None
    compiled = trainer._step.lower(trainer._values, trainer._opt, tasks, trainer.data).compile()
    m = compiled.memory_analysis()
    if m is None:
        return None
    return {"temp_mib": round(m.temp_size_in_bytes / 2**20, 1),
            "argument_mib": round(m.argument_size_in_bytes / 2**20, 1)}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_process(method: str, scale: str, steps: int) -> dict:
    """Build ``method``, compile its step, run ``steps`` steps: the memory figures."""
    trainer, sample, run = build(method, scale)
    tasks = [sample(i) for i in range(steps + 1)]
    out = {"xla": xla_memory(trainer, tasks[0])}
    wait(trainer.step(tasks[0]))
    before = peak_rss_mib()
    for t in tasks[1:]:
        loss = trainer.step(t)
    wait(loss)
    out["rss_growth_mib"] = round(peak_rss_mib() - before, 1)
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--scale", default="cpu", choices=("quick", "cpu", "full"))
    parser.add_argument("--steps", type=int, default=30, help="meta-steps per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", action="store_true",
                        help="also run each method in a fresh process for its memory figures")
    parser.add_argument("--default-threads", action="store_true",
                        help="keep TensorFlow's default thread pools (the chapter sets the tasks "
                             "side by side: config.task_parallel_threads)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process for --memory
    args = parser.parse_args()
    from mlbook_utils import config

    threads = "default threads" if args.default_threads else config.task_parallel_threads()
    if args.one:
        print(json.dumps(one_process(args.one, args.scale, args.steps)))
        return

    import keras

    print(config.device_report())
    print(threads)
    print(f"backend {keras.backend.backend()}, scale {args.scale}, {args.steps} meta-steps per "
          f"run, {args.repeats} runs, median")
    built, times, mem = {}, {m: [] for m in args.methods}, {}
    for method in args.methods:
        start = time.perf_counter()
        trainer, sample, run = build(method, args.scale)
        tasks = [sample(i) for i in range(args.steps)]
        mem[method] = xla_memory(trainer, tasks[0])
        wait(trainer.step(tasks[0]))
        built[method] = (trainer, tasks, time.perf_counter() - start)
    print(f"task: {run['n_way']}-way {run['k_shot']}-shot, {run['n_query']} queries per class, "
          f"meta-batch {run['meta_batch_size']}")
    for _ in range(args.repeats):
        for method in args.methods:
            trainer, tasks, _ = built[method]
            start = time.perf_counter()
            for t in tasks:
                loss = trainer.step(t)
            wait(loss)
            times[method].append((time.perf_counter() - start) / len(tasks))
    base = statistics.median(times[args.methods[0]])
    print(f"\n{'method':18s} {'s/meta-step':>12s} {'meta-steps/s':>13s} "
          f"{'vs ' + args.methods[0]:>10s} {'build+compile s':>16s} {'XLA temp MiB':>13s}")
    for method in args.methods:
        med = statistics.median(times[method])
        temp = mem[method]["temp_mib"] if mem[method] else "n/a"
        print(f"{method:18s} {med:12.4f} {1 / med:13.2f} {med / base:10.2f} "
              f"{built[method][2]:16.1f} {temp!s:>13s}")
    if args.memory:
        print("\nfresh process per method: peak resident memory, and its growth over "
              f"{args.steps} meta-steps after the compiling step (MiB)")
        for method in args.methods:
            res = subprocess.run([sys.executable, __file__, "--one", method, "--scale",
                                  args.scale, "--steps", str(args.steps)]
                                 + (["--default-threads"] if args.default_threads else []),
                                 capture_output=True, text=True, env=os.environ.copy())
            lines = [x for x in res.stdout.splitlines() if x.startswith("{")]
            if res.returncode or not lines:
                print(f"{method:18s} failed: {res.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(lines[-1])
            print(f"{method:18s} peak {r['peak_rss_mib']:8.0f}   growth {r['rss_growth_mib']:7.1f}"
                  + (f"   XLA temp {r['xla']['temp_mib']}" if r["xla"] else ""))


if __name__ == "__main__":
    main()
