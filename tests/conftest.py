"""Shared fixtures. The data directory comes from $MLBOOK_DATA (CI: ../shared/data)."""

import os
from pathlib import Path

import pytest

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
