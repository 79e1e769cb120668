"""Interactive explorers for Jupyter and Colab (they need a live kernel)."""

from __future__ import annotations

from .data import FewShotDataset
from .episodes import sample_episode
from .plots import show_episode


def episode_explorer(dataset: FewShotDataset, *, n_way: int = 5, k_shot: int = 1,
                     n_query: int = 2, seed: int = 0, max_way: int = 10, max_shot: int = 10):
    """Sliders for n_way, k_shot, n_query and seed that redraw the episode."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    max_shot = min(max_shot, int(dataset.class_counts.min()) - 1)
    sliders = {
        "n_way": w.IntSlider(n_way, 2, min(max_way, dataset.n_classes), description="n_way"),
        "k_shot": w.IntSlider(k_shot, 1, max_shot, description="k_shot"),
        "n_query": w.IntSlider(n_query, 1, 5, description="n_query"),
        "seed": w.IntSlider(seed, 0, 99, description="seed"),
    }
    out = w.Output()
    message = w.HTML()

    def redraw(_=None):
        args = {k: s.value for k, s in sliders.items()}
        limit = int(dataset.class_counts.min())
        if args["k_shot"] + args["n_query"] > limit:
            message.value = (
                f"<b>k_shot + n_query = {args['k_shot'] + args['n_query']}</b> but each class "
                f"has {limit} examples: lower one of them."
            )
            return
        message.value = ""
        ep = sample_episode(dataset, args["n_way"], args["k_shot"], args["n_query"],
                            seed=args["seed"])
        with out:
            out.clear_output(wait=True)
            fig = show_episode(ep)
            display(fig)
            plt.close(fig)

    for s in sliders.values():
        s.observe(redraw, names="value")
    redraw()
    box = w.VBox([w.HBox([sliders["n_way"], sliders["k_shot"]]),
                  w.HBox([sliders["n_query"], sliders["seed"]]), message, out])
    return box
