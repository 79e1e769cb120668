"""The headless runner: method list, overrides, and an interrupted run that resumes."""

import json

import pytest

from mlbook_utils import registry, reproduce


def test_list_shows_every_method_of_chapters_1_to_4(capsys):
    assert reproduce.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("pixel-nn", "metric-space", "learned-optimizer", "lstm-meta-learner",
                 "siamese", "protonet", "protonet-ablation", "protonet-semisupervised",
                 "relation", "matching", "matching-no-fce"):
        assert f"  {name} " in out, name
    assert "protonet full:" in out


def test_command_line_overrides_reach_the_settings():
    method = registry.get("relation")
    parser_args = ["relation", "--scale", "quick", "--episodes", "7", "--train-episodes", "3",
                   "--time-budget", "5", "--set", "train_query=2", "--set", "lr_schedule=halving"]
    import argparse

    ns = argparse.Namespace(scale="quick", episodes=7, n_query=None, train_episodes=3,
                            time_budget=5.0, meta_batch_size=None, steps_per_execution=None,
                            dataset=None, trainval=False, checkpoint_dir=None,
                            set=parser_args[-3::2])
    over = reproduce.overrides_from(ns, method)
    assert over == {"test_episodes": 7, "train_episodes": 3, "time_budget_s": 5.0,
                    "train_query": 2, "lr_schedule": "halving"}
    # protonet names its training length "episodes": the alias maps the common flag onto it.
    over = reproduce.overrides_from(ns, registry.get("protonet"))
    assert over["episodes"] == 3 and "train_episodes" not in over


def test_unknown_settings_fail_loudly():
    with pytest.raises(ValueError, match="unknown settings"):
        registry.get("relation").settings_for("quick", train_querry=3)
    with pytest.raises(SystemExit, match="does not take --dataset"):
        reproduce.main(["relation", "--scale", "quick", "--dataset", "faces"])


def test_resume_after_an_interruption(data_dir, tmp_path, capsys):
    pytest.importorskip("keras")
    from mlbook_utils import data, metric

    small = data.load_omniglot("background").subset(range(30))
    settings = metric.settings_for("quick", n_way=5, k_shot=1, n_query=2, episodes=4,
                                   decay_every=2, time_budget_s=None)
    ckpt = tmp_path / "ckpt"
    _, log = metric.train_with_checkpoints(small, settings, None, ckpt, False)
    assert log["episodes"] == 4 and log["segment"] == 2
    assert (ckpt / "last.weights.h5").exists()
    # Pretend the run died after its first segment: it must train only the second one.
    saved = json.loads((ckpt / "state.json").read_text())
    (ckpt / "state.json").write_text(json.dumps({**saved, "segment": 1}))
    _, log = metric.train_with_checkpoints(small, settings, None, ckpt, False)
    assert "resuming after segment 1 of 2" in capsys.readouterr().out
    assert log["episodes"] == 2 and log["segment"] == 2
    # A finished run resumes to nothing left to train.
    _, log = metric.train_with_checkpoints(small, settings, None, ckpt, False)
    assert log["episodes"] == 0
