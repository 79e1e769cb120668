"""The kernel-free explorers (``widgets.static_explorer``): the helpers, and the explorer that
each of chapters 1.1 to 4.2 stores in its outputs, whose frames must change when
either control moves (the browser test moves the controls in the built HTML)."""

import json
import re
from pathlib import Path

import pytest

from mlbook_utils import widgets

ROOT = Path(__file__).resolve().parents[1]
EXPLORER_CHAPTERS = ("01_1_few_shot_episodes", "01_2_metric_space", "01_3_learned_optimizer",
                     "01_4_lstm_meta_learner", "02_1_siamese_networks",
                     "03_1_prototypical_networks", "04_1_relation_matching_networks",
                     "04_2_strong_baselines")


def test_frames_from_a_drawing_function_round_trip_through_the_html():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def draw(a, b):
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, a * b])
        ax.set_title(f"{a} {b}")
        return fig

    before = len(plt.get_fignums())
    frames = widgets.explorer_frames_from(draw, (1, 2), ("x", "y"))
    assert len(plt.get_fignums()) == before, "every drawn figure is closed"
    assert set(frames) == {(1, "x"), (1, "y"), (2, "x"), (2, "y")}
    assert all(len(f) == 1 and f[0].startswith("data:image/png;base64,") for f in frames.values())
    html = widgets.static_explorer(frames, (1, 2), ("x", "y"), what=("line",),
                                   names=("slope", "label"))
    back = widgets.explorer_frames(html)
    assert back == {f"{a},{b}": v for (a, b), v in frames.items()}
    assert back["1,x"] != back["2,x"] and back["1,x"] != back["1,y"]
    assert 'aria-label="slope"' in html.data and 'aria-label="label"' in html.data
    with pytest.raises(ValueError, match="no static explorer"):
        widgets.explorer_frames("<div>nothing here</div>")


def stored_explorers(stem: str) -> list[str]:
    """The HTML of every static explorer in a chapter's stored outputs."""
    nb = json.loads((ROOT / "chapters" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    out = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            html = "".join(o.get("data", {}).get("text/html", ""))
            if "mlbook-static-explorer" in html:
                out.append(html)
    return out


@pytest.mark.parametrize("stem", EXPLORER_CHAPTERS)
def test_each_chapters_explorer_changes_what_is_shown_when_either_control_moves(stem):
    explorers = stored_explorers(stem)
    assert explorers, f"{stem} stores no kernel-free explorer"
    for html in explorers:
        frames = widgets.explorer_frames(html)
        values = [json.loads(v) for v in re.findall(r"var ways = (.*?), shots = (.*?);", html)[0]]
        first, second = values
        assert len(first) >= 2 and len(second) >= 2
        assert len(first) * len(second) <= 12, "few frames: the page carries them all"
        assert set(frames) == {f"{a},{b}" for a in first for b in second}
        for frame in frames.values():
            assert all(uri.startswith("data:image/png;base64,") for uri in frame)
            assert all(len(uri) < 200_000 for uri in frame), "small frames (dpi 72)"
        a0, a1, b0, b1 = first[0], first[1], second[0], second[1]
        assert frames[f"{a0},{b0}"] != frames[f"{a1},{b0}"], "the first control changes nothing"
        assert frames[f"{a0},{b0}"] != frames[f"{a0},{b1}"], "the second control changes nothing"
        # Every setting shows its own picture.
        distinct = {tuple(f) for f in frames.values()}
        assert len(distinct) == len(frames)
