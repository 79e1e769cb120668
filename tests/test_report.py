"""The reproduction appendix is generated from results/ and never filled by hand."""

import json
import tomllib

from mlbook_utils import report
from mlbook_utils.evaluation import repo_root


def test_committed_page_matches_the_records():
    root = repo_root(report.Path(__file__).resolve().parent)
    page = (root / "reproduction.md").read_text(encoding="utf-8")
    assert page == report.build(root / "results", root / "chapters"), (
        "reproduction.md is out of date: run `python -m mlbook_utils.report`"
    )
    missing = [f for f in report.figures_used(page) if not (root / f).is_file()]
    assert not missing, f"figures missing: {missing}: run `python -m mlbook_utils.report`"


def _rec(method, scale, acc, n_way=5, k_shot=1, metric="accuracy", ci95=0.3,
         dataset="omniglot-vinyals-test", **extra):
    return {"method": method, "dataset": dataset, "n_way": n_way,
            "k_shot": k_shot, "metric": metric, "value": acc, "ci95": ci95, "episodes": 1000,
            "scale": scale, "device": "CPU (2 cores)", "backend": "tensorflow", "wall_s": 1.0,
            "date": f"2026-01-0{int(acc) % 9 + 1}T00:00:00+00:00", **extra}


def _write(folder, stem, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def _section(page, stem):
    """The markdown of one chapter's section: from its heading to the next one."""
    parts = page.split("\n## ")
    found = [p for p in parts if f"{stem}" in p.splitlines()[0]]
    assert len(found) == 1, f"one section for {stem}: {[p.splitlines()[0] for p in parts]}"
    return found[0]


def _rows(section, method):
    """The rows under a method's heading row, up to the next method (or the table's end)."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| **{method}**"))
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("| ") or line.startswith("| **"):
            break
        rows.append(line)
    return rows


def test_each_chapter_gets_its_own_section_headed_by_its_linked_title(tmp_path):
    results, chapters = tmp_path / "results", tmp_path / "chapters"
    _write(results, "03_1_x", [_rec("prototypical network", "cpu", 97.2)])
    _write(results, "04_1_y", [_rec("relation network", "cpu", 99.1)])
    chapters.mkdir()
    notebook = {"cells": [{"cell_type": "code", "source": "# not a title"},
                          {"cell_type": "markdown", "source": ["# 3.1 Prototypes\n", "\n", "x"]}]}
    (chapters / "03_1_x.ipynb").write_text(json.dumps(notebook))
    page = report.build(results)
    assert "\n## [3.1 Prototypes](chapters/03_1_x.ipynb)\n" in page
    assert "\n## 04_1_y\n" in page, "a chapter without a notebook is headed by its stem, unlinked"
    assert page.index("## [3.1") < page.index("## 04_1_y")
    first, second = _section(page, "3.1 Prototypes"), _section(page, "04_1_y")
    assert "prototypical network" in first and "relation network" not in first
    assert "relation network" in second and "prototypical network" not in second
    for section in (first, second):
        assert "| method | 5w1s |" in section, "each chapter has its own compact table"


def test_rows_show_ours_the_paper_and_say_no_run(tmp_path):
    rows = [_rec("prototypical network", "cpu", 97.2, train_wall_s=300.0),
            _rec("prototypical network", "quick", 80.0),
            _rec("my new method", "full", 91.0, n_way=20)]
    _write(tmp_path, "03_1_x", rows)
    page = report.build(tmp_path)
    section = _section(page, "03_1_x")
    assert "| method | 5w1s | 20w1s |" in section, "the settings are the columns"
    proto = _rows(section, "prototypical network")
    assert proto == ["| ours, cpu | 97.2 ±0.3 | – |",
                     "| ours, full | – | – |",  # no full run: the cell says so
                     "| paper | 98.8 | 96.0 |"]
    assert _rows(section, "my new method") == ["| ours, cpu | – | – |",
                                               "| ours, full | – | 91.0 ±0.3 |"]
    assert "prototypical network: `cpu` 300 s" in section, "the wall time is in the notes"
    assert "80.0" not in page, "quick runs are never shown"


def test_a_scale_with_no_run_in_the_chapter_is_said_once(tmp_path):
    _write(tmp_path, "01_1_x", [_rec("pixel nearest neighbour", "cpu", 43.5)])
    section = _section(report.build(tmp_path), "01_1_x")
    assert "ours, full" not in section
    assert "No `full` run of this table has been recorded yet." in section


def test_quick_records_are_never_shown(tmp_path):
    _write(tmp_path, "03_1_x", [_rec("prototypical network", "quick", 80.0),
                                _rec("SGD optimizer", "quick", 0.5, metric="final_loss")])
    _write(tmp_path, "04_1_y", [_rec("relation network", "cpu", 97.0)])
    page = report.build(tmp_path)
    assert "03_1_x" not in page and "80.0" not in page and "SGD" not in page


def test_paper_lookup_by_method_and_data_set():
    omniglot = "omniglot-vinyals-test"
    assert report.paper_for("Prototypical network (learned metric)", omniglot).value(5, 1) == 98.8
    assert report.paper_for("conv-4 random init (untrained) nearest prototype", omniglot) is None
    lstm = report.paper_for("LSTM meta-learner", omniglot)
    assert lstm.figures == {} and "mini-ImageNet" in lstm.note
    assert report.paper_for("first-order MAML", omniglot).value(20, 1) == 89.4
    assert report.paper_for("MAML", omniglot).value(20, 1) == 95.8
    assert report.paper_for("vanilla convnet", omniglot) is None, "ANIL is a whole word"
    assert report.paper_for("MAML++", omniglot) is None, "MAML++ is not MAML"
    snell = report.paper_for("prototypical network", omniglot)
    assert snell.figures[(5, 1)] == ("98.8", "C") and snell.figures[(20, 1)] == ("96.0", "C")
    # A variant of the data set is another data set: no paper ran it.
    assert report.paper_for("prototypical network", f"{omniglot} (5 distractor classes)") is None


def test_an_orl_faces_pixel_record_gets_no_omniglot_figure(tmp_path):
    assert report.paper_for("pixel nearest neighbour", "omniglot-vinyals-test").value(5, 1) == 41.7
    assert report.paper_for("pixel nearest neighbour", "orl-unseen-people") is None
    assert report.paper_for("siamese contrastive conv4-32", "orl-unseen-people") is None
    assert report.paper_for("siamese contrastive conv4-32 log-mel", "fsdd-unseen-speakers") is None
    _write(tmp_path, "02_1_x", [_rec("pixel nearest neighbour", "cpu", 93.3,
                                     dataset="orl-unseen-people")])
    page = report.build(tmp_path)
    rows = _rows(_section(page, "02_1_x"), "pixel nearest neighbour")
    assert not any(r.startswith("| paper") for r in rows)
    assert "41.7" not in page
    assert not report.figures_used(page), "nothing to compare: no figure"


def test_unconfirmed_paper_figures_are_marked_and_listed_once(tmp_path):
    _write(tmp_path, "07_1_x", [_rec("Meta-SGD", "cpu", 90.0, n_way=20),
                                _rec("relation network", "cpu", 93.1, n_way=20)])
    page = report.build(tmp_path)
    assert page.count("not yet confirmed") == 1
    assert "- Li et al. 2017 (meta-sgd, omniglot-vinyals-test): 20w1s 95.93" in page
    assert "Sung et al. 2018 (relation" not in page, "confirmed figures are not listed"
    section = _section(page, "07_1_x")
    assert _rows(section, "Meta-SGD")[-1] == "| paper | 95.93* |"
    assert _rows(section, "relation network")[-1] == "| paper | 97.6 |"


def test_capped_and_shared_runs_are_described_in_the_notes(tmp_path):
    gpu = {"device": "NVIDIA H200", "backend": "jax"}
    rows = [_rec("relation network", "full", 98.4, train_wall_s=200.0, train_episodes=13550,
                 train_episodes_planned=20000, concurrent_runs=6, **gpu),
            _rec("relation network", "cpu", 95.2, n_way=20, train_wall_s=212.0,
                 train_episodes=1100, train_episodes_planned=1100)]
    _write(tmp_path, "04_1_x", rows)
    section = _section(report.build(tmp_path), "04_1_x")
    notes = next(line for line in section.splitlines() if line.startswith("Notes."))
    assert "`full` on NVIDIA H200, jax" in notes and "`cpu` on CPU (2 cores), tensorflow" in notes
    relation = notes.split("relation network: ")[1]
    cpu, full = relation.split("`full`")
    assert "time cap" not in cpu and "sharing" not in cpu
    assert "time cap: 13,550 of 20,000 episodes" in full
    assert "one of 6 runs sharing the NVIDIA H200" in full
    for row in _rows(section, "relation network"):
        assert "time cap" not in row and "H200" not in row, "long things stay out of the table"


def test_each_seed_of_a_paired_comparison_keeps_its_own_row(tmp_path):
    """Chapter 8.1 records one run per seed under one method name: every seed is shown, not
    only the latest."""
    rows = [_rec("MAML", "cpu", 81.6, seed=0), _rec("MAML", "cpu", 81.1, seed=1)]
    _write(tmp_path, "08_1_x", rows)
    section = _section(report.build(tmp_path), "08_1_x")
    assert "seed 0" in section and "seed 1" in section
    assert "81.6" in section and "81.1" in section


def test_other_metrics_are_named_and_kept_out_of_the_accuracy_table(tmp_path):
    rows = [_rec("SGD optimizer", "cpu", 0.947, n_way=None, k_shot=None, metric="final_loss",
                 ci95=0.112),
            _rec("Adam optimizer", "cpu", 0.5, n_way=10, k_shot=None, metric="final_loss",
                 ci95=None),
            _rec("prototypical network", "cpu", 97.2, ci95=None),
            _rec("siamese", "cpu", 90.6, n_way=None, k_shot=None, task="verification")]
    _write(tmp_path, "01_3_x", rows)
    section = _section(report.build(tmp_path), "01_3_x")
    table, other = section.split("Other measurements")
    assert "**final_loss** on omniglot-vinyals-test, lower is better:" in other
    assert "| SGD optimizer | 0.947 ±0.11 | – |" in other
    assert "| Adam optimizer | 0.5 (no CI) | – |" in other, "a null ci95 (one episode) is left out"
    assert "**accuracy (%), verification** on omniglot-vinyals-test:" in other
    assert "| siamese | 90.6 ±0.3 | – |" in other
    assert "optimizer" not in table.split("Notes.")[0] and "| **siamese**" not in table
    assert _rows(table, "prototypical network")[0] == "| ours, cpu | 97.2 (no CI) |"


def test_old_form_records_are_still_shown(tmp_path):
    old = {k: v for k, v in _rec("relation network", "cpu", 99.1).items()
           if k not in ("metric", "value")}
    _write(tmp_path, "04_1_x", [{**old, "accuracy": 99.1}])
    rows = _rows(_section(report.build(tmp_path), "04_1_x"), "relation network")
    assert rows[0] == "| ours, cpu | 99.1 ±0.3 |"


def test_figures_are_drawn_deterministically_and_only_where_there_is_a_comparison(tmp_path):
    results = tmp_path / "results"
    _write(results, "03_1_x", [_rec("prototypical network", "cpu", 97.2),
                               _rec("prototypical network", "full", 98.5, k_shot=5)])
    _write(results, "03_2_y", [_rec("my new method", "cpu", 90.0)])
    page = report.build(results)
    assert report.figures_used(page) == [f"{report.FIGURES}/03_1_x.png"]
    first = report.write_figures(tmp_path / "a", results)
    second = report.write_figures(tmp_path / "b", results)
    assert [p.name for p in first] == ["03_1_x.png"]
    png = first[0].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png == second[0].read_bytes()
    width = int.from_bytes(png[16:20], "big")
    # 4.6 in at 150 dpi: at a phone's 360 px the 12-point text is still about 13 px high.
    assert width == round(4.6 * 150), "4.6 in wide at 150 dpi"
    assert b"Software" not in png and b"Matplotlib" not in png, "no version in the file"


def test_check_says_when_the_page_or_a_figure_is_missing(tmp_path, capsys):
    root = repo_root(report.Path(__file__).resolve().parent)
    out = tmp_path / "page.md"
    assert report.main(["--check", "--out", str(out)]) == 1
    page = report.build(root / "results", root / "chapters")
    out.write_text(page, encoding="utf-8")
    used = report.figures_used(page)
    assert report.main(["--check", "--out", str(out)]) == (1 if used else 0)
    for name in used:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert report.main(["--check", "--out", str(out)]) == 0


def test_published_figures_ship_with_the_package():
    root = repo_root(report.Path(__file__).resolve().parent)
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    data = pyproject["tool"]["setuptools"]["package-data"]["mlbook_utils"]
    assert report.PUBLISHED_CSV.name in data, "a reader's pip install would lack the figures"
    papers = report.published()
    assert all(status in ("C", "R") for p in papers.values() for _, status in p.figures.values())
    assert {p.source for p in papers.values()} >= {"Snell et al. 2017", "Sung et al. 2018"}


def test_metrics_sort_by_the_numbers_in_their_names():
    names = ["bit_error, length 100", "bit_error, length 20", "bit_error, length 10", "accuracy"]
    assert sorted(names, key=report._natural) == [
        "accuracy", "bit_error, length 10", "bit_error, length 20", "bit_error, length 100"]
