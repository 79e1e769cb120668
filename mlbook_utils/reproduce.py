"""Headless runner: train and evaluate a chapter's method without its notebook.

    python -m mlbook_utils.reproduce --list
    python -m mlbook_utils.reproduce protonet --scale cpu
    python -m mlbook_utils.reproduce protonet --scale full --k-shot 5 --checkpoint-dir ckpt/
    python -m mlbook_utils.reproduce pixel-nn --scale cpu --episodes 1000
    python -m mlbook_utils.reproduce relation --scale full --time-budget 200
    python -m mlbook_utils.reproduce siamese --scale cpu --dataset faces
    python -m mlbook_utils.reproduce relation --scale quick --set train_query=10

The methods, their settings and their experiment functions live in the method modules, which
register them in :mod:`mlbook_utils.registry`; this module is only the command line over that
registry. Each run calls the very function the chapter's notebook calls, with the settings the
notebook displays, shows a progress bar, and appends records in the shared format to
``results/<chapter>.jsonl`` (``cpu`` and ``full`` runs; ``quick`` runs go to the user cache),
marked ``runner="reproduce"`` and with the peak memory. ``--time-budget`` caps each model's
training time; records then say how much of the planned training was done. ``--set KEY=VALUE``
overrides any setting the method has (``--list`` shows them); a key it does not have is an
error.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time

from . import registry

#: Command-line flags that set a common settings key (see ``registry.COMMON_KEYS``).
_COMMON_FLAGS = {"episodes": "test_episodes", "n_query": "test_query",
                 "train_episodes": "train_episodes", "time_budget": "time_budget_s"}
#: Flags for settings only some methods have.
_METHOD_FLAGS = {"meta_batch_size": "meta_batch_size",
                 "steps_per_execution": "steps_per_execution", "dataset": "datasets",
                 "trainval": "trainval", "checkpoint_dir": "checkpoint_dir"}


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a plain string


def overrides_from(args, method: registry.Method) -> dict:
    """The settings overrides that the command line ``args`` ask for, for ``method``."""
    scale_settings = method.settings_for(args.scale)
    out = {}
    for flag, common in _COMMON_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            key = method.key(common)
            if key not in scale_settings:
                raise SystemExit(f"{method.name} has no setting for --{flag.replace('_', '-')}")
            out[key] = value
    for flag, key in _METHOD_FLAGS.items():
        value = getattr(args, flag, None)
        if value in (None, False):
            continue
        if key not in scale_settings:
            raise SystemExit(f"{method.name} does not take --{flag.replace('_', '-')}")
        out[key] = (value,) if key == "datasets" else value
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, got {item!r}")
        out[key.strip()] = _parse_value(value.strip())
    return out


def run(name: str, args) -> list[dict]:
    """Run the registered method ``name`` with the command line ``args``; return its records."""
    method = registry.get(name)
    settings = method.settings_for(args.scale, **overrides_from(args, method))
    tests = None
    if "tests" in settings:
        tests = registry.select_tests(settings["tests"], args.n_way, args.k_shot)
        if not tests:
            print(f"{name}: no test setting left after the --n-way/--k-shot filter "
                  f"(the method tests {list(settings['tests'])})")
            return []
    elif args.n_way or args.k_shot:
        raise SystemExit(f"{name} has no (n_way, k_shot) test settings to filter")
    outcome = method.experiment(settings, tests=tests, runner="reproduce")
    return outcome.records


def describe(methods: dict[str, registry.Method], scale: str | None) -> str:
    lines = ["methods (python -m mlbook_utils.reproduce METHOD --scale S):"]
    for m in methods.values():
        lines.append(f"  {m.name:20s} {m.describe} -> results/{m.chapter}.jsonl")
    tests = ", ".join(f"{w}-way {k}-shot" for w, k in registry.TEST_SETTINGS)
    lines.append(f"test settings: {tests}; scales: {', '.join(registry.SCALES)}")
    for m in methods.values():
        for s in ([scale] if scale else registry.SCALES):
            lines.append(f"  {m.name} {s}: {m.settings[s]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    methods = registry.methods()
    parser = argparse.ArgumentParser(prog="python -m mlbook_utils.reproduce",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", nargs="?", choices=list(methods))
    parser.add_argument("--list", action="store_true", help="list methods and their settings")
    parser.add_argument("--scale", choices=registry.SCALES, default=None)
    parser.add_argument("--n-way", type=int, default=None, help="test only this n_way")
    parser.add_argument("--k-shot", type=int, default=None, help="test only this k_shot")
    parser.add_argument("--n-query", type=int, default=None,
                        help="queries per class in the test episodes (default: the method's)")
    parser.add_argument("--episodes", type=int, default=None,
                        help="test episodes per setting (default: the method's)")
    parser.add_argument("--train-episodes", type=int, default=None,
                        help="training length, in the method's unit (episodes, steps, ...)")
    parser.add_argument("--meta-batch-size", type=int, default=None,
                        help="episodes per training step (protonet)")
    parser.add_argument("--steps-per-execution", type=int, default=None,
                        help="protonet: compiled steps per execution (fewer host round trips)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="cap on each model's training time, in seconds")
    parser.add_argument("--dataset", default=None,
                        help="siamese: only this data set (faces, audio or omniglot)")
    parser.add_argument("--trainval", action="store_true",
                        help="protonet, full scale: train on train+val (no model selection)")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="protonet: save weights after each segment and resume from there")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override any setting of the method (repeatable)")
    args = parser.parse_args(argv)
    if args.list or not args.method:
        print(describe(methods, args.scale))
        return 0
    if args.scale:
        os.environ["MLBOOK_SCALE"] = args.scale
    from . import config

    if registry.get(args.method).threads == "tasks":
        print(config.task_parallel_threads())
    args.scale = config.scale()
    print(config.device_report())
    start = time.perf_counter()
    records = run(args.method, args)
    print(f"{len(records)} record(s) in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
