"""The headless runner: method list, and an interrupted run that resumes from its checkpoint."""

import json

import pytest

from mlbook_utils import reproduce


def test_list_shows_methods_and_settings(capsys):
    assert reproduce.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "protonet" in out and "pixel-nn" in out and "protonet full" in out


def test_resume_after_an_interruption(data_dir, tmp_path, capsys):
    pytest.importorskip("keras")
    from mlbook_utils import data, metric

    small = data.load_omniglot("background").subset(range(30))
    settings = metric.settings_for("quick", n_way=5, k_shot=1, n_query=2, episodes=4,
                                   decay_every=2, time_budget_s=None)
    ckpt = tmp_path / "ckpt"
    _, state, done = reproduce.train_with_checkpoints(small, settings, None, ckpt, False)
    assert done == 4 and state["segment"] == 2
    assert (ckpt / "last.weights.h5").exists()
    # Pretend the run died after its first segment: it must train only the second one.
    saved = json.loads((ckpt / "state.json").read_text())
    (ckpt / "state.json").write_text(json.dumps({**saved, "segment": 1}))
    _, state, done = reproduce.train_with_checkpoints(small, settings, None, ckpt, False)
    assert "resuming after segment 1 of 2" in capsys.readouterr().out
    assert done == 2 and state["segment"] == 2
    # A finished run resumes to nothing left to train.
    _, state, done = reproduce.train_with_checkpoints(small, settings, None, ckpt, False)
    assert done == 0
