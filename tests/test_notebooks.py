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


def test_a_stale_settings_table_is_detected_and_refreshed(tmp_path):
    """A settings change leaves the code cells alone but stales the stored table."""
    source = next(p for p in CHAPTERS if p.stem.startswith("06_1"))
    nb = nbformat.read(str(source), as_version=4)
    cells = [i for i, _ in nbtools.settings_tables(nb)]
    assert cells, "chapter 6.1 shows its settings tables"
    result = nbtools._stored_result(nb.cells[cells[0]])
    result["data"]["text/html"] = result["data"]["text/html"].replace("1200", "8", 1)
    path = tmp_path / "stale.ipynb"
    nbformat.write(nb, str(path))
    assert any(f"cell {cells[0]}'s stored settings table" in p for p in nbtools.problems(path))
    assert nbtools.refresh_settings_tables(path) == [cells[0]]
    assert not nbtools.problems(path)


def test_settings_tables_have_a_column_per_scale():
    from mlbook_utils import maml, registry

    table = registry.settings_table(maml.SINUSOID_SETTINGS)
    assert len(table.columns) == len(registry.SCALES)
    assert "meta_steps" in table.index
