"""Figures shared by the chapters."""

from __future__ import annotations

import numpy as np

from .episodes import Episode


def show_episode(episode: Episode, *, max_query: int = 5, title: str | None = None, ax=None):
    """Draw an episode as an image grid: one row per class, support images left of the bar,
    query images right of it. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    n_way, k_shot = episode.n_way, episode.k_shot
    n_q = min(max_query, episode.n_query)
    support = episode.support.reshape(n_way, k_shot, *episode.support.shape[1:])
    query = episode.query.reshape(n_way, episode.n_query, *episode.query.shape[1:])[:, :n_q]
    cols = k_shot + 1 + n_q
    fig, axes = plt.subplots(
        n_way, cols, figsize=(0.8 * cols + 0.6, 0.8 * n_way + 0.7), squeeze=False
    )
    for i in range(n_way):
        for j in range(cols):
            a = axes[i, j]
            a.set_xticks([])
            a.set_yticks([])
            if j < k_shot:
                img = support[i, j]
            elif j > k_shot:
                img = query[i, j - k_shot - 1]
            else:
                a.axis("off")
                continue
            a.imshow(np.squeeze(img), cmap="gray_r" if img.mean() < 0.5 else "gray",
                     vmin=0, vmax=1)
            for spine in a.spines.values():
                spine.set_color("tab:blue" if j < k_shot else "tab:orange")
                spine.set_linewidth(1.5)
        axes[i, 0].set_ylabel(f"class {i}", rotation=0, ha="right", va="center", fontsize=8)
    axes[0, 0].set_title("support", fontsize=9, loc="left", color="tab:blue")
    if n_q:
        axes[0, k_shot + 1].set_title("query", fontsize=9, loc="left", color="tab:orange")
    fig.suptitle(
        title or f"A {n_way}-way {k_shot}-shot episode ({n_q} of {episode.n_query} "
        "queries per class shown)", fontsize=10,
    )
    fig.tight_layout()
    return fig


def plot_accuracy_vs_shot(
    results: dict[str, dict[int, dict[int, tuple[float, float]]]],
    *,
    title: str = "Accuracy against k_shot",
    ax=None,
    highlight: tuple[int, int] | None = None,
):
    """``results[method][n_way][k_shot] = (accuracy %, ci95)``; one line per (method, n_way),
    with chance level (100 / n_way) drawn as a dotted line of the same colour. ``highlight``
    = (n_way, k_shot) rings that setting's points."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 5.2))
    else:
        fig = ax.figure
    ways = sorted({w for per in results.values() for w in per})
    colours = dict(zip(ways, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    markers = ["o", "s", "^", "D", "v"]
    for m_i, (method, per_way) in enumerate(results.items()):
        for n_way, per_shot in sorted(per_way.items()):
            shots = sorted(per_shot)
            acc = np.array([per_shot[k][0] for k in shots])
            ci = np.array([per_shot[k][1] for k in shots])
            ax.errorbar(shots, acc, yerr=ci, marker=markers[m_i % len(markers)], capsize=3,
                        color=colours[n_way], label=f"{method}, {n_way}-way",
                        linestyle=["-", "--", "-.", ":"][m_i % 4])
            if highlight and highlight[0] == n_way and highlight[1] in per_shot:
                ax.plot([highlight[1]], [per_shot[highlight[1]][0]], "o", markersize=14,
                        markerfacecolor="none", markeredgecolor="black", markeredgewidth=2)
    for n_way in ways:
        ax.axhline(100 / n_way, color=colours[n_way], linestyle=":", linewidth=1)
        ax.annotate(f"chance, {n_way}-way", (ax.get_xlim()[1], 100 / n_way), fontsize=7,
                    ha="right", va="bottom", color=colours[n_way])
    ax.set_xlabel("k_shot (support examples per class)")
    ax.set_ylabel("accuracy on query examples (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
