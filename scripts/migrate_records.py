"""Rewrite result records (``results/*.jsonl``) into the current record form.

    python scripts/migrate_records.py              # the book's results/
    python scripts/migrate_records.py FOLDER ...   # other folders or .jsonl files
    python scripts/migrate_records.py --check      # exit 1 if a file would change

Each record gets ``metric`` and ``value`` in place of the old ``accuracy`` field: ``metric`` is
"accuracy" unless the record already named its metric (chapter 1.3's "final_loss"). The fields
``method, dataset, n_way, k_shot, metric, value, ci95, episodes, scale, device, backend, wall_s,
date`` come first, in that order, then every extra field in its original order. Non-finite
numbers (``NaN``, ``Infinity``, which are not JSON) become ``null``.

The script is idempotent: a file already in the current form is left untouched (not even
rewritten). A changed file is written to a temporary file beside it and then renamed over it,
so an interruption never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from mlbook_utils.evaluation import upgrade_record  # noqa: E402  (after the path is set)


def migrate_text(text: str, where: str = "") -> str:
    """The contents of a .jsonl file in the current form (blank lines dropped)."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{where}:{number}: not a JSON record ({exc})") from None
        if not isinstance(record, dict):
            raise SystemExit(f"{where}:{number}: not a JSON object")
        out.append(json.dumps(upgrade_record(record), sort_keys=False, allow_nan=False) + "\n")
    return "".join(out)


def migrate_file(path: Path, *, check: bool = False) -> bool:
    """Bring one file into the current form; return whether it changed (or would, with check)."""
    old = path.read_text(encoding="utf-8")
    new = migrate_text(old, str(path))
    if new == old:
        return False
    if check:
        return True
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="folders or .jsonl files "
                        "(default: the book's results/)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a file is not in the current form")
    args = parser.parse_args(argv)
    files: list[Path] = []
    for p in args.paths or [ROOT / "results"]:
        files += sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    changed = [f for f in files if migrate_file(f, check=args.check)]
    verb = "would change" if args.check else "migrated"
    for f in changed:
        print(f"{verb} {f}")
    print(f"{len(changed)} of {len(files)} file(s) {verb}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
