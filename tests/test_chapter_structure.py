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
