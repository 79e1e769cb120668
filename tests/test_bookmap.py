"""The map of the book (accuracy against training cost) is generated from results/ as well."""

import json
import re

import yaml

from mlbook_utils import bookmap, report
from mlbook_utils.evaluation import repo_root

ROOT = repo_root(report.Path(__file__).resolve().parent)


def test_committed_page_matches_the_records():
    page = (ROOT / bookmap.PAGE).read_text(encoding="utf-8")
    assert page == bookmap.build(ROOT / "results", ROOT / "chapters"), (
        "book_map.md is out of date: run `python -m mlbook_utils.report`"
    )
    missing = [f for f in report.figures_used(page) if not (ROOT / f).is_file()]
    assert not missing, f"figures missing: {missing}: run `python -m mlbook_utils.report`"


def test_the_page_is_in_the_appendix_after_the_reproduction_table():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    appendix = next(p for p in toc["parts"] if p["caption"] == "Appendix")
    files = [c["file"] for c in appendix["chapters"]]
    assert files[files.index("reproduction") + 1] == "book_map"


def _rec(method, scale, acc, n_way=5, k_shot=1, day=1, train_wall_s=100.0,
         dataset="omniglot-vinyals-test", **extra):
    rec = {"method": method, "dataset": dataset, "n_way": n_way, "k_shot": k_shot,
           "metric": "accuracy", "value": acc, "ci95": 0.5, "episodes": 1000, "scale": scale,
           "device": "CPU (2 cores)", "backend": "tensorflow", "wall_s": 1.0,
           "date": f"2026-01-{day:02d}T00:00:00+00:00", **extra}
    if train_wall_s is not None:
        rec["train_wall_s"] = train_wall_s
    return rec


def _write(folder, stem, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def _panel(page, name):
    """The markdown of one panel (figure, caption, table) of the explorer."""
    found = re.findall(rf"^::::{{container}} mlmap-panel\n:name: {name}\n(.*?)^::::$", page,
                       flags=re.M | re.S)
    assert len(found) == 1, f"one panel {name}"
    return found[0]


def _row(panel, method):
    rows = [line for line in panel.splitlines() if line.startswith("| ") and method in line]
    assert len(rows) == 1, f"one row of {method}: {rows}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_a_point_averages_the_latest_record_of_each_seed(tmp_path):
    _write(tmp_path, "08_1_x", [
        _rec("MAML", "cpu", 50.0, day=1, seed=0, train_wall_s=10.0),  # replaced by day 2's
        _rec("MAML", "cpu", 80.0, day=2, seed=0, train_wall_s=40.0, train_meta_steps=600),
        _rec("MAML", "cpu", 82.0, day=2, seed=1, train_wall_s=60.0, train_meta_steps=600),
        _rec("Reptile", "cpu", 70.0, day=1, train_episodes=100),
        _rec("Reptile", "cpu", 75.0, day=3, train_episodes=200),  # a re-run: the latest counts
    ])
    panel = _panel(bookmap.build(tmp_path), "map-omniglot-5w1s-cpu")
    assert _row(panel, "MAML") == ["1", "MAML (mean of 2 seeds)", "08_1_x", "81.0 ±0.5", "50 s",
                                   "600 meta-steps"]
    assert _row(panel, "Reptile") == ["2", "Reptile", "08_1_x", "75.0 ±0.5", "100 s",
                                      "200 episodes"]
    assert "50.0" not in panel and "70.0" not in panel


def test_only_trained_accuracy_records_of_cpu_and_full_are_points(tmp_path):
    _write(tmp_path, "01_1_x", [_rec("pixel nearest neighbour", "cpu", 43.5, train_wall_s=None),
                                _rec("pixel nearest neighbour", "cpu", 64.6, k_shot=5,
                                     train_wall_s=None)])
    _write(tmp_path, "03_1_x", [
        _rec("prototypical network", "cpu", 97.0),
        _rec("prototypical network", "quick", 11.1),
        _rec("untrained conv-4", "cpu", 60.5, train_wall_s=None),
        _rec("prototypical network", "cpu", 22.2, n_way=None, k_shot=None, task="verification"),
        _rec("SGD optimizer", "cpu", 0.9, metric="final_loss"),
        _rec("prototypical network", "cpu", 33.3, n_way=5.0),  # not an integer setting
    ])
    page = bookmap.build(tmp_path)
    for absent in ("11.1", "untrained", "22.2", "SGD", "33.3", "5-way 5-shot"):
        assert absent not in page, f"{absent} is not on the map"
    panel = _panel(page, "map-omniglot-5w1s-cpu")
    assert _row(panel, "pixel nearest neighbour") == [
        "", "pixel nearest neighbour (no training)", "01_1_x", "43.5 ±0.5", "none", ""]
    assert _row(panel, "chance") == ["", "chance", "", "20.0", "", ""]
    assert "pixel nearest neighbour (dotted)" in panel


def test_settings_come_omniglot_first_and_each_has_a_panel_per_scale(tmp_path):
    _write(tmp_path, "02_1_x", [_rec("siamese", "cpu", 90.0, dataset="orl-unseen-people"),
                                _rec("siamese", "cpu", 88.0, n_way=10,
                                     dataset="orl-unseen-people")])
    _write(tmp_path, "03_1_x", [_rec("protonet", "cpu", 96.0, n_way=20, k_shot=5),
                                _rec("protonet", "full", 99.0, n_way=5, k_shot=5),
                                _rec("protonet", "cpu", 97.0, n_way=20, k_shot=1),
                                _rec("protonet", "cpu", 98.0)])
    found = bookmap.settings(tmp_path)
    assert [s.slug for s in found] == ["omniglot-5w1s", "omniglot-5w5s", "omniglot-20w1s",
                                       "omniglot-20w5s", "orl-faces-5w1s",
                                       "orl-faces-10w1s"]
    page = bookmap.build(tmp_path)
    options = re.findall(r'<option value="([\w-]+)">', page)
    assert options == [s.slug for s in found] + ["cpu", "full"]
    for s in found:
        for scale in ("cpu", "full"):
            _panel(page, f"map-{s.slug}-{scale}")
    empty = _panel(page, "map-omniglot-5w1s-full")
    assert "| | no `full` run recorded yet | | | | |" in empty
    assert "Note: no `full` run recorded yet." in empty
    assert "figure} book_map_figures/omniglot-5w1s-full.png" in empty
    used = report.figures_used(page)
    assert len(used) == 2 * len(found) and all(u.startswith(bookmap.FIGURES) for u in used)


def test_the_pretrained_baseline_is_a_line_and_a_point_and_its_absence_is_said(tmp_path):
    _write(tmp_path, "03_1_x", [_rec("protonet", "cpu", 98.0, n_way=20),
                                _rec("protonet", "cpu", 97.0)])
    page = bookmap.build(tmp_path)
    assert "No run of the pretrained baseline has been recorded yet" in page
    assert "beside no pretrained baseline (none recorded yet)" in _panel(
        page, "map-omniglot-5w1s-cpu")
    _write(tmp_path, bookmap.BASELINE_CHAPTER, [
        _rec(bookmap.BASELINE_METHOD, "cpu", 96.0, train_wall_s=30.0),
        _rec(bookmap.BASELINE_METHOD, "full", 98.5, train_wall_s=20.0),
        _rec("pretrained conv-4 + logistic regression", "cpu", 96.5, train_wall_s=35.0)])
    page = bookmap.build(tmp_path)
    assert "No run of the pretrained baseline" not in page
    cpu = _panel(page, "map-omniglot-5w1s-cpu")
    assert "the pretrained baseline (solid line: `cpu` and dashed line: `full`)" in cpu
    assert _row(cpu, bookmap.BASELINE_METHOD)[1] == f"**{bookmap.BASELINE_METHOD}**"
    assert _row(cpu, "logistic regression")[1] == "pretrained conv-4 + logistic regression"
    assert "pretrained baseline" not in _panel(page, "map-omniglot-20w1s-cpu").split("```")[2], (
        "a setting without the baseline has no baseline row")
    assert "beside no pretrained baseline" in _panel(page, "map-omniglot-20w1s-cpu")
    assert bookmap.settings(tmp_path)[0].baselines()["full"].value == 98.5


def test_at_most_twelve_points_are_numbered_the_baseline_and_the_front_first(tmp_path):
    # 14 methods of one chapter, each cheaper one better: only the cheapest is on the front.
    rows = [_rec(f"method {i:02d}", "cpu", 90.0 - i, train_wall_s=10.0 + i) for i in range(14)]
    _write(tmp_path, "06_1_x", rows)
    _write(tmp_path, "07_1_y", [_rec("slow but good", "cpu", 95.0, train_wall_s=500.0),
                                _rec("slow", "cpu", 70.0, train_wall_s=600.0)])
    _write(tmp_path, bookmap.BASELINE_CHAPTER, [
        _rec(bookmap.BASELINE_METHOD, "cpu", 60.0, train_wall_s=50.0)])
    found = bookmap.settings(tmp_path)[0]
    marks = bookmap.numbered([p for p in found.points if p.scale == "cpu"])
    assert len(marks) == 17
    chosen = [p.method for n, p in marks if n is not None]
    assert len(chosen) <= bookmap.MAX_NUMBERED
    assert chosen == ["method 00", bookmap.BASELINE_METHOD, "slow but good"], (
        "the baseline, the front and each chapter's best; nothing else")
    assert [n for n, _ in marks if n is not None] == [1, 2, 3], "numbered by training time"
    costs = [p.cost for _, p in marks]
    assert costs == sorted(costs)
    few = bookmap.numbered([p for p in found.points if p.method.startswith("slow")])
    assert [n for n, _ in few] == [1, 2], "a figure with few points numbers them all"


def test_variants_stay_apart_and_a_snapshot_sits_at_its_own_time(tmp_path):
    _write(tmp_path, "03_1_x", [
        _rec("protonet + soft k-means", "cpu", 99.0, n_distractors=0),
        _rec("protonet + soft k-means", "cpu", 97.7, n_distractors=5)])
    _write(tmp_path, "08_1_x", [
        _rec("MAML", "cpu", 81.0, seed=0, setting="5-way 1-shot"),
        _rec("MAML", "cpu", 74.0, seed=0, setting="5-way 1-shot, 2 of 8 tasks shuffled")])
    _write(tmp_path, "06_1_x", [_rec("MAML after 60 s", "cpu", 88.6, train_wall_s=604.8,
                                     snapshot_s=60)])
    panel = _panel(bookmap.build(tmp_path), "map-omniglot-5w1s-cpu")
    assert _row(panel, "0 distractor")[1:4:2] == ["protonet + soft k-means, 0 distractor classes",
                                                 "99.0 ±0.5"]
    assert _row(panel, "5 distractor")[3] == "97.7 ±0.5"
    assert _row(panel, "shuffled")[1] == "MAML, 2 of 8 tasks shuffled"
    assert _row(panel, "| MAML |")[3] == "81.0 ±0.5", "the restated setting is no variant"
    assert _row(panel, "after 60 s")[4] == "60 s", "a snapshot is placed at its own time"


def test_chapters_are_linked_by_their_number(tmp_path):
    results, chapters = tmp_path / "results", tmp_path / "chapters"
    _write(results, "03_1_x", [_rec("protonet", "cpu", 97.0)])
    chapters.mkdir()
    notebook = {"cells": [{"cell_type": "markdown", "source": "# 3.1 Prototypes\n"}]}
    (chapters / "03_1_x.ipynb").write_text(json.dumps(notebook))
    panel = _panel(bookmap.build(results), "map-omniglot-5w1s-cpu")
    assert _row(panel, "protonet")[2] == "[3.1](chapters/03_1_x.ipynb)"


def test_figures_are_drawn_deterministically_and_stale_ones_deleted(tmp_path, capsys):
    root = tmp_path / "book"
    _write(root / "results", "03_1_x", [_rec("protonet", "cpu", 97.0),
                                        _rec("relation", "full", 98.0, train_wall_s=50.0)])
    _write(root / "results", bookmap.BASELINE_CHAPTER, [
        _rec(bookmap.BASELINE_METHOD, "cpu", 96.0, train_wall_s=30.0)])
    (root / "chapters").mkdir()
    stale = root / bookmap.FIGURES / "old.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    assert bookmap.update(root, check=True) == 1, "no page yet"
    assert bookmap.update(root) == 0
    assert bookmap.update(root, check=True) == 0
    assert not stale.exists(), "a PNG the page no longer uses is deleted"
    first = root / bookmap.FIGURES / "omniglot-5w1s-cpu.png"
    png = first.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == round(6.5 * 150), "6.5 in wide at 150 dpi"
    assert int.from_bytes(png[20:24], "big") == round(4.5 * 150), "4.5 in high"
    assert b"Software" not in png and b"Matplotlib" not in png, "no version in the file"
    again = bookmap.write_figures(tmp_path / "again", root / "results")
    assert [p.name for p in again] == ["omniglot-5w1s-cpu.png", "omniglot-5w1s-full.png"]
    assert again[0].read_bytes() == png
    first.unlink()
    assert bookmap.update(root, check=True) == 1, "a missing figure is stale"
