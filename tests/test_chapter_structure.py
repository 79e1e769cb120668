"""Every chapter follows the book's skeleton (../shared/STYLE.md) and works on Colab."""

import re
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [c["file"] for c in part["chapters"]]
    return files


def test_toc_lists_only_pages_that_exist_and_every_chapter():
    files = toc_files()
    for f in files:
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f
    for nb in CHAPTERS:
        assert f"chapters/{nb.stem}" in files, f"{nb.name} is not in _toc.yml"


def test_package_names_no_tensorflow_flavour():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if re.match(r"(tensorflow|keras|jax|torch)\b", d)], deps


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_skeleton(path):
    nb = nbformat.read(str(path), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    first = code[0]
    # Running this notebook: install only on Colab, from the configured repository.
    assert '"google.colab" in sys.modules' in first
    assert f"git+{CONFIG['repository']['url']}" in first
    assert "config.device_report()" in first and "seed_everything" in first
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "What you will learn" in markdown and "Prerequisites" in markdown
    for heading in ("## Summary", "## Exercises", "## References"):
        assert heading in markdown, f"{path.name} lacks '{heading}'"
    assert markdown.count("<summary>Answer</summary>") >= 3, "conceptual questions with answers"
    assert "<summary>Reference solution</summary>" in markdown
    assert any("exercises." in c and "check_" in c for c in code), "a checked coding exercise"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_running_this_notebook_states_the_stored_runs_time_and_colab_scale(path):
    """The "Running this notebook" section says how long the stored `cpu` run took (within a
    minute or a quarter of what the notebook's metadata recorded) and how to pick the scale on
    Colab."""
    nb = nbformat.read(str(path), as_version=4)
    running = next(c.source for c in nb.cells
                   if c.cell_type == "markdown" and "## Running this notebook" in c.source)
    assert "%env MLBOOK_SCALE=cpu" in running
    meta = nb.metadata.get("mlbook", {})
    if meta.get("scale") != "cpu":
        return
    wall = meta["wall_s"]
    said = re.search(r"took (under a minute|about (\d+) minutes|(\d+) minutes)", running)
    assert said, f"{path.name}: no run time of the stored cpu run in 'Running this notebook'"
    if said.group(1) == "under a minute":
        assert wall < 60, wall
    else:
        minutes = int(said.group(2) or said.group(3))
        assert abs(minutes * 60 - wall) <= max(60, 0.25 * wall), (minutes, wall)


def test_every_work_in_a_chapters_reference_list_is_on_the_references_page():
    """The references page prints all of references.bib (``:all:``); every entry of a chapter's
    own reference list (first author and year) must be there."""
    bib = (ROOT / "references.bib").read_text()
    assert ":all:" in (ROOT / "references.md").read_text()
    have = set()
    for entry in re.split(r"\n@", bib):
        author = re.search(r"author\s*=\s*\{\s*([^,}]+)", entry)
        year = re.search(r"year\s*=\s*\{(\d{4})\}", entry)
        if author and year:
            have.add((author.group(1).split()[-1].lower(), year.group(1)))
    missing = []
    for path in CHAPTERS:
        nb = nbformat.read(str(path), as_version=4)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        refs = text.split("## References", 1)[-1]
        for m in re.finditer(r"^- ([^,\n]+), .*?\((\d{4})\)", refs, re.M):
            if (m.group(1).split()[-1].lower(), m.group(2)) not in have:
                missing.append(f"{path.stem}: {m.group(0)[:60]}")
    assert not missing, "not in references.bib:\n" + "\n".join(missing)
