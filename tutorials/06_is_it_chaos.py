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
# # 6. Is it really chaos?  Surrogates, the 0-1 test and recurrence networks
#
# A positive Rosenstein slope or a high determinism (DET) is not yet evidence of chaos: noise, drift and
# short series produce both.  The field's answer (Theiler et al., Physica D 58, 1992; Schreiber & Schmitz,
# Physica D 142, 2000) is **surrogate data**: compute the statistic on the data and on series that share its
# linear properties (power spectrum, value distribution — IAAFT surrogates) but nothing else, and report the
# rank p-value.  A second, model-free question is whether the series is *regular* at all: the **0-1 test**
# (Gottwald & Melbourne 2004, 2009) gives K ≈ 0 for periodic or quasi-periodic dynamics and K ≈ 1 for chaos
# — and for noise.  Neither alone is a verdict; together they are:
#
# | K (0-1 test) | surrogate test of a nonlinear statistic | verdict |
# |---|---|---|
# | ≈ 0 | — | regular (fixed point, cycle, torus) |
# | ≈ 1 | rejects the linear null (p ≤ 0.05) | irregular *and* nonlinear-deterministic: chaos is supported |
# | ≈ 1 | does not reject | irregular, indistinguishable from linear noise at this length |
#
# Part 1 checks this on series whose nature is known; part 2 applies it to the bundled reference run
# (`data/iris_sgd_reference.nc`); part 3 to a small learning-rate sweep of the iris MLP, where the map's own
# Lyapunov exponent tells us the truth.  The end shows the recurrence *network* view of the same run.

# %%
import os
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import netdyn
from netdyn.series.observables import observable_series
from netdyn.series.recurrence_network import network_measures
from netdyn.series.significance import chaos_test

torch.set_num_threads(1)
warnings.simplefilter("ignore", RuntimeWarning)  # embedding-parameter notes on short series
QUICK = os.environ.get("NETDYN_TUTORIAL_QUICK") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = HERE / "figures"
REFERENCE = HERE.parent / "data" / "iris_sgd_reference.nc"

N_SUR = 19 if QUICK else 39  # surrogates per test: smallest p = 1 / (N_SUR + 1)
N_SERIES = 400 if QUICK else 1000  # length of the known series of part 1
STEPS = 300 if QUICK else 800  # training steps per learning rate in part 3
SKIP = 100 if QUICK else 200  # transient left out of the analysed series
LRS = [2.0, 20.0] if QUICK else [2.0, 8.0, 14.0, 20.0, 26.0, 32.0]
T_START = time.perf_counter()


def save(fig, name):
    """Show the figure; in full mode also write tutorials/figures/06_<name>.png."""
    if not QUICK:
        FIGURES.mkdir(exist_ok=True)
        fig.savefig(FIGURES / f"06_{name}.png", dpi=90, bbox_inches="tight")
    plt.show()


def verdict(series, seed=0):
    """``chaos_test``: K of the 0-1 test, then DET against IAAFT surrogates (Rosenstein's p alongside)."""
    res = chaos_test(series, kind="iaaft", n=N_SUR, seed=seed, emb_dim=3, lag=1)
    return {name: float(res[name]) for name in res.data_vars} | {"verdict": res.attrs["verdict"]}


def show(name, v):
    print(f"{name:<28} K={v['K']:5.2f}  DET={v['DET']:.3f} (p={v['p_DET']:.3f})  "
          f"Rosenstein={v['rosenstein']:+.3f} (p={v['p_rosenstein']:.3f})  -> {v['verdict']}")


# %% [markdown]
# ## Part 1 — series whose nature is known
#
# The logistic map in a periodic window (r = 3.83, period 3) and fully chaotic (r = 4, λ = ln 2 = 0.693), and
# a linear Gaussian AR(1) process $x_{t+1} = 0.8 x_t + \xi_t$.  Each test uses IAAFT surrogates; DET at a
# recurrence rate of 5 % in a 3-dimensional delay embedding.

# %%
def logistic(r, n, x=0.3, burn=500):
    out = np.empty(n + burn)
    for i in range(n + burn):
        x = r * x * (1 - x)
        out[i] = x
    return out[burn:]


def ar1(n, phi=0.8, seed=0):
    noise = np.random.default_rng(seed).normal(size=n)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + noise[i]
    return x


known = {
    "logistic r=3.83 (period 3)": logistic(3.83, N_SERIES) + 1e-6 * np.random.default_rng(1).normal(size=N_SERIES),
    "logistic r=4 (chaos)": logistic(4.0, N_SERIES),
    "AR(1), phi=0.8 (noise)": ar1(N_SERIES),
}
known_verdicts = {name: verdict(x) for name, x in known.items()}
for name, v in known_verdicts.items():
    show(name, v)

# %% [markdown]
# (The period-3 orbit gets a $10^{-6}$ jitter so that its recurrence threshold is not zero.)  The AR(1)
# process has a clearly *positive* Rosenstein slope and K ≈ 1: by either alone it would be called chaotic.
# Its surrogates give the same numbers, so the test does not reject.  For the logistic map the data's DET
# beats every surrogate (p = 1/(n+1)).  The surrogates' Rosenstein slopes are computed on the fit range chosen
# on the data (`significance` freezes every setting it chooses from the data), so that only the series
# differs.
#
# ## Part 2 — the reference run
#
# GD at lr = 20 on iris (`data/iris_sgd_reference.nc`): a chaotic transient (the map's twin exponent is 0.27
# per step over the first 600 steps), then a slowly contracting period-2 cycle.  We test the loss of both
# phases.

# %%
ds = netdyn.open_trajectory(REFERENCE)
loss = ds["loss"].values
phases = {
    "reference, steps 0-300": loss[:300],
    "reference, steps 0-600": loss[:600],
    "reference, steps 1500-3000": loss[1500:3000 if not QUICK else 2100],
}
ref_verdicts = {name: verdict(x) for name, x in phases.items()}
for name, v in ref_verdicts.items():
    show(name, v)

# %% [markdown]
# ## Part 3 — a learning-rate sweep, with the truth at hand
#
# The same MLP (4 → 8 → 3, tanh, full-batch GD) at six learning rates, `STEPS` steps each.  The map's own
# maximal Lyapunov exponent (exact tangent, Benettin) is the ground truth; the offline verdicts see only the
# loss after the first `SKIP` steps.

# %%
task = netdyn.make_task("iris", hidden=(8,), activation="tanh", seed=0)
rows = []
for lr in LRS:
    tmap = netdyn.training_map(task, lr=lr)
    x0 = tmap.initial_state()
    record = netdyn.run(tmap, x0, STEPS)
    lam = netdyn.max_lyapunov(tmap, x0, STEPS, method="tangent")
    series = observable_series(record, observable="loss")[SKIP:]
    v = verdict(series)
    v.update(lr=lr, lam=float(lam["lyapunov"]), lam_tail=float(lam["local_rate"][SKIP:].mean()))
    rows.append(v)
    show(f"lr={lr:4.1f}, lambda={v['lam_tail']:+.3f}", v)

# %% [markdown]
# Which "chaotic" learning rates survive?  Call a run chaotic by the map when its exponent over the analysed
# steps exceeds 0.01 per step, and by the naive data-driven rule when Rosenstein's slope is positive:

# %%
print(f"{'lr':>5} {'lambda (map)':>13} {'Rosenstein':>11} {'K':>6} {'p DET':>7}   naive  ->  tested")
for v in rows:
    naive = v["rosenstein"] > 0
    tested = v["verdict"] == "chaotic"
    print(f"{v['lr']:5.1f} {v['lam_tail']:13.3f} {v['rosenstein']:11.3f} {v['K']:6.2f} {v['p_DET']:7.3f}   "
          f"{'chaos' if naive else '-':>5}  ->  {'chaos' if tested else '-'}")

# %%
lr_arr = np.array([v["lr"] for v in rows])
fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
ax_a.plot(lr_arr, [v["lam_tail"] for v in rows], "o-", color="k", label=r"$\lambda$ of the map (tangent)")
ax_a.plot(lr_arr, [v["rosenstein"] for v in rows], "s--", color="C1", label="Rosenstein slope (loss)")
ax_a.plot(lr_arr, [v["K"] for v in rows], "^-", color="C0", label="0-1 test K")
ax_a.axhline(0, color="0.5", lw=0.5)
ax_a.set(xlabel="learning rate", ylabel="per step  /  K", title="what the map says vs what the loss says")
ax_a.legend(fontsize="small")
ax_b.semilogy(lr_arr, [v["p_DET"] for v in rows], "o-", color="C3", label="DET vs IAAFT")
ax_b.semilogy(lr_arr, [v["p_rosenstein"] for v in rows], "s--", color="C1", label="Rosenstein vs IAAFT")
ax_b.axhline(0.05, color="k", lw=0.8, ls=":")
ax_b.axhline(1 / (N_SUR + 1), color="0.6", lw=0.6)
ax_b.text(lr_arr[0], 0.055, "p = 0.05", fontsize="small")
ax_b.set(xlabel="learning rate", ylabel="rank p-value", ylim=(0.8 / (N_SUR + 1), 1.2),
         title=f"surrogate tests ({N_SUR} IAAFT surrogates each)")
ax_b.legend(fontsize="small")
save(fig, "headline")

# %% [markdown]
# ## The recurrence network view
#
# The ε-recurrence network of the recorded weights (Marwan et al. 2009; nodes are time steps, links join
# states closer than ε, here at a 5 % link density; built from a k-d tree, no N × N matrix) summarises the
# geometry the orbit visits.  Its measures agree with pyunicorn's `RecurrenceNetwork` to machine precision
# (tests/test_recurrence_network.py).

# %%
states = ds["state"].values
for name, part in {"steps 0-600": states[:600], "steps 2400-3000": states[2400:3000]}.items():
    net = network_measures(part, recurrence_rate=0.05, path_sources=100)
    print(f"{name:<16} transitivity {float(net['transitivity']):.3f}  global clustering "
          f"{float(net['global_clustering']):.3f}  average path length {float(net['average_path_length']):.2f}")
print(f"total wall time: {time.perf_counter() - T_START:.0f} s")

# %% [markdown]
# ## Conclusion
#
# Numbers from the full-size run (printed above; 39 IAAFT surrogates per test, so the smallest p is 0.025).
#
# * **Known series.**  The combined verdict is right on all three: logistic r = 3.83 has K = 0.00 (regular);
#   logistic r = 4 has K = 1.00 and DET 0.78 above every surrogate (p = 0.025; Rosenstein 0.676 against
#   ln 2 = 0.693, p = 0.025); the AR(1) process has K = 0.96 and a Rosenstein slope of +0.31 per step — "chaos"
#   by either number alone — but neither DET (p = 1.0) nor the slope (p = 0.53) differs from its surrogates.
# * **The reference run** (lr = 20).  The period-2 cycle (steps 1500–3000) is regular (K = −0.04).  The chaotic
#   transient is too short to be certified from the loss alone: K = 0.53 and DET p = 0.075 on steps 0–300,
#   K = 0.48 on steps 0–600, where the window already mixes the transient with the cycle.  Rosenstein's slope
#   on steps 0–600 (+0.30) is close to the map's exponent (0.27), but on steps 0–300 (+0.46) it does not beat
#   its surrogates (p = 0.125).
# * **The sweep.**  The naive rule "Rosenstein slope > 0" is wrong in both directions: it calls lr = 2 chaotic
#   (slope +0.003, map exponent +0.001: a converging run) and misses lr = 14 (slope −0.018, map exponent
#   +0.083); where it is positive it underestimates the map's exponent several-fold (0.08 against 0.45 at
#   lr = 20, 0.04 against 0.42 at lr = 26).  DET alone rejects the linear null at *every* learning rate
#   (p = 0.025), because a converging loss is deterministic too — just not chaotic; the 0-1 test removes those
#   (K = 0.01 and −0.07 at lr = 2 and 8).  The combined test keeps lr = 14, 20, 26 and 32 (K 0.96–0.98, DET
#   p = 0.025), exactly the runs whose map exponent over the analysed steps is clearly positive (0.08, 0.45,
#   0.42, 0.26 per step).  Rosenstein's slope against IAAFT surrogates confirms only lr = 32 (p = 0.025).
# * **Recurrence networks.**  At a 5 % link density, the weights' network of the chaotic phase (steps 0–600)
#   has short paths (2.0) and low mean local clustering (0.38); that of the late cycle (steps 2400–3000) is a
#   long chain (path length 6.9) of tightly clustered states (0.74).
#
# **Practice.**  Report K together with a surrogate p-value of a nonlinear statistic (DET in an embedding is
# a good default) on a stationary stretch of the series of at least several hundred steps; treat a
# Rosenstein slope as an estimate of the exponent's size once chaos is established, not as the test.
