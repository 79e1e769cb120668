import json, uuid
cells = []
def md(t): cells.append({"cell_type":"markdown","id":uuid.uuid4().hex[:8],"metadata":{},"source":t.strip("\n").splitlines(keepends=True)})
def code(t): cells.append({"cell_type":"code","execution_count":None,"id":uuid.uuid4().hex[:8],"metadata":{},"outputs":[],"source":t.strip("\n").splitlines(keepends=True)})

md(r"""
# 9.3 CACTUs: meta learning without labels

**What you will learn**
- how **CACTUs** {cite:p}`hsu2019unsupervised` builds few-shot tasks from unlabelled images: learn an embedding without labels, cluster it with k-means, and treat each cluster as a class;
- how to run it with parts the book already has: a convolutional **autoencoder** as the embedding (the paper used ACAI {cite:p}`berthelot2019understanding` and BiGAN), numpy k-means, and chapter 1.2's prototypical network trained on the cluster tasks;
- how to tell what the meta learning adds, with three controls on the same test episodes: the embedding's own nearest-class-mean accuracy, tasks from **random clusters** of the same sizes, and the prototypical network trained on the true labels;
- how far a simple encoder falls short of the paper's, and why.

**Prerequisites:** {doc}`01_1_few_shot_episodes` (episodes, the pixel baseline) and {doc}`01_2_metric_space` (the prototypical network).
""")
md(r"""
## Running this notebook

The first cell installs the book's package when the notebook runs on Colab (it keeps Colab's own TensorFlow and Keras), then reports the device and the run scale and seeds the random generators. Set the environment variable `MLBOOK_SCALE` to `quick`, `cpu` or `full` before starting Jupyter to choose the scale (on Colab, run `%env MLBOOK_SCALE=cpu` before the first cell); without it, the scale is `full` on a GPU and `cpu` otherwise.

RUNTIME_SENTENCE
""")
code(r"""
import sys

if "google.colab" in sys.modules:  # on Colab only: install the book's package
    %pip install -q "mlbook_utils @ git+https://github.com/learning-to-learn-book/meta-learning-book"

from mlbook_utils import config

print(config.device_report())
rng = config.seed_everything(0)
""")
md(r"""
## The idea

Every method so far learned from tasks that someone labelled: the 4112 training classes of Omniglot, with 20 drawings each. {cite:t}`hsu2019unsupervised` ask whether meta learning can do without them. Their answer, CACTUs ("clustering to automatically construct tasks for unsupervised meta-learning"), has three steps:

1. **An embedding without labels.** Any unsupervised method that maps an image to a vector: they used four (ACAI, BiGAN, DeepCluster and InfoGAN); on Omniglot, ACAI and BiGAN.
2. **Pseudo-classes.** Cluster the embeddings of all training images with k-means; each cluster is a class. They used 500 clusters on Omniglot, and many k-means runs ("partitions") on rescaled embeddings, so that the tasks vary.
3. **Meta learning on the pseudo-classes.** Draw $N$-way $K$-shot tasks from the clusters exactly as from labelled classes, and meta-train MAML or a prototypical network on them.

The test is the usual one: labelled few-shot episodes of the test alphabets, which no step has seen. If the clusters were random, the tasks would be noise and step 3 could learn nothing; if they were the true classes, step 3 would be supervised meta learning. CACTUs sits between, and the question is how much of the gap a cheap embedding and k-means close.
""")
code(r"""
import inspect

from mlbook_utils import cactus

print(inspect.getsource(cactus.kmeans))
""")
md(r"""
## The experiment

The settings live in `cactus.SETTINGS`; the runner (`python -m mlbook_utils.reproduce cactus`) uses the same ones. Once, with seed 0: an autoencoder (chapter 1.2's conv-4 network as the encoder, its 64-d output as the code, and a small decoder) learns to rebuild a random subset of the training images, with no labels; its codes of all 82,240 training images are standardised and clustered into 500 clusters. Then, for each seed, three prototypical networks train from scratch for the same number of 20-way 1-shot episodes (5 queries per class, the CACTUs scripts' Omniglot tasks), on three labellings of the same images: the **k-means clusters** (CACTUs), **random clusters** of the same sizes, and the **true classes** (the supervised reference). Every model, and the autoencoder's encoder itself (nearest class mean on its codes), is tested on the same episodes of the test classes.

One simplification, stated once: the paper ran k-means many times and drew each task from one of those partitions; we use one partition, as the authors' own Omniglot script does by default.
""")
code(r"""
import time

from mlbook_utils import data, registry

start = time.perf_counter()
train = data.load_omniglot("train")
test = data.load_omniglot("test")
print(f"loaded in {time.perf_counter() - start:.1f} s: {len(train.y)} training images "
      f"({train.n_classes} classes), {test.n_classes} test classes")
S = registry.settings_at(cactus.SETTINGS)
registry.settings_table(cactus.SETTINGS)
""")
code(r"""
out = cactus.experiment(S, data={"train": train, "test": test})
ae = out.extra["ae"]
print(f"autoencoder: {ae['images']} images, {S['ae_epochs']} epochs in {ae['wall_s']:.0f} s; "
      f"reconstruction loss {ae['loss'][0]:.4f} -> {ae['loss'][-1]:.4f} (BCE per pixel)")
print(f"k-means: {S['clusters']} clusters in {out.extra['kmeans_s']:.0f} s, mean squared "
      f"distance {out.extra['inertia'][0]:.2f} -> {out.extra['inertia'][-1]:.2f}; cluster sizes "
      f"{out.extra['sizes'].min()} to {out.extra['sizes'].max()}")
print("purity (share of images whose cluster's most common class is their own): "
      + ", ".join(f"{k} {v:.3f}" for k, v in out.extra["purity"].items()))
""")
md(r"""
## What the clusters look like

Each row is one k-means cluster: eight of its training images, drawn at random, and the share of the cluster held by its most common true class. A pseudo-class is a *kind of stroke pattern*, not a character; where one character dominates a cluster, the task looks like a real one.
""")
code(r"""
import matplotlib.pyplot as plt
import numpy as np

labels = out.extra["labels"]
r = np.random.default_rng(0)
show = r.choice(np.flatnonzero(out.extra["sizes"] >= 8), 6, replace=False)
with plt.rc_context({"font.size": 11}):
    fig, axes = plt.subplots(6, 8, figsize=(6.4, 5.4))
    for row, c in zip(axes, show):
        members = np.flatnonzero(labels == c)
        top = np.bincount(train.y[members]).max() / len(members)
        for ax, i in zip(row, r.choice(members, 8, replace=False)):
            ax.imshow(train.x[i, :, :, 0], cmap="gray_r")
            ax.set_xticks([]), ax.set_yticks([])
        row[0].set_ylabel(f"{100 * top:.0f} %", rotation=0, labelpad=18, va="center")
    fig.suptitle("Six k-means clusters (left: share of the top class)")
    fig.tight_layout()
    plt.show()
""")
md(r"""
## Results

Every model on the same test episodes (300 per setting, 15 queries per class), accuracy in % with the 95 % interval of the episodes; the trained arms by seed.
""")
code(r"""
import pandas as pd

cols = [f"{n}-way {k}-shot" for n, k in S["tests"]]
rows = {}
for arm in cactus.ARMS:
    for sd in ([None] if arm == "embedding" else S["seeds"]):
        rows[cactus.NAMES[arm] + ("" if sd is None else f", seed {sd}")] = {
            c: f"{out.results[arm, n, k, sd].accuracy:.1f} ± {out.results[arm, n, k, sd].ci95:.1f}"
            for c, (n, k) in zip(cols, S["tests"])}
table = pd.DataFrame(rows).T
table.columns.name = "test accuracy (%)"
table
""")
code(r"""
diffs = {}
for other in ("embedding", "random", "supervised"):
    for c, (n, k) in zip(cols, S["tests"]):
        if ("paired", other, n, k) in out.extra:
            m, ci, npairs = out.extra["paired", other, n, k]
            diffs[f"CACTUs minus {other}", c] = f"{m:+.1f} ± {ci:.1f}"
pd.Series(diffs, name="paired over seeds, points (95 % CI, Student's t)").unstack()[cols]
""")
md(r"""
RESULTS_PROSE
""")
md(r"""
The figure shows the four arms at each setting (the trained arms' mean over seeds, with the seeds as dots) beside the paper's CACTUs-ProtoNets with ACAI embeddings.
""")
code(r"""
from mlbook_utils import report

p = report.published().get(("cactus-protonets", "omniglot-vinyals-test"))
paper = [p.value(n, k) if p else None for n, k in S["tests"]]
with plt.rc_context({"font.size": 12}):
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    x = np.arange(len(S["tests"]))
    for j, arm in enumerate(cactus.ARMS):
        seeds = [None] if arm == "embedding" else S["seeds"]
        acc = np.array([[out.results[arm, n, k, sd].accuracy for sd in seeds]
                        for n, k in S["tests"]])
        xs = x + (j - 1.5) * 0.18
        ax.bar(xs, acc.mean(1), width=0.18, label=arm)
        for i in range(len(x)):
            ax.plot([xs[i]] * acc.shape[1], acc[i], "k.", ms=4)
    if any(v is not None for v in paper):
        ax.plot(x, [np.nan if v is None else v for v in paper], "k*", ms=11,
                label="paper (ACAI)")
    ax.set_xticks(x, [f"{n}w{k}s" for n, k in S["tests"]])
    ax.set(ylabel="test accuracy (%)", ylim=(0, 100), title="Omniglot test episodes")
    ax.legend(fontsize=9, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    plt.show()
""")
md(r"""
PAPER_PROSE
""")
md(r"""
## Sanity checks

The cell below fails if the comparison did not happen as described: the clusters must be far purer than random ones, every trained model far above chance, and the supervised reference above the unsupervised arms at 5-way 1-shot.
""")
code(r"""
margin = config.by_scale(quick=5, cpu=20, full=20)
assert out.extra["purity"]["cactus"] > 2 * out.extra["purity"]["random"], out.extra["purity"]
for (arm, n, k, sd), res in out.results.items():
    if arm in ("cactus", "supervised"):
        assert res.accuracy > 100 / n + margin, (arm, n, k, sd, res)
sup = np.mean([out.results["supervised", 5, 1, sd].accuracy for sd in S["seeds"]])
cac = np.mean([out.results["cactus", 5, 1, sd].accuracy for sd in S["seeds"]])
assert sup > cac, (sup, cac)
print(f"clusters {out.extra['purity']['cactus'] / out.extra['purity']['random']:.0f}x purer than "
      f"random; every trained model above chance + {margin}; supervised ahead at 5w1s")
""")
md(r"""
## Summary

SUMMARY_PROSE

## Exercises

**1. Why do random clusters still teach something?** Tasks from random clusters have no structure to learn: the 20 images of a "class" share nothing. Yet the prototypical network trained on them is not at chance on the test episodes. Where can its accuracy come from?

<details><summary>Answer</summary>

From the network itself. A randomly initialised conv-4 network is already a useful feature extractor for nearest-class-mean classification (compare chapter 1.2's untrained embedding), and training on random tasks mostly shuffles it: the loss cannot fall much below $\log N$, and the gradients are noise that moves the weights without a consistent direction. What the random-cluster arm measures is "an embedding trained on nothing", the floor that CACTUs' clusters must beat.
</details>

**2. How many clusters?** The paper used 500 clusters on Omniglot's training images, far fewer than its 1100 (×4 rotations) classes. What happens with far more clusters, say 5000, or far fewer, say 50?

<details><summary>Answer</summary>

With 5000 clusters of about 16 images each, each cluster is small and purer, closer to a character, but many clusters are too small to give a 1-shot task with 5 queries (6 images), and near-duplicate clusters of one character make tasks whose classes are the same character, which teaches the network to separate what should not be separated. With 50 clusters of 1600 images each, a cluster is a broad style of strokes: the tasks are easy and coarse, and the network learns to tell styles apart, not characters. The best number trades purity against size; the paper chose it on their validation classes.
</details>

**3. What would leak if the autoencoder saw the test images?** The encoder here is trained on a subset of the training split only. Suppose it were trained on all 32,460 Omniglot images, test alphabets included (still without labels). Would that be fair?

<details><summary>Answer</summary>

It would be unsupervised, but not few-shot in the book's sense: the encoder would have been shaped by the very drawings the test episodes use, and k-means clusters built from them would give the meta-learner tasks made of test characters. The test would then measure transductive use of the unlabelled test set, a different (and easier) problem. Keep every step that learns, supervised or not, on the training split.
</details>

**4. Try it (longer).** Replace one partition by three: run `cactus.kmeans` with seeds 0, 1 and 2 (or on codes with each dimension rescaled at random, as the paper did), and train on tasks that each come from one partition (for example by training a third of the episodes on each). Do more partitions help at this budget?

**5. Checked exercise: one step of k-means.** Write one Lloyd iteration: assign each point to its nearest centre, then move each centre to the mean of its points (an empty cluster keeps its centre). The checker tests it on small cases and says what is wrong.
""")
code(r"""
import mlbook_utils.exercises.ch09_3  # noqa: F401 (loads this chapter's checkers)
from mlbook_utils import exercises


def my_lloyd_step(points, centres):
    # Your code here: labels = index of the nearest centre (squared Euclidean distance) for each
    # point; new centres = mean of each cluster's points (an empty cluster keeps its centre).
    raise NotImplementedError("return (labels, new_centres)")


exercises.ch09_3.check_lloyd_step(my_lloyd_step)
""")
md(r"""
<details><summary>Reference solution</summary>

```python
import numpy as np

def my_lloyd_step(points, centres):
    points, centres = np.asarray(points, float), np.asarray(centres, float)
    d = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    labels = d.argmin(1)
    new = centres.copy()
    for j in range(len(centres)):
        if (labels == j).any():
            new[j] = points[labels == j].mean(0)
    return labels, new
```
</details>

## References

- Berthelot, D., Raffel, C., Roy, A., & Goodfellow, I. (2019). Understanding and improving interpolation in autoencoders via an adversarial regularizer. *ICLR*.
- Hsu, K., Levine, S., & Finn, C. (2019). Unsupervised learning via meta-learning. *ICLR*.
- Snell, J., Swersky, K., & Zemel, R. (2017). Prototypical networks for few-shot learning. *NeurIPS*.
""")
nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}, "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
json.dump(nb, open("/work/main/chapters/09_3_cactus.ipynb", "w"), indent=1, ensure_ascii=False)
open("/work/main/chapters/09_3_cactus.ipynb", "a").write("\n")
