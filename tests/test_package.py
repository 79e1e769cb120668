"""`import mlbook_utils` has no side effects and pulls in no deep-learning framework; the wheel
holds every subpackage; `config.committed_results` finds the book's records, or says there are
none."""

import subprocess
import sys
import tomllib
from pathlib import Path


def test_import_has_no_heavy_side_effects(tmp_path):
    code = (
        "import sys, warnings\n"
        "import numpy  # numpy adds its own filters on import: not ours\n"
        "filters = list(warnings.filters)\n"
        "import mlbook_utils\n"
        "import importlib, pkgutil\n"
        "for m in pkgutil.walk_packages(mlbook_utils.__path__, 'mlbook_utils.'):\n"
        "    importlib.import_module(m.name)\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert warnings.filters == filters\n"
        "print('ok')\n"
    )
    env = {"MLBOOK_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert not (tmp_path / "cache").exists(), "importing must not create the cache"


# --------------------------------------------------------------------------------------------
# What a reader's (non-editable) `pip install` gets. scripts/check_wheel.sh builds and installs
# the real wheel; these tests check the configuration in well under a second.
# --------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _packages_in_wheel() -> set[str]:
    """The packages setuptools puts into the wheel, read from pyproject.toml as setuptools does."""
    from setuptools import find_namespace_packages, find_packages

    packages = _pyproject().get("tool", {}).get("setuptools", {}).get("packages")
    if isinstance(packages, list):  # an explicit list: exactly these
        return set(packages)
    options = dict((packages or {}).get("find", {}))
    where = options.pop("where", ["."])
    finder = find_namespace_packages if options.pop("namespaces", True) else find_packages
    found = set()
    for folder in where:
        found |= set(finder(where=str(ROOT / folder), include=options.get("include", ["*"]),
                            exclude=options.get("exclude", ())))
    return found


def _source_packages() -> set[str]:
    """Every folder of mlbook_utils/ that holds Python code, as a dotted package name."""
    folders = {p.parent for p in (ROOT / "mlbook_utils").rglob("*.py")
               if "__pycache__" not in p.parts}
    return {".".join(f.relative_to(ROOT).parts) for f in folders}


def test_every_code_folder_is_a_regular_package():
    missing = sorted(pkg for pkg in _source_packages()
                     if not (ROOT.joinpath(*pkg.split(".")) / "__init__.py").exists())
    assert not missing, f"add an __init__.py to {missing}: the wheel would leave them out"


def test_wheel_configuration_covers_every_subpackage():
    wheel = _packages_in_wheel()
    missing = sorted(_source_packages() - wheel)
    assert not missing, (
        f"pyproject.toml leaves {missing} out of the wheel: a reader's `pip install` (Colab) "
        'would lack them; use [tool.setuptools.packages.find] include = ["mlbook_utils*"]'
    )
    strays = sorted(p for p in wheel if p.split(".")[0] != "mlbook_utils")
    assert not strays, f"the wheel would also install {strays}"


def test_dependencies_accept_colab_ipywidgets():
    from packaging.requirements import Requirement

    reqs = {Requirement(r).name: Requirement(r) for r in _pyproject()["project"]["dependencies"]}
    assert "7.7.1" in reqs["ipywidgets"].specifier, (
        "Colab ships ipywidgets 7.7: requiring 8 makes the install upgrade it"
    )


def test_committed_results_inside_the_book():
    from mlbook_utils import config

    assert config.committed_results(ROOT / "chapters") == ROOT / "results"
    assert config.committed_results(ROOT) == ROOT / "results"


def test_committed_results_outside_the_book(tmp_path, monkeypatch):
    from mlbook_utils import config

    # As a wheel installs it: the package in site-packages, no book above it or the cwd.
    site = tmp_path / "site-packages" / "mlbook_utils"
    site.mkdir(parents=True)
    monkeypatch.setattr(config, "__file__", str(site / "config.py"))
    monkeypatch.chdir(tmp_path)
    assert config.committed_results() is None
    # A book without a results/ folder has no committed records either.
    book = tmp_path / "book"
    (book / "mlbook_utils").mkdir(parents=True)
    (book / "_toc.yml").write_text("root: intro\n")
    assert config.committed_results(book) is None
    (book / "results").mkdir()
    assert config.committed_results(book / "results") == book / "results"
