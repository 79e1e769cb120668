"""The reproduction appendix: every committed record in ``results/`` beside the paper's figure.

    python -m mlbook_utils.report            # writes reproduction.md and its figures
    python -m mlbook_utils.report --check    # exits 1 if reproduction.md is out of date

The page is generated from the records only: a cell with no run says "–", never a number typed by
hand, and quick-scale (CI) records are never shown. ``make book`` regenerates it; a test fails
when the committed page is stale.

The page has one section per chapter (``results/<stem>.jsonl``), headed by the chapter's title
(the first ``# `` line of the first markdown cell of ``chapters/<stem>.ipynb``) linked to the
chapter. A section holds a figure of ours against the paper; a table of the N-way K-shot
accuracies with the settings (5w1s, 5w5s, ...) as columns and, under each method, the rows "ours,
cpu", "ours, full" and "paper"; one line of notes (data set, hardware, wall time, time caps,
shared GPUs, the papers' sources); and the other measurements (a metric other than accuracy, such
as chapter 1.3's final loss, or an accuracy without an N-way K-shot setting, such as
verification on pairs), each under its metric's name.

The papers' figures, with their sources and status (C: confirmed against the paper's own text
or a later paper quoting it; R: not yet checked against the paper's own text), are in
``published_results.csv`` beside this module. A record gets a paper's figure only when both its
method and its data set match (:func:`paper_for`): an ORL-faces or FSDD record never gets an
Omniglot figure.

Figures: the same command writes one PNG per chapter that has something to compare into
``reproduction_figures/`` beside the page, and deletes the PNGs there that the page no longer
uses. They are drawn deterministically (no date or version in the file; the same records give
the same bytes with the pinned matplotlib), so regenerating them changes nothing in git unless
the records or ``published_results.csv`` did. ``--check`` compares the page's text and checks
that every figure it uses exists; it does not redraw them (run the command without ``--check``
to regenerate page and figures together).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import re
import sys
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .evaluation import read_records, repo_root

PUBLISHED_CSV = Path(__file__).with_name("published_results.csv")
FIGURES = "reproduction_figures"  # beside the page
SCALES = ("cpu", "full")
NO_RUN = "–"
NOT_REPORTED = "n/r"


# ------------------------------------------------------------------------------------------------
# The papers' figures
# ------------------------------------------------------------------------------------------------

@dataclass
class Paper:
    """One paper's figures for one method keyword on one data set."""

    key: str  # the method keyword, lower case
    dataset: str
    source: str
    note: str = ""
    baseline: bool = False
    # (n_way, k_shot) -> (value as published, status "C" or "R")
    figures: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)

    def value(self, n_way: int, k_shot: int) -> float | None:
        fig = self.figures.get((n_way, k_shot))
        return float(fig[0]) if fig else None


@functools.cache
def published(path: Path = PUBLISHED_CSV) -> dict[tuple[str, str], Paper]:
    """The papers' figures in ``path``, by (method keyword, data set). Lines starting with ``#``
    are comments."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    papers: dict[tuple[str, str], Paper] = {}
    for row in csv.DictReader(lines):
        key = (row["method"].strip().lower(), row["dataset"].strip())
        paper = papers.setdefault(key, Paper(key[0], key[1], row["source"].strip(),
                                             (row.get("note") or "").strip(),
                                             (row.get("baseline") or "").strip() == "yes"))
        if (row.get("value") or "").strip():
            status = row["status"].strip()
            if status not in ("C", "R"):
                raise ValueError(f"{path}: status must be C or R, not {status!r}: {row}")
            setting = (int(row["n_way"]), int(row["k_shot"]))
            if setting in paper.figures:
                raise ValueError(f"{path}: {key} {setting} is listed twice")
            paper.figures[setting] = (row["value"].strip(), status)
    return papers


def paper_for(method: str, dataset: str,
              papers: dict[tuple[str, str], Paper] | None = None) -> Paper | None:
    """The paper whose figures a record of ``method`` on ``dataset`` is held against, or None.

    The data set must be the paper's exactly (a variant such as "omniglot-vinyals-test (5
    distractor classes)" is another data set), and the method name must contain the paper's
    keyword as whole words, the longest keyword first. An untrained network is nobody's method.
    """
    name = method.lower()
    if "untrained" in name or "random init" in name:
        return None
    papers = published() if papers is None else papers
    for (key, paper_dataset), paper in sorted(papers.items(), key=lambda kv: -len(kv[0][0])):
        if paper_dataset == dataset and re.search(rf"(?<![\w-]){re.escape(key)}(?![\w+-])", name):
            return paper
    return None


# ------------------------------------------------------------------------------------------------
# The records, arranged by chapter
# ------------------------------------------------------------------------------------------------

@dataclass
class Group:
    """A method on a data set in one chapter: its latest record per setting and scale."""

    method: str
    dataset: str  # with the variant, if any
    base: str  # the record's data set, without the variant
    variant: str
    metric: str  # the metric's label
    cells: dict[tuple, dict[str, dict]] = field(default_factory=lambda: defaultdict(dict))
    paper: Paper | None = None


@dataclass
class Chapter:
    stem: str
    title: str | None
    link: str | None
    accuracy: list[Group]  # N-way K-shot accuracy
    other: list[Group]  # everything else
    records: list[dict]


def _records(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.jsonl")):
        for r in read_records(path.stem, folder=folder):
            if r.get("scale") not in SCALES:
                continue  # quick (CI) runs are never shown
            # A variant of a task (e.g. "ReLU, 20 units") is part of what was measured.
            variant = r.get("setting") or r.get("variant") or ""
            if "n_distractors" in r:
                extra = f"{r['n_distractors']} distractor classes"
                variant = f"{variant}, {extra}" if variant else extra
            if r.get("seed") is not None:  # one run of several seeds (chapter 8.1's pairs)
                variant = f"{variant}, seed {r['seed']}" if variant else f"seed {r['seed']}"
            dataset = f"{r['dataset']} ({variant})" if variant else r["dataset"]
            out.append({**r, "chapter": path.stem, "dataset": dataset, "base": r["dataset"],
                        "variant": variant})
    return out


#: Record fields that qualify a measurement that is not an (n_way, k_shot) setting: the copy
#: task's sequence length (5.1), the presentation of a class within an episode (5.2).
QUALIFIERS = ("length", "instance")


def _metric_label(rec: dict) -> str:
    metric = rec.get("metric") or "accuracy"
    if metric == "accuracy":
        task = rec.get("task")
        metric = f"accuracy (%), {task}" if task else "accuracy (%)"
    return ", ".join([metric] + [f"{q} {rec[q]}" for q in QUALIFIERS if rec.get(q) is not None])


def _is_accuracy_table(rec: dict) -> bool:
    return ((rec.get("metric") or "accuracy") == "accuracy" and rec.get("n_way") is not None
            and rec.get("k_shot") is not None)


def chapter_title(stem: str, chapters: Path) -> str | None:
    """The chapter's title: the first ``# `` line of its notebook's first markdown cell."""
    path = chapters / f"{stem}.ipynb"
    if not path.exists():
        return None
    for cell in json.loads(path.read_text(encoding="utf-8")).get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) else source
            for line in text.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
            return None
    return None


def _chapters(folder: Path, chapters: Path) -> list[Chapter]:
    records = _records(folder)
    # The latest record of each chapter, method, data set, setting, metric and scale.
    latest: dict[tuple, dict] = {}
    for r in sorted(records, key=lambda r: r["date"]):
        key = (r["chapter"], r["method"], r["dataset"], r.get("n_way"), r.get("k_shot"),
               _metric_label(r), r["scale"])
        latest[key] = r
    groups: dict[tuple, Group] = {}
    for (stem, method, dataset, n_way, k_shot, metric, scale), r in latest.items():
        table = "accuracy" if _is_accuracy_table(r) else "other"
        gkey = (stem, table, method, dataset, metric)
        if gkey not in groups:
            groups[gkey] = Group(method, dataset, r["base"], r["variant"], metric)
        groups[gkey].cells[(n_way, k_shot)][scale] = r
    out = []
    for stem in sorted({k[0] for k in groups}):
        def of(table: str, stem: str = stem) -> list[Group]:
            found = [g for k, g in groups.items() if k[0] == stem and k[1] == table]
            return sorted(found, key=lambda g: (g.metric, g.dataset.casefold(),
                                                g.method.casefold()))
        accuracy = of("accuracy")
        for g in accuracy:
            g.paper = paper_for(g.method, g.dataset)
        title = chapter_title(stem, chapters)
        link = f"{chapters.name}/{stem}.ipynb" if title else None
        out.append(Chapter(stem, title, link, accuracy, of("other"),
                           [r for k, r in latest.items() if k[0] == stem]))
    return out


# ------------------------------------------------------------------------------------------------
# The page
# ------------------------------------------------------------------------------------------------

def _setting(n_way: int, k_shot: int) -> str:
    return f"{n_way}w{k_shot}s"


def _cell(rec: dict | None, value_fmt: str = ".1f", ci_fmt: str = ".1f") -> str:
    """``value ±ci95`` of a record, "–" for none. A null value (not finite when it was recorded)
    says so, and a null ci95 (a single episode) is left out."""
    if rec is None:
        return NO_RUN
    value, ci = rec.get("value"), rec.get("ci95")
    if value is None:
        return "not finite"
    text = f"{value:{value_fmt}}"
    return text + (f" ±{ci:{ci_fmt}}" if ci is not None else " (no CI)")


def _paper_cell(paper: Paper, setting: tuple[int, int]) -> str:
    fig = paper.figures.get(setting)
    if fig is None:
        return NOT_REPORTED
    return fig[0] + ("*" if fig[1] == "R" else "")


def _seconds(values: list[float]) -> str:
    """"340 s", "88–91 s", "up to 6 s" or "<1 s"."""
    lo, hi = min(values), max(values)
    if hi < 0.5:
        return "<1 s"
    if lo < 0.5:
        return f"up to {hi:,.0f} s"
    return f"{lo:,.0f} s" if f"{lo:,.0f}" == f"{hi:,.0f}" else f"{lo:,.0f}–{hi:,.0f} s"


def _cap(rec: dict) -> str | None:
    """"1,465 of 20,000 episodes" where a cap on training time stopped a run early."""
    for unit in ("episodes", "steps", "iterations"):
        done, planned = rec.get(f"train_{unit}"), rec.get(f"train_{unit}_planned")
        if done is not None and planned and done < planned:
            return f"{done:,} of {planned:,} {unit}"
    return None


def _wall_note(method: str, recs: list[dict]) -> str:
    """"method: `cpu` 340 s, `full` 88–91 s (time cap: ...; one of 6 runs sharing the ...)"."""
    parts = []
    for scale in SCALES:
        mine = [r for r in recs if r["scale"] == scale]
        if not mine:
            continue
        walls = [r.get("train_wall_s", r.get("wall_s")) for r in mine]
        walls = [w for w in walls if w is not None]
        text = f"`{scale}` {_seconds(walls)}" if walls else f"`{scale}`"
        extra = []
        caps: dict[str, list[str]] = {}
        for r in sorted(mine, key=lambda r: (r.get("n_way") or 0, r.get("k_shot") or 0)):
            cap = _cap(r)
            if cap:
                where = (_setting(r["n_way"], r["k_shot"]) if r.get("n_way") and r.get("k_shot")
                         else r["variant"])
                caps.setdefault(cap, []).append(where)
        if len(caps) == 1:
            extra.append(f"time cap: {next(iter(caps))}")
        elif caps:
            extra.append("time cap: " + ", ".join(
                f"{cap} ({', '.join(w for w in where if w)})" for cap, where in caps.items()))
        shared = sorted({(r["concurrent_runs"], r["device"]) for r in mine
                         if (r.get("concurrent_runs") or 1) > 1})
        for runs, device in shared:
            extra.append(f"one of {runs} runs sharing the {device}")
        parts.append(text + (f" ({'; '.join(extra)})" if extra else ""))
    return f"{method}: {', '.join(parts)}"


def _notes(ch: Chapter, default_dataset: str | None, shown_scales: list[str]) -> str:
    sentences = []
    if default_dataset:
        several = len({g.dataset for g in ch.accuracy}) > 1
        sentences.append(f"Data set: {default_dataset}{' unless named' if several else ''}.")
    hardware = []
    for scale in SCALES:
        kinds = sorted({(r["device"], r["backend"]) for r in ch.records if r["scale"] == scale})
        if kinds:
            hardware.append(f"`{scale}` on " + " or ".join(f"{d}, {b}" for d, b in kinds))
    if hardware:
        sentences.append("Runs: " + "; ".join(hardware) + ".")
    if ch.accuracy:
        missing = [s for s in SCALES if s not in shown_scales]
        for scale in missing:
            sentences.append(f"No `{scale}` run of this table has been recorded yet.")
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in ch.records:
        by_method[r["method"]].append(r)
    walls = [_wall_note(m, by_method[m]) for m in sorted(by_method, key=str.casefold)]
    sentences.append("Wall time (training, else evaluation): " + "; ".join(walls) + ".")
    papers: dict[tuple[str, str], tuple[Paper, list[str]]] = {}
    for g in ch.accuracy:
        if g.paper is not None:
            _, methods = papers.setdefault((g.paper.key, g.paper.dataset), (g.paper, []))
            if g.method not in methods:
                methods.append(g.method)
    if papers:
        items = [f"{' and '.join(methods)}: {paper.source}"
                 + (f" ({paper.note})" if paper.note else "")
                 for paper, methods in papers.values()]
        sentences.append("Paper figures: " + "; ".join(items) + ".")
    return "Notes. " + " ".join(sentences)


def _default_dataset(groups: list[Group]) -> str | None:
    """The data set that needs no naming in the rows: the only one, or the one of most rows."""
    counts: dict[str, int] = defaultdict(int)
    for g in groups:
        counts[g.dataset] += 1
    if not counts:
        return None
    best = max(sorted(counts), key=lambda d: counts[d])
    return best if 2 * counts[best] > len(groups) else None


def _accuracy_table(ch: Chapter, default_dataset: str | None,
                    shown_scales: list[str]) -> tuple[list[str], list[tuple[Paper, tuple]]]:
    settings = sorted({s for g in ch.accuracy for s in g.cells})
    lines = ["| method | " + " | ".join(_setting(*s) for s in settings) + " |",
             "|---|" + "---|" * len(settings)]
    blank = " |" * len(settings)
    recalled = []
    for g in sorted(ch.accuracy, key=lambda g: (g.dataset != default_dataset,
                                                g.dataset.casefold(), g.method.casefold())):
        name = f"**{g.method}**"
        if default_dataset and g.base == default_dataset and g.variant:
            name += f" ({g.variant})"  # a variant of the chapter's data set
        elif g.dataset != default_dataset:
            name += f" ({g.dataset})"
        lines.append(f"| {name} |{blank}")
        for scale in shown_scales:
            cells = [_cell(g.cells.get(s, {}).get(scale)) for s in settings]
            lines.append(f"| ours, {scale} | " + " | ".join(cells) + " |")
        if g.paper is not None:
            lines.append("| paper | " + " | ".join(_paper_cell(g.paper, s) for s in settings)
                         + " |")
            recalled += [(g.paper, s) for s in settings
                         if g.paper.figures.get(s, ("", ""))[1] == "R"]
    return lines, recalled


def _natural(text: str) -> tuple:
    """A sort key that orders the numbers inside ``text`` by value ("length 20" before
    "length 100")."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.casefold())
                 for part in re.split(r"(\d+)", text))


def _other_tables(ch: Chapter) -> list[str]:
    lines = []
    by_metric: dict[str, list[Group]] = defaultdict(list)
    for g in ch.other:
        by_metric[g.metric].append(g)
    for metric in sorted(by_metric, key=_natural):
        groups = by_metric[metric]
        lower = any(w in metric.lower() for w in ("loss", "mse", "error"))
        datasets = sorted({g.dataset for g in groups}, key=str.casefold)
        bases = {g.base for g in groups}
        caption = f"**{metric}**"
        if len(datasets) == 1:
            caption += f" on {datasets[0]}"
        elif len(bases) == 1:
            caption += f" on {next(iter(bases))}"
        caption += ", lower is better:" if lower else ":"
        lines += ["", caption, "", "| method | ours, cpu | ours, full |", "|---|---|---|"]
        for dataset in datasets:
            if len(datasets) > 1:
                head = dataset if len(bases) > 1 else next(
                    g.variant for g in groups if g.dataset == dataset)
                lines.append(f"| *{head}* | | |")
            for g in sorted((g for g in groups if g.dataset == dataset),
                            key=lambda g: g.method.casefold()):
                for setting in sorted(g.cells, key=lambda s: (s[0] or 0, s[1] or 0)):
                    label = g.method
                    if None not in setting:
                        label += f" ({_setting(*setting)})"
                    elif len(g.cells) > 1 and setting[0] is not None:
                        label += f" ({setting[0]}-way)"
                    cells = [_cell(g.cells[setting].get(s), ".3g", ".2g") for s in SCALES]
                    lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return lines


def _escape(text: str) -> str:
    return re.sub(r"([\[\]])", r"\\\1", text)


def build(folder: Path | None = None, chapters: Path | None = None) -> str:
    """The page's markdown, from the records in ``folder`` (default: the book's ``results/``)
    and the chapters' titles in ``chapters`` (default: ``chapters/`` beside ``folder``)."""
    root = repo_root() or Path.cwd()
    folder = folder or root / "results"
    chapters = chapters or folder.parent / "chapters"
    body, recalled = [], []
    for ch in _chapters(folder, chapters):
        heading = (f"[{_escape(ch.title)}]({ch.link})" if ch.title and ch.link
                   else _escape(ch.title or ch.stem))
        body += ["", f"## {heading}", ""]
        default = _default_dataset(ch.accuracy)
        shown = [s for s in SCALES
                 if any(s in by_scale for g in ch.accuracy for by_scale in g.cells.values())]
        if _panels(ch):
            number = (ch.title or ch.stem).split(" ")[0]
            body += [f"```{{figure}} {FIGURES}/{ch.stem}.png",
                     f":alt: Accuracy of our runs against the paper's figures, chapter {number}",
                     ":width: 100%",
                     "```", ""]
        if ch.accuracy:
            table, r = _accuracy_table(ch, default, shown)
            body += table
            recalled += r
        else:
            body.append("No N-way K-shot accuracy has been recorded for this chapter.")
        body += ["", _notes(ch, default, shown)]
        if ch.other:
            body += ["", "Other measurements, each under the name of its metric (the record's "
                     "`metric` field):"]
            body += _other_tables(ch)
    lines = [
        "# Reproduction table",
        "",
        "Our runs beside the papers' figures, chapter by chapter. Every number of ours comes "
        "from a record that a chapter (or `python -m mlbook_utils.reproduce`) appended to "
        "`results/`; this page and its figures are generated from those records by "
        "`python -m mlbook_utils.report`, and a test fails when the page is out of date.",
        "",
        "Accuracy is in % on held-out classes, ± the 95% confidence interval over test "
        "episodes; 5w1s means 5-way 1-shot. `cpu` runs are shortened runs on 2 CPU cores "
        "(their wall times are upper bounds: other work may have run beside them); `full` runs "
        "use the papers' settings on a GPU unless a time cap stopped them, which the notes "
        "under each table say. "
        f"\"{NO_RUN}\": no run at that scale has been recorded; \"{NOT_REPORTED}\": the paper "
        "reports no figure for that setting. A method without a \"paper\" row has no published "
        "figure to compare with (a baseline or an ablation). Quick (CI) runs are never shown. "
        "Each chapter's figure shows our runs (dots, with their 95% confidence interval) against "
        "the paper's figures (lines, dashed where unconfirmed).",
        "",
    ]
    unique = []
    for paper, setting in recalled:
        if (paper.key, paper.dataset, setting) not in [(p.key, p.dataset, s) for p, s in unique]:
            unique.append((paper, setting))
    if unique:
        lines += [
            "Paper figures marked * are **not yet confirmed**: we could not check them against "
            "the paper's own text with the sources we have (status R), so treat them as "
            "approximate:",
            "",
        ]
        by_paper: dict[tuple, list] = {}
        for paper, setting in unique:
            by_paper.setdefault((paper.source, paper.key, paper.dataset), []).append(
                (setting, paper.figures[setting][0]))
        for (source, key, dataset), figs in sorted(by_paper.items()):
            listed = ", ".join(f"{_setting(*s)} {v}" for s, v in sorted(figs))
            lines.append(f"- {source} ({key}, {dataset}): {listed}")
        lines += [
            "",
            "The other paper figures are confirmed (status C): against the paper's own text, or "
            "against a later paper that quotes it where the source column says so. Sources and "
            "status are kept in `mlbook_utils/published_results.csv`.",
        ]
    else:
        lines.append("Sources and status of the paper figures are kept in "
                     "`mlbook_utils/published_results.csv`.")
    lines += body + [""]
    return "\n".join(re.sub(r"[ \t]+$", "", line) for line in lines)


# ------------------------------------------------------------------------------------------------
# The figures
# ------------------------------------------------------------------------------------------------

COLOURS = {"cpu": "#0072B2", "full": "#D55E00"}  # colour-blind safe (Okabe-Ito)
MARKERS = {"cpu": "o", "full": "s"}


def _panels(ch: Chapter) -> list[tuple[Group, list[tuple[int, int]]]]:
    """The methods the chapter's figure compares with their paper, with the settings of ours:
    every method with a paper figure in a setting that we ran; a baseline (pixels) only where
    the chapter compares nothing else."""
    found = []
    for g in ch.accuracy:
        ours = sorted(s for s, by_scale in g.cells.items()
                      if any(r.get("value") is not None for r in by_scale.values()))
        if g.paper is not None and any(s in g.paper.figures for s in ours):
            found.append((g, ours))
    learned = [(g, s) for g, s in found if not g.paper.baseline]
    return learned or found


def _draw(ch: Chapter, path: Path) -> None:
    from matplotlib import style
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    panels = _panels(ch)
    several = len({g.dataset for g, _ in panels}) > 1
    # One panel per method, the settings down the side (named once, on the left), accuracy along:
    # nothing to squeeze or rotate at a phone's width. At most two panels a row on a figure
    # 4.6 inches wide, so that the 12-point text is still about 13 px high when a phone shows the
    # figure 360 px wide.
    settings = sorted({s for _, ours in panels for s in ours})
    rc = {"font.size": 12, "axes.titlesize": 12, "axes.labelsize": 12, "xtick.labelsize": 11,
          "ytick.labelsize": 12, "legend.fontsize": 11, "axes.spines.top": False,
          "axes.spines.right": False}
    with style.context(["default", rc]):
        ncols = min(len(panels), 2)
        nrows = math.ceil(len(panels) / ncols)
        height = max(2.6, 1.4 + 0.5 * len(settings))
        fig = Figure(figsize=(4.6, 1.2 + height * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        values, seen_scales, seen_status = [], set(), set()
        for ax, (g, ours) in zip(axes.flat, panels):
            for i, setting in enumerate(settings):
                for scale, dy in zip(SCALES, (-0.15, 0.15)):
                    rec = g.cells.get(setting, {}).get(scale)
                    if rec is None or rec.get("value") is None:
                        continue
                    ci = rec.get("ci95") or 0.0
                    ax.errorbar(rec["value"], i + dy, xerr=ci, fmt=MARKERS[scale], ms=7,
                                color=COLOURS[scale], capsize=3, lw=1.5)
                    values += [rec["value"] - ci, rec["value"] + ci]
                    seen_scales.add(scale)
                fig_value = g.paper.value(*setting)
                if fig_value is not None and setting in ours:
                    status = g.paper.figures[setting][1]
                    ax.vlines(fig_value, i - 0.38, i + 0.38, colors="black", lw=2.2,
                              linestyles="--" if status == "R" else "-")
                    values.append(fig_value)
                    seen_status.add(status)
            title = g.method + (f" ({g.dataset})" if several else "")
            ax.set_title(textwrap.fill(title, 40 // ncols))
            ax.grid(axis="x", alpha=0.3)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        first = axes[0, 0]
        first.set_yticks(range(len(settings)), [_setting(*s) for s in settings])
        first.set_ylim(len(settings) - 0.5, -0.5)  # the first setting on top
        lo, hi = min(values), max(values)
        pad = max(1.0, 0.08 * (hi - lo))
        first.set_xlim(lo - pad, min(hi + pad, 101.0))
        first.xaxis.set_major_locator(MaxNLocator(nbins=6 - ncols, steps=[1, 2, 2.5, 5, 10]))
        fig.supxlabel("accuracy (%)", fontsize=12)
        handles = [Line2D([], [], ls="", marker=MARKERS[s], ms=7, color=COLOURS[s],
                          label=f"ours, {s}") for s in SCALES if s in seen_scales]
        if "C" in seen_status:
            handles.append(Line2D([], [], color="black", lw=2.2, label="paper"))
        if "R" in seen_status:
            handles.append(Line2D([], [], color="black", lw=2.2, ls="--",
                                  label="paper, unconfirmed"))
        fig.legend(handles=handles, loc="outside upper center", frameon=False,
                   ncols=min(len(handles), 2), handlelength=1.5, columnspacing=1.2)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=150, metadata={"Software": None})


def write_figures(out_dir: Path, folder: Path | None = None,
                  chapters: Path | None = None) -> list[Path]:
    """Draw the figure of every chapter that has one into ``out_dir``; the paths written."""
    root = repo_root() or Path.cwd()
    folder = folder or root / "results"
    chapters = chapters or folder.parent / "chapters"
    written = []
    for ch in _chapters(folder, chapters):
        if _panels(ch):
            path = out_dir / f"{ch.stem}.png"
            _draw(ch, path)
            written.append(path)
    return written


def figures_used(page: str) -> list[str]:
    """The figure files (relative to the page) that the page's markdown uses."""
    return re.findall(r"^```\{figure\} (\S+)$", page, flags=re.M)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlbook_utils.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the page is stale")
    parser.add_argument("--out", default=None, help="default: reproduction.md at the root")
    args = parser.parse_args(argv)
    root = repo_root() or Path.cwd()
    from . import bookmap  # the other generated page, always at the root (not moved by --out)
    out = Path(args.out) if args.out else root / "reproduction.md"
    text = build(root / "results", root / "chapters")
    if args.check:
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            print(f"{out} is out of date: run `python -m mlbook_utils.report`")
            return 1
        missing = [f for f in figures_used(text) if not (out.parent / f).exists()]
        if missing:
            print(f"figures missing: {', '.join(missing)}: run `python -m mlbook_utils.report`")
            return 1
        print(f"{out} is up to date")
        return bookmap.update(root, check=True)
    out.write_text(text, encoding="utf-8")
    figure_dir = out.parent / FIGURES
    written = write_figures(figure_dir, root / "results", root / "chapters")
    for stale in sorted(figure_dir.glob("*.png")):
        if stale not in written:
            stale.unlink()
    print(f"wrote {out} and {len(written)} figures in {figure_dir}")
    return bookmap.update(root)


if __name__ == "__main__":
    sys.exit(main())
