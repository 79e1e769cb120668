#!/usr/bin/env bash
# What a reader's `pip install` of the repository gets (Colab installs it this way, never -e):
#   1. build the wheel from a copy of the source (so no stale build/ can leak into it);
#   2. check that it holds every mlbook_utils/**/*.py of the source tree, and nothing else;
#   3. install it, not editable, into a fresh virtual environment, with what a reader has
#      besides: TensorFlow, Keras, pandas and the notebook runner, at requirements.txt's pins;
#   4. from a working directory outside the repository: import every submodule;
#   5. run every chapter's exercise cell, and every checker on its reference solution;
#   6. execute chapter 2.1 at MLBOOK_SCALE=quick with nbclient, records into a temporary folder.
#
# usage: scripts/check_wheel.sh [PYTHON]     (default: $PYTHON, else python3.11, else python3)
# The python needs pip and venv, nothing else. MLBOOK_DATA should name the data folder (the
# loaders otherwise download into the user cache). `make wheel-check` runs it; `make test` too.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-${PYTHON:-$(command -v python3.11 || command -v python3)}}"
NOTEBOOK="chapters/02_1_siamese_networks.ipynb"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mlbook-wheel-check.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
unset PYTHONPATH PYTHONHOME
export PIP_DISABLE_PIP_VERSION_CHECK=1

t0=$(date +%s)
step_start=$t0
step() {  # step "what was done": print it with the seconds it took
  local now
  now=$(date +%s)
  printf 'wheel-check: %4d s  %s\n' $((now - step_start)) "$1"
  step_start=$now
}
fail() { echo "wheel-check: FAILED: $*" >&2; exit 1; }

# --- 1. the wheel, built from a copy of what a clone holds (tracked and new, not ignored, files)
mkdir -p "$WORK/src" "$WORK/dist" "$WORK/outside" "$WORK/results"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$REPO" ls-files -z --cached --others --exclude-standard -- \
      pyproject.toml README.md LICENSE mlbook_utils > "$WORK/files"
else
  (cd "$REPO" && find pyproject.toml README.md mlbook_utils -name __pycache__ -prune -o \
      -type f -print0) > "$WORK/files"
fi
(cd "$REPO" && while IFS= read -r -d '' f; do
  if [[ -f "$f" ]]; then printf '%s\0' "$f"; fi  # a tracked file deleted in the work tree
done < "$WORK/files" | xargs -0 cp --parents -t "$WORK/src")
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src" >"$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log" >&2; fail "pip wheel could not build the package"; }
WHEEL="$(ls "$WORK"/dist/mlbook_utils-*.whl)"
step "built $(basename "$WHEEL")"

# --- 2. the wheel holds exactly the package's .py files
"$PY" - "$WHEEL" "$WORK/src" <<'EOF' || fail "the wheel does not hold the package's modules"
import sys
import zipfile
from pathlib import Path

wheel, src = sys.argv[1], Path(sys.argv[2])
in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
in_source = {p.relative_to(src).as_posix() for p in (src / "mlbook_utils").rglob("*.py")}
missing, extra = sorted(in_source - in_wheel), sorted(in_wheel - in_source)
for name in missing:
    print(f"  missing from the wheel: {name}", file=sys.stderr)
for name in extra:
    print(f"  in the wheel but not in the source: {name}", file=sys.stderr)
if missing:
    print("  pyproject.toml must find every subpackage: [tool.setuptools.packages.find] "
          'include = ["mlbook_utils*"], and each folder needs an __init__.py', file=sys.stderr)
if missing or extra:
    sys.exit(1)
print(f"wheel-check: the wheel holds all {len(in_source)} modules of mlbook_utils/")
EOF
step "compared the wheel with the source tree"

# --- 3. a fresh environment: the wheel (not -e) and a reader's TensorFlow, Keras and runner
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
# requirements.txt's pins, as constraints for every package (the wheel's own dependencies too)
grep -E '^[A-Za-z0-9_.-]+(\[[^]]*\])?==' "$REPO/requirements.txt" | sed 's/\[[^]]*\]//' \
  > "$WORK/constraints.txt"  # (a constraint takes no extras)
mapfile -t EXTRAS < <(grep -E '^(tensorflow(-cpu)?(\[[^]]*\])?|keras|pandas|nbclient|ipykernel)==' \
  "$REPO/requirements.txt")
[[ ${#EXTRAS[@]} -ge 4 ]] || fail "requirements.txt does not pin TensorFlow, Keras, nbclient, ipykernel"
"$VPY" -m pip install -q -c "$WORK/constraints.txt" "$WHEEL" "${EXTRAS[@]}" \
  >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log" >&2; fail "pip install of the wheel"; }
"$VPY" -m ipykernel install --prefix "$WORK/venv" --name mlbook-wheel-check >/dev/null
step "installed the wheel and ${EXTRAS[*]}"

# Everything below runs outside the repository, on the installed copy only.
cd "$WORK/outside"
export MLBOOK_RESULTS="$WORK/results" TF_CPP_MIN_LOG_LEVEL=2 TQDM_DISABLE=1
if [[ -n "${MLBOOK_DATA:-}" ]]; then export MLBOOK_DATA; fi

# --- 4. every submodule imports from the installed copy
"$VPY" - "$WORK/venv" <<'EOF' || fail "importing the installed package"
import importlib
import pkgutil
import sys
from pathlib import Path

import mlbook_utils
from mlbook_utils import config

venv = Path(sys.argv[1]).resolve()
where = Path(mlbook_utils.__file__).resolve()
assert venv in where.parents, f"mlbook_utils comes from {where}, not from the fresh venv"
names = [m.name for m in pkgutil.walk_packages(mlbook_utils.__path__, "mlbook_utils.")]
for name in names:
    importlib.import_module(name)
assert "mlbook_utils.exercises.ch02_1" in names, names
assert config.committed_results() is None, "outside the book there are no committed records"
print(f"wheel-check: imported mlbook_utils and its {len(names)} submodules from {where.parent}")
EOF
step "imported every submodule outside the repository"

# --- 5. the exercise cells as the chapters hold them, and each checker on its reference
"$VPY" - "$REPO/chapters" <<'EOF' || fail "an exercise cell or checker"
import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import nbformat

import mlbook_utils.exercises as ex
from mlbook_utils.exercises import Feedback

cells = 0
for path in sorted(Path(sys.argv[1]).glob("*.ipynb")):
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code" or "mlbook_utils.exercises" not in cell.source:
            continue
        tree = ast.parse(cell.source)
        last = tree.body.pop() if isinstance(tree.body[-1], ast.Expr) else None
        scope = {"__name__": "__main__"}
        exec(compile(tree, f"{path.name} (exercise cell)", "exec"), scope)
        fb = eval(compile(ast.Expression(last.value), path.name, "eval"), scope) if last else None
        assert isinstance(fb, Feedback), f"{path.name}: the exercise cell shows no Feedback"
        assert not fb.passed and fb.problem, f"{path.name}: the unsolved exercise passed"
        cells += 1
assert cells, "no chapter has an exercise cell"

checked = 0
for mod in pkgutil.iter_modules(ex.__path__, "mlbook_utils.exercises."):
    module = importlib.import_module(mod.name)
    for name in dir(module):
        reference = getattr(module, "reference_" + name.removeprefix("check_"), None)
        if name.startswith("check_") and reference is not None:
            fb = getattr(module, name)(reference)
            assert fb.passed, f"{mod.name}.{name} rejects the reference solution:\n{fb}"
            checked += 1
print(f"wheel-check: {cells} exercise cells give feedback; {checked} checkers accept the "
      "reference solutions")
EOF
step "ran the exercise cells and the checkers"

# --- 6. a chapter, executed as a reader would, at quick scale, outside the book
if [[ "$NOTEBOOK" == /* ]]; then cp "$NOTEBOOK" "$WORK/outside/"; else cp "$REPO/$NOTEBOOK" "$WORK/outside/"; fi
MLBOOK_SCALE=quick "$VPY" - "$WORK/outside/$(basename "$NOTEBOOK")" <<'EOF' \
  || fail "$NOTEBOOK at quick scale outside the repository"
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

path = Path(sys.argv[1])
nb = nbformat.read(path, as_version=4)
client = NotebookClient(nb, timeout=900, kernel_name="mlbook-wheel-check",
                        resources={"metadata": {"path": str(path.parent)}})
log = path.with_suffix(".kernel.log")
try:
    with open(log, "w") as stderr:  # the kernel's own chatter (TensorFlow's start-up lines)
        client.execute(stderr=stderr)
except Exception as err:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # no terminal colours in a CI log
    if not isinstance(err, CellExecutionError):
        text = f"{err!r}\nthe kernel's stderr ends with:\n{log.read_text()[-3000:]}"
    print(f"wheel-check: {path.name} failed outside the book:\n{text[-4000:]}", file=sys.stderr)
    sys.exit(1)
print(f"wheel-check: {path.name} ran, {sum(c.cell_type == 'code' for c in nb.cells)} code cells")
EOF
[[ -n "$(ls -A "$WORK/results")" ]] || fail "the chapter wrote no records into \$MLBOOK_RESULTS"
step "executed $NOTEBOOK (quick) outside the repository"

cd /
rm -rf "$WORK"  # (the trap does it too, on failure)
step "removed the temporary folder"
echo "wheel-check: passed in $(( $(date +%s) - t0 )) s"
