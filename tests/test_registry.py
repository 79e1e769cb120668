"""The registry: every method has one home (settings by scale + experiment), the notebooks and
the runner call the same experiment, and importing the registry imports no method module."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlbook_utils import nbtools, registry, reproduce

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_runner_imports_no_method_module():
    code = ("import sys, mlbook_utils.reproduce, mlbook_utils.registry;"
            "print(sorted(m for m in sys.modules if m.startswith('mlbook_utils.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    loaded = set(eval(out))  # noqa: S307 - our own printout
    assert not loaded & {f"mlbook_utils.{m}" for m in registry.METHOD_MODULES}, loaded


def test_every_method_has_settings_for_every_scale_and_a_chapter():
    methods = registry.methods()
    assert len(methods) >= 11
    for name, m in methods.items():
        assert set(m.settings) >= set(registry.SCALES), name
        assert (ROOT / "chapters" / f"{m.chapter}.ipynb").exists(), (name, m.chapter)
        keys = set(m.settings["quick"])
        for scale in registry.SCALES:  # the same keys at every scale
            assert set(m.settings[scale]) == keys, (name, scale)
        trains = name != "pixel-nn"  # the one method without training
        for common in ("test_episodes", "train_episodes", "time_budget_s"):
            if trains or common == "test_episodes":
                assert m.key(common) in keys, (name, common)


def test_each_chapter_calls_its_methods_experiment_and_restates_no_setting():
    """Every chapter with a registered method reads that method's settings from its module and
    calls its experiment; none of the method's own settings values are typed in the
    notebook as a `config.by_scale(...)` of the same three values."""
    by_chapter = {}
    for m in registry.methods().values():
        by_chapter.setdefault(m.chapter, []).append(m)
    for chapter, methods in by_chapter.items():
        code = nbtools.code_source(ROOT / "chapters" / f"{chapter}.ipynb")
        assert "experiment(" in code, chapter
        for m in methods:
            for key, value in m.settings["cpu"].items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                q, c, f = (m.settings[s][key] for s in registry.SCALES)
                if len({q, c, f}) == 1:
                    continue
                restated = f"by_scale(quick={q!r}, cpu={c!r}, full={f!r})"
                assert restated not in code.replace(" ", "").replace(",", ", "), \
                    (chapter, m.name, key)


@pytest.mark.parametrize("name", [
    # One method runs end to end through the runner on every backend; the others test the
    # same plumbing with other models, so they run on the default backend only.
    # (protonet-ablation, which trains three models, is left out: 47 s for the same plumbing.)
    "metric-space",
    *(pytest.param(n, marks=pytest.mark.plumbing) for n in (
        "pixel-nn", "relation", "matching", "protonet-semisupervised")),
])
def test_the_runner_runs_a_method_end_to_end(name, data_dir, tmp_path, monkeypatch):
    pytest.importorskip("keras")
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    args = [name, "--scale", "quick", "--episodes", "4", "--n-way", "5", "--k-shot", "1"]
    if name != "pixel-nn":
        args += ["--train-episodes", "4"]
    assert reproduce.main(args) == 0
    chapter = registry.get(name).chapter
    records = [json.loads(line) for line in (tmp_path / f"{chapter}.jsonl").read_text()
               .splitlines()]
    assert records and all(r["runner"] == "reproduce" for r in records)
    assert all((r["n_way"], r["k_shot"], r["episodes"]) == (5, 1, 4) for r in records)
    assert all(r["metric"] == "accuracy" and 0 <= r["value"] <= 100 for r in records)
    if name != "pixel-nn":
        assert all(r["train_episodes"] == 4 for r in records)
