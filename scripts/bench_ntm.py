"""Benchmark: training updates per second of chapter 5.1's NTM and LSTM on the copy task.

    python scripts/bench_ntm.py                       # TensorFlow, with and without XLA
    KERAS_BACKEND=jax .venv-jax/bin/python scripts/bench_ntm.py   # JAX (jit)

Each model is built as chapter 5.1 builds it at ``--scale`` (default ``cpu``: 32 sequences of
lengths 1 to 20 per update, padded to 41 steps) and timed over ``--repeats`` runs of ``--steps``
updates after two compiling updates. It prints the median seconds per update and sequences per
second; the variants run in turn, one run each per round, so that a slow spell of a shared
machine hits them all alike: compare ratios within one run, not absolute figures. On a GPU it
answers the question the chapter leaves open: is the NTM's step loop faster there than on the
CPU?
"""

from __future__ import annotations

import argparse
import statistics
import time


def variants(scale: str) -> dict:
    import keras

    from mlbook_utils import ntm, registry

    settings = registry.settings_at(ntm.SETTINGS, scale)
    out = {}
    backend = keras.backend.backend()
    xla = [True, False] if backend == "tensorflow" else [None]
    for name, build in (("NTM", lambda: ntm.build_ntm(settings)[0]),
                        ("LSTM", lambda: ntm.build_lstm(settings))):
        for jit in xla:
            model = build()
            if jit is False:
                model.compile(optimizer=model.optimizer, loss=model.loss, jit_compile=False)
            label = f"{name} ({backend}{', XLA' if jit else ', no XLA' if jit is False else ''})"
            out[label] = (model, settings)
    return out


def main(argv=None) -> int:
    import numpy as np

    from mlbook_utils import config, ntm

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print(config.device_report())
    models = variants(args.scale)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {k: [] for k in models}
    for model, s in models.values():  # compile
        for _ in range(2):
            model.train_on_batch(*ntm.copy_batch(rng, s["batch_size"], s["min_len"],
                                                 s["max_len"])[:2])
    for _ in range(args.repeats):
        for label, (model, s) in models.items():
            batches = [ntm.copy_batch(rng, s["batch_size"], s["min_len"], s["max_len"])
                       for _ in range(args.steps)]
            start = time.perf_counter()
            for x, y, mask in batches:
                model.train_on_batch(x, y, sample_weight=mask)
            times[label].append((time.perf_counter() - start) / args.steps)
    first = next(iter(times))
    base = statistics.median(times[first])
    for label, t in times.items():
        med = statistics.median(t)
        bs = models[label][1]["batch_size"]
        print(f"{label:28s} {1000 * med:7.1f} ms per update, {bs / med:7.0f} sequences/s, "
              f"{med / base:5.2f}x {first}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
