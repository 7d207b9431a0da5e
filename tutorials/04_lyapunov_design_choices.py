# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Lyapunov exponents for design choices
#
# **Paper.** T. Mittra, *Utilizing Lyapunov exponents in designing deep neural networks*, arXiv:2410.05988
# (2024).
#
# **What they did.** Networks with different hidden-layer activation functions were trained by gradient descent
# from several random seeds, and the largest Lyapunov exponent of the weight dynamics was estimated along
# training.  Three claims: (1) the learning rate can make the weight dynamics chaotic; (2) activation functions
# with *more negative* exponents converge better; (3) exponents can pick good initial weights among
# candidates.
#
# **What we reproduce.** The iris MLP 4 → 8 → 3 (float64, PyTorch's default initialisation, full-batch GD,
# cross-entropy) with six activations (tanh, relu, sigmoid, gelu, elu, silu) and many seeds at a moderate and a
# large learning rate, using `netdyn.sweep.grid` (twin-orbit exponent over the whole run, final loss, time to 90 %
# test accuracy).  Then claim (3): exponents from the **first 25 steps** (`netdyn.max_lyapunov`, twin orbits)
# rank candidate initial weights; we train every candidate fully and measure where the picked one lands among
# its pool — and compare with the cheapest alternative, picking by the loss at the same early step.  The
# conclusion says honestly what held.

# %%
import os
import time
import warnings
from pathlib import Path

import dask
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

import netdyn
from netdyn.maps.problems import make_task, training_map

torch.set_num_threads(1)
pd.set_option("display.width", 120)
QUICK = os.environ.get("NETDYN_TUTORIAL_QUICK") == "1"
FIGURES = (Path(__file__).parent if "__file__" in globals() else Path(".")) / "figures"

ACTIVATIONS = ["tanh", "relu", "sigmoid", "gelu", "elu", "silu"]
LRS = [1.0, 8.0]
if QUICK:  # the test suite: few seeds, short runs, no Dask cluster
    N_SEEDS, STEPS, N_CANDIDATES, POOL, N_POOLS, WORKERS = 3, 60, 12, 6, 20, 0
    PICK_CONFIGS = [("relu", 8.0)]
else:
    N_SEEDS, STEPS, N_CANDIDATES, POOL, N_POOLS, WORKERS = 10, 500, 100, 20, 500, 2
    PICK_CONFIGS = [("relu", 8.0), ("tanh", 8.0)]
EARLY = 25  # steps of the early exponent
t_start = time.perf_counter()

# %% [markdown]
# ## Claims 1 and 2: activation × seed × learning rate
#
# `netdyn.sweep.grid` trains every combination, each point on one core (`n_workers` Dask workers), and measures the
# maximal exponent by twin orbits ($d_0 = 10^{-9}$, renormalised every step) over the whole run, the final
# training loss and the first step reaching 90 % test accuracy.  A diverged run has exponent and final loss
# $+\infty$.
#
# The workers are forked rather than spawned (as in tutorial 02): a spawned worker re-imports the main module, which
# starts the sweep again when this file runs as a plain script (a notebook has no `if __name__ == "__main__":` guard).

# %%
dask.config.set({"distributed.worker.multiprocessing-method": "fork"})
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    result = netdyn.run_sweep(
        task="iris", lr=LRS, seed=range(N_SEEDS), activation=ACTIVATIONS, steps=STEPS,
        target_accuracy=0.9, n_workers=WORKERS, progress=False,
    ).sel(optimizer="sgd")
print(f"{result.attrs['points_total']} training runs in {time.perf_counter() - t0:.0f} s")


def medians(lr: float) -> pd.DataFrame:
    r = result.sel(lr=lr)
    return pd.DataFrame({
        "exponent": r["lyapunov"].median("seed"),
        "final loss": r["final_loss"].median("seed"),
        "steps to 90%": r["time_to_target"].median("seed"),
        "diverged": r["diverged"].sum("seed"),
    }, index=r["activation"].values)


for lr in LRS:
    print(f"\nlr = {lr}: medians over {N_SEEDS} seeds")
    print(medians(lr).round(4))

# %% [markdown]
# **Rank correlations.** Is a more negative (smaller) exponent associated with a lower final loss and a
# shorter time to target?  Three levels: all runs of a learning rate pooled; the activations' medians (the
# paper's design question, 6 points); and seeds within one activation (averaged over activations).
# Spearman's $\rho > 0$ means "smaller exponent, better training".

# %%
def rank_table() -> pd.DataFrame:
    rows = []
    for lr in LRS:
        r = result.sel(lr=lr)
        lam, loss, ttt = (r[v].values for v in ("lyapunov", "final_loss", "time_to_target"))
        med = medians(lr)
        within = [spearmanr(lam[:, a], loss[:, a])[0] for a in range(len(ACTIVATIONS))]
        rows.append({
            "lr": lr,
            "rho(exp, loss) all runs": spearmanr(lam.ravel(), loss.ravel())[0],
            "rho(exp, time) all runs": spearmanr(lam.ravel(), ttt.ravel())[0],
            "rho(exp, loss) activation medians": spearmanr(med["exponent"], med["final loss"])[0],
            "rho(exp, loss) within activation": np.nanmean(within),
        })
    return pd.DataFrame(rows).set_index("lr")


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # constant inputs (quick mode) give NaN correlations
    ranks = rank_table()
print(ranks.round(2).T)

# %% [markdown]
# ## Claim 3: pick initial weights by their early exponent
#
# For one activation and learning rate, `N_CANDIDATES` initial weights (seeds) are candidates.  For each we
# estimate the maximal exponent over the first 25 steps (twin orbits, all candidates in one `max_lyapunov`
# call) and note the loss at step 25; then we train every candidate for the full run.  From many random pools
# of `POOL` candidates, a selector picks one and we record the percentile of its final loss within the pool
# (0 % = the best candidate, 100 % = the worst; a random pick scores 50 % on average).
#
# Selectors: the smallest early exponent (the paper's), the largest early exponent (the opposite), and the
# smallest loss at step 25 (the baseline that costs nothing extra).

# %%
def candidates(activation: str, lr: float) -> pd.DataFrame:
    tmap = training_map(make_task("iris", hidden=(8,), activation=activation), lr=lr)
    x0s = torch.stack([tmap.initial_state(seed) for seed in range(N_CANDIDATES)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        early = netdyn.max_lyapunov(tmap, x0s, EARLY, method="twin")["lyapunov"].values
        rows = []
        for seed in range(N_CANDIDATES):
            orbit = netdyn.run(tmap, x0s[seed], STEPS, record_every=1)
            loss = orbit["loss"].values
            final = loss[-1] if not bool(orbit["diverged"]) and len(loss) == STEPS else np.inf
            # a run stops where it diverges (netdyn.maps.divergence): one that blew up before EARLY has no early loss
            early_loss = loss[EARLY] if len(loss) > EARLY else np.inf
            rows.append({"early exponent": early[seed], "early loss": early_loss, "final loss": final})
    return pd.DataFrame(rows)


def pick_percentiles(table: pd.DataFrame, rng: np.random.Generator) -> pd.Series:
    """Mean percentile of the picked candidate's final loss within random pools."""
    final = table["final loss"].values
    selectors = {
        "smallest early exponent": table["early exponent"].values,
        "largest early exponent": -table["early exponent"].values,
        "smallest early loss": table["early loss"].values,
    }
    out = {name: [] for name in selectors}
    for _ in range(N_POOLS):
        pool = rng.choice(len(table), size=POOL, replace=False)
        for name, score in selectors.items():
            picked = pool[np.argmin(np.nan_to_num(score[pool], nan=np.inf))]
            out[name].append(100 * np.sum(final[pool] < final[picked]) / (POOL - 1))
    return pd.Series({name: np.mean(v) for name, v in out.items()})


t0 = time.perf_counter()
rng = np.random.default_rng(0)
tables, picks, correlations = {}, {}, {}
for activation, lr in PICK_CONFIGS:
    key = f"{activation}, lr={lr:g}"
    tables[key] = table = candidates(activation, lr)
    picks[key] = pick_percentiles(table, rng)
    correlations[key] = pd.Series({
        "rho(early exponent, final loss)": spearmanr(table["early exponent"], table["final loss"])[0],
        "rho(early loss, final loss)": spearmanr(table["early loss"], table["final loss"])[0],
        "diverged": int(np.isinf(table["final loss"]).sum()),
    })
print(f"{len(PICK_CONFIGS) * N_CANDIDATES} candidates trained in {time.perf_counter() - t0:.0f} s")
print(f"\nmean percentile of the picked candidate's final loss ({N_POOLS} random pools of {POOL}; random = 50 %)")
print(pd.DataFrame(picks).round(1))
print()
print(pd.DataFrame(correlations).round(2))

# %% [markdown]
# ## Figure

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
markers = dict(zip(ACTIVATIONS, "osD^vP"))
for lr, ax in zip(LRS, axes[:2]):
    r = result.sel(lr=lr)
    for a in ACTIVATIONS:
        q = r.sel(activation=a)
        lam = np.clip(q["lyapunov"].values, None, 2.0)  # diverged (+inf) drawn at 2
        loss = np.clip(q["final_loss"].values, None, 10.0)  # diverged drawn at 10
        ax.scatter(lam, loss, marker=markers[a], s=22, label=a, alpha=0.8)
    ax.set_yscale("log")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set(xlabel="maximal exponent (twin, whole run), per step", ylabel="final training loss",
           title=f"lr = {lr:g}: rho(all runs) = {ranks.loc[lr, 'rho(exp, loss) all runs']:+.2f}")
axes[0].legend(fontsize=8)

ax = axes[2]
frame = pd.DataFrame(picks)
pos = np.arange(len(frame.index))
width = 0.8 / len(frame.columns)
for j, column in enumerate(frame.columns):
    ax.bar(pos + (j - (len(frame.columns) - 1) / 2) * width, frame[column], width, label=column)
ax.axhline(50, color="k", ls="--", lw=1, label="random pick")
ax.set_xticks(pos, frame.index, rotation=15, fontsize=8)
ax.set(ylabel="percentile of final loss in pool (lower = better)", title="picking initial weights early",
       ylim=(0, 100))
ax.legend(fontsize=8)
fig.tight_layout()
if not QUICK:
    FIGURES.mkdir(exist_ok=True)
    fig.savefig(FIGURES / "04_headline.png", dpi=90)
plt.show()
print(f"total wall time {time.perf_counter() - t_start:.0f} s")

# %% [markdown]
# ## Conclusion
#
# *(Numbers from the full-size run: iris 4 → 8 → 3, 500 full-batch GD steps, 10 seeds per activation and
# learning rate; 100 candidates per configuration for the picking experiment.)*
#
# **Claim 1 — the learning rate makes the weights chaotic: reproduced.** At lr 1 every activation's median
# exponent is $+0.002$ per step (0.0018–0.0026: marginal stability, not chaos); at lr 8 the medians are
# 0.009–0.15 per step, and elu, gelu, relu and silu diverge in 10, 9, 9 and 8 of 10 runs — by the divergence
# rule's loss blow-up (the cross-entropy grows more than a thousandfold while staying finite; counted as
# finite, not diverged, before that rule existed).
#
# **Claim 2 — more negative exponent, better convergence: only through chaos and divergence.** No exponent is
# negative anywhere: with flat directions of an over-parametrised network and a cross-entropy that keeps
# decreasing as the weights grow, GD is marginally stable at best, so "more negative" can only mean "less
# positive".  At lr 8 the rank correlation between exponent and final loss is $\rho = 0.40$ over all runs, 0.54
# over the six activations' medians and 0.23 within an activation (exponent vs time to 90 %: 0.53) — but it is
# carried by the chaotic and diverging runs: sigmoid has the smallest exponent (0.009) yet a final loss more
# than 100 times that of tanh (0.048 vs 0.0003, tanh's exponent 0.045).  At lr 1 the link is weak ($\rho = 0.21$ over
# all runs, 0.14 over activation medians): sigmoid has the largest exponent and is the slowest and worst, but
# relu, with the lowest final loss (0.044, as the paper found for relu), is not the one with the smallest
# exponent — the exponents differ by less than $10^{-3}$ per step.
#
# **Claim 3 — early exponents pick good initial weights: only where runs diverge, and never better than the
# early loss.** Over 500 random pools of 20 candidates, the candidate with the smallest 25-step exponent lands at
# the 18.0th percentile of its pool's final losses for relu at lr 8 (random: 50) — 63 of the 100 relu candidates
# diverge, and an early chaotic burst announces it — and at the 52.1th for tanh at lr 8 (no better than random,
# no candidate diverges); the rank correlation between early exponent and final loss is 0.65 and $-0.02$.
# Picking by the loss at step 25, which costs nothing extra, reaches the 11.1th percentile for relu
# ($\rho = 0.94$) and the 46.4th for tanh.  The early loss is the better selector; the early exponent adds
# nothing to it.
