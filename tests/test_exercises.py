"""The checkers of chapters 1.1, 1.3 and 1.4: the reference passes, typical mistakes fail with
the right message; the notebooks' reference solutions pass."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mlbook_utils.exercises import ch01_3, ch01_4, check_episode_sampler, reference_episode_sampler

ROOT = Path(__file__).resolve().parents[1]


def test_reference_solution_passes():
    fb = check_episode_sampler(reference_episode_sampler)
    assert fb.passed, str(fb)
    assert len(fb.passed_checks) == 7
    assert "all checks passed" in str(fb) and "all checks passed" in fb._repr_html_()


def classes_with_replacement(x, n_way, k_shot, n_query, rng):
    classes = rng.integers(0, 2, size=n_way)  # draws the same class again
    s, q = [], []
    for c in classes:
        items = rng.choice(x.shape[1], k_shot + n_query, replace=False)
        s.append(x[c, items[:k_shot]])
        q.append(x[c, items[k_shot:]])
    return (np.concatenate(s), np.repeat(np.arange(n_way), k_shot), np.concatenate(q),
            np.repeat(np.arange(n_way), n_query))


def query_overlaps_support(x, n_way, k_shot, n_query, rng):
    classes = rng.choice(x.shape[0], n_way, replace=False)
    s, q = [], []
    for c in classes:
        s.append(x[c, rng.choice(x.shape[1], k_shot, replace=False)])
        q.append(x[c, rng.choice(x.shape[1], n_query, replace=False)])  # may repeat a support
    return (np.concatenate(s), np.repeat(np.arange(n_way), k_shot), np.concatenate(q),
            np.repeat(np.arange(n_way), n_query))


def dataset_ids_as_labels(x, n_way, k_shot, n_query, rng):
    s, sl, q, ql = reference_episode_sampler(x, n_way, k_shot, n_query, rng)
    return s, (s[:, 0] // 100).astype(int), q, (q[:, 0] // 100).astype(int)


def always_first_classes(x, n_way, k_shot, n_query, rng):
    s, q = [], []
    for c in range(n_way):
        items = rng.choice(x.shape[1], k_shot + n_query, replace=False)
        s.append(x[c, items[:k_shot]])
        q.append(x[c, items[k_shot:]])
    return (np.concatenate(s), np.repeat(np.arange(n_way), k_shot), np.concatenate(q),
            np.repeat(np.arange(n_way), n_query))


def unstacked(x, n_way, k_shot, n_query, rng):
    s, sl, q, ql = reference_episode_sampler(x, n_way, k_shot, n_query, rng)
    return s.reshape(n_way, k_shot, -1), sl, q, ql


def global_random_state(x, n_way, k_shot, n_query, rng):
    return reference_episode_sampler(x, n_way, k_shot, n_query, np.random.default_rng())


def not_implemented(x, n_way, k_shot, n_query, rng):
    raise NotImplementedError("write the sampler")


def check(fn, *needles):
    fb = check_episode_sampler(fn)
    assert not fb.passed
    text = str(fb)
    for needle in needles:
        assert needle in text, text
    return fb


def test_typical_mistakes_fail_with_the_right_message():
    check(classes_with_replacement, "a class was drawn twice", "without replacement")
    check(query_overlaps_support, "are in the support and the query set")
    check(dataset_ids_as_labels, "labels must be 0..")
    check(always_first_classes, "only the classes [0, 1, 2] were ever drawn")
    check(unstacked, "support has shape (5, 1, 1); expected (5, 1)")
    check(global_random_state, "same seed gave different episodes")
    check(not_implemented, "raised NotImplementedError")
    check(lambda *a: None, "should return 4 things")


# --------------------------------------------------------------------------------------------
# Chapters 1.3 and 1.4: the one gradient-preprocessing checker, the cell-update checker, and the
# reference solutions that the notebooks show
# --------------------------------------------------------------------------------------------


def reference_solutions(stem: str) -> dict:
    """The functions that the notebook's hidden reference solutions define (its markdown's
    ```python blocks after "Reference solution"), by name."""
    nb = json.loads((ROOT / "chapters" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    blocks = re.findall(r"<summary>Reference solution</summary>\s*```python\n(.*?)```", text,
                        re.S)
    namespace: dict = {}  # as a reader pastes them into a fresh kernel: each block imports its own
    for block in blocks:
        exec(block, namespace)  # noqa: S102 - the book's own reference solutions
    return namespace


@pytest.mark.parametrize("stem, checker, name", [
    ("01_1_few_shot_episodes", "ch01_1.check_episode_sampler", "my_sample_episode"),
    ("01_2_metric_space", "ch01_2.check_prototype_scores", "my_prototype_scores"),
    ("02_1_siamese_networks", "ch02_1.check_contrastive_loss", "my_contrastive_loss"),
    ("03_1_prototypical_networks", "ch03_1.check_refine_prototypes", "my_refine_prototypes"),
    ("04_1_relation_matching_networks", "ch04_1.check_matching_probs", "my_matching_probs"),
    ("04_2_strong_baselines", "ch04_2.check_cosine_logits", "my_cosine_logits"),
    ("05_1_neural_turing_machine", "ch05_1.check_shift_sharpen", "my_shift_sharpen"),
    ("05_2_memory_augmented_networks", "ch05_2.check_lrua_write", "my_lrua_write"),
    ("06_1_learning_the_initialisation", "ch06_1.check_meta_gradient", "my_meta_gradient"),
    ("07_1_meta_sgd", "ch07_1.check_alpha_gradient", "my_alpha_gradient"),
    ("07_2_reptile", "ch07_2.check_reptile_step", "my_reptile_step"),
    ("08_1_gradient_agreement", "ch08_1.check_agreement_weights", "my_agreement_weights"),
    ("09_1_task_agnostic", "ch09_1.check_taml_objective", "my_taml_objective"),
    ("09_2_meta_imitation", "ch09_2.check_bc_loss", "my_bc_loss"),
    ("09_3_cactus", "ch09_3.check_lloyd_step", "my_lloyd_step"),
    ("09_4_concept_space", "ch09_4.check_joint_loss", "my_joint_loss"),
])
def test_every_chapters_reference_solution_runs_alone_and_passes(stem, checker, name):
    import importlib

    module, fn = checker.split(".")
    check = getattr(importlib.import_module(f"mlbook_utils.exercises.{module}"), fn)
    fb = check(reference_solutions(stem)[name])
    assert fb.passed, str(fb)


def test_one_preprocessing_checker_for_both_chapters():
    assert ch01_4.check_preprocess is ch01_3.check_preprocess
    assert ch01_4.reference_preprocess is ch01_3.reference_preprocess
    from mlbook_utils import exercises

    assert exercises.check_preprocess is ch01_3.check_preprocess


def test_the_notebooks_reference_solutions_pass():
    sol = reference_solutions("01_3_learned_optimizer")
    fb = ch01_3.check_preprocess(sol["my_preprocess"])
    assert fb.passed, str(fb)
    assert len(fb.passed_checks) == 4
    sol = reference_solutions("01_4_lstm_meta_learner")
    fb = ch01_4.check_cell_update(sol["my_cell_update"])
    assert fb.passed, str(fb)
    assert "my_preprocess" not in sol, "chapter 1.4 points to chapter 1.3's exercise"
    # The variant of the safe logarithm that chapter 1.4 used to show passes the one checker too.

    def where_variant(x, p=10.0):
        x = np.asarray(x, dtype=np.float64)
        big = np.abs(x) >= np.exp(-p)
        first = np.where(big, np.log(np.where(big, np.abs(x), 1.0)) / p, -1.0)
        return np.stack([first, np.where(big, np.sign(x), np.exp(p) * x)], axis=-1)

    assert ch01_3.check_preprocess(where_variant).passed


def test_the_notebooks_exercise_cells_use_the_checkers():
    for stem, call in (("01_3_learned_optimizer", "check_preprocess(my_preprocess)"),
                       ("01_4_lstm_meta_learner", "check_cell_update(my_cell_update)")):
        nb = json.loads((ROOT / "chapters" / f"{stem}.ipynb").read_text(encoding="utf-8"))
        code = [("".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"]
        assert any(call in c and "raise NotImplementedError" in c for c in code), stem


def preprocess_mistake(kind):
    ref = ch01_3.reference_preprocess

    def fn(g, p=10.0):
        g = np.asarray(g, dtype=np.float64)
        out = ref(g, p)
        big = np.abs(g) >= np.exp(-p)
        if kind == "no division":
            out[..., 0] = np.where(big, np.log(np.maximum(np.abs(g), np.exp(-p))), -1.0)
        elif kind == "log10":
            out[..., 0] = np.where(big, np.log10(np.maximum(np.abs(g), np.exp(-p))) / p, -1.0)
        elif kind == "sign everywhere":
            out[..., 1] = np.sign(g)
        elif kind == "threshold 1":
            out = ref(g, p)
            small = np.abs(g) < 1.0
            out[..., 1] = np.where(small, np.exp(p) * g, np.sign(g))
        elif kind == "fixed p":
            out = ref(g, 10.0)
        elif kind == "flat":
            out = out.reshape(-1)
        elif kind == "transposed":
            out = out.T
        elif kind == "log of zero":
            with np.errstate(divide="ignore", invalid="ignore"):
                out[..., 0] = np.where(big, np.log(np.abs(g)) / p, np.log(np.abs(g)))
        return out

    return fn


def test_preprocess_checker_catches_typical_mistakes():
    expect = {
        "no division": "without dividing by p",
        "log10": "log10",
        "sign everywhere": "exp(p) * g",
        "threshold 1": "should be their sign",
        "fixed p": "with p = 2",
        "flat": "shape",
        "transposed": "shape",
        "log of zero": "inf or nan",
    }
    for kind, needle in expect.items():
        fb = ch01_3.check_preprocess(preprocess_mistake(kind))
        assert not fb.passed, kind
        assert needle in fb.problem, (kind, fb.problem)

    def stub(g, p=10.0):
        raise NotImplementedError

    fb = ch01_3.check_preprocess(stub)
    assert not fb.passed and "NotImplementedError" in fb.problem


def test_cell_update_checker_catches_typical_mistakes():
    assert ch01_4.check_cell_update(ch01_4.reference_cell_update).passed
    fb = ch01_4.check_cell_update(lambda th, g, i, f: f * th + i * g)
    assert not fb.passed and "MINUS" in fb.hint
    fb = ch01_4.check_cell_update(lambda th, g, i, f: i * th - f * g)
    assert not fb.passed
    fb = ch01_4.check_cell_update(lambda th, g, i, f: th - i * g)
    assert not fb.passed and "forget gate" in fb.problem
    fb = ch01_4.check_cell_update(lambda th, g, i, f: np.sum(f * th - i * g))
    assert not fb.passed and "shape" in fb.problem

    def stub(*args):
        raise NotImplementedError

    assert "NotImplementedError" in ch01_4.check_cell_update(stub).problem


# --------------------------------------------------------------------------------------------
# The algorithm exercises of chapters 1.1, 1.2, 1.3 and 2.1: a piece of the learning algorithm
# itself, checked on fixed cases and in a short real training or evaluation
# --------------------------------------------------------------------------------------------


def _fails_with(fb, *needles):
    assert not fb.passed, str(fb)
    text = str(fb)
    for needle in needles:
        assert needle in text, text


def test_evaluation_loop_checker():
    from mlbook_utils.exercises import ch01_1

    fb = ch01_1.check_evaluate(ch01_1.reference_evaluate)
    assert fb.passed and len(fb.passed_checks) == 3, str(fb)

    def loop(predict, episodes, ci=lambda a: 1.96 * a.std(ddof=1) / np.sqrt(len(a)),
             pick=np.argmax, batch=True):
        accs = []
        for ep in episodes:
            args = (ep.support, ep.support_labels, ep.query)
            scores = (predict(*(a[None] for a in args), ep.n_way)[0] if batch
                      else predict(*args, ep.n_way))
            accs.append(100.0 * np.mean(pick(scores, axis=-1) == ep.query_labels))
        accs = np.asarray(accs)
        return accs.mean(), ci(accs)

    _fails_with(ch01_1.check_evaluate(lambda p, e: loop(p, e, ci=lambda a: 1.96 * a.std(ddof=1))),
                "spread of single episodes", "sqrt(number of episodes)")
    _fails_with(ch01_1.check_evaluate(
        lambda p, e: loop(p, e, ci=lambda a: 1.96 * a.std(ddof=1) / np.sqrt(20 * len(a)))),
        "number of *queries*")
    _fails_with(ch01_1.check_evaluate(lambda p, e: loop(p, e, pick=np.argmin)), "arg-max")
    _fails_with(ch01_1.check_evaluate(lambda p, e: loop(p, e, batch=False)), "batch axis")
    _fails_with(ch01_1.check_evaluate(
        lambda p, e: tuple(v / 100 for v in ch01_1.reference_evaluate(p, e))), "in %")
    # ddof=0 is accepted too: the two differ by sqrt(n / (n - 1)), which is not the point here
    assert ch01_1.check_evaluate(lambda p, e: loop(
        p, e, ci=lambda a: 1.96 * a.std() / np.sqrt(len(a)))).passed


def test_episode_loss_checker():
    from keras import ops

    from mlbook_utils.exercises import ch01_2

    fb = ch01_2.check_episode_loss(ch01_2.reference_episode_loss)
    assert fb.passed and len(fb.passed_checks) == 3, str(fb)

    def loss(zs, ls, zq, lq, n_way, sign=-1.0, reduce=ops.mean):
        onehot = ops.one_hot(ls, n_way)
        protos = ops.matmul(ops.transpose(onehot), zs) / ops.sum(onehot, axis=0)[:, None]
        d = ops.sum((zq[:, None, :] - protos[None]) ** 2, axis=-1)
        return reduce(ops.sparse_categorical_crossentropy(lq, sign * d, from_logits=True))

    _fails_with(ch01_2.check_episode_loss(lambda *a: loss(*a, sign=1.0)), "farthest")
    _fails_with(ch01_2.check_episode_loss(lambda *a: loss(*a, reduce=ops.sum)), "*sum* of the")

    def in_numpy(zs, ls, zq, lq, n_way):
        zs, ls, zq, lq = (np.asarray(ops.convert_to_numpy(v)) for v in (zs, ls, zq, lq))
        return ch01_2._np_episode_loss(zs, ls, zq, lq, n_way)

    _fails_with(ch01_2.check_episode_loss(in_numpy), "keras.ops")


def test_meta_loss_checker():
    from keras import ops

    from mlbook_utils import learned_optimizer as lo
    from mlbook_utils.autodiff import value_and_grad
    from mlbook_utils.exercises import ch01_3

    fb = ch01_3.check_meta_loss(ch01_3.reference_meta_loss)
    assert fb.passed and len(fb.passed_checks) == 3, str(fb)

    def no_stop_gradient(opt_params, theta, state, problem, data, steps):
        losses = []
        for _ in range(steps):
            _, (grad,) = value_and_grad(lambda p: ops.sum(problem.loss(p[0], data)), [theta])
            update, state = lo.lstm_optimizer(opt_params, grad, state)
            theta = theta + update
            losses.append(problem.loss(theta, data))
        return ops.mean(ops.sum(ops.stack(losses), axis=0)) / steps

    _fails_with(ch01_3.check_meta_loss(no_stop_gradient), "stop_gradient(grad)")
    for variant, needle in (("with f(theta_0)", "starts at f(theta_0)"),
                            ("final only", "final loss"), ("minus", "theta + update"),
                            ("fresh state", "forgets its LSTM state")):
        fb = ch01_3.check_meta_loss(
            lambda *a, v=variant: ch01_3._meta_loss_variant(*a, v))
        _fails_with(fb, needle)


def test_siamese_step_checker():
    from mlbook_utils.exercises import ch02_1

    fb = ch02_1.check_siamese_step(ch02_1.reference_siamese_step)
    assert fb.passed and len(fb.passed_checks) == 2, str(fb)
    for variant, needle in (("ascent", "*up* the gradient"), ("squared", "*squared* distance"),
                            ("swapped", "same pairs as different")):
        fb = ch02_1.check_siamese_step(
            lambda p, e, x1, x2, s, lr, m=1.0, v=variant: ch02_1._step_variant(
                p, e, x1, x2, s, lr, m, v))
        _fails_with(fb, needle)

    def loss_after_the_step(params, embed, x1, x2, same, lr, margin=1.0):
        new, _ = ch02_1.reference_siamese_step(params, embed, x1, x2, same, lr, margin)
        return new, ch02_1.reference_siamese_step(new, embed, x1, x2, same, 0.0, margin)[1]

    _fails_with(ch02_1.check_siamese_step(loss_after_the_step), "*after* the step")


@pytest.mark.parametrize("stem, checker, name", [
    ("01_1_few_shot_episodes", "ch01_1.check_evaluate", "my_evaluate"),
    ("01_2_metric_space", "ch01_2.check_episode_loss", "my_episode_loss"),
    ("01_3_learned_optimizer", "ch01_3.check_meta_loss", "my_meta_loss"),
    ("02_1_siamese_networks", "ch02_1.check_siamese_step", "my_siamese_step"),
])
def test_the_algorithm_exercises_reference_solutions_run_alone_and_pass(stem, checker, name):
    """The notebooks' second reference solutions, pasted into an empty namespace, pass; and the
    notebooks' exercise cells call the checkers on a stub that raises NotImplementedError."""
    import importlib

    module, fn = checker.split(".")
    check = getattr(importlib.import_module(f"mlbook_utils.exercises.{module}"), fn)
    fb = check(reference_solutions(stem)[name])
    assert fb.passed, str(fb)
    nb = json.loads((ROOT / "chapters" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert any(f"{fn}({name})" in c and "raise NotImplementedError" in c for c in code), stem


def test_joint_loss_checker_catches_typical_mistakes():
    from mlbook_utils.exercises import ch09_4

    assert ch09_4.check_joint_loss(ch09_4.reference_joint_loss).passed
    _fails_with(ch09_4.check_joint_loss(ch09_4._lambda_on_episode), "lambda multiplies")
    _fails_with(ch09_4.check_joint_loss(ch09_4._sum_not_mean), "summed")
    _fails_with(ch09_4.check_joint_loss(ch09_4._argmin_distance), "negated the scores")
    _fails_with(ch09_4.check_joint_loss(ch09_4._unstable), "exp overflows")
    _fails_with(ch09_4.check_joint_loss(lambda *a: None), "returned None")


def test_taml_objective_checker_catches_typical_mistakes():
    from mlbook_utils.exercises import ch09_1

    assert ch09_1.check_taml_objective(ch09_1.reference_taml_objective).passed
    _fails_with(ch09_1.check_taml_objective(ch09_1._over_sum), "divided the losses by their sum")
    _fails_with(ch09_1.check_taml_objective(ch09_1._log_of_loss), "log of the loss itself")
    _fails_with(ch09_1.check_taml_objective(ch09_1._on_adapted), "adapted losses")
    _fails_with(ch09_1.check_taml_objective(ch09_1._sum_of_losses), "summed the adapted")
    _fails_with(ch09_1.check_taml_objective(lambda *a: None), "returned None")


def test_bc_loss_checker_catches_typical_mistakes():
    from mlbook_utils.exercises import ch09_2

    assert ch09_2.check_bc_loss(ch09_2.reference_bc_loss).passed
    _fails_with(ch09_2.check_bc_loss(ch09_2._raw_units), "raw units")
    _fails_with(ch09_2.check_bc_loss(ch09_2._divided_once), "divided the squared error")
    _fails_with(ch09_2.check_bc_loss(ch09_2._mean_over_dims), "averaged over the two")
    _fails_with(ch09_2.check_bc_loss(ch09_2._sum_over_time), "summed over the time")
    _fails_with(ch09_2.check_bc_loss(ch09_2._abs_error), "absolute error")
    _fails_with(ch09_2.check_bc_loss(lambda *a: None), "returned None")


def test_lloyd_step_checker_catches_typical_mistakes():
    import numpy as np

    from mlbook_utils.exercises import ch09_3

    assert ch09_3.check_lloyd_step(ch09_3.reference_lloyd_step).passed
    _fails_with(ch09_3.check_lloyd_step(ch09_3._farthest), "farthest centre")

    def sums(points, centres):
        labels, _ = ch09_3.reference_lloyd_step(points, centres)
        new = np.stack([points[labels == j].sum(0) if (labels == j).any() else centres[j]
                        for j in range(len(centres))])
        return labels, new

    _fails_with(ch09_3.check_lloyd_step(sums), "sums of their points")

    def nan_empty(points, centres):
        labels, _ = ch09_3.reference_lloyd_step(points, centres)
        return labels, np.stack([points[labels == j].mean(0) for j in range(len(centres))])

    _fails_with(ch09_3.check_lloyd_step(nan_empty), "not finite")
    _fails_with(ch09_3.check_lloyd_step(lambda p, c: None), "returned None")
