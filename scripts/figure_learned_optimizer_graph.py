"""Draw chapter 1.3's figure of the learned optimizer's unrolled computational graph.

    python scripts/figure_learned_optimizer_graph.py  # -> chapters/images/*.png

Three steps of the optimisation: the optimizee f reads theta_t, its gradient (through
stop_gradient: dashed) goes into the LSTM m, whose output g_t is added to theta_t; the LSTM's
state h_t runs from step to step, and the meta-loss sums w_t f(theta_t). Drawn after the figure
in Andrychowicz et al. (2016), with the book's names.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "chapters" / "images" / "learned_optimizer_graph.png"


def box(ax, x, y, text, color, w=1.0, h=0.7):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04",
                                fc=color, ec="0.2", lw=1.2))
    ax.text(x, y, text, ha="center", va="center", fontsize=14)


def arrow(ax, a, b, dashed=False, color="0.2"):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, lw=1.4,
                                 color=color, linestyle="--" if dashed else "-",
                                 shrinkA=2, shrinkB=2))


def main() -> None:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    step = 2.6
    for t in range(3):
        x = 0.6 + t * step
        name = ["t-1", "t", "t+1"][t]
        box(ax, x, 2.0, rf"$\theta_{{{name}}}$", "#dbe9f6", w=0.95)
        box(ax, x, 3.3, r"$f$", "#fde2c8", w=0.7)
        box(ax, x + 1.1, 0.6, r"$m$", "#d8f0d2", w=0.7)
        ax.text(x + 1.1, 2.0, "+", ha="center", va="center", fontsize=18)
        arrow(ax, (x, 2.35), (x, 2.95))                         # theta -> f
        arrow(ax, (x + 0.36, 3.1), (x + 0.98, 0.95), dashed=True)  # gradient -> m
        arrow(ax, (x + 1.1, 0.95), (x + 1.1, 1.8))              # g_t -> +
        arrow(ax, (x + 0.48, 2.0), (x + 0.98, 2.0))             # theta -> +
        ax.text(x + 1.22, 1.35, rf"$g_{{{name}}}$", fontsize=13, va="center")
        ax.text(x + 0.5, 1.2, r"$\nabla f$", fontsize=12, color="0.35", ha="center")
        arrow(ax, (x, 3.65), (3.2, 4.45), color="0.55")           # f -> meta-loss
        if t < 2:
            arrow(ax, (x + 1.22, 2.0), (x + step - 0.48, 2.0))   # + -> next theta
            arrow(ax, (x + 1.45, 0.6), (x + step + 0.75, 0.6))   # h_t -> next m
            ax.text(x + 1.1 + step / 2, 0.78, r"$h$", fontsize=13, ha="center")
    ax.text(3.2, 4.7, r"meta-loss $\mathcal{L}(\phi) = \sum_t w_t\, f(\theta_t)$",
            ha="center", va="center", fontsize=14)
    ax.text(0.0, -0.15, "dashed: the gradient enters the LSTM through stop_gradient\n"
            "(no second derivatives of f); m is one LSTM, shared weights $\\phi$",
            fontsize=11, va="top", color="0.25")
    ax.set(xlim=(-0.2, 7.6), ylim=(-0.9, 5.0))
    ax.axis("off")
    fig.tight_layout(pad=0.2)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=150, metadata={"Software": None})
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
