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
# # 1. Training as a dynamical system
#
# **Paper.** L. Danovski, M. C. Soriano, L. Lacasa, *Dynamical stability and chaos in artificial neural
# network trajectories along training*, Front. Complex Syst. (2024), arXiv:2404.05782.
#
# **What they did.** Gradient descent is a deterministic map, $\theta_{t+1} = \theta_t - \eta \nabla L(\theta_t)$,
# so training a network draws an *orbit* in parameter space — equivalently a time series of weighted graphs.
# They trained a shallow network on iris with plain full-batch gradient descent over a range of learning
# rates $\eta$ and asked two questions of each orbit:
#
# * **orbital stability** — where does the orbit go: does it settle to a fixed point, cycle, or wander?
# * **dynamical stability** — do nearby orbits stay close? An ensemble of networks whose initial weights differ
#   from a reference by at most $\varepsilon$ is trained alongside it; the growth rate of the $L_1$ distance
#   $d(t)$ between their weights is a finite-time Lyapunov exponent.
#
# They report regular (marginally stable) dynamics at small $\eta$, positive finite-time exponents at larger
# $\eta$ (the edge-of-stability regime, where training still learns), and chaotic / intermittent orbits at
# very large $\eta$.
#
# **What we reproduce.** The same set-up — an MLP 4 → 8 → 3 (tanh, float64, PyTorch's default
# initialisation), full-batch GD on iris — for $\eta$ from 0.1 to 40, with netdyn: the orbit recorded by
# `run`, the graph view (`to_graph`, `graph_trajectory`, `trajectory_distances`), orbital classes
# (`orbital_stability`, the orbit diagram), twin-orbit exponents (`max_lyapunov(method="twin")`) and the
# paper's perturbation ensemble (`perturbation_growth`).  The conclusion at the end says what matched.

# %%
import os
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pandas as pd
import torch
import xarray as xr

import netdyn
from netdyn.plot import plot_convergence, plot_distance_curves, plot_orbit_diagram
from netdyn.plot.orbits import LABEL_COLORS

torch.set_num_threads(1)
QUICK = os.environ.get("NETDYN_TUTORIAL_QUICK") == "1"
FIGURES = (Path(__file__).parent if "__file__" in globals() else Path(".")) / "figures"

if QUICK:  # the test suite: a handful of learning rates, short orbits
    LRS = np.array([0.3, 3.0, 10.0, 20.0, 30.0])
    STEPS, PG_STEPS, PG_COPIES = 300, 100, 3
else:  # 12 learning rates below 8, 30 above (the interesting range is 8..40)
    LRS = np.concatenate([np.geomspace(0.1, 8.0, 12, endpoint=False), np.geomspace(8.0, 40.0, 30)])
    STEPS, PG_STEPS, PG_COPIES = 1500, 400, 5
TAIL = STEPS // 2  # the second half of each orbit is its "tail" (the first half is transient)
CHAOS = 0.01  # exponent per step above which an orbit counts as chaotic (netdyn's default exponent_tol)
T_START = time.perf_counter()


def save(fig, name):
    """Show the figure; in full mode also write tutorials/figures/01_<name>.png."""
    if not QUICK:
        FIGURES.mkdir(exist_ok=True)
        fig.savefig(FIGURES / f"01_{name}.png", dpi=90, bbox_inches="tight")
    plt.show()


# %% [markdown]
# ## The map
#
# `make_task("iris", ...)` builds the network and the fixed 75/25 stratified split; `training_map` turns
# (network, loss, data, optimiser, $\eta$) into a `TrainingMap` whose state is the flat parameter vector
# (67 numbers: $W_1$ 8×4, $b_1$, $W_2$ 3×8, $b_2$).  `run` iterates it and records the orbit as an xarray
# Dataset: `state(step, param)`, `loss`, `grad_norm`, test metrics.

# %%
task = netdyn.make_task("iris", hidden=(8,), activation="tanh", seed=0)
print(task.info)
tmap = netdyn.training_map(task, lr=1.0)
x0 = tmap.initial_state()
print("state dimension:", tmap.dim, "| exact tangent available:", netdyn.has_jacobian(tmap))
orbit = netdyn.run(tmap, x0, STEPS, eval_every=10)
orbit

# %%
acc = orbit["test_accuracy"].dropna("step")
fig, ax = plt.subplots(1, 2, figsize=(9, 3), constrained_layout=True)
ax[0].semilogy(orbit["step"], orbit["loss"])
ax[0].set(xlabel="step", ylabel="training loss", title="lr = 1")
ax[1].plot(acc["step"], acc)
ax[1].set(xlabel="step", ylabel="test accuracy", ylim=(0, 1.02))
save(fig, "training_lr1")
print(f"lr = 1: final loss {float(orbit.loss[-1]):.4f}, test accuracy {float(acc[-1]):.3f}")

# %% [markdown]
# ## The trajectory as a time series of weighted graphs
#
# `to_graph` turns a flat state into a `networkx.DiGraph`: one node per neuron (biases as node attributes),
# one edge per weight.  Here the network before and after training at $\eta = 1$, edge width ∝ |weight|,
# red = positive, blue = negative.

# %%
sizes = task.info["layer_sizes"]


def draw_network(state, ax, title):
    graph = netdyn.to_graph(np.asarray(state), layer_sizes=sizes)
    pos = nx.multipartite_layout(graph, subset_key="layer")
    weights = np.array([w for _, _, w in graph.edges(data="weight")])
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=120, node_color="0.85", edgecolors="k")
    nx.draw_networkx_edges(graph, pos, ax=ax, width=3 * np.abs(weights) / np.abs(weights).max(),
                           edge_color=np.where(weights > 0, "tab:red", "tab:blue"), arrows=False)
    ax.set_title(f"{title}\nmax |w| = {np.abs(weights).max():.2f}")
    ax.axis("off")
    return graph


fig, ax = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
g0 = draw_network(orbit["state"][0], ax[0], "step 0")
g1 = draw_network(orbit["state"][-1], ax[1], f"step {int(orbit.step[-1])} (lr = 1)")
save(fig, "graphs")
print(g1)

# %% [markdown]
# `graph_trajectory` yields that graph at every recorded step (lazily, one row of the file at a time), so
# any networkx measure becomes a time series.  For instance the total absolute in-strength of the output
# layer:

# %%
strength = np.array([
    sum(abs(w) for _, v, w in g.edges(data="weight") if v[0] == 2)
    for g in netdyn.graph_trajectory(orbit.isel(step=slice(None, None, 10)))
])
print("output-layer |strength| every 10 steps (first, middle, last):",
      np.round(strength[[0, len(strength) // 2, -1]], 3))

# %% [markdown]
# `trajectory_distances` computes the paper's distances between successive networks straight from the flat
# states (no graphs built; tested against the networkx route): Euclidean / $L_1$ / cosine distance between
# $x_t$ and $x_{t-1}$ and to the final network, the spectral distance between per-layer singular values, the
# Wasserstein distance between node-strength distributions, and rank correlations of the edge weights.

# %%
distances = netdyn.trajectory_distances(orbit)
fig = plot_distance_curves(distances)
fig.suptitle("distances along training, lr = 1", y=1.01)
save(fig, "distances_lr1")

# %% [markdown]
# ## A sweep over the learning rate
#
# For each $\eta$ we record the orbit (`run`) and estimate the maximal Lyapunov exponent with **twin orbits**
# (`max_lyapunov(method="twin")`: a second network $10^{-9}$ away, renormalised every step — Benettin's
# algorithm using only forward steps).  The twin run starts at the initial weights, so its local rates
# give two numbers:
#
# * the **finite-time exponent** over the whole run (what the paper measures, transient included),
#   and its value over the first quarter, $\lambda_\text{early}$;
# * the **tail exponent** $\lambda_\text{tail}$, the mean rate over the second half — the exponent of the set
#   the orbit settles on.
#
# `orbital_stability` then classifies the tail of the orbit (fixed point / periodic / quasi-periodic /
# chaotic / divergent), told $\lambda_\text{tail}$.

# %%
rows, orbits, twins = [], {}, {}
t_sweep = time.perf_counter()
for lr in LRS:
    m = netdyn.training_map(task, lr=float(lr))
    ds = netdyn.run(m, x0, STEPS, eval_every=50)
    twin = netdyn.max_lyapunov(m, x0, STEPS, method="twin")
    rates = twin["local_rate"].values
    lam_tail = float(rates[STEPS - TAIL:].mean())
    cls = netdyn.orbital_stability(ds, tail=TAIL, exponent=lam_tail)
    orbits[float(lr)], twins[float(lr)] = ds, twin
    rows.append(dict(
        lr=float(lr), lam=float(twin["lyapunov"]), lam_early=float(rates[: STEPS // 4].mean()), lam_tail=lam_tail,
        label=cls.label, period=cls.period or 0, final_loss=float(ds["loss"][-1]),
        accuracy=float(ds["test_accuracy"].dropna("step")[-1]), diverged=bool(ds["diverged"]),
    ))
table = xr.Dataset.from_dataframe(pd.DataFrame(rows).set_index("lr"))
print(f"{len(LRS)} learning rates in {time.perf_counter() - t_sweep:.0f} s")
print(f"{'lr':>7} {'lambda':>8} {'early':>8} {'tail':>8}  {'class':<15} {'loss':>7} {'acc':>6}")
for r in rows:
    label = r["label"] + (f" p={r['period']}" if r["label"] == "periodic" else "")
    print(f"{r['lr']:7.3f} {r['lam']:+8.4f} {r['lam_early']:+8.4f} {r['lam_tail']:+8.4f}  {label:<15} "
          f"{r['final_loss']:7.4f} {r['accuracy']:6.3f}")

# %% [markdown]
# ## Orbital stability
#
# **Distance curves.**  The Euclidean distance between successive networks, $\|x_t - x_{t-1}\|$, for one
# learning rate per regime: it decays to zero when the orbit converges to a fixed point, drops to a
# constant when it locks onto a cycle (successive states keep jumping between the cycle's points) and
# stays large and irregular when the orbit is chaotic.

# %%
def nearest(lr):
    return min(orbits, key=lambda v: abs(np.log(v / lr)))


examples = list(dict.fromkeys(nearest(v) for v in (1.3, 8.0, 21.7, 35.8)))
fig, ax = plt.subplots(figsize=(8, 3.5), constrained_layout=True)
for lr in examples:
    d = netdyn.trajectory_distances(orbits[lr], kendall=False)
    label = table["label"].sel(lr=lr).item()
    ax.semilogy(d["step"], d["euclidean"], lw=0.8, label=f"lr = {lr:.3g} ({label.replace('_', ' ')})")
ax.set(xlabel="step", ylabel=r"$\|x_t - x_{t-1}\|_2$", title="successive-network distance")
ax.legend(fontsize="small")
save(fig, "distance_regimes")

# %% [markdown]
# **Classes across $\eta$ and the orbit diagram.**  The tail of the loss at every learning rate, coloured by
# the class of the orbit — the training analogue of the logistic map's bifurcation diagram.
# `netdyn.orbit_diagram(map_, values, steps, tail=tail)` does the runs and the classification in one call;
# here we assemble the same Dataset from the sweep we already ran (so each orbit runs once) and check the
# one-call function on a few learning rates.

# %%
shown = min(300, TAIL)
diagram = xr.Dataset(
    {
        "orbit": (("value", "tail_step"), np.stack([orbits[lr]["loss"].values[-shown:] for lr in orbits])),
        "label": ("value", table["label"].values),
    },
    coords={"value": table["lr"].values, "tail_step": np.arange(STEPS - shown, STEPS)},
    attrs={"control": "lr"},
)


def loss_of(states):
    """Observable for orbit_diagram: the training loss of each tail state."""
    with torch.no_grad():
        return np.array([float(tmap.loss(torch.as_tensor(s[: tmap.param_dim]), 0)) for s in states])


check = netdyn.orbit_diagram(lambda lr: netdyn.training_map(task, lr=lr), examples, steps=STEPS, tail=TAIL,
                             observable=loss_of, name="lr", use_map=False)
for lr, label, lam in zip(check["value"].values, check["label"].values, check["exponent"].values):
    print(f"orbit_diagram at lr = {lr:6.3f}: {label:<15} (tail exponent from nearest neighbours on the orbit "
          f"{lam:+.4f}); the sweep, told the twin exponent: {table['label'].sel(lr=lr).item()}")
print("classes over the sweep:", {k: int(n) for k, n in zip(*np.unique(table["label"].values, return_counts=True))})

# %% [markdown]
# ## Dynamical stability
#
# **Twin orbits.**  The running estimate $\lambda(t)$ of the twin method for the same example learning
# rates: at small $\eta$ it creeps down towards 0 (marginal stability), at intermediate $\eta$ it rises
# during the transient and then decays as the orbit converges, at large $\eta$ it converges to a clearly
# positive value.

# %%
fig, axes = plt.subplots(1, len(examples), figsize=(3.2 * len(examples), 3), constrained_layout=True)
for ax, lr in zip(axes, examples):
    plot_convergence(twins[lr], ax=ax)
    ax.set_title(f"lr = {lr:.3g}", fontsize="small")
save(fig, "twin_convergence")

# %% [markdown]
# **The paper's protocol: a perturbed ensemble.**  `perturbation_growth` shifts every weight of
# `n_copies` networks by $U(-\varepsilon, \varepsilon)$, $\varepsilon = 10^{-8}$, trains them with the same
# map and records the $L_1$ distance $d(t)$ to the reference *without* renormalisation; the exponent is the
# slope of $\langle \ln d(t) \rangle$ over its straight part (chosen automatically: flat – linear – flat).

# %%
pg_lrs = list(dict.fromkeys(nearest(v) for v in (0.3, 3.0, 8.0, 14.0, 21.7, 35.8)))
pg, pg_twin = {}, {}
fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
for i, lr in enumerate(pg_lrs):
    res = netdyn.perturbation_growth(netdyn.training_map(task, lr=lr), x0, PG_STEPS, n_copies=PG_COPIES,
                                     d0=1e-8, norm="l1", seed=0)
    pg[lr] = res
    pg_twin[lr] = netdyn.max_lyapunov(netdyn.training_map(task, lr=lr), x0, PG_STEPS, method="twin")["local_rate"].values
    a, b = int(res["fit_start"]), int(res["fit_stop"])
    line = ax.plot(res["step"], res["log_distance"], lw=1, color=f"C{i}",
                   label=f"lr = {lr:.3g}: slope {float(res['lyapunov']):+.4f} on [{a}, {b})")[0]
    t = np.arange(a, b)
    ax.plot(t, res["log_distance"].values[a] + float(res["lyapunov"]) * (t - a), "--", color=line.get_color(), lw=2)
ax.set(xlabel="step", ylabel=r"$\langle \ln d(t) \rangle$ (L1)", title=f"{PG_COPIES} copies within 1e-8")
ax.legend(fontsize="x-small")
save(fig, "perturbation_growth")
for lr, res in pg.items():
    a, b = int(res["fit_start"]), int(res["fit_stop"])
    print(f"lr = {lr:6.3f}: perturbation growth {float(res['lyapunov']):+.4f} on steps {a}..{b}, "
          f"final L1 distance {float(res['distance'][:, -1].mean()):.2g} | twin (renormalised) on the same steps "
          f"{pg_twin[lr][a:b].mean():+.4f}, over all {PG_STEPS} steps {pg_twin[lr].mean():+.4f}")

# %% [markdown]
# ## Headline: regimes against the learning rate
#
# Top: the orbit diagram (loss on the last 300 steps).  Bottom: the twin exponents — over the whole run
# (the paper's finite-time exponent), over the first quarter and over the tail — with the orbital class of
# each learning rate as a band.  Symmetric-log axis: |λ| < 1e-3 is drawn linearly.

# %%
lrs = table["lr"].values
edges = np.exp(np.concatenate([[np.log(lrs[0]) - 0.05], (np.log(lrs[1:]) + np.log(lrs[:-1])) / 2,
                               [np.log(lrs[-1]) + 0.05]]))
fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, constrained_layout=True,
                                  gridspec_kw={"height_ratios": [1.1, 1]})
plot_orbit_diagram(diagram, ax=top, markersize=1.0)
top.set(xscale="log", yscale="log", xlabel="", ylabel=f"training loss (last {shown} steps)")
top.set_title("iris MLP 4-8-3 tanh, full-batch GD: orbit diagram and Lyapunov exponents")
for name, style in (("lam", "o-"), ("lam_early", "^:"), ("lam_tail", "s-")):
    bottom.plot(lrs, table[name], style, ms=3, lw=1,
                label={"lam": "finite-time (whole run)", "lam_early": "first quarter", "lam_tail": "tail"}[name])
for lo, hi, label in zip(edges[:-1], edges[1:], table["label"].values):
    bottom.axvspan(lo, hi, ymin=0, ymax=0.06, color=LABEL_COLORS[label], lw=0)
bottom.axhline(CHAOS, color="k", ls="--", lw=0.8)
bottom.set(xscale="log", xlabel="learning rate", ylabel="max Lyapunov exponent / step")
bottom.set_yscale("symlog", linthresh=1e-3)
bottom.legend(fontsize="small", loc="upper left")
save(fig, "headline")

# %% [markdown]
# ## Where the regimes change
#
# Three regimes, from the twin exponents and the orbital classes (threshold 0.01 per step):
#
# * **regular** — $\lambda_\text{early} \le 0.01$: nearby networks never separate appreciably;
# * **transient chaos** (edge of stability) — $\lambda_\text{early} > 0.01$ but the orbit is not chaotic at the
#   end: perturbations grow while the network learns, then the orbit settles on a fixed point or a cycle;
# * **chaotic** — the tail of the orbit is classified chaotic (bounded, aperiodic, $\lambda_\text{tail} > 0.01$).

# %%
early = table["lam_early"].values
tail = table["lam_tail"].values


def class_counts(values):
    return {str(k): int(n) for k, n in zip(*np.unique(values, return_counts=True))}


labels = table["label"].values
regime = np.where(labels == "chaotic", "chaotic", np.where(early > CHAOS, "transient chaos", "regular"))
for name in ("regular", "transient chaos", "chaotic"):
    sel = lrs[regime == name]
    print(f"{name:>15}: {sel.size:2d} learning rates" + (f", lr in [{sel.min():.3g}, {sel.max():.3g}]" if sel.size else ""))
onset = int(np.argmax(early > CHAOS))
if early[onset] > CHAOS:
    print(f"first lr with a positive early exponent (> {CHAOS}): {lrs[onset]:.3g}"
          + (f" (the last regular one: {lrs[onset - 1]:.3g})" if onset else ""))
if (regime == "chaotic").any():
    first_chaos = lrs[np.argmax(regime == "chaotic")]
    above = lrs >= first_chaos
    print(f"first lr with a chaotic orbit: {first_chaos:.3g}; from there on {int((regime[above] == 'chaotic').sum())} "
          f"of {int(above.sum())} learning rates are chaotic, the others end as "
          f"{class_counts(labels[above & (regime != 'chaotic')])}")
    long_transients = lrs[(regime != "chaotic") & (tail > CHAOS)]
    print(f"non-chaotic orbits whose chaos lasted into the second half (tail exponent > {CHAOS}): "
          f"lr = {np.round(long_transients, 3).tolist()}")
small = regime == "regular"
if small.any():
    print(f"regular regime: finite-time exponent from {table['lam'].values[small].min():+.4f} to "
          f"{table['lam'].values[small].max():+.4f} per step, tail exponent within "
          f"[{tail[small].min():+.5f}, {tail[small].max():+.5f}]; classes "
          f"{class_counts(labels[small])}")
transient = regime == "transient chaos"
if transient.any():
    print(f"transient chaos: early exponent {early[transient].min():.3f} .. {early[transient].max():.3f}, "
          f"test accuracy {table['accuracy'].values[transient].min():.3f} .. {table['accuracy'].values[transient].max():.3f}")
chaotic = regime == "chaotic"
if chaotic.any():
    print(f"chaotic tails: exponent {tail[chaotic].min():.3f} .. {tail[chaotic].max():.3f} per step; "
          f"test accuracy {table['accuracy'].values[chaotic].min():.3f} .. {table['accuracy'].values[chaotic].max():.3f}; "
          f"final loss {table['final_loss'].values[chaotic].min():.3f} .. {table['final_loss'].values[chaotic].max():.3f}")
print(f"diverged runs: {int(table['diverged'].sum())}")
print(f"total wall time: {time.perf_counter() - T_START:.0f} s")

# %% [markdown]
# ## Conclusion — what reproduced and what did not
#
# Numbers from the full-size run (42 learning rates, 1500 steps each; the cells above print them).
#
# **Reproduced.**
#
# * *Three regimes along $\eta$.*
#   **Regular** up to $\eta \approx 2.7$: the finite-time exponent is +0.0009 … +0.0021 per step and the orbits
#   converge.  **Transient chaos** (edge of stability) from $\eta \approx 3.9$: perturbations grow during the
#   first few hundred steps (early exponents 0.011 … 0.47 per step), then the orbit settles on a fixed point or a
#   cycle, and the network still learns (test accuracy 0.92 … 1.00).  **Chaos** from $\eta \approx 15$: 14 of
#   the 19 learning rates from 14.7 to 40 end on a chaotic orbit (tail exponents 0.04 … 0.42 per step), the
#   others on fixed points (3), a period-2 cycle (1) or a quasi-periodic orbit (1) — the intermittent,
#   window-riddled picture of the paper, which is what the orbit diagram of a low-dimensional map looks like.
# * *Training still learns when chaotic*: test accuracy 0.76 … 1.00 on the chaotic orbits, whose loss
#   keeps fluctuating (final values 0.05 … 1.5) instead of converging.
# * *The paper's perturbation ensemble* (5 copies within $10^{-8}$, $L_1$ distance): at $\eta \le 2.7$, $d(t)$
#   grows at +0.0015 … +0.003 per step and stays ~1e-6; at $\eta \ge 8$ it grows at 0.45 … 1.34 per step for
#   15 … 33 steps and saturates at $L_1$ distances of 2 … 700 — the copies end as different networks.  The twin
#   exponent over the same steps is of the same size (0.48 … 1.98; renormalised twins follow the most unstable
#   direction, the un-renormalised copies start in random ones).
# * *Graph view.*  The successive-network distance separates the regimes: decay to 0 (fixed point), a constant
#   jump (period 2), an irregular large signal (chaos).  `orbit_diagram`, run in one call with its own exponent
#   estimate (nearest neighbours on the orbit), gives the same class as the sweep at the 4 learning rates checked.
#
# **Not reproduced / different.**
#
# * *No negative exponent at small $\eta$.*  The exponent is slightly positive at every small learning rate,
#   including on the tail (+0.0002 … +0.0014 per step): marginal stability, not chaos.  The over-parametrised
#   network (67 weights for 112 separable samples) has flat directions along which a perturbation neither
#   grows nor shrinks, and early in training negative curvature amplifies perturbations a little.  Two slowly
#   converging orbits ($\eta$ = 0.62, 0.89, loss still falling at step 1500) are labelled quasi-periodic, with
#   `confidence="low"`: `orbital_stability` says their tails still travel (drift 1.3), which quasi-periodic
#   motion does not.
# * *The boundaries are not sharp.*  Chaotic and regular learning rates interleave above 14.7, and a longer
#   run could move learning rates between classes.  (Every class is now decided by the exponent over the same
#   second half it examines, so no non-chaotic class sits on a tail exponent above 0.01.)  The finite-time exponent depends on the window (the
#   perturbation-growth slope at $\eta = 8$ is 0.45 over 33 steps, the twin exponent 0.06 over 400 steps and
#   0.016 over 1500), and the paper's windows, learning rates and regime widths are not known to us — only the
#   qualitative sequence regular → transient chaos → intermittent chaos is compared.
