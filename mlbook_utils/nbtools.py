"""Stored notebook outputs: execute a chapter and record how, and check that outputs are fresh.

Each chapter notebook stores, in its metadata under ``mlbook``, the run ``scale``, the
``device``, the Keras ``backend``, the wall time and a ``code_sha256`` of its code cells. When the
code changes and the notebook is not re-executed, the hash no longer matches and a test fails.

    python -m mlbook_utils.nbtools run chapters/01_1_episodes.ipynb [--scale cpu]
    python -m mlbook_utils.nbtools check chapters/*.ipynb
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
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
    args = parser.parse_args(argv)
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
