"""The reproduction table: every committed record in ``results/`` beside the paper's figure.

    python -m mlbook_utils.report            # writes reproduction.md at the book's root
    python -m mlbook_utils.report --check    # exits 1 if reproduction.md is out of date

The page is generated from the records only: a cell with no run says "no run", never a number
typed by hand. ``make book`` regenerates it; a test fails when the committed page is stale.

Records of accuracy with an N-way K-shot setting go into the main table; every other record
(a metric other than accuracy, such as chapter 1.3's final loss, or an accuracy without an
N-way K-shot setting, such as verification on pairs) goes under "Other measurements", with its
metric named.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

from .evaluation import read_records, repo_root

# The papers' Omniglot figures (5w1s, 5w5s, 20w1s, 20w5s), from
# ../shared/reference/published-results.md: "C" confirmed against a secondary source, "R" recalled.
PUBLISHED: dict[str, tuple[str, str, dict[tuple[int, int], float]]] = {
    "prototypical": ("Snell et al. 2017", "C (5w1s, 5w5s), R (20-way)",
                     {(5, 1): 98.8, (5, 5): 99.7, (20, 1): 96.0, (20, 5): 98.9}),
    "relation": ("Sung et al. 2018", "C",
                 {(5, 1): 99.6, (5, 5): 99.8, (20, 1): 97.6, (20, 5): 99.1}),
    "matching": ("Vinyals et al. 2016", "R",
                 {(5, 1): 98.1, (5, 5): 98.9, (20, 1): 93.8, (20, 5): 98.5}),
    "siamese": ("Koch et al. 2015 (own protocol); Vinyals et al. 2016 re-run", "C / R",
                {(20, 1): 92.0}),
    "maml": ("Finn et al. 2017, Table 1", "C",
             {(5, 1): 98.7, (5, 5): 99.9, (20, 1): 95.8, (20, 5): 98.9}),
    # Finn et al. report first order on MiniImageNet only; the Omniglot figures are Nichol et
    # al.'s (2018, v3, Table 2, row "1st-order MAML + Transduction").
    "first-order maml": ("Nichol et al. 2018, Table 2", "C",
                         {(5, 1): 98.3, (5, 5): 99.2, (20, 1): 89.4, (20, 5): 97.9}),
    "anil": ("Raghu et al. 2020, Table 2 (20-way only)", "C", {(20, 1): 96.2, (20, 5): 98.0}),
    "reptile": ("Nichol et al. 2018", "R",
                {(5, 1): 95.39, (5, 5): 98.90, (20, 1): 88.14, (20, 5): 96.65}),
    "meta-sgd": ("Li et al. 2017", "R",
                 {(5, 1): 99.53, (5, 5): 99.93, (20, 1): 95.93, (20, 5): 98.97}),
    "pixel": ("Vinyals et al. 2016, pixels with cosine distance", "R",
              {(5, 1): 41.7, (5, 5): 63.2, (20, 1): 26.7, (20, 5): 42.6}),
    "lstm meta-learner": ("Ravi & Larochelle 2017", "reports mini-ImageNet only", {}),
}


def paper_for(method: str) -> tuple[str, str, dict] | None:
    """The published row that a record's method name refers to (by keyword), or None."""
    name = method.lower()
    if "untrained" in name or "random init" in name:
        return None
    for key in ("lstm meta-learner", "prototypical", "relation", "matching", "siamese",
                "first-order maml", "anil", "maml",
                "reptile", "meta-sgd", "pixel"):
        if key in name:
            return PUBLISHED[key]
    return None


def _fmt(rec: dict | None, value_fmt: str = ".1f", ci_fmt: str = ".1f") -> str:
    """``value ± ci95`` of a record; "no run" for none. A null value (not finite when it was
    recorded) says so, and a null ci95 (a single episode) is left out."""
    if rec is None:
        return "no run"
    value, ci = rec.get("value"), rec.get("ci95")
    if value is None:
        return "not finite"
    text = f"{value:{value_fmt}}"
    return text + (f" ± {ci:{ci_fmt}}" if ci is not None else " (no CI)")


def _metric_label(rec: dict) -> str:
    metric = rec.get("metric") or "accuracy"
    if metric == "accuracy":
        task = rec.get("task")
        return f"accuracy (%); {task}" if task else "accuracy (%)"
    return metric


def _wall(rec: dict | None) -> str:
    if rec is None:
        return ""
    secs = rec.get("train_wall_s", rec.get("wall_s"))
    text = f"{secs:.0f} s" if secs is not None else ""
    for unit in ("episodes", "steps", "iterations"):  # training cut short by a time cap
        done, planned = rec.get(f"train_{unit}"), rec.get(f"train_{unit}_planned")
        if done is not None and planned and done < planned:
            text += f" (time cap: {done:,} of {planned:,} {unit})"
            break
    return text


def _hardware(scale: str, rec: dict) -> str:
    text = f"{scale}: {rec['device']} ({rec['backend']}"
    if rec.get("concurrent_runs", 1) > 1:
        text += f", one of {rec['concurrent_runs']} runs sharing it"
    return text + ")"


def build(folder: Path | None = None) -> str:
    root = repo_root() or Path.cwd()
    folder = folder or root / "results"
    records = []
    for path in sorted(folder.glob("*.jsonl")):
        for r in read_records(path.stem, folder=folder):
            if r.get("scale") in ("cpu", "full"):
                # A variant of a task (e.g. "ReLU, 20 units") is part of what was measured.
                variant = r.get("setting") or r.get("variant")
                if "n_distractors" in r:
                    extra = f"{r['n_distractors']} distractor classes"
                    variant = f"{variant}, {extra}" if variant else extra
                dataset = f"{r['dataset']} ({variant})" if variant else r["dataset"]
                records.append({**r, "chapter": path.stem, "dataset": dataset})
    # The latest record of each chapter, method, data set, setting, metric and scale.
    latest: dict[tuple, dict] = {}
    for r in sorted(records, key=lambda r: r["date"]):
        key = (r["chapter"], r["method"], r["dataset"], r["n_way"], r["k_shot"],
               r.get("metric") or "", r["scale"])
        latest[key] = r
    rows: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for (chapter, method, dataset, n_way, k_shot, metric, scale), r in latest.items():
        rows[(chapter, method, dataset, n_way, k_shot, metric)][scale] = r

    lines = [
        "# Reproduction table",
        "",
        "Every row comes from a record that a chapter (or `python -m mlbook_utils.reproduce`) "
        "appended to `results/`; this page is generated from those records by "
        "`python -m mlbook_utils.report`, and a test fails when it is out of date. Accuracy is "
        "in % on held-out classes, with the 95% confidence interval over test episodes. "
        "\"no run\" means that no run at that scale has been recorded. Paper figures marked R "
        "were recalled and still need checking against the paper (see "
        "`published-results.md` in the book's reference folder).",
        "",
        "## Few-shot classification",
        "",
        "| chapter | method | data set | setting | paper | source (status) | ours, `cpu` | wall "
        "| ours, `full` | wall | hardware |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    other = []
    for (chapter, method, dataset, n_way, k_shot, metric), by_scale in sorted(
        rows.items(),
        key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3] or 0, kv[0][4] or 0, kv[0][5]),
    ):
        if metric != "accuracy" or n_way is None:
            other.append((chapter, method, dataset, metric, by_scale))
            continue
        paper = paper_for(method)
        if paper is None:
            ref, status, fig = "-", "-", "-"
        else:
            ref, status, figs = paper
            fig = f"{figs[(n_way, k_shot)]:.1f}" if (n_way, k_shot) in figs else "not reported"
        hardware = "; ".join(_hardware(s, r) for s, r in sorted(by_scale.items()))
        cpu, full = by_scale.get("cpu"), by_scale.get("full")
        lines.append(
            f"| {chapter} | {method} | {dataset} | {n_way}-way {k_shot}-shot | {fig} | "
            f"{ref} ({status}) | "
            f"{_fmt(cpu)} | {_wall(cpu)} | {_fmt(full)} | {_wall(full)} | {hardware} |"
        )
    if other:
        lines += [
            "",
            "## Other measurements",
            "",
            "Records whose figure is not an N-way K-shot accuracy (for example the mean final "
            "loss of an optimizer, or the accuracy of verification on pairs); the metric column "
            "says what each figure is (the record's `metric` field). Lower is better for losses.",
            "",
            "| chapter | method | data set | metric | ours, `cpu` | ours, `full` | hardware |",
            "|---|---|---|---|---|---|---|",
        ]
        for chapter, method, dataset, _, by_scale in sorted(other, key=lambda o: o[:4]):
            any_rec = next(iter(by_scale.values()))
            metric = _metric_label(any_rec)
            cells = [_fmt(by_scale.get(s), ".3g", ".2g") for s in ("cpu", "full")]
            hardware = "; ".join(_hardware(s, r) for s, r in sorted(by_scale.items()))
            lines.append(f"| {chapter} | {method} | {dataset} | {metric} | {cells[0]} | "
                         f"{cells[1]} | {hardware} |")
    lines += [
        "",
        "Wall time is the training time where the record has one (`train_wall_s`), else the "
        "evaluation time; \"time cap\" says where a cap on training time stopped a run before "
        "its planned length. `cpu` runs were made on a shared 2-core machine, so their wall "
        "times are upper bounds; runs that shared a GPU with others say so.",
        "",
    ]
    return "\n".join(re.sub(r"[ \t]+$", "", line) for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlbook_utils.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the page is stale")
    parser.add_argument("--out", default=None, help="default: reproduction.md at the root")
    args = parser.parse_args(argv)
    root = repo_root() or Path.cwd()
    out = Path(args.out) if args.out else root / "reproduction.md"
    text = build(root / "results")
    if args.check:
        if not out.exists() or out.read_text() != text:
            print(f"{out} is out of date: run `python -m mlbook_utils.report`")
            return 1
        print(f"{out} is up to date")
        return 0
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
