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


# --------------------------------------------------------------------------------------------
# Sliders that work without a kernel (the static HTML book)
# --------------------------------------------------------------------------------------------


def _png_data_uri(fig, dpi: int = 72) -> str:
    import base64
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


_STATIC_JS = """
(function () {
  var root = document.getElementById("%(uid)s");
  var frames = JSON.parse(root.querySelector(".mlx-frames").textContent);
  var ways = %(ways)s, shots = %(shots)s;
  var wayInput = root.querySelector(".mlx-n-way"), shotInput = root.querySelector(".mlx-k-shot");
  function update() {
    var w = ways[+wayInput.value], k = shots[+shotInput.value];
    root.querySelector(".mlx-n-way-value").textContent = w;
    root.querySelector(".mlx-k-shot-value").textContent = k;
    var f = frames[w + "," + k];
    root.querySelectorAll("img.mlx-frame").forEach(function (img, i) {
      img.src = f[i];
      img.alt = img.dataset.what + " for %(n0)s " + w + ", %(n1)s " + k;
    });
  }
  wayInput.addEventListener("input", update);
  shotInput.addEventListener("input", update);
  update();
})();
"""


def static_explorer(frames: dict, n_ways, k_shots, *, what=("episode",), start=None,
                    caption: str = "", names=("n_way", "k_shot")):
    """HTML with n_way and k_shot range controls that swap precomputed images.

    ``frames[(n_way, k_shot)]`` is a list of matplotlib figures (or PNG data URIs), one per
    image shown. ``names`` labels the two controls (they can stand for any two settings, such
    as a task and a number of steps). It needs no kernel and no widget JavaScript, so it works
    in the static HTML book, offline, as well as in Jupyter and Colab.
    """
    import html
    import json
    import uuid

    from IPython.display import HTML

    n_ways, k_shots = list(n_ways), list(k_shots)
    uris = {f"{w},{k}": [f if isinstance(f, str) else _png_data_uri(f) for f in frames[w, k]]
            for w in n_ways for k in k_shots}
    w0, k0 = start or (n_ways[0], k_shots[0])
    uid = "mlx-" + uuid.uuid4().hex[:8]
    first = uris[f"{w0},{k0}"]
    imgs = "".join(
        f'<img class="mlx-frame" data-what="{html.escape(what[i])}" src="{first[i]}" '
        f'alt="{html.escape(what[i])}" style="max-width:100%;margin:4px">'
        for i in range(len(first))
    )
    sliders = "".join(
        f'<label style="margin-right:2em">{name} = <b class="mlx-{cls}-value">{vals[i0]}</b> '
        f'<input type="range" class="mlx-{cls}" min="0" max="{len(vals) - 1}" step="1" '
        f'value="{i0}" aria-label="{name}"></label>'
        for name, cls, vals, i0 in ((names[0], "n-way", n_ways, n_ways.index(w0)),
                                    (names[1], "k-shot", k_shots, k_shots.index(k0)))
    )
    js = _STATIC_JS % {"uid": uid, "ways": json.dumps(n_ways), "shots": json.dumps(k_shots),
                       "n0": html.escape(names[0]), "n1": html.escape(names[1])}
    body = (
        f'<div id="{uid}" class="mlbook-static-explorer">'
        f"<div>{sliders}</div><div>{imgs}</div>"
        + (f'<div style="font-size:90%"><i>{html.escape(caption)}</i></div>' if caption else "")
        + f'<script type="application/json" class="mlx-frames">{json.dumps(uris)}</script>'
        f"<script>{js}</script></div>"
    )
    return HTML(body)


def explorer_frames_from(draw, first, second, *, dpi: int = 72) -> dict:
    """Frames for :func:`static_explorer`: ``{(a, b): [PNG data URIs]}`` for every ``a`` in
    ``first`` and ``b`` in ``second``. ``draw(a, b)`` returns a matplotlib figure or a list of
    them; each is rendered at ``dpi`` and closed at once, so that a grid of frames never holds
    many open figures."""
    frames = {}
    for a in first:
        for b in second:
            figs = draw(a, b)
            figs = figs if isinstance(figs, (list, tuple)) else [figs]
            frames[a, b] = [_png_data_uri(f, dpi=dpi) for f in figs]
    return frames


def explorer_frames(html) -> dict:
    """What a :func:`static_explorer` switches between: its frames (lists of image data URIs)
    by ``"first,second"`` key, read back from its HTML (an ``IPython.display.HTML`` or its text,
    such as a notebook's stored output). Tests use it to check that moving a control changes
    what is shown."""
    import json
    import re

    text = getattr(html, "data", html)
    found = re.search(r'<script type="application/json" class="mlx-frames">(.*?)</script>',
                      text, re.S)
    if found is None:
        raise ValueError("no static explorer frames in this HTML")
    return json.loads(found.group(1))
