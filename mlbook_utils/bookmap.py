"""The map of the book: every method's accuracy against its training cost, one figure per setting.

    python -m mlbook_utils.report            # writes book_map.md and its figures too
    python -m mlbook_utils.report --check    # ... and exits 1 if book_map.md is out of date

A second generated appendix page beside the reproduction table (:mod:`mlbook_utils.report`, whose
helpers it uses): generated from ``results/`` only, quick (CI) records never shown, its figures
drawn deterministically into ``book_map_figures/`` (where PNGs the page no longer uses are
deleted). ``book_map.md`` is always at the book's root, whatever ``report --out`` says.

Settings: Omniglot's 5w1s, 5w5s, 20w1s, 20w5s first, then every other (data set, n_way, k_shot)
of an ``accuracy`` record with integer ``n_way`` and ``k_shot`` and a training cost; each has a
figure per scale (``cpu``, ``full``), sharing its axes, even with no run at that scale (it says so).

A point is one (chapter, method, scale, setting): over the latest record of each ``seed`` (or the
latest record, without seeds) it averages ``value``, ``ci95`` and the training cost:
``train_wall_s``, or ``snapshot_s`` for a snapshot part way through a longer run ("MAML after
60 s"). A variant (the record's ``setting`` less the "N-way K-shot" it restates, or its
``n_distractors``) is part of the method's name, never averaged away. Records without a training
cost are not points: the latest of :data:`NO_TRAINING` is a grey dotted line, chance a black one.

The pretrained baseline (:data:`BASELINE_METHOD` of :data:`BASELINE_CHAPTER`) is a point and a line
across both scales' figures (solid ``cpu``, dashed ``full``); where it is missing, the figure and
its caption say so. At most :data:`MAX_NUMBERED` points of a figure carry a number keyed to the
table under it (:func:`numbered`); the others are pale and listed unnumbered.

The kernel-free explorer: each figure and its table sit in a ``{container} mlmap-panel`` named
``map-<setting>-<scale>``; one raw-HTML block holds two ``<select>`` controls (hidden until its
script runs) and a script that shows only the chosen panel. Without JavaScript all panels show.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from . import report
from .evaluation import read_records, repo_root

PAGE = "book_map.md"
FIGURES = "book_map_figures"  # beside the page
BASELINE_CHAPTER = "04_2_strong_baselines"
BASELINE_METHOD = "pretrained conv-4 + nearest centroid"
NO_TRAINING = ("pixel nearest neighbour", "log-mel nearest neighbour")
MAIN_DATASET = "omniglot-vinyals-test"
NAMES = {MAIN_DATASET: ("omniglot", "Omniglot"),  # data set -> (slug, name)
         "orl-unseen-people": ("orl-faces", "ORL faces (unseen people)"),
         "fsdd-unseen-speakers": ("fsdd", "Spoken digits, FSDD (unseen speakers)")}
MAX_NUMBERED = 12


@dataclass
class Point:
    chapter: str
    method: str  # with its variant, if any
    scale: str
    value: float
    ci95: float | None
    cost: float | None  # training seconds; None: no training
    amount: str  # "3,000 episodes"
    runs: int  # the seeds averaged
    date: str  # the latest record's

    @property
    def baseline(self) -> bool:
        return self.chapter == BASELINE_CHAPTER and self.method == BASELINE_METHOD


@dataclass
class Setting:
    dataset: str
    n_way: int
    k_shot: int
    points: list[Point]  # trained, both scales
    line: Point | None  # the no-training method's

    @property
    def slug(self) -> str:
        name = re.sub(r"[^a-z0-9]+", "-", self.dataset.lower()).strip("-")
        return f"{NAMES.get(self.dataset, (name,))[0]}-{self.n_way}w{self.k_shot}s"

    @property
    def title(self) -> str:
        name = NAMES.get(self.dataset, ("", self.dataset))[1]
        return f"{name} {self.n_way}-way {self.k_shot}-shot"

    def baselines(self) -> dict[str, Point]:
        return {p.scale: p for p in self.points if p.baseline}


def _amount(r: dict) -> str:
    """"1,465 of 20,000 episodes" (a capped run), "16,000 pairs", "600 meta-steps" or "–"."""
    units = (("train_episodes", f"{r.get('train_unit') or 'episode'}s"),
             ("train_meta_steps", "meta-steps"), ("train_steps", "steps"),
             ("train_iterations", "iterations"))
    found = [f"{r[key]:,} {unit}" for key, unit in units if r.get(key) is not None]
    return report._cap(r) or (found[0] if found else report.NO_RUN)


def settings(folder: Path) -> list[Setting]:
    """The settings that have a trained point, Omniglot's first, with their points and line."""
    runs: dict[tuple, dict] = defaultdict(dict)  # point -> seed -> latest record
    for path in sorted(folder.glob("*.jsonl")):
        for r in read_records(path.stem, folder=folder):
            if (r.get("scale") not in report.SCALES or r.get("value") is None
                    or (r.get("metric") or "accuracy") != "accuracy"
                    or not type(r.get("n_way")) is type(r.get("k_shot")) is int):
                continue
            variant = re.sub(rf"^{r['n_way']}-way {r['k_shot']}-shot,? ?", "",
                             str(r.get("setting") or r.get("variant") or ""))
            if "n_distractors" in r:
                variant = ", ".join(v for v in (variant, f"{r['n_distractors']} distractor "
                                                "classes") if v)
            method = f"{r['method']}, {variant}" if variant else r["method"]
            seeds = runs[r["dataset"], r["n_way"], r["k_shot"], path.stem, method, r["scale"]]
            if r.get("seed") not in seeds or r["date"] >= seeds[r.get("seed")]["date"]:
                seeds[r.get("seed")] = r
    by_setting: dict[tuple, list[Point]] = defaultdict(list)
    for (dataset, n_way, k_shot, stem, method, scale), seeds in runs.items():
        recs = [seeds[s] for s in sorted(seeds, key=str)]
        costs = [r["snapshot_s"] if r.get("snapshot_s") is not None else r.get("train_wall_s")
                 for r in recs]
        cis = [r.get("ci95") for r in recs]
        by_setting[dataset, n_way, k_shot].append(Point(
            stem, method, scale, fmean(r["value"] for r in recs),
            None if None in cis else fmean(cis), None if None in costs else fmean(costs),
            " / ".join(sorted({_amount(r) for r in recs})), len(recs),
            max(r["date"] for r in recs)))
    out = []
    for (dataset, n_way, k_shot), points in by_setting.items():
        trained = [p for p in points if p.cost is not None]
        lines = [p for p in points if p.cost is None and p.method in NO_TRAINING]
        if trained:
            out.append(Setting(dataset, n_way, k_shot, trained,
                               max(lines, key=lambda p: (p.date, p.chapter), default=None)))
    return sorted(out, key=lambda s: (s.dataset != MAIN_DATASET, s.dataset, s.n_way, s.k_shot))


def numbered(points: list[Point]) -> list[tuple[int | None, Point]]:
    """The points by training cost, each with its number on the figure (None: drawn pale).

    All are numbered when there are at most :data:`MAX_NUMBERED`; otherwise the baseline's,
    then the Pareto front (no cheaper point is as accurate), then each chapter's most accurate
    point, most accurate first, up to :data:`MAX_NUMBERED`."""
    pts = sorted(points, key=lambda p: (p.cost, -p.value, p.method))
    chosen = set(range(len(pts)))
    if len(pts) > MAX_NUMBERED:
        best, front, tops = -math.inf, [], {}
        for i, p in enumerate(pts):
            if p.value > best:
                best = p.value
                front.append(i)
        for i in sorted(range(len(pts)), key=lambda i: -pts[i].value):
            tops.setdefault(pts[i].chapter, i)
        order = [i for i, p in enumerate(pts) if p.baseline] + front + list(tops.values())
        chosen = set(list(dict.fromkeys(order))[:MAX_NUMBERED])
    numbers = {i: n for n, i in enumerate(sorted(chosen), 1)}
    return [(numbers.get(i), p) for i, p in enumerate(pts)]


def _notes(s: Setting, scale: str) -> list[str]:
    notes = [] if any(p.scale == scale for p in s.points) else [f"no `{scale}` run recorded yet"]
    return notes + [f"no `{scale}` run of the pretrained baseline recorded yet"] * (
        scale not in s.baselines())


def _label(fig, ax, rows: list) -> None:
    """Number the numbered points, each label where it overlaps no marker and no other label
    (in points, after the layout), with a leader line when it had to move away."""
    fig.draw_without_rendering()
    at = {id(p): ax.transData.transform((p.cost, p.value)) * 72 / fig.dpi for _, p in rows}
    taken = [(x - 4, y - 4, x + 4, y + 4) for x, y in at.values()]
    for number, p in rows:
        if not number:
            continue
        (x, y), w, h = at[id(p)], 7 * len(str(number)), 10
        spots = [(dx, dy) for d in (4, 14, 26) for dx, dy in
                 ((d, d - 1), (d, -d - h + 1), (-d - w, d - 1), (-d - w, -d - h + 1))]
        dx, dy = next((spot for spot in spots if not any(
            x + spot[0] < b[2] and b[0] < x + spot[0] + w and y + spot[1] < b[3]
            and b[1] < y + spot[1] + h for b in taken)), spots[-4])
        taken.append((x + dx, y + dy, x + dx + w, y + dy + h))
        far = abs(dx) > 10 + w or abs(dy) > 10 + h
        ax.annotate(str(number), (p.cost, p.value), xytext=(dx, dy), textcoords="offset points",
                    fontsize=11, fontweight="bold", ha="left", va="bottom", zorder=4,
                    arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "grey"} if far else None)


def _draw(s: Setting, scale: str, path: Path) -> None:
    from matplotlib import style
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rows = numbered([p for p in s.points if p.scale == scale])
    chance, colour, marker = 100 / s.n_way, report.COLOURS[scale], report.MARKERS[scale]
    rc = {"font.size": 12, "xtick.labelsize": 11, "ytick.labelsize": 11, "legend.fontsize": 10,
          "axes.titlesize": 12, "axes.spines.top": False, "axes.spines.right": False}
    with style.context(["default", rc]):
        fig = Figure(figsize=(6.5, 4.5), layout="constrained")
        ax = fig.subplots()
        handles = [Line2D([], [], ls="", marker=marker, ms=7, color=colour,
                          label=f"our {scale} runs (numbers: the table)")]
        for number, p in rows:  # the baseline's own point is a star on its line
            ax.errorbar(p.cost, p.value, yerr=p.ci95 or 0.0, fmt="*" if p.baseline else marker,
                        ms=13 if p.baseline else 7 if number else 5, capsize=2, lw=1.2,
                        color=colour, alpha=1.0 if number else 0.35, zorder=3)
        for other, b in sorted(s.baselines().items()):
            handles.append(ax.axhline(b.value, color=report.COLOURS[other], lw=1.5,
                                      ls="-" if other == "cpu" else "--",
                                      label=f"pretrained baseline, {other}"
                                      + (" (star: its point)" if other == scale else "")))
        if s.line is not None:
            handles.append(ax.axhline(s.line.value, color="grey", lw=1, ls=":",
                                      label=f"{s.line.method} (no training)"))
        handles.append(ax.axhline(chance, color="black", lw=0.8, label=f"chance ({chance:.3g}%)"))
        # Both scales' figures of a setting share their axes: switching moves only the points.
        costs = [p.cost for p in s.points if p.cost > 0] or [10.0, 1000.0]
        lo, hi = min(costs) / 1.6, max(costs) * 1.6
        if hi / lo < 10:
            lo, hi = math.sqrt(lo * hi / 10), math.sqrt(lo * hi * 10)
        ys = [chance] + [p.value + sign * (p.ci95 or 0.0) for p in s.points + [s.line]
                         if p is not None for sign in (-1, 1)]
        ax.set(xscale="log", xlim=(lo, hi), ylim=(max(0.0, min(ys) - 4), min(104.0, max(ys) + 5)),
               xlabel="training wall time (s, log scale)", ylabel="accuracy (%)")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1
                                                   else f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        title = f"{s.title}, {scale} runs: accuracy against training time"
        ax.set_title(title if len(title) < 66 else title.replace(": ", ":\n"))
        ax.grid(alpha=0.3)
        notes = "\n".join(_notes(s, scale)).replace("`", "")
        fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False,
                   title=notes or None, title_fontproperties={"style": "italic", "size": 10})
        _label(fig, ax, rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=150, metadata={"Software": None})


def write_figures(out_dir: Path, folder: Path) -> list[Path]:
    """Draw every (setting, scale) figure into ``out_dir``; the paths written."""
    written = []
    for s in settings(folder):
        for scale in report.SCALES:
            written.append(out_dir / f"{s.slug}-{scale}.png")
            _draw(s, scale, written[-1])
    return written


def _chapter(stem: str, chapters: Path) -> str:
    title = report.chapter_title(stem, chapters)
    return f"[{title.split(' ')[0]}]({chapters.name}/{stem}.ipynb)" if title else stem


def _panel(s: Setting, scale: str, chapters: Path) -> list[str]:
    rows = numbered([p for p in s.points if p.scale == scale])
    kinds = " and ".join(f"{'solid' if k == 'cpu' else 'dashed'} line: `{k}`"
                         for k in s.baselines())
    against = (f"the pretrained baseline ({kinds})" if kinds
               else "no pretrained baseline (none recorded yet)")
    nn = f", {s.line.method} (dotted)" if s.line else ""
    notes = "".join(f" Note: {n}." for n in _notes(s, scale) if "baseline" not in n)
    lines = ["::::{container} mlmap-panel", f":name: map-{s.slug}-{scale}", "",
             f"```{{figure}} {FIGURES}/{s.slug}-{scale}.png",
             f":alt: Scatter plot of accuracy against training time, {s.title}, {scale} runs",
             ":width: 100%", "",
             f"{s.title}, `{scale}` runs: accuracy on held-out classes against training time, "
             f"one point per method, numbered as in the table below, beside {against}{nn} and "
             f"chance.{notes}", "```", "",
             "| # | method | chapter | accuracy (%) | training | amount |", "|" + "---|" * 6]
    for number, p in rows:
        name = report._escape(p.method).replace("|", "\\|")
        name = (f"**{name}**" if p.baseline else name) + (
            f" (mean of {p.runs} seeds)" if p.runs > 1 else "")
        lines.append(f"| {number or ''} | {name} | {_chapter(p.chapter, chapters)} | "
                     f"{report._cell(vars(p))} | {report._seconds([p.cost])} | {p.amount} |")
    if not rows:
        lines.append(f"| | no `{scale}` run recorded yet | | | | |")
    if s.line is not None:
        lines.append(f"| | {s.line.method} (no training) | {_chapter(s.line.chapter, chapters)}"
                     f" | {report._cell(vars(s.line))} | none | |")
    return lines + [f"| | chance | | {100 / s.n_way:.1f} | | |", "::::", ""]


_SCRIPT = """<script>
document.addEventListener("DOMContentLoaded", function () {
  var setting = document.getElementById("mlmap-setting");
  var scale = document.getElementById("mlmap-scale");
  function show() {
    var id = "map-" + setting.value + "-" + scale.value;
    document.querySelectorAll(".mlmap-panel").forEach(function (p) {
      p.style.display = p.id === id ? "" : "none"; });
  }
  setting.addEventListener("change", show);
  scale.addEventListener("change", show);
  document.getElementById("mlmap-controls").hidden = false;
  show();
});
</script>"""


def build(folder: Path | None = None, chapters: Path | None = None) -> str:
    """The page's markdown, from the records in ``folder`` (default: the book's ``results/``)
    and the chapters' titles in ``chapters`` (default: ``chapters/`` beside ``folder``)."""
    root = repo_root() or Path.cwd()
    folder = folder or root / "results"
    chapters = chapters or folder.parent / "chapters"
    found = settings(folder)
    link = _chapter(BASELINE_CHAPTER, chapters)
    link = f" ({link})" if link != BASELINE_CHAPTER else ""
    lines = [
        "# Map of the book: accuracy against training cost",
        "",
        "Every method of the book on one map per setting: accuracy (%) on held-out classes, "
        "± the 95% confidence interval over test episodes, against the wall time its training "
        "took (log scale). One point per chapter, method, scale and setting: where a method was "
        "run several times, the point averages accuracy, interval and training time over the "
        "latest record of each seed (or the latest record, for runs without a seed), and the "
        "table says how many seeds. A snapshot of a longer run (\"MAML after 60 s\") sits at "
        "the training time of the snapshot. Methods without training are not points: pixel "
        "(or log-mel) nearest neighbour is a dotted line, chance a thin black one.",
        "",
        f"The lines across each figure are the pretrained baseline of the strong-baselines "
        f"chapter{link}: a conv-4 pretrained to classify all training classes at once, then "
        "nearest centroid on its L2-normalised features; it is also a point at its own training "
        "time. `cpu` runs are shortened runs on 2 CPU cores (their times are upper bounds: other "
        "work may have run beside them), `full` runs use the papers' settings on a GPU: their "
        "seconds are not comparable, and each scale has its own figure. Where a figure has more "
        f"than {MAX_NUMBERED} points, only the baseline's, those that no cheaper point beats, "
        f"and each chapter's most accurate carry a number (at most {MAX_NUMBERED}); the others "
        "are pale and listed without one. Quick (CI) runs are never shown. This page and its "
        "figures are generated from `results/` by `python -m mlbook_utils.report`, like the "
        "[reproduction table](reproduction.md).",
        "",
    ]
    if not any(s.baselines() for s in found):
        lines += ["No run of the pretrained baseline has been recorded yet: each figure says "
                  "so, and its line and point will appear when one is.", ""]
    if not found:
        return "\n".join(lines + ["No accuracy with a training time has been recorded yet.", ""])
    options = "".join(f'<option value="{s.slug}">{s.title}</option>' for s in found)
    scales = "".join(f'<option value="{k}">{k}</option>' for k in report.SCALES)
    lines += ["```{raw} html", '<div id="mlmap-controls" style="margin: 1em 0" hidden>',
              f'<label>Setting <select id="mlmap-setting">{options}</select></label>',
              f'<label>Scale <select id="mlmap-scale">{scales}</select></label>',
              "</div>", _SCRIPT, "```", ""]
    for s in found:
        for scale in report.SCALES:
            lines += _panel(s, scale, chapters)
    return "\n".join(re.sub(r"[ \t]+$", "", line) for line in lines)


def update(root: Path, check: bool = False) -> int:
    """Write ``book_map.md`` and its figures at ``root``, or (``check``) say whether they are
    up to date; the exit status."""
    out, figure_dir = root / PAGE, root / FIGURES
    text = build(root / "results", root / "chapters")
    if check:
        missing = [f for f in report.figures_used(text) if not (root / f).exists()]
        if not out.exists() or out.read_text(encoding="utf-8") != text or missing:
            print(f"{out} is out of date or lacks figures: run `python -m mlbook_utils.report`")
            return 1
        print(f"{out} is up to date")
        return 0
    out.write_text(text, encoding="utf-8")
    written = write_figures(figure_dir, root / "results")
    for stale in sorted(figure_dir.glob("*.png")):
        if stale not in written:
            stale.unlink()
    print(f"wrote {out} and {len(written)} figures in {figure_dir}")
    return 0
