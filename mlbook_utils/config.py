"""Run scale, device report and seeding.

The run scale is chosen by one environment variable, ``MLBOOK_SCALE``:

- ``quick``: CI. Seconds to about two minutes per notebook on 2 CPU cores, still asserting that
  learning happened.
- ``cpu``: the default without a GPU. A few minutes, meaningful results.
- ``full``: the default with a GPU. The papers' settings.

Nothing here imports TensorFlow or JAX at import time.

It also says where the book's committed result records are, when they can be found:
:func:`committed_results`.
"""

from __future__ import annotations

import functools
import os
import platform
import random
import sys
from pathlib import Path
from typing import TypeVar

import numpy as np

SCALE_ENV = "MLBOOK_SCALE"
SCALES = ("quick", "cpu", "full")

T = TypeVar("T")


def backend() -> str:
    """The Keras backend that will be (or is) used, without importing Keras."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


@functools.cache
def _gpu_name() -> str | None:
    """Name of the first GPU visible to the Keras backend, or None."""
    name = backend()
    try:
        if name == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")]
            return gpus[0].device_kind if gpus else None
        if name == "tensorflow":
            quiet_tensorflow()
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                return None
            details = tf.config.experimental.get_device_details(gpus[0])
            return details.get("device_name", gpus[0].name)
        if name == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        return None
    return None


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ start-up INFO lines (oneDNN, CPU features) unless the user chose."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def task_parallel_threads() -> str:
    """On TensorFlow, run independent operations side by side with one core each: as many
    inter-op threads as cores, one intra-op thread. A MAML meta-step holds one independent chain
    of small convolutions per task of its meta-batch; on 2 cores this made chapter 6.1's
    Omniglot meta-step 1.7 times as fast (11.1 against 6.6 meta-steps/s) and its evaluation a
    little faster, while a small MLP's meta-step (the sinusoid) was about 20 % slower.

    TensorFlow fixes its thread pools when it starts, so this must run before it does (the
    chapter calls it in its first cell; the runner before any method that asks for it). Nothing
    changes on another backend or when the user has set the threads (``TF_NUM_INTEROP_THREADS``,
    ``TF_NUM_INTRAOP_THREADS``). Imports TensorFlow. Returns what it did.

    It also asks TensorFlow for its BFC allocator on the CPU (``TF_CPU_ALLOCATOR_USE_BFC``,
    unless the user set it), the one allocator that keeps the statistics
    :func:`inner_loop.step_memory_mib` reads: without it, chapter 7.2's memory of a meta-step
    cannot be measured on a CPU."""
    if backend() != "tensorflow":
        return f"threads: the {backend()} backend's defaults"
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    inter, intra = "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS"
    if inter in os.environ or intra in os.environ:
        return f"threads: as set ({inter}={os.environ.get(inter)}, {intra}={os.environ.get(intra)})"
    cores = os.cpu_count() or 1
    quiet_tensorflow()
    import tensorflow as tf

    try:
        tf.config.threading.set_inter_op_parallelism_threads(cores)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:
        return ("threads: TensorFlow had already started with its default thread pools "
                "(restart the kernel to run the tasks side by side)")
    return f"threads: {cores} inter-op (tasks side by side), 1 intra-op"


def has_gpu() -> bool:
    return _gpu_name() is not None


def scale() -> str:
    """The run scale: ``$MLBOOK_SCALE``, else ``full`` with a GPU and ``cpu`` without."""
    value = os.environ.get(SCALE_ENV, "").strip().lower()
    if value:
        if value not in SCALES:
            raise ValueError(
                f"{SCALE_ENV}={value!r} is not a run scale; use one of {', '.join(SCALES)}."
            )
        return value
    return "full" if has_gpu() else "cpu"


def by_scale(quick: T, cpu: T, full: T, *, current: str | None = None) -> T:
    """Pick the value for the current run scale: ``by_scale(quick=50, cpu=2000, full=20000)``."""
    return {"quick": quick, "cpu": cpu, "full": full}[current or scale()]


def device() -> str:
    """A short device name for result records: the GPU's name, or ``CPU (N cores)``."""
    gpu = _gpu_name()
    if gpu:
        return gpu
    return f"CPU ({os.cpu_count()} cores)"


def device_report() -> str:
    """One line: device, Keras backend, run scale."""
    cpu = platform.processor() or platform.machine()
    where = device() if has_gpu() else f"{device()}, {cpu}"
    return f"device: {where} | backend: {backend()} | scale: {scale()}"


def seed_everything(seed: int = 0) -> np.random.Generator:
    """Seed Python, NumPy and Keras (when it is installed); return a NumPy Generator."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if backend() == "tensorflow":
        quiet_tensorflow()
    try:
        import keras
    except ImportError:
        keras = None
    if keras is not None:
        keras.utils.set_random_seed(seed)
    return np.random.default_rng(seed)


def _is_book_root(folder: Path) -> bool:
    return (folder / "_toc.yml").is_file() and (folder / "mlbook_utils").is_dir()


def committed_results(start: Path | str | None = None) -> Path | None:
    """The book's committed ``results/`` folder, or None when the book is not at hand.

    The book's checkout is the first folder with ``_toc.yml`` and ``mlbook_utils/``, searched
    upwards from ``start`` (default: the working directory, which is ``chapters/`` for a
    notebook), then the checkout that holds this package (an editable install). A reader's
    ``pip install`` (Colab) holds no records: the wheel ships no ``results/``, so there the
    answer is None and a chapter that compares with another chapter's stored numbers must say
    they are not available (or measure them itself)::

        folder = config.committed_results()
        records = evaluation.read_records(chapter, folder=folder) if folder else []

    ``$MLBOOK_RESULTS`` plays no part here: it says where new records are *written*
    (``evaluation.results_dir``), not where the book's records are.
    """
    here = Path(start if start is not None else Path.cwd()).resolve()
    package_parent = Path(__file__).resolve().parent.parent
    for folder in (here, *here.parents, package_parent):
        if _is_book_root(folder):
            results = folder / "results"
            return results if results.is_dir() else None
    return None
