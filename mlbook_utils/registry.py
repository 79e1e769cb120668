"""The runner's registry: every method of the book, found through the module that owns it.

A method module (``baselines``, ``metric``, ``relation_matching``, ...) owns everything of its
method: the model, the training step, one settings dict keyed by scale, and the *experiment*
function that trains, evaluates and records. It registers that function here::

    SETTINGS = {"quick": {...}, "cpu": {...}, "full": {...}}

    @registry.register("relation", chapter="04_1_relation_matching_networks",
                       describe="relation network ...", settings=SETTINGS)
    def experiment(settings, *, tests=None, data=None, runner=None, progress=True):
        ...
        return registry.Outcome(records=..., results=..., histories=..., models=...)

The chapter's notebook displays ``SETTINGS`` and calls ``experiment``; the headless runner
(``python -m mlbook_utils.reproduce``) calls the same function with the same settings. Neither
restates a number. This module imports no method module at import time (:func:`methods` does,
lazily), so there is no import cycle: method modules import ``registry``, never the runner.

Adding a chapter adds one method module, one notebook, and one line to :data:`METHOD_MODULES`.
"""

from __future__ import annotations

import importlib
import os
import resource
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

#: The book's test episodes: every chapter evaluates on the tasks drawn from this seed.
TEST_SEED = 2024
#: The four Omniglot test settings of Vinyals et al. (2016): (n_way, k_shot).
TEST_SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))
SCALES = ("quick", "cpu", "full")

#: The modules that register methods, in the book's order. One line per method module.
METHOD_MODULES = (
    "baselines",  # 1.1 pixel-space nearest neighbour / class mean
    "metric",  # 1.2 learned metric space, 3.1 prototypical network
    "learned_optimizer",  # 1.3
    "lstm_meta_learner",  # 1.4
    "siamese",  # 2.1
    "protonet_variants",  # 3.1's ablation and semi-supervised prototypes
    "relation_matching",  # 4.1
    "pretrained",  # 4.2 the pretrained baseline: nearest centroid, logistic regression, ...
    "ntm",  # 5.1 Neural Turing Machine and an LSTM on the copy task
    "mann",  # 5.2 memory-augmented neural network (LRUA) and an LSTM, one-shot Omniglot
    "maml",  # 6.1 MAML, first-order MAML, ANIL, CAML, ADML (sinusoid and Omniglot)
    "meta_sgd",  # 7.1 Meta-SGD (sinusoid and Omniglot)
    "reptile",  # 7.2 Reptile (Omniglot, sinusoid, and its cost beside MAML's)
    "gradient_agreement",  # 8.1 gradient agreement with MAML and Reptile (controlled, seeds)
    "taml",  # 9.1 task-agnostic meta learning (entropy, Theil) against MAML (controlled, seeds)
    "meta_imitation",  # 9.2 one-shot imitation: MAML on behaviour cloning in a 2-D world
    "cactus",  # 9.3 CACTUs: autoencoder + k-means tasks for a prototypical network, no labels
    "concept_space",  # 9.4 learning in the concept space (DEML): protonet + concept discriminator
)

#: Settings keys with a meaning shared by every method; the runner's command-line flags map
#: onto these (a method that names one differently says so in ``aliases``).
COMMON_KEYS = ("tests", "test_episodes", "test_query", "train_episodes", "time_budget_s")


@dataclass(frozen=True)
class Method:
    """One registered method: its runner name, its chapter (``results/<chapter>.jsonl``), a
    one-line description, its settings by scale, and its experiment function."""

    name: str
    chapter: str
    describe: str
    settings: Mapping[str, dict]
    experiment: Callable[..., Outcome]
    aliases: Mapping[str, str] = field(default_factory=dict)
    #: ``"tasks"``: the runner calls :func:`config.task_parallel_threads` before TensorFlow
    #: starts (the meta-batch's tasks run side by side on a CPU).
    threads: str | None = None

    def key(self, common: str) -> str:
        """The settings key that holds the common quantity ``common`` for this method."""
        return self.aliases.get(common, common)

    def settings_for(self, scale: str | None = None, **overrides) -> dict:
        """A copy of the settings at ``scale`` (default: the current scale), updated with
        ``overrides``; an unknown key is an error, so a typo cannot be silently ignored."""
        return settings_at(self.settings, scale, **overrides)


@dataclass
class Outcome:
    """What an experiment returns: the records it appended, and what a notebook shows next.

    ``results`` maps ``(model name, n_way, k_shot)`` to an ``evaluation.EvalResult`` (or, for
    non-episodic metrics, any object with ``value``/``ci95``); ``histories`` the training
    histories and ``models`` the trained models, by model name; ``settings`` the settings used.
    """

    records: list[dict] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


_METHODS: dict[str, Method] = {}


def register(name: str, *, chapter: str, describe: str, settings: Mapping[str, dict],
             aliases: Mapping[str, str] | None = None, threads: str | None = None):
    """Decorator: register ``experiment`` as the runner method ``name``."""
    missing = [s for s in SCALES if s not in settings]
    if missing:
        raise ValueError(f"method {name!r}: settings lack the scales {missing}")

    def decorate(experiment):
        old = _METHODS.get(name)
        if old is not None and old.experiment.__module__ != experiment.__module__:
            raise ValueError(f"method {name!r} is registered twice: {old.experiment.__module__} "
                             f"and {experiment.__module__}")
        _METHODS[name] = Method(name, chapter, describe, settings, experiment,
                                dict(aliases or {}), threads)
        return experiment

    return decorate


def methods() -> dict[str, Method]:
    """Every registered method, by name, in the book's order (imports the method modules)."""
    for module in METHOD_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return dict(_METHODS)


def get(name: str) -> Method:
    """The method ``name``; a clear error lists the known names."""
    known = methods()
    if name not in known:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(known)}")
    return known[name]


def settings_at(table: Mapping[str, dict], scale: str | None = None, **overrides) -> dict:
    """``dict(table[scale], **overrides)``, refusing keys the settings do not have."""
    from .config import scale as current_scale

    scale = scale or current_scale()
    if scale not in table:
        raise ValueError(f"scale must be one of {sorted(table)}, got {scale!r}")
    out = dict(table[scale])
    unknown = sorted(set(overrides) - set(out))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; known: {sorted(out)}")
    out.update(overrides)
    return out


def select_tests(settings: Iterable[tuple[int, int]], n_way: int | None = None,
                 k_shot: int | None = None) -> list[tuple[int, int]]:
    """The (n_way, k_shot) settings, restricted to ``n_way`` and/or ``k_shot`` when given."""
    return [(w, k) for w, k in settings
            if (not n_way or w == n_way) and (not k_shot or k == k_shot)]


def wanted(run: Mapping, tests=None) -> list:
    """The test settings of a training ``run`` that were asked for (all of them when ``tests``
    is None): a run none of whose tests is wanted is not trained."""
    asked = None if tests is None else set(map(tuple, tests))
    return [t for t in run["tests"] if asked is None or tuple(t) in asked]


def given(data: Mapping | None, key: str, load: Callable):
    """``data[key]`` when the caller (a notebook that has loaded it already) passed it, else
    ``load()``."""
    if data is not None and data.get(key) is not None:
        return data[key]
    return load()


def test_and_record(out: Outcome, name: str, predict, dataset, settings: dict, *, chapter: str,
                    dataset_name: str, tests=None, runner: str | None = None,
                    progress: bool = True, **extra) -> None:
    """Evaluate ``predict`` on the book's test episodes for every (n_way, k_shot) of ``tests``
    (default: ``settings["tests"]``), with ``settings["test_episodes"]`` episodes and
    ``settings["test_query"]`` queries per class; put each result in ``out.results[name, n_way,
    k_shot]`` and append its record (with ``extra``) to ``out.records`` and to ``results/``."""
    from .evaluation import evaluate, record_result

    for n_way, k_shot in tests or settings["tests"]:
        res = evaluate(predict, dataset, n_way, k_shot, settings["test_query"],
                       settings["test_episodes"], seed=settings.get("test_seed", TEST_SEED),
                       progress=progress, desc=f"{name} {n_way}w{k_shot}s")
        out.results[name, n_way, k_shot] = res
        out.records.append(record_result(chapter, name, dataset_name, res, **extra,
                                         **run_fields(runner)))
        if runner:
            print(f"{name}: {res}")


def train_fields(hist: dict, *, way: int | None = None, shot: int | None = None,
                 query: int | None = None, planned: int | None = None, unit: str = "episode",
                 budget: float | None = None) -> dict:
    """The training fields of a record, from a training history with ``episodes``, ``wall_s``
    and ``episodes_per_s``: what was trained, how long it took, and how much of the plan."""
    out = {}
    if way is not None:
        out.update(train_way=way, train_shot=shot, train_query=query)
    done = int(hist["episodes"])
    out.update(train_episodes=done, train_wall_s=round(float(hist["wall_s"]), 1),
               train_episodes_per_s=round(float(hist["episodes_per_s"]), 2))
    if unit != "episode":
        out["train_unit"] = unit
    if planned is not None:
        out["train_episodes_planned"] = int(planned)
    if budget is not None:
        out["time_budget_s"] = budget
    return out


def omniglot(data: Mapping | None, split: str):
    """The Omniglot split ``split``: ``data[split]`` when the caller passed it, else
    ``data.load_omniglot(split)``. Every experiment on Omniglot gets its splits this way."""
    from .data import load_omniglot

    return given(data, split, lambda: load_omniglot(split))


def peak_memory() -> dict:
    """Peak host memory of this process (MiB) and, on a JAX GPU, peak device memory (MiB);
    ``concurrent_runs`` when ``MLBOOK_CONCURRENT_RUNS`` says how many runs shared the device."""
    out = {"peak_host_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if os.environ.get("MLBOOK_CONCURRENT_RUNS"):  # set by scripts/gpu_full_run.sh
        out["concurrent_runs"] = int(os.environ["MLBOOK_CONCURRENT_RUNS"])
    try:
        import keras

        if keras.backend.backend() == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                out["peak_device_mib"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
    except Exception:  # memory figures are a courtesy; never fail a run on them
        pass
    return out


def run_fields(runner: str | None) -> dict:
    """Extra record fields of a run: nothing from a notebook; ``runner`` and the peak memory
    when the headless runner made the record."""
    return {} if runner is None else {"runner": runner, **peak_memory()}


def settings_table(table: Mapping[str, dict]):
    """The settings of every scale as a ``pandas.DataFrame`` for the notebooks to display: one
    row per setting, one column per scale (the scale of this run marked), so that the table
    stays narrow at the book's column width and on a phone; nested values are shown as text."""
    import pandas as pd

    from .config import scale as current_scale

    here = current_scale()
    columns = {f"{s} (this run)" if s == here else s: {k: _shown(v) for k, v in table[s].items()}
               for s in SCALES}
    return pd.DataFrame(columns).rename_axis("setting")


def _shown(value):
    """A setting as a table shows it: plain values as they are, nested ones as text."""
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def settings_by_name(settings: Mapping[str, dict]):
    """The settings of one scale resolved per data set (``{name: settings}``) as a
    ``pandas.DataFrame``, one column per data set; nested values are shown as text."""
    import pandas as pd

    return pd.DataFrame({name: {k: _shown(v) for k, v in ds.items()}
                         for name, ds in settings.items()})
