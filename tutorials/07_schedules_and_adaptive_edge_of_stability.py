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
# # 7. Learning-rate schedules and Adam's edge of stability
#
# **Question.** Real training does not use a constant learning rate: Adam is warmed up and then decayed.
# The training map is then *non-autonomous*, $x_{t+1} = F(x_t, t)$ with rate $\eta(t)$, and one exponent for
# the whole run averages over regimes.  Where along such a run is training chaotic, and is the optimiser at
# its edge of stability there?
#
# **Tools.**
# * `training_map(..., schedule="cosine", warmup=..., total=...)`: the rate of step $t$ is exactly the one
#   `torch.optim.lr_scheduler` would give (here `SequentialLR(LinearLR, CosineAnnealingLR)`, replayed on a
#   dummy optimiser); the exact tangent map simply uses $\eta(t)$.
# * `netdyn.lyapunov.local.windowed_lyapunov`: one Benettin run (`max_lyapunov`, exact tangents) cut into
#   windows — a finite-time exponent per window with a block-average error bar, the window's mean rate, and
#   the **preconditioned sharpness** $\lambda_{\max}(P^{-1}H)$ (`track_sharpness`; $P$ is Adam's
#   $\sqrt{\hat v}+\epsilon$) against Adam's threshold $38/\eta(t)$ ($\beta_1 = 0.9$; Cohen et al. 2022,
#   arXiv:2207.14484).
#
# **Set-up.** digits (8×8 images, 10 classes), MLP 64 → 32 → 10 (tanh, float64), full batch, Adam
# ($\beta = (0.9, 0.999)$) with a linear warm-up over `WARMUP` steps to the peak rate and a cosine decay to 0
# at `TOTAL` steps; the same network at the constant peak rate for comparison.
#
# **Reading a window.** A window of $W$ steps is called *chaotic* when its exponent is positive by more
# than two error bars **and** a perturbation grows by at least a factor $e$ over it ($\lambda W \ge 1$);
# positive but smaller exponents are *weakly expanding* (marginal: a perturbation barely grows).

# %%
import os
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import netdyn
from netdyn.lyapunov.local import windowed_lyapunov

torch.set_num_threads(1)
QUICK = os.environ.get("NETDYN_TUTORIAL_QUICK") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = HERE / "figures"

PEAK = 1e-2  # Adam's peak learning rate
TOTAL = 200 if QUICK else 1000  # steps of the schedule (and of the run)
WARMUP = TOTAL // 10
WINDOW = TOTAL // 10  # steps per window
SHARP_EVERY = WINDOW // 2  # a preconditioned sharpness every SHARP_EVERY steps
N_TRAIN = 300 if QUICK else None  # all 1347 training images at full size
T_START = time.perf_counter()

task = netdyn.make_task("digits", hidden=(32,), activation="tanh", seed=0, n_train=N_TRAIN)
scheduled = netdyn.training_map(task, lr=PEAK, optimizer="adam", schedule="cosine", warmup=WARMUP, total=TOTAL)
constant = netdyn.training_map(task, lr=PEAK, optimizer="adam")
x0 = scheduled.initial_state()
print(scheduled.schedule, "| parameters:", scheduled.param_dim, "| state:", scheduled.dim)
print("rates at t = 0, warm-up end, mid-decay, last step:",
      [f"{scheduled.lr_at(t):.2e}" for t in (0, WARMUP, (WARMUP + TOTAL) // 2, TOTAL - 1)])

# %% [markdown]
# ## Windowed exponents along both runs
#
# Each call runs the orbit once with an exact tangent vector (renormalised every step) and slices its local
# rates into windows of `WINDOW` steps; the scheduled run also measures the preconditioned sharpness every
# `SHARP_EVERY` steps by Lanczos (warm-started along the run).

# %%
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # Lanczos tolerance notes at tol=1e-3
    sched = windowed_lyapunov(scheduled, x0, TOTAL, window=WINDOW, sharpness_every=SHARP_EVERY,
                              sharpness_options={"tol": 1e-3})
const = windowed_lyapunov(constant, x0, TOTAL, window=WINDOW)
print(f"both runs in {time.perf_counter() - t0:.0f} s")


def verdicts(ds):
    lam, err = ds["lyapunov"].values, ds["lyapunov_stderr"].values
    significant = lam - 2 * err > 0
    return np.where(significant & (lam * WINDOW >= 1), "chaotic",
                    np.where(significant, "weakly expanding", "not expanding"))


for label, ds in (("cosine schedule", sched), ("constant rate", const)):
    print(f"\n{label}: whole-run exponent {float(ds['lyapunov_total']):.4f} "
          f"± {float(ds['lyapunov_total_stderr']):.4f} per step")
    for w, verdict in zip(ds["window"].values, verdicts(ds)):
        print(f"  steps {int(ds['window_start'][w]):4d}-{int(ds['window_stop'][w]):4d}: "
              f"lr {float(ds['lr'][w]):.2e}  lambda {float(ds['lyapunov'][w]):+.4f} ± {float(ds['lyapunov_stderr'][w]):.4f}"
              f"  ({float(ds['lyapunov'][w]) * WINDOW:+.2f} e-folds)  {verdict}")

# %% [markdown]
# ## Preconditioned sharpness against $38/\eta(t)$
#
# Adam is stable on the local quadratic model while $\lambda_{\max}(P^{-1}H) < 38/\eta$.  As the schedule
# decays, the threshold rises as $1/\eta(t)$: a run that sat at its edge of stability at the peak rate is
# pushed away from it by the decay alone.

# %%
ratio = sched["sharpness_over_threshold"].values
for w in sched["window"].values:
    print(f"  steps {int(sched['window_start'][w]):4d}-{int(sched['window_stop'][w]):4d}: "
          f"sharpness {float(sched['sharpness'][w]):8.1f}  threshold 38/lr {float(sched['threshold'][w]):10.1f}  "
          f"ratio {ratio[w]:.3f}")
peak_window = int(np.nanargmax(ratio))
print(f"closest to the edge: window {peak_window} (ratio {ratio[peak_window]:.3f})")

orbit = netdyn.run(scheduled, x0, TOTAL, eval_every=WINDOW)
accuracy = orbit["test_accuracy"].dropna("step")
print("test accuracy every window:", np.round(accuracy.values, 3))
final = scheduled.evaluate(torch.as_tensor(orbit["final_state"].values))
print(f"final test accuracy {final['test_accuracy']:.3f}")

# %% [markdown]
# ## The headline figure

# %%
fig, axes = plt.subplots(3, 1, figsize=(8, 8.5), sharex=True)
steps = np.arange(TOTAL)
axes[0].plot(steps, [scheduled.lr_at(t) for t in steps], color="C0", label="warm-up + cosine")
axes[0].axhline(PEAK, color="0.5", ls="--", label="constant")
axes[0].set(ylabel="learning rate $\\eta(t)$", title=f"Adam on digits: {TOTAL} full-batch steps")
axes[0].legend(fontsize=8)

centre = (sched["window_start"].values + sched["window_stop"].values) / 2
for ds, color, label, shift in ((sched, "C0", "warm-up + cosine", -WINDOW / 10), (const, "0.5", "constant", WINDOW / 10)):
    axes[1].errorbar(centre + shift, ds["lyapunov"], yerr=2 * ds["lyapunov_stderr"], fmt="o-", color=color,
                     capsize=3, ms=4, label=f"{label} (±2 s.e.)")
for w, verdict in zip(sched["window"].values, verdicts(sched)):
    if verdict == "chaotic":
        axes[1].axvspan(float(sched["window_start"][w]), float(sched["window_stop"][w]), color="C3", alpha=0.12)
axes[1].axhline(1 / WINDOW, color="C3", ls=":", lw=1, label="one e-fold per window")
axes[1].axhline(0, color="k", lw=0.8)
axes[1].set(ylabel="windowed exponent (1/step)")
axes[1].legend(fontsize=8)

axes[2].semilogy(sched["measured_step"], sched["sharpness_measured"], "o-", color="C0", ms=3,
                 label="$\\lambda_{\\max}(P^{-1}H)$ (scheduled run)")
axes[2].semilogy(steps, [38.0 / scheduled.lr_at(t) for t in steps], color="C3", label="threshold $38/\\eta(t)$")
axes[2].set(xlabel="step", ylabel="preconditioned sharpness")
axes[2].legend(fontsize=8)
fig.tight_layout()
if not QUICK:
    FIGURES.mkdir(exist_ok=True)
    fig.savefig(FIGURES / "07_headline.png", dpi=90)
plt.show()
print(f"total wall time {time.perf_counter() - T_START:.0f} s")

# %% [markdown]
# ## Conclusions
#
# *(Numbers from the full-size run: digits MLP 64 → 32 → 10, 1347 training images, full batch, Adam with peak
# rate $10^{-2}$, 100 warm-up steps and cosine decay to 0 at step 1000; windows of 100 steps; 56 s on one core.)*
#
# **Where the run is chaotic: only in the first 100 steps.** The warm-up window has exponent
# $+0.021 \pm 0.006$ per step (2.1 e-folds over the window); every later window is positive by many error bars
# but weakly expanding: $+0.0050 \pm 0.0003$ (0.5 e-folds) at the peak rate, then decreasing steadily with the
# rate to $+0.0001$ (steps 800–900) and $< 10^{-4}$ at the end.  Chaos is an early transient, measured here as a
# windowed exponent with its error bar rather than read off a running average.
#
# **The schedule barely changes the exponent; it changes how fast it vanishes.** The same network at the
# constant rate $10^{-2}$ has the same first-window exponent ($+0.021 \pm 0.009$) — the warm-up does not tame
# Adam's first steps (presumably because Adam's update is normalised by its second moment, so a smaller rate
# shrinks the step but not its sensitivity to the gradient's direction) — and the same
# whole-run exponent ($0.0032 \pm 0.0023$ vs $0.0033 \pm 0.0024$ with the schedule).  The two part only late:
# at the constant rate the exponent levels off at $+0.0003$ per step, with the decay it goes to 0, because as
# $\eta(t) \to 0$ the map tends to the identity.  One whole-run number hides all of this: it is dominated by the
# first window.
#
# **Adam is far from its edge of stability throughout.** The preconditioned sharpness $\lambda_{\max}(P^{-1}H)$
# is 580 at the start and 750 at step 50, then drifts down to about 300 (steps 600–800) and 330 at the end, while $38/\eta$ is 3 800 at the peak rate and
# rises as the rate decays; the closest approach is 0.15 of the threshold (steps 100–200).  So on this problem
# the early chaos is not edge-of-stability dynamics: it happens while the sharpness is at most a few percent of
# the threshold ($0.05$ in the warm-up window), and the decay moves the threshold further away (to
# $3 \times 10^5$ in the last window) without the sharpness following it.  Test accuracy is 96.7 % at step 100,
# 97.6 % at step 200 and 96.9 % at the end.
