"""BMR vs exact Bayes factors: ΔF on exact conjugate posteriors against exact log evidence differences.

    python -m experiments.bmr_exact [--quick] [--seed S] [--out results] [--n-models N] [--overwrite]

Draws random conjugate linear regressions (known noise; 1-10 coefficients, 1-50 observations,
cond(X) up to 1e4, independent or correlated Gaussian priors), computes the exact posterior with
``theory.savage_dickey`` and compares, for each model,

* ``drop_subset``: full-covariance ΔF (``bmr.delta_f_mvn``) for fixing a random non-empty subset at 0,
* ``shrink``:      full-covariance ΔF for shrinking every prior variance by a random factor in [0, 1]
                   (some exactly 0) and moving the prior mean,
* ``coordinate``:  per-coordinate ΔF (``bmr.delta_f`` on the exact marginals) for a spike at 0 on
                   each coefficient in turn: the Savage–Dickey ratio,

with the exact ``ln p(y | reduced) - ln p(y | full)`` from two evidence computations (for a correlated
prior the per-coordinate reduced model keeps the conditional prior of the rest). Writes one row per
comparison to ``<out>/bmr_exact.csv``; models come in blocks of 25 (``--n-models`` rounds up), each
seeded by ``(seed, model)``, so a larger run resumes a smaller one.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pandas as pd

from experiments._cli import execute, parse, parser, positive_int
from sparsebnn import bmr
from theory import savage_dickey as sd

BLOCK = 25
KINDS = ("drop_subset", "shrink", "coordinate")


def draw_problem(rng: np.random.Generator) -> tuple[sd.Regression, dict]:
    """One random conjugate regression and its description."""
    k = int(rng.integers(1, 11))
    n = int(rng.integers(1, 51))
    cond = float(10 ** rng.uniform(0, 4))
    noise_var = float(10 ** rng.uniform(-3, 1))
    correlated = bool(rng.random() < 0.5)
    prior_range = (1e-1, 1e1) if correlated else (1e-2, 1e2)
    reg = sd.random_regression(rng, k, n, cond, noise_var, correlated, prior_range)
    return reg, dict(k=k, n=n, cond=cond, noise_var=noise_var, correlated=correlated)


def compare(reg: sd.Regression, rng: np.random.Generator) -> list[dict]:
    """ΔF and the exact log Bayes factor for the three kinds of reduction of one model (float64)."""
    m0, S0 = reg.prior_mean, reg.prior_cov
    k = len(m0)
    post_mean, post_cov = sd.posterior(*reg)
    rows = []

    drop = rng.random(k) < 0.5
    drop[rng.integers(k)] = True
    red_mean, red_cov = np.where(drop, 0.0, m0), np.where(drop[:, None] | drop[None, :], 0.0, S0)
    rows.append(dict(kind="drop_subset", coordinate=-1, n_reduced=int(drop.sum()),
                     delta_f=float(bmr.delta_f_mvn(post_mean, post_cov, m0, S0, red_mean, red_cov)),
                     exact=sd.log_bayes_factor(*reg, m0, S0, drop=drop)))

    f = np.sqrt(rng.uniform(0, 1, k) * (rng.random(k) < 0.8))
    red_cov = f[:, None] * S0 * f[None, :]
    red_mean = m0 + rng.normal(size=k) * np.sqrt(np.diag(S0))
    rows.append(dict(kind="shrink", coordinate=-1, n_reduced=int((f < 1).sum()),
                     delta_f=float(bmr.delta_f_mvn(post_mean, post_cov, m0, S0, red_mean, red_cov)),
                     exact=sd.log_bayes_factor(*reg, red_mean, red_cov)))

    per_coordinate = np.asarray(bmr.delta_f(post_mean, np.diag(post_cov), m0, np.diag(S0), 0.0, 0.0))
    full = sd.log_evidence(*reg)
    for i in range(k):
        cond_mean, cond_cov = sd.conditional_prior(m0, S0, [i], 0.0)
        exact = sd.log_evidence(reg.X, reg.y, reg.noise_var, cond_mean, cond_cov) - full
        rows.append(dict(kind="coordinate", coordinate=i, n_reduced=1, delta_f=float(per_coordinate[i]), exact=exact))
    return rows


def run(config: dict) -> list[dict]:
    """The comparisons of one block of models (``seed``, ``block``, ``block_size``), float64."""
    rows = []
    with jax.enable_x64(True):
        for model in range(config["block"] * config["block_size"], (config["block"] + 1) * config["block_size"]):
            rng = np.random.default_rng([config["seed"], model])
            reg, info = draw_problem(rng)
            for row in compare(reg, rng):
                rows.append(dict(model=model, **info, **row, abs_err=abs(row["delta_f"] - row["exact"])))
    return rows


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per kind: comparisons, largest |ΔF - exact|, largest relative error (|exact| > 1e-3)."""
    rel = table["abs_err"] / table["exact"].abs()
    out = table.assign(rel_err=rel.where(table["exact"].abs() > 1e-3)).groupby("kind").agg(
        comparisons=("abs_err", "size"), max_abs_err=("abs_err", "max"), max_rel_err=("rel_err", "max"),
        max_abs_exact=("exact", lambda x: x.abs().max()),
    )
    return out


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = parser("bmr_exact", __doc__.splitlines()[0], executor=True)
    p.add_argument("--n-models", type=positive_int, default=None,
                   help=f"models to draw (default 1000, quick 50; rounded up to a multiple of {BLOCK})")
    args = parse(p, argv, quick=dict(n_models=50), full=dict(n_models=1000))
    configs = [dict(seed=args.seed, block=b, block_size=BLOCK) for b in range(math.ceil(args.n_models / BLOCK))]
    path = args.out / "bmr_exact.csv"
    table = execute(args, configs, run, path, desc="bmr_exact blocks")
    table = table[(table["seed"] == args.seed) & (table["block"] < len(configs))].reset_index(drop=True)
    summary = summarise(table)
    print(f"{path}: {table['model'].nunique()} models, {len(table)} comparisons (float64)")
    print(summary.to_string(float_format=lambda x: f"{x:.3g}"))
    print(f"largest |ΔF - exact| = {table['abs_err'].max():.3g}")
    return table


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
