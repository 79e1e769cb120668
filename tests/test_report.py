"""The reproduction table is generated from results/ and never filled by hand."""

import json

from mlbook_utils import report
from mlbook_utils.evaluation import repo_root


def test_committed_page_matches_the_records():
    root = repo_root(report.Path(__file__).resolve().parent)
    page = (root / "reproduction.md").read_text()
    assert page == report.build(root / "results"), (
        "reproduction.md is out of date: run `python -m mlbook_utils.report`"
    )


def _rec(method, scale, acc, n_way=5, k_shot=1, metric="accuracy", ci95=0.3, **extra):
    return {"method": method, "dataset": "omniglot-vinyals-test", "n_way": n_way,
            "k_shot": k_shot, "metric": metric, "value": acc, "ci95": ci95, "episodes": 1000,
            "scale": scale, "device": "CPU (2 cores)", "backend": "tensorflow", "wall_s": 1.0,
            "date": f"2026-01-0{int(acc) % 9 + 1}T00:00:00+00:00", **extra}


def test_rows_show_paper_ours_and_no_run(tmp_path):
    rows = [_rec("prototypical network", "cpu", 97.2, train_wall_s=300.0),
            _rec("prototypical network", "quick", 80.0),
            _rec("my new method", "full", 91.0, n_way=20)]
    (tmp_path / "03_1_x.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    page = report.build(tmp_path)
    proto = next(line for line in page.splitlines() if "prototypical network" in line)
    assert "| 98.8 |" in proto and "97.2 ± 0.3" in proto and "300 s" in proto
    assert "no run" in proto, "the full cell has no run and must say so"
    assert "80.0" not in page, "quick runs are never shown"
    new = next(line for line in page.splitlines() if "my new method" in line)
    assert "| - |" in new and "91.0 ± 0.3" in new


def test_paper_lookup():
    assert report.paper_for("Prototypical network (learned metric)")[2][(5, 1)] == 98.8
    assert report.paper_for("conv-4 random init (untrained) nearest prototype") is None
    assert report.paper_for("LSTM meta-learner")[2] == {}


def test_capped_and_shared_runs_say_so(tmp_path):
    rows = [_rec("relation network", "full", 98.4, train_wall_s=200.0, train_episodes=13550,
                 train_episodes_planned=20000, concurrent_runs=6),
            _rec("relation network", "cpu", 95.2, n_way=20, train_wall_s=212.0,
                 train_episodes=1100, train_episodes_planned=1100)]
    (tmp_path / "04_1_x.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    lines = [line for line in report.build(tmp_path).splitlines() if "relation network" in line]
    capped = next(line for line in lines if "5-way" in line)
    assert "time cap: 13,550 of 20,000 episodes" in capped
    assert "one of 6 runs sharing it" in capped
    whole = next(line for line in lines if "20-way" in line)
    assert "time cap" not in whole and "sharing" not in whole


def test_other_metrics_are_named_and_kept_out_of_the_accuracy_table(tmp_path):
    rows = [_rec("SGD optimizer", "cpu", 0.947, n_way=None, k_shot=None, metric="final_loss",
                 ci95=0.112),
            _rec("Adam optimizer", "cpu", 0.5, n_way=10, k_shot=None, metric="final_loss",
                 ci95=None),
            _rec("prototypical network", "cpu", 97.2, ci95=None)]
    (tmp_path / "01_3_x.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    page = report.build(tmp_path)
    table, other = page.split("## Other measurements")
    sgd = next(line for line in other.splitlines() if "SGD optimizer" in line)
    assert "| final_loss | 0.947 ± 0.11 |" in sgd
    adam = next(line for line in other.splitlines() if "Adam optimizer" in line)
    assert "| final_loss | 0.5 (no CI) |" in adam, "a null ci95 (one episode) is left out"
    assert "optimizer" not in table
    proto = next(line for line in table.splitlines() if "prototypical network" in line)
    assert "97.2 (no CI)" in proto


def test_old_form_records_are_still_shown(tmp_path):
    old = {k: v for k, v in _rec("relation network", "cpu", 99.1).items()
           if k not in ("metric", "value")}
    (tmp_path / "04_1_x.jsonl").write_text(json.dumps({**old, "accuracy": 99.1}) + "\n")
    line = next(x for x in report.build(tmp_path).splitlines() if "relation network" in x)
    assert "99.1 ± 0.3" in line
