"""Shared fixtures. The data directory comes from $MLBOOK_DATA (CI: ../shared/data)."""

import os
from pathlib import Path

import pytest

#: ``@pytest.mark.plumbing``: a test of the book's plumbing (the runner, resuming, an
#: experiment's records and paired differences) that calls models whose every backend-specific
#: part (the steps, the gradients) is tested on each backend elsewhere. ``make test-jax`` skips
#: it (compiling those models again on JAX was most of CI's JAX pass); ``MLBOOK_JAX_ALL=1``
#: runs it there.
PLUMBING = "plumbing"

ROOT = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    value = os.environ.get("MLBOOK_DATA") or str(ROOT.parent / "shared" / "data")
    return Path(value)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test session gets its own user cache and results folder, and the data directory."""
    os.environ["MLBOOK_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["MLBOOK_RESULTS"] = str(tmp_path_factory.mktemp("results"))
    os.environ["MLBOOK_DATA"] = str(_data_dir())
    os.environ.setdefault("MLBOOK_SCALE", "quick")
    yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _data_dir()
    if not (path / "omniglot" / "images_background.zip").exists():
        pytest.fail(
            f"the book's data is not in {path}: set MLBOOK_DATA to the folder that holds "
            "omniglot/, orl_faces/ and fsdd/ (CI uses ../shared/data)"
        )
    return path


@pytest.fixture(scope="session")
def omniglot_test(data_dir):
    from mlbook_utils import data

    return data.load_omniglot("test")


def pytest_configure(config):
    config.addinivalue_line("markers", f"{PLUMBING}: plumbing test, run on the default backend "
                                       "only (see conftest.py)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("KERAS_BACKEND") != "jax" or os.environ.get("MLBOOK_JAX_ALL"):
        return
    skip = pytest.mark.skip(reason="plumbing test: run on the default backend (MLBOOK_JAX_ALL=1 "
                                   "runs it on JAX too)")
    for item in items:
        if PLUMBING in item.keywords:
            item.add_marker(skip)
