"""Stored notebook outputs: execute a chapter and record how, and check that outputs are fresh.

Each chapter notebook stores, in its metadata under ``mlbook``, the run ``scale``, the
``device``, the Keras ``backend``, the wall time and a ``code_sha256`` of its code cells. When the
code changes and the notebook is not re-executed, the hash no longer matches and a test fails.

    python -m mlbook_utils.nbtools run chapters/01_1_episodes.ipynb [--scale cpu]
    python -m mlbook_utils.nbtools check chapters/*.ipynb
    python -m mlbook_utils.nbtools refresh-settings chapters/06_1_learning_the_initialisation.ipynb

A settings table (a cell that ends in ``registry.settings_table(module.NAME)``) shows a module's
settings at every scale, so it goes stale when a setting changes, even with the code cells
unchanged; ``check`` compares each stored table with the module's, and ``refresh-settings``
re-renders just those outputs (they depend on nothing but the module and the stored scale).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

META_KEY = "mlbook"


def code_sha256(nb) -> str:
    """sha256 of the notebook's code cells (sources joined in order, trailing spaces ignored)."""
    parts = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            src = cell.source if isinstance(cell.source, str) else "".join(cell.source)
            parts.append("\n".join(line.rstrip() for line in src.strip().splitlines()))
    return hashlib.sha256("\n# -- cell --\n".join(parts).encode()).hexdigest()


def code_source(path: str | Path) -> str:
    """The source of a notebook's code cells, joined in order (what its tests read)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


_TABLE_CALL = re.compile(r"^registry\.settings_table\((\w+)\.(\w+)\)$")
_IMPORT = re.compile(r"^from mlbook_utils import (.+)$", re.M)


def _module_aliases(nb) -> dict[str, str]:
    """``{name in the notebook: mlbook_utils submodule}`` from its ``from mlbook_utils import``
    lines."""
    out = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for names in _IMPORT.findall(cell.source):
            for part in names.strip("() ").split(","):
                words = part.split()
                if words:
                    out[words[-1]] = words[0]
    return out


def settings_tables(nb) -> list[tuple[int, object]]:
    """``(cell index, settings table as the module gives it now)`` for every cell of ``nb``
    that ends in ``registry.settings_table(module.NAME)``, rendered at the stored run's scale."""
    import importlib

    from . import config, registry

    aliases = _module_aliases(nb)
    scale = (nb.metadata.get(META_KEY) or {}).get("scale")
    found = []
    for i, cell in enumerate(nb.cells):
        lines = cell.source.strip().splitlines() if cell.cell_type == "code" else []
        match = _TABLE_CALL.match(lines[-1].strip()) if lines else None
        if not match or match.group(1) not in aliases:
            continue
        module = importlib.import_module(f"mlbook_utils.{aliases[match.group(1)]}")
        before = os.environ.get(config.SCALE_ENV)
        os.environ[config.SCALE_ENV] = scale or config.scale()
        try:
            found.append((i, registry.settings_table(getattr(module, match.group(2)))))
        finally:
            if before is None:
                os.environ.pop(config.SCALE_ENV, None)
            else:
                os.environ[config.SCALE_ENV] = before
    return found


def _stored_result(cell):
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "execute_result"),
                None)


def _notebook_display():
    """pandas' display options as in a Jupyter kernel (a plain process shows every column)."""
    import pandas as pd

    return pd.option_context("display.max_columns", 20, "display.width", 80)


def _html(table) -> str:
    with _notebook_display():
        return table._repr_html_()


def stale_settings_tables(nb) -> list[int]:
    """The cells whose stored settings table differs from the module's settings now."""
    stale = []
    for i, table in settings_tables(nb):
        stored = _stored_result(nb.cells[i])
        html = stored.get("data", {}).get("text/html") if stored else None
        html = "".join(html) if isinstance(html, list) else html
        if html != _html(table):
            stale.append(i)
    return stale


def refresh_settings_tables(path: str | Path) -> list[int]:
    """Re-render the stored settings tables of a notebook in place; returns the cells changed."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    stale = stale_settings_tables(nb)
    for i, table in settings_tables(nb):
        if i in stale:
            stored = _stored_result(nb.cells[i])
            with _notebook_display():
                stored["data"] = {"text/html": table._repr_html_(), "text/plain": repr(table)}
    if stale:
        tmp = path.with_suffix(".ipynb.part")
        nbformat.write(nb, str(tmp))
        os.replace(tmp, path)
    return stale


def problems(path: str | Path) -> list[str]:
    """What is wrong with a notebook's stored outputs (an empty list when they are fresh)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    meta = nb.metadata.get(META_KEY)
    if not meta:
        how = f"python -m mlbook_utils.nbtools run {path}"
        return [f"{path}: no '{META_KEY}' metadata; run `{how}`"]
    out = []
    if meta.get("code_sha256") != code_sha256(nb):
        out.append(
            f"{path}: the code cells changed since the stored outputs were made; "
            f"re-run `python -m mlbook_utils.nbtools run {path}`"
        )
    if meta.get("scale") not in ("cpu", "full"):
        out.append(f"{path}: stored outputs come from a {meta.get('scale')!r} run, not cpu or full")
    for key in ("device", "backend", "code_sha256", "executed", "wall_s"):
        if key not in meta:
            out.append(f"{path}: '{META_KEY}' metadata lacks '{key}'")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if cell.get("execution_count") is None:
            out.append(f"{path}: code cell {i} was not executed")
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                out.append(f"{path}: code cell {i} stores an error ({o.get('ename')})")
    for i in stale_settings_tables(nb):
        out.append(f"{path}: cell {i}'s stored settings table differs from its module's settings; "
                   f"run `python -m mlbook_utils.nbtools refresh-settings {path}`")
    return out


def run(path: str | Path, scale: str | None = None, timeout: int | None = None) -> dict:
    """Execute a notebook in place with its own folder as working directory, store its outputs
    and the ``mlbook`` metadata, and return that metadata."""
    import nbformat
    from nbclient import NotebookClient

    from . import config

    path = Path(path)
    if scale:
        os.environ[config.SCALE_ENV] = scale
    # Stored outputs get a summary line, not progress bars (they are for live runs).
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3",
        # C++ libraries (TensorFlow's start-up lines) write to file descriptor 2 directly: keep
        # that out of the stored outputs; Python's own warnings and prints are still stored.
        extra_arguments=["--IPKernelApp.capture_fd_output=False"],
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    start = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - start
    meta = {
        "scale": config.scale(),
        "device": config.device(),
        "backend": config.backend(),
        "wall_s": round(wall, 1),
        "executed": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "code_sha256": code_sha256(nb),
    }
    nb.metadata[META_KEY] = meta
    # Live widgets need a kernel. Their saved state would make the HTML book load the widget
    # JavaScript from a CDN; the book uses kernel-free controls instead (widgets.static_explorer).
    nb.metadata.pop("widgets", None)
    tmp = path.with_suffix(".ipynb.part")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, path)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlbook_utils.nbtools", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="execute notebooks and store outputs and metadata")
    p_run.add_argument("notebooks", nargs="+")
    p_run.add_argument("--scale", choices=("cpu", "full"), default=None,
                       help="run scale (default: full with a GPU, cpu without)")
    p_check = sub.add_parser("check", help="check that stored outputs match the code")
    p_check.add_argument("notebooks", nargs="+")
    p_refresh = sub.add_parser("refresh-settings",
                               help="re-render stored settings tables from the modules")
    p_refresh.add_argument("notebooks", nargs="+")
    args = parser.parse_args(argv)
    if args.cmd == "refresh-settings":
        for nb in args.notebooks:
            cells = refresh_settings_tables(nb)
            print(f"{nb}: " + (f"refreshed cells {cells}" if cells else "settings tables fresh"))
        return 0
    if args.cmd == "run":
        for nb in args.notebooks:
            meta = run(nb, args.scale)
            print(f"{nb}: {meta['scale']} run on {meta['device']} ({meta['backend']}) "
                  f"in {meta['wall_s']} s")
        return 0
    bad = [p for nb in args.notebooks for p in problems(nb)]
    print("\n".join(bad) if bad else f"{len(args.notebooks)} notebook(s) fresh")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
