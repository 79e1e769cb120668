"""Chapter 5.1: the Neural Turing Machine (Graves, Wayne and Danihelka 2014) on its copy task.

Everything of the method lives here: the copy task's batches, the NTM cell (a controller with
one read and one write head on a 128 x 20 memory, addressed with the operations of
:mod:`mlbook_utils.memory`), the LSTM baseline, the training loop, the evaluation in bits, the
settings for every scale and the experiment that the notebook and the runner both call.

The cell is a ``keras.layers.Layer`` stepped by ``keras.layers.RNN``: its state is the
controller's ``(h, c)`` (unused by the feed-forward controller), the memory flattened to
``N * M`` numbers, the last read vector and the two heads' weightings. Written in
``keras.ops``, it runs on TensorFlow (compiled with XLA, about three times faster than without
on 2 CPU cores) and on JAX.

Stability, after the failures that public implementations reported and our own runs showed:
the memory starts at a small constant and both heads start on slot 0, so the rows are told apart
by location before content can tell them apart; sharpening is ``softmax(gamma * log(w + eps))``;
the optimiser clips the global gradient norm; the heads' raw parameters are clipped to
``[-clip_heads, clip_heads]``; and the controller is feed-forward. With an LSTM controller
(Adam 1e-3, batch 32, 2026-12-03, 2 seeds on a loaded 2-core machine) every run reached a few
bits per sequence and then collapsed to chance within a few hundred updates; a probe showed the
controller's cell state growing to |c| = 22 at the collapse, saturating it, after which it did
not recover in 2000 updates. AMSGrad and clipping the heads' parameters did not prevent it; the
feed-forward controller, which has no cell state, never collapsed in the same runs.
"""

from __future__ import annotations

import time

import numpy as np

from . import registry

CHAPTER = "05_1_neural_turing_machine"
#: The copy task's vectors: 8 random bits, plus one input channel for the end-of-input flag.
BITS = 8
MODELS = ("NTM", "LSTM")

#: The model, the optimiser and the task: the same at every scale unless a scale says otherwise
#: (``{**_COMMON, ...}`` keeps this key order, which the settings table shows).
_COMMON = {
    "slots": 128, "width": 20, "controller": 100, "controller_kind": "feedforward",
    "clip_heads": 5.0, "lstm_units": 256, "lstm_layers": 1,
    "batch_size": 32, "learning_rate": 1e-3, "lr_decay": True, "clipnorm": 10.0,
    "keep_best": True,
    "min_len": 1, "max_len": 20, "train_steps": 10000, "time_budget_s": None,
    "eval_every": 100, "eval_sequences": 128, "test_lengths": (10, 20, 30, 50, 100),
    "test_sequences": 256, "seed": 0,
}
SETTINGS = {
    "quick": {**_COMMON, "max_len": 5, "train_steps": 200, "eval_every": 50,
              "eval_sequences": 64, "test_lengths": (5, 20), "test_sequences": 32},
    "cpu": dict(_COMMON),
    # Graves et al. trained one sequence per update with RMSProp at 1e-4 (NTM) and 3e-5 (LSTM
    # of 3 x 256) for many more sequences; here batch 32 with Adam, as the reproductions did,
    # for 10,000 updates (320,000 sequences) and the paper's 3-layer LSTM.
    "full": {**_COMMON, "lstm_layers": 3, "eval_every": 250, "eval_sequences": 256,
             "test_lengths": (10, 20, 30, 50, 100, 120), "test_sequences": 1000},
}


# ---------------------------------------------------------------------------------- the task
def copy_batch(rng: np.random.Generator, batch: int, min_len: int = 1, max_len: int = 20,
               length: int | None = None, steps: int | None = None):
    """A batch of the copy task: ``(x, y, mask)``.

    Each sequence is ``L`` random 8-bit vectors (``L`` uniform in ``[min_len, max_len]``, or
    ``length``), then one step whose 9th channel flags the end of the input, then ``L`` blank
    steps during which the network must write the bits back. ``x`` is ``(B, T, 9)``, ``y``
    ``(B, T, 8)`` (the targets, zero outside the answer) and ``mask`` ``(B, T)`` is 1 on the
    answer's steps. ``T = steps`` or ``2 * max_len + 1``: shorter sequences are padded at the
    end, where the mask is 0, so one compiled step serves every length."""
    top = length or max_len
    steps = steps or 2 * top + 1
    if steps < 2 * top + 1:
        raise ValueError(f"steps={steps} cannot hold a copy of length {top} (needs {2 * top + 1})")
    x = np.zeros((batch, steps, BITS + 1), np.float32)
    y = np.zeros((batch, steps, BITS), np.float32)
    mask = np.zeros((batch, steps), np.float32)
    lengths = np.full(batch, length) if length else rng.integers(min_len, max_len + 1, batch)
    for b, n in enumerate(lengths):
        bits = rng.integers(0, 2, (n, BITS)).astype(np.float32)
        x[b, :n, :BITS] = bits
        x[b, n, BITS] = 1.0
        y[b, n + 1:2 * n + 1] = bits
        mask[b, n + 1:2 * n + 1] = 1.0
    return x, y, mask


def bits_per_sequence(logits, y, mask) -> dict:
    """The copy task's two costs, per sequence: the cross-entropy in bits summed over the
    answer (Graves et al.'s "cost per sequence (bits)") and the number of wrong bits."""
    logits = np.asarray(logits, np.float64)
    ce = (np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))) / np.log(2)
    wrong = (logits > 0) != (y > 0.5)
    n = len(y)
    return {"cost_bits": float((ce.sum(-1) * mask).sum() / n),
            "bit_errors": float((wrong.sum(-1) * mask).sum() / n)}


# ------------------------------------------------------------------------------------ models
def _cell_class():
    from keras import layers, ops

    from . import memory as mem

    class NTMCell(layers.Layer):
        """One step of a Neural Turing Machine with an LSTM controller, one write head and one
        read head. Output: the 8 logits, then the read and the write weighting (for plots)."""

        def __init__(self, slots=128, width=20, units=100, out_dim=BITS, clip=20.0,
                     controller="lstm", **kwargs):
            super().__init__(**kwargs)
            self.slots, self.width, self.units, self.out_dim = slots, width, units, out_dim
            self.clip, self.kind = clip, controller
            self.state_size = [units, units, slots * width, width, slots, slots]
            self.output_size = out_dim + 2 * slots
            if controller == "lstm":
                self.controller = layers.LSTMCell(units)
            elif controller == "feedforward":  # no state of its own: all it keeps is in memory
                self.controller = layers.Dense(units, activation="tanh")
            else:
                raise ValueError(f"controller must be 'lstm' or 'feedforward', got {controller!r}")
            head = width + 6  # key (M), strength, gate, 3 shift weights, sharpening
            self.read_head = layers.Dense(head)
            self.write_head = layers.Dense(head + 2 * width)  # and erase (M), add (M)
            self.readout = layers.Dense(out_dim)

        def build(self, input_shape):
            self.controller.build((None, input_shape[-1] + self.width))
            self.read_head.build((None, self.units))
            self.write_head.build((None, self.units))
            self.readout.build((None, self.units + self.width))
            self.built = True

        def get_initial_state(self, batch_size=None):
            zeros = ops.zeros((batch_size, self.units))
            memory = ops.full((batch_size, self.slots * self.width), 1e-6)
            at_slot_0 = ops.one_hot(ops.zeros((batch_size,), "int32"), self.slots)
            return [zeros, zeros, memory, ops.zeros((batch_size, self.width)), at_slot_0,
                    at_slot_0]

        def address(self, p, memory, w_prev):
            """The head's parameters ``p`` from the controller, squashed to their ranges, then
            the four addressing steps."""
            m = self.width
            p = ops.clip(p, -self.clip, self.clip)  # bounds the key strength and sharpening
            key = ops.tanh(p[:, :m])
            beta = ops.softplus(p[:, m:m + 1])
            gate = ops.sigmoid(p[:, m + 1:m + 2])
            s = ops.softmax(p[:, m + 2:m + 5], axis=-1)
            gamma = 1.0 + ops.softplus(p[:, m + 5:m + 6])
            return mem.address(memory, w_prev, key, beta, gate, s, gamma)

        def call(self, x, states, training=None):
            h, c, memory, r, w_read, w_write = states
            memory = ops.reshape(memory, (-1, self.slots, self.width))
            if self.kind == "lstm":
                out, (h, c) = self.controller(ops.concatenate([x, r], axis=-1), [h, c])
            else:
                out = h = self.controller(ops.concatenate([x, r], axis=-1))
            p = self.write_head(out)
            m = self.width
            w_write = self.address(p[:, :m + 6], memory, w_write)
            erase, add = ops.sigmoid(p[:, m + 6:2 * m + 6]), ops.tanh(p[:, 2 * m + 6:])
            memory = mem.write(memory, w_write, erase, add)
            w_read = self.address(self.read_head(out), memory, w_read)
            r = mem.read(memory, w_read)
            logits = self.readout(ops.concatenate([out, r], axis=-1))
            flat = ops.reshape(memory, (-1, self.slots * self.width))
            return (ops.concatenate([logits, w_read, w_write], axis=-1),
                    [h, c, flat, r, w_read, w_write])

    return NTMCell


def NTMCell(**kwargs):  # noqa: N802 - builds a keras.layers.Layer subclass
    """An NTM cell (see the class's docstring); keyword arguments ``slots``, ``width``,
    ``units``."""
    return _cell_class()(**kwargs)


def _compile(model, settings: dict):
    """Adam on the binary cross-entropy of the answer's bits, with the global gradient norm
    clipped at ``clipnorm``; the learning rate falls along a cosine from ``learning_rate`` to a
    tenth of it over ``train_steps`` (late spikes of the loss are rarer at a low rate)."""
    import keras

    lr = settings["learning_rate"]
    if settings.get("lr_decay", True):
        lr = keras.optimizers.schedules.CosineDecay(lr, settings["train_steps"], alpha=0.1)
    model.compile(optimizer=keras.optimizers.Adam(lr, global_clipnorm=settings["clipnorm"],
                                                  amsgrad=settings.get("amsgrad", False)),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  jit_compile=True)  # XLA on TensorFlow (3x faster here), jit on JAX
    return model


def build_ntm(settings: dict):
    """``(model, inspect)``: ``model`` maps ``(B, T, 9)`` inputs to ``(B, T, 8)`` logits;
    ``inspect`` (the same weights) also returns the read and write weightings ``(B, T, N)``."""
    import keras

    n = settings["slots"]
    inputs = keras.Input((None, BITS + 1))
    cell = NTMCell(slots=n, width=settings["width"], units=settings["controller"],
                   clip=settings["clip_heads"], controller=settings["controller_kind"])
    full = keras.layers.RNN(cell, return_sequences=True)(inputs)
    model = keras.Model(inputs, full[..., :BITS], name="ntm")
    inspect = keras.Model(inputs, [full[..., :BITS], full[..., BITS:BITS + n],
                                   full[..., BITS + n:]], name="ntm_inspect")
    return _compile(model, settings), inspect


def build_lstm(settings: dict):
    """The baseline: ``lstm_layers`` LSTM layers of ``lstm_units``, then the 8 logits."""
    import keras

    inputs = keras.Input((None, BITS + 1))
    h = inputs
    for _ in range(settings["lstm_layers"]):
        h = keras.layers.LSTM(settings["lstm_units"], return_sequences=True)(h)
    model = keras.Model(inputs, keras.layers.Dense(BITS)(h), name="lstm")
    return _compile(model, settings)


# ---------------------------------------------------------------------------------- training
def predict(model, x) -> np.ndarray:
    """``model``'s outputs on the batch ``x`` as numpy. On TensorFlow one ``tf.function`` per
    model with relaxed shapes serves every sequence length (``predict_on_batch`` would trace
    again for each length and warn about it); elsewhere ``predict_on_batch``."""
    import keras

    if keras.backend.backend() != "tensorflow":
        out = model.predict_on_batch(x)
        return [np.asarray(o) for o in out] if isinstance(out, list) else np.asarray(out)
    fn = getattr(model, "_mlbook_predict", None)
    if fn is None:
        import tensorflow as tf

        fn = tf.function(lambda v: model(v, training=False), reduce_retracing=True,
                         jit_compile=True)
        model._mlbook_predict = fn
    out = fn(x)
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)


def evaluate_copy(model, rng: np.random.Generator, sequences: int, *, length: int | None = None,
                  min_len: int = 1, max_len: int = 20, batch: int = 64) -> dict:
    """Mean cost (bits) and bit errors per sequence on ``sequences`` fresh sequences of
    ``length`` (or random lengths in ``[min_len, max_len]``), and the bit error rate."""
    totals, n = {"cost_bits": 0.0, "bit_errors": 0.0}, 0
    answer = 0.0
    while n < sequences:
        b = min(batch, sequences - n)
        x, y, mask = copy_batch(rng, b, min_len, max_len, length=length)
        got = bits_per_sequence(predict(model, x), y, mask)
        for k in totals:
            totals[k] += got[k] * b
        answer += float(mask.sum()) * BITS
        n += b
    out = {k: v / n for k, v in totals.items()}
    out["bit_error_rate"] = totals["bit_errors"] / answer
    return out


def train(model, settings: dict, *, name: str = "NTM", progress: bool = True) -> dict:
    """Train on copy batches for ``train_steps`` updates or ``time_budget_s`` seconds, whichever
    ends first. Every ``eval_every`` steps, the cost and bit errors on ``eval_sequences`` fixed
    sequences of lengths ``min_len..max_len``; with ``keep_best`` the model ends with the
    weights that scored lowest there (training can blow up and recover; these sequences are not
    the test's). Returns the history (``steps``, ``sequences``, ``cost_bits``, ``bit_errors``,
    ``loss``, ``wall_s``, ``sequences_per_s``, ``best_step``); raises if the loss ever stops
    being finite."""
    from tqdm.auto import tqdm

    from .evaluation import show_progress

    rng = np.random.default_rng(settings["seed"])
    lo, hi, bs = settings["min_len"], settings["max_len"], settings["batch_size"]
    fixed = copy_batch(np.random.default_rng(settings["seed"] + 1), settings["eval_sequences"],
                       lo, hi)
    hist = {"steps": [], "sequences": [], "cost_bits": [], "bit_errors": [], "loss": []}

    def log(step):
        got = bits_per_sequence(predict(model, fixed[0]), fixed[1], fixed[2])
        hist["steps"].append(step)
        hist["sequences"].append(step * bs)
        hist["cost_bits"].append(got["cost_bits"])
        hist["bit_errors"].append(got["bit_errors"])
        return got

    best = {"cost": np.inf, "step": 0, "weights": None}

    def keep_best(got, step):  # the weights with the lowest cost on the fixed sequences
        if got["cost_bits"] < best["cost"]:
            best.update(cost=got["cost_bits"], step=step, weights=model.get_weights())

    keep_best(log(0), 0)
    budget = settings.get("time_budget_s")
    start = time.perf_counter()
    step = 0
    with tqdm(total=settings["train_steps"], desc=f"training {name}", unit="step",
              leave=False, disable=not show_progress(progress)) as bar:
        while step < settings["train_steps"]:
            x, y, mask = copy_batch(rng, bs, lo, hi)
            loss = float(model.train_on_batch(x, y, sample_weight=mask))
            if not np.isfinite(loss):
                raise FloatingPointError(f"{name}: the loss is {loss} at step {step + 1}")
            hist["loss"].append(loss)
            step += 1
            bar.update(1)
            if step % settings["eval_every"] == 0:
                got = log(step)
                keep_best(got, step)
                bar.set_postfix(bits=f"{got['cost_bits']:.1f}", errors=f"{got['bit_errors']:.2f}")
            if budget and time.perf_counter() - start > budget:
                break
    wall = time.perf_counter() - start
    if hist["steps"][-1] != step:
        keep_best(log(step), step)
    if settings.get("keep_best", True) and best["step"] != step:
        model.set_weights(best["weights"])
    hist = {k: np.asarray(v) for k, v in hist.items()}
    hist.update(steps_done=step, sequences_done=step * bs, wall_s=wall,
                sequences_per_s=step * bs / wall, best_step=best["step"],
                best_cost_bits=best["cost"])
    return hist


# ------------------------------------------------------------------------------- experiment
@registry.register("ntm", chapter=CHAPTER, settings=SETTINGS,
                   describe="Neural Turing Machine and an LSTM on the copy task (bits per "
                            "sequence, generalisation to longer sequences)",
                   aliases={"train_episodes": "train_steps", "test_episodes": "test_sequences"})
def experiment(settings: dict, *, tests=None, data=None, runner=None, progress=True):
    """Train the NTM, then the LSTM for the same number of updates (or the NTM's time, if the
    budget stopped it first), and test both on ``test_sequences`` fresh sequences of every
    length in ``test_lengths``; one ``bit_error`` record (wrong bits per sequence, with the
    rate) per model and length. ``tests`` restricts the lengths."""
    import keras

    from .evaluation import append_record, make_record

    lengths = [n for n in settings["test_lengths"] if tests is None or n in tests]
    out = registry.Outcome(settings=dict(settings))
    keras.utils.set_random_seed(settings["seed"])
    ntm, inspect = build_ntm(settings)
    out.histories["NTM"] = train(ntm, settings, name="NTM", progress=progress)
    same = dict(settings, train_steps=int(out.histories["NTM"]["steps_done"]), time_budget_s=None)
    keras.utils.set_random_seed(settings["seed"])
    lstm = build_lstm(settings)
    out.histories["LSTM"] = train(lstm, same, name="LSTM", progress=progress)
    out.models.update(NTM=ntm, LSTM=lstm, inspect=inspect)
    for name, model in (("NTM", ntm), ("LSTM", lstm)):
        hist = out.histories[name]
        for n in lengths:
            start = time.perf_counter()
            res = evaluate_copy(model, np.random.default_rng(registry.TEST_SEED + n),
                                settings["test_sequences"], length=n)
            wall = time.perf_counter() - start
            out.results[name, n] = res
            rec = make_record(
                name, "copy task (8-bit vectors)", None, None, res["bit_errors"], None,
                settings["test_sequences"], wall, metric="bit_error", length=n,
                bit_error_rate=round(res["bit_error_rate"], 6),
                cost_bits=round(res["cost_bits"], 4), parameters=int(model.count_params()),
                train_lengths=f"{settings['min_len']}-{settings['max_len']}",
                train_steps=int(hist["steps_done"]), train_sequences=int(hist["sequences_done"]),
                train_wall_s=round(float(hist["wall_s"]), 1),
                train_sequences_per_s=round(float(hist["sequences_per_s"]), 1),
                **registry.run_fields(runner))
            append_record(CHAPTER, rec)
            out.records.append(rec)
            if runner:
                print(f"{name} length {n}: {res['bit_errors']:.2f} wrong bits per sequence "
                      f"({100 * res['bit_error_rate']:.2f} %)")
    return out
