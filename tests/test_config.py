import os

import numpy as np
import pytest

from mlbook_utils import config


def test_scale_from_environment(monkeypatch):
    for value in ("quick", "cpu", "full", " CPU "):
        monkeypatch.setenv("MLBOOK_SCALE", value)
        assert config.scale() == value.strip().lower()


def test_bad_scale_says_what_is_allowed(monkeypatch):
    monkeypatch.setenv("MLBOOK_SCALE", "huge")
    with pytest.raises(ValueError, match="quick, cpu, full"):
        config.scale()


def test_default_scale_follows_the_device(monkeypatch):
    monkeypatch.delenv("MLBOOK_SCALE", raising=False)
    monkeypatch.setattr(config, "has_gpu", lambda: False)
    assert config.scale() == "cpu"
    monkeypatch.setattr(config, "has_gpu", lambda: True)
    assert config.scale() == "full"


def test_by_scale(monkeypatch):
    monkeypatch.setenv("MLBOOK_SCALE", "cpu")
    assert config.by_scale(quick=1, cpu=2, full=3) == 2
    assert config.by_scale(quick=1, cpu=2, full=3, current="full") == 3


def test_device_report_is_one_line(monkeypatch):
    monkeypatch.setenv("MLBOOK_SCALE", "quick")
    line = config.device_report()
    assert "\n" not in line
    assert "scale: quick" in line and f"backend: {config.backend()}" in line
    assert "CPU" in line or config.has_gpu()


def test_seed_everything_reproduces_numpy_and_keras():
    import keras

    rng1 = config.seed_everything(3)
    a = (rng1.random(3), np.random.rand(2), keras.ops.convert_to_numpy(keras.random.uniform((2,))))
    rng2 = config.seed_everything(3)
    b = (rng2.random(3), np.random.rand(2), keras.ops.convert_to_numpy(keras.random.uniform((2,))))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _fresh_tensorflow_process(code: str) -> str:
    """Run ``code`` in a new Python with TensorFlow as the backend and none of the variables
    that ``task_parallel_threads`` leaves alone when set: its standard output."""
    import subprocess
    import sys

    pytest.importorskip("tensorflow")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS",
                        "TF_CPU_ALLOCATOR_USE_BFC")}
    env["KERAS_BACKEND"] = "tensorflow"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True).stdout


def test_task_parallel_threads_sets_tensorflows_pools_before_it_starts():
    out = _fresh_tensorflow_process(
        "from mlbook_utils import config; print(config.task_parallel_threads()); "
        "import tensorflow as tf; "
        "print(tf.config.threading.get_inter_op_parallelism_threads(), "
        "tf.config.threading.get_intra_op_parallelism_threads())").split("\n")
    assert "inter-op" in out[0]
    assert out[1].split() == [str(os.cpu_count()), "1"]


def test_task_parallel_threads_keeps_cpu_allocator_statistics_for_step_memory():
    out = _fresh_tensorflow_process(
        "from mlbook_utils import config; config.task_parallel_threads(); "
        "import tensorflow as tf; tf.config.experimental.reset_memory_stats('CPU:0'); "
        "x = tf.ones((256, 1024)); y = tf.matmul(x, x, transpose_b=True); "
        "print(tf.config.experimental.get_memory_info('CPU:0')['peak'])").split()
    assert int(out[-1]) >= 256 * 1024 * 4  # at least the 1 MiB input was counted
