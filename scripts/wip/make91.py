import json, uuid
cells = []
def md(t): cells.append({"cell_type":"markdown","id":uuid.uuid4().hex[:8],"metadata":{},"source":t.strip("\n").splitlines(keepends=True)})
def code(t): cells.append({"cell_type":"code","execution_count":None,"id":uuid.uuid4().hex[:8],"metadata":{},"outputs":[],"source":t.strip("\n").splitlines(keepends=True)})

md(r"""
# 9.1 Task-agnostic meta learning: an initialisation that favours no task

**What you will learn**
- the idea of **task-agnostic meta learning** (TAML) {cite:p}`jamal2019task`: add a term to MAML's meta-objective that keeps the *initial* model from favouring some training tasks over others;
- its two variants: **entropy-maximising** (the unadapted model should be uncertain, the adapted one certain; classification only) and **inequality-minimising** (the initial losses of the tasks in a meta-batch should be equal, measured by an index from economics; any loss, so regression too);
- how both fit in a few lines on chapter 6.1's inner loop: one task returns its losses and entropies, and the trainer combines them over the meta-batch;
- how to test the claim when no table of the paper could be checked: a **controlled comparison** against plain MAML with the same budget, tasks and seeds, and a paired confidence interval;
- why, in $N$-way classification with labels shuffled for every task, MAML's initialisation is already close to task-agnostic in TAML's sense, and what the regularisers can still change.

**Prerequisites:** {doc}`06_1_learning_the_initialisation` (MAML, the inner-loop library) and {doc}`08_1_gradient_agreement` (the controlled comparison over seeds).
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

print(config.task_parallel_threads())  # before TensorFlow starts: the tasks side by side
print(config.device_report())
rng = config.seed_everything(0)
""")
md(r"""
## The idea

MAML learns one initialisation $\theta$ from which one or a few gradient steps adapt well to a task. Nothing in its objective stops $\theta$ from being *biased*: very good on some kinds of training task before any adaptation, and poor on others. {cite:t}`jamal2019task` argue that such an initial model may "be too biased towards existing tasks to adapt to new tasks, especially when only very few examples are available to update the model" (their abstract), and propose to meta-learn an unbiased one, in two ways.

**Entropy-maximising TAML** (classification). The unadapted model $f_\theta$ should have "the largest uncertainty over the output labels", and the adapted model $f_{\theta_i'}$ should be confident. With $H$ the mean entropy of the softmax predictions on a task's queries, a meta-batch of $T$ tasks with adapted query losses $\mathcal{L}_i(\theta_i')$ minimises

$$
\frac{1}{T}\sum_{i=1}^{T} \Big[\mathcal{L}_i(\theta_i') + \lambda \big(-H_i(\theta) + H_i(\theta_i')\big)\Big].
$$

**Inequality-minimising TAML** (any loss). It directly minimises "the inequality of initial losses" across tasks. With $\ell_i = \mathcal{L}_i(\theta)$ the loss of the *initial* model on task $i$ and $\bar\ell$ their mean over the meta-batch, the Theil index from economics is

$$
\mathrm{Theil}(\ell_1, \ldots, \ell_T) = \frac{1}{T}\sum_{i=1}^{T} \frac{\ell_i}{\bar\ell}\,\log\frac{\ell_i}{\bar\ell},
$$

which is 0 when every task has the same loss, at most $\log T$ when one task carries all of it, and unchanged when every loss is multiplied by the same number. The meta-objective is $\frac1T\sum_i \mathcal{L}_i(\theta_i') + \lambda\,\mathrm{Theil}(\ell_1, \ldots, \ell_T)$.

The quoted phrases are from the paper's abstract. The exact forms above (which set the entropies are measured on, and that both regularisers use the query set) are our reading of it and of secondary summaries; we could not check them against the paper's own equations, and we could not check any of its tables, so this chapter quotes no figure from it.
""")
code(r"""
import inspect

from mlbook_utils import taml

print(inspect.getsource(taml.objective))
print(inspect.getsource(taml.theil))
print(inspect.getsource(taml.TamlTrainer.batch_loss))
""")
md(r"""
`taml.task_stats` returns, for one task, the four numbers the objectives need: the adapted query loss (MAML's task loss), the initial query loss, and the entropies of the initial and adapted predictions. `TamlTrainer` is chapter 6.1's `MetaTrainer` with one method replaced: the meta-batch's loss is `objective` of those numbers, so the meta-gradient flows through the inner step and through the regulariser alike, on either backend.

A small example of the Theil index: four tasks' initial losses, equal, a little unequal, and one task carrying almost all of it.
""")
code(r"""
import numpy as np
from keras import ops

for losses in ([1.6, 1.6, 1.6, 1.6], [1.5, 1.6, 1.7, 1.6], [0.2, 0.5, 1.0, 4.0],
               [0.001, 0.001, 0.001, 5.0]):
    t = float(ops.convert_to_numpy(taml.theil(ops.convert_to_tensor(losses))))
    print(f"losses {losses}: Theil index {t:.4f}   (log 4 = {np.log(4):.4f})")
""")
md(r"""
## The controlled experiment

No table of the paper could be checked, so the chapter reproduces no number. It asks: **at this budget, does either regulariser beat plain MAML?** Every arm trains the same network from the same initial weights, on the same stream of tasks, for the same number of meta-steps; each seed is run in every arm, and each difference is taken seed by seed, with a 95 % interval from Student's $t$ (4.30 standard errors with 3 seeds), as in chapter 8.1.

### Sinusoids: the inequality-minimising variant

Entropy is not defined for a regression output, so on sinusoids only the Theil variant runs. MAML is chapter 6.1's (a 40-40 MLP, 25 tasks of $K = 10$ points per meta-step, one inner step at 0.01, Adam at $10^{-3}$). The weight $\lambda$ is chosen among `lambdas` on validation tasks (their own sampling seed) with seed 0, before any test; then both arms train with every seed and are tested on the same 1000 tasks: the query MSE after one step.
""")
code(r"""
from mlbook_utils import registry

SIN = registry.settings_at(taml.SINUSOID_SETTINGS)
registry.settings_table(taml.SINUSOID_SETTINGS)
""")
code(r"""
import pandas as pd

sin = taml.sinusoid_experiment(SIN)
best = sin.extra["best_lambda"]
print("validation MSE after one step (seed 0) by lambda:",
      {lam: round(v, 3) for lam, v in sin.extra["val"].items()}, f"-> lambda = {best:g}")
rows = {}
for seed in SIN["seeds"]:
    rows[f"seed {seed}"] = {
        "MAML": f"{np.nanmean(sin.results['maml', seed]):.3f}",
        f"TAML (Theil, λ={best:g})": f"{np.nanmean(sin.results['theil', seed]):.3f}",
        "Theil index, MAML": f"{sin.extra['theil', 'maml', seed]:.3f}",
        "Theil index, TAML": f"{sin.extra['theil', 'theil', seed]:.3f}"}
mean, ci, n = sin.extra["paired", "theil"]
rows["TAML − MAML"] = {f"TAML (Theil, λ={best:g})": f"{mean:+.3f} ± {ci:.3f}"}
table = pd.DataFrame(rows).T.fillna("")
table.columns.name = "MSE after 1 step (test tasks); Theil index of the initial MSEs"
table
""")
md(r"""
SIN_PROSE
""")
md(r"""
### Omniglot 5-way 1-shot: both variants

MAML as chapter 8.1 trains it at `cpu` scale (second order, one inner step at 0.4, 8 tasks per meta-step, 5 queries per class, Adam at $10^{-3}$ decayed along a cosine, 600 meta-steps), in three arms: plain MAML, entropy TAML and Theil TAML. The weights were fixed before any run was tested, from the size of each term: the entropy of a 5-way prediction is at most $\log 5 \approx 1.61$ nats, so $\lambda = 0.5$ makes the entropy term comparable to the query loss; the Theil index of losses that differ by a few percent is of the order of $10^{-3}$, so its weight is larger ($\lambda = 5$). Every model is tested after 10 inner steps on the same 300 test episodes.
""")
code(r"""
import time

from mlbook_utils import data

start = time.perf_counter()
train = data.load_omniglot("train")
test = data.load_omniglot("test")
print(f"loaded in {time.perf_counter() - start:.1f} s")
S = registry.settings_at(taml.OMNIGLOT_SETTINGS)
registry.settings_table(taml.OMNIGLOT_SETTINGS)
""")
code(r"""
omni = taml.omniglot_experiment(S, data={"train": train, "test": test})
rows = {}
for seed in S["seeds"]:
    rows[f"seed {seed}"] = {taml.NAMES[a]: f"{omni.results[a, seed].accuracy:.1f} ± "
                                           f"{omni.results[a, seed].ci95:.1f}" for a in S["arms"]}
for arm in S["arms"][1:]:
    mean, ci, n = omni.extra["paired", arm]
    rows[f"{taml.NAMES[arm]} − MAML (points)"] = {taml.NAMES[arm]: f"{mean:+.2f} ± {ci:.2f}"}
table = pd.DataFrame(rows).T.fillna("")
table.columns.name = "5-way 1-shot test accuracy (%)"
table
""")
md(r"""
OMNI_PROSE
""")
md(r"""
## What the regularisers changed

Did each objective do what it says? The table measures, for every model, on 200 tasks of the **test** classes (5-way 1-shot, 5 queries per class): the initial and adapted query losses, the mean entropy of the initial and adapted predictions (nats; at most $\log 5 = 1.61$), and the Theil index of the initial losses across those tasks, each averaged over the seeds.
""")
code(r"""
keys = ["initial_loss", "adapted_loss", "initial_entropy", "adapted_entropy", "theil_initial"]
diag = pd.DataFrame({taml.NAMES[a]: {k: np.mean([omni.extra["diag", a, sd][k]
                                                  for sd in S["seeds"]]) for k in keys}
                     for a in S["arms"]}).T
diag.columns = ["initial loss", "adapted loss", "initial entropy", "adapted entropy",
                "Theil (initial)"]
diag.round(4)
""")
md(r"""
The figure puts the three comparisons side by side: Omniglot accuracy by arm and seed with the 95 % interval of each model's test episodes (top), the sinusoid's test MSE by arm and seed (middle), and the sinusoid's $\lambda$ sweep on validation tasks (bottom).
""")
code(r"""
import matplotlib.pyplot as plt

with plt.rc_context({"font.size": 12}):
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(6.4, 10))
    arms = list(S["arms"])
    for i, sd in enumerate(S["seeds"]):
        res = [omni.results[a, sd] for a in arms]
        xs = np.arange(len(arms)) + 0.1 * (i - (len(S["seeds"]) - 1) / 2)
        ax1.errorbar(xs, [r.accuracy for r in res], yerr=[r.ci95 for r in res], marker="o",
                     capsize=3, label=f"seed {sd}")
    ax1.set_xticks(np.arange(len(arms)), ["MAML", "entropy", "Theil"])
    ax1.set(ylabel="5w1s test acc. (%)", title="Omniglot: same budget, three objectives")
    ax1.legend(fontsize=10, ncol=len(S["seeds"]), loc="lower center")
    for i, sd in enumerate(SIN["seeds"]):
        ys = [np.nanmean(sin.results[a, sd]) for a in ("maml", "theil")]
        ax2.plot([0, 1], ys, marker="o", label=f"seed {sd}")
    ax2.set_xticks([0, 1], ["MAML", f"Theil (λ={best:g})"])
    ax2.set_xlim(-0.3, 1.3)
    ax2.set(ylabel="MSE after 1 step", title="Sinusoids (K = 10): test MSE")
    ax2.legend(fontsize=10)
    lams = sorted(sin.extra["val"])
    ax3.plot(np.arange(len(lams)), [sin.extra["val"][lam] for lam in lams], marker="s")
    ax3.set_xticks(np.arange(len(lams)), [f"{lam:g}" for lam in lams])
    ax3.set(xlabel="Theil weight λ (0: MAML)", ylabel="validation MSE",
            title="Sinusoids: the λ sweep (seed 0)")
    fig.tight_layout()
    plt.show()
""")
md(r"""
DIAG_PROSE
""")
md(r"""
## Sanity checks

The cell below fails if learning did not happen: every Omniglot model must be far above chance (20 %), every sinusoid model far below the MSE of predicting zero (about 3 on these tasks), and the diagnostics must be what they claim to be (entropies between 0 and $\log 5$, a non-negative Theil index).
""")
code(r"""
margin = config.by_scale(quick=5, cpu=30, full=30)
mse_bound = config.by_scale(quick=3.5, cpu=1.5, full=1.5)
for (arm, sd), res in omni.results.items():
    assert res.accuracy > 20 + margin, (arm, sd, res)
for (arm, sd), mse in sin.results.items():
    assert np.nanmean(mse) < mse_bound, (arm, sd, np.nanmean(mse))
for key, d in omni.extra.items():
    if key[0] == "diag":
        assert 0 <= d["adapted_entropy"] and d["initial_entropy"] <= np.log(5) + 1e-4, (key, d)
        assert d["theil_initial"] >= -1e-9, (key, d)
print(f"every arm and seed learned (5-way 1-shot above {20 + margin} %, sinusoid MSE below "
      f"{mse_bound})")
""")
md(r"""
## Summary

SUMMARY_PROSE

## Exercises

**1. Why is MAML's initial model already uncertain on Omniglot?** The diagnostics show that MAML's *unadapted* predictions on a 5-way task are close to uniform, and its initial losses nearly equal across tasks, without any regulariser. Why?

<details><summary>Answer</summary>

In an $N$-way episode the labels $0, \ldots, N-1$ are given to the sampled classes in a random order, different in every task. Before adaptation the network cannot know which class got which label, so any confident initial prediction is wrong as often as right, and a loss averaged over many tasks is lowest when the initial predictions are uniform over the labels. MAML's own objective already pushes the initial model towards maximal entropy and equal initial losses (about $\log N$ each). This is why TAML's regularisers have little left to act on here; in problems where the outputs keep their meaning across tasks (regression, or classification with fixed labels), they can matter more.
</details>

**2. What does the Theil index reward, and what can go wrong?** The inequality term can be lowered in two ways. Which, and why might one of them hurt?

<details><summary>Answer</summary>

It can be lowered by reducing the losses of the tasks that are worst before adaptation, or by *raising* the losses of the tasks that are easiest. The index only sees ratios to the mean, so it is indifferent between the two, and the second makes the initial model worse on easy tasks. On sinusoids, tasks with small amplitudes have small initial MSEs whatever the model does, so a large weight on equality can pull the initial model away from what is best for them. Only the adapted loss, which the main term measures, says whether the trade was worth it.
</details>

**3. Why choose $\lambda$ on validation tasks, and why keep the seeds paired?** The sinusoid sweep picks $\lambda$ on tasks drawn with their own seed, and the comparison subtracts the arms seed by seed.

<details><summary>Answer</summary>

Choosing $\lambda$ on the test tasks would make TAML's test figure the best of several tries, a biased estimate, while MAML gets one try. Paired seeds share the initial weights and the stream of tasks, so the difference removes what the two arms have in common (a lucky or unlucky initialisation) and its interval is narrower than that of two independent means; with 3 seeds it still uses Student's $t$ (4.30 standard errors), because the spread is estimated from only 3 differences.
</details>

**4. Try it (longer).** Give the Theil variant a weight 10 times larger on Omniglot (`S = dict(S, lam={"entropy": 0.5, "theil": 50.0})`) and rerun the experiment. Does the Theil index of the initial losses fall, and does accuracy move? Then try 20-way episodes (`runs=[dict(S["runs"][0], n_way=20)]`), where the initial losses are higher and perhaps more unequal.

**5. Checked exercise: the inequality-minimising objective.** Write the meta-objective of one meta-batch from the tasks' adapted query losses and initial losses: the mean adapted loss plus `lam` times the Theil index of the initial losses. The checker tests it on small cases and says what is wrong.
""")
code(r"""
import mlbook_utils.exercises.ch09_1  # noqa: F401 (loads this chapter's checkers)
from mlbook_utils import exercises


def my_taml_objective(adapted_losses, initial_losses, lam):
    # Your code here: mean of adapted_losses, plus lam times the Theil index of initial_losses.
    raise NotImplementedError("MAML's meta-objective plus lam times the Theil index")


exercises.ch09_1.check_taml_objective(my_taml_objective)
""")
md(r"""
<details><summary>Reference solution</summary>

```python
import numpy as np

def my_taml_objective(adapted_losses, initial_losses, lam):
    r = np.asarray(initial_losses, dtype=float)
    r = r / r.mean()
    return float(np.mean(adapted_losses)) + lam * float(np.mean(r * np.log(r)))
```
</details>

## References

- Finn, C., Abbeel, P., & Levine, S. (2017). Model-agnostic meta-learning for fast adaptation of deep networks. *ICML*.
- Jamal, M. A., & Qi, G.-J. (2019). Task agnostic meta-learning for few-shot learning. *CVPR*.
- Eshratifar, A. E., Eigen, D., & Pedram, M. (2018). Gradient agreement as an optimization objective for meta-learning. *arXiv:1810.08178*.
""")
nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}, "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
json.dump(nb, open("/work/main/chapters/09_1_task_agnostic.ipynb", "w"), indent=1, ensure_ascii=False)
open("/work/main/chapters/09_1_task_agnostic.ipynb", "a").write("\n")
