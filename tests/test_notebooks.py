"""Stored outputs must match the code: every chapter records scale, device and a code hash."""

from pathlib import Path

import nbformat
import pytest

from mlbook_utils import nbtools

CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("*.ipynb"))


def test_there_are_chapters():
    assert CHAPTERS


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_stored_outputs_are_fresh(path):
    problems = nbtools.problems(path)
    assert not problems, "\n".join(problems)


def test_a_changed_code_cell_is_detected(tmp_path):
    nb = nbformat.read(str(CHAPTERS[0]), as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.source += "\nprint('changed')"
    path = tmp_path / "changed.ipynb"
    nbformat.write(nb, str(path))
    assert any("code cells changed" in p for p in nbtools.problems(path))


def test_a_quick_run_is_not_accepted_as_stored_output(tmp_path):
    nb = nbformat.read(str(CHAPTERS[0]), as_version=4)
    nb.metadata["mlbook"]["scale"] = "quick"
    path = tmp_path / "quick.ipynb"
    nbformat.write(nb, str(path))
    assert any("not cpu or full" in p for p in nbtools.problems(path))
