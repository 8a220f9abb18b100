"""Figures for SVI vs reference NUTS (tables from ``python -m experiments.svi_vs_nuts``).

* ``svi_vs_nuts_marginals``: posterior marginals of selected weights, NUTS and SVI overlaid;
* ``svi_vs_nuts_inclusion``: node inclusion probabilities side by side, and the law of the number of
  active nodes (free of node relabelling);
* ``svi_vs_nuts_bands``: predictive mean and 90 % band of a 1-D regression, NUTS vs SVI, with the data;
* ``svi_vs_nuts_bmr``: ΔF of ``ε → 0`` from the SVI Gaussian and from a Gaussian fitted to the NUTS
  draws against the Savage–Dickey ratio estimated from the NUTS draws.

Only runs whose NUTS reference passed its (relabelling-invariant) diagnostics are drawn (:func:`passing`).
Each ``plot_*`` function is pure: a detail table in, a ``Figure`` out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures import style
from paper_figures.style import figure, look
from sparsebnn.results import reference_passed

RUN = ["dataset", "widths", "prior"]
MAX_RUNS = 6
NUTS = look("nuts").color
PRIOR_NAMES = {"gaussian": "Gaussian", "horseshoe": "horseshoe", "ss-ig": "SS-IG", "ss-gl": "SS-GL", "ss-ghs": "SS-GHS $c{=}1$"}


def _runs(df: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    return list(df.groupby(RUN, sort=False))[:MAX_RUNS]


def _title(key: tuple) -> str:
    dataset, widths, prior = key
    return f"{dataset} {str(widths).replace(' ', '')}\n{PRIOR_NAMES.get(prior, prior)} prior"


def _axes(n: int, ncols: int):
    """A grid of roughly 4:3 panels for ``n`` runs, one column wide for a single panel."""
    nrows = max(1, int(np.ceil(n / ncols)))
    width = "single" if ncols == 1 else "double"
    fig, axes = figure(width, aspect=0.8 * nrows / ncols, ncols=ncols, nrows=nrows, squeeze=False,
                       layout="constrained")
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def plot_marginals(df: pd.DataFrame):
    """One row of panels per run: KDE densities of selected effective weights (NUTS grey, SVI in the prior's colour)."""
    runs = _runs(df)
    per = max(g["weight"].nunique() for _, g in runs)
    fig, axes = figure("double", aspect=0.22 * len(runs) + 0.05, ncols=per, nrows=len(runs), squeeze=False,
                       layout="constrained")
    for r, (key, g) in enumerate(runs):
        for c in range(per):
            ax = axes[r, c]
            weights = list(dict.fromkeys(g["weight"]))
            if c >= len(weights):
                ax.set_visible(False)
                continue
            w = g[g["weight"] == weights[c]]
            ax.fill_between(w["x"], w["nuts"], color=NUTS, alpha=0.35, lw=0, label="NUTS")
            ax.plot(w["x"], w["svi"], color=look(key[2]).color, lw=1.2, label="SVI")
            ax.set_title(weights[c], fontsize=6)
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(_title(key), fontsize=6)
    style.legend_of(fig, axes[0, 0])
    return fig


def plot_inclusion(df: pd.DataFrame):
    """Per run: node inclusion σ(θ_j) (SVI) vs P(z_j = 1 | y) (NUTS), and the law of the active-node count."""
    runs = _runs(df)
    fig, axes = figure("double", aspect=0.25 * len(runs) + 0.05, ncols=2, nrows=len(runs), squeeze=False,
                       layout="constrained")
    for r, (key, g) in enumerate(runs):
        for c, kind in enumerate(("node", "count")):
            ax = axes[r, c]
            h = g[g["kind"] == kind].reset_index(drop=True)
            labels = [f"{row.layer.split('_')[-1]}:{int(row.node)}" for row in h.itertuples()]
            x = np.arange(len(h))
            ax.bar(x - 0.2, h["svi"], 0.4, color=look(key[2]).color, label="SVI")
            ax.bar(x + 0.2, h["nuts"], 0.4, color=NUTS, label="NUTS")
            ax.set_xticks(x, labels, fontsize=5, rotation=90)
            ax.set_ylim(0, 1)
            if kind == "node":
                ax.axhline(0.5, color="k", lw=0.5, ls=":")
                ax.set_ylabel(_title(key), fontsize=6)
            if r == 0:
                ax.set_title("P(node on)  [layer:node]" if kind == "node" else "P(# active nodes = k)  [layer:k]")
    style.legend_of(fig, axes[0, 0])
    return fig


def plot_bands(df: pd.DataFrame):
    """Per run: predictive mean and 90 % band of y on a 1-D grid, NUTS (grey) vs SVI, with the training data."""
    runs = _runs(df)
    fig, axes = _axes(len(runs), min(3, len(runs)))
    for ax, (key, g) in zip(axes, runs):
        for method, color in (("nuts", NUTS), ("svi", look(key[2]).color)):
            b = g[g["kind"] == method]
            ax.fill_between(b["x"], b["lo"], b["hi"], color=color, alpha=0.3 if method == "nuts" else 0.2, lw=0)
            ax.plot(b["x"], b["mean"], color=color, lw=1.0, label=method.upper())
        d = g[g["kind"] == "data"]
        ax.scatter(d["x"], d["mean"], s=4, color="k", zorder=3, label="data")
        ax.set_title(_title(key), fontsize=6)
        ax.set_xlabel("x")
    style.legend_of(fig, axes[0], loc="outside lower center", ncol=3)
    return fig


def plot_bmr(df: pd.DataFrame):
    """Per run: ΔF (SVI Gaussian, NUTS-fitted Gaussian) against the NUTS Savage–Dickey ratio, with y = x."""
    runs = _runs(df)
    fig, axes = _axes(len(runs), min(3, len(runs)))
    for ax, (key, g) in zip(axes, runs):
        g = g[np.isfinite(g["sd_nuts_kde"])]
        ax.scatter(g["sd_nuts_kde"], g["df_nuts_gauss"], s=5, color=NUTS, label="Gaussian fit to NUTS")
        ax.scatter(g["sd_nuts_kde"], g["df_svi"], s=5, color=look(key[2]).color, marker="x", lw=0.6, label="SVI")
        if len(g):
            lo = float(np.nanmin(g[["sd_nuts_kde", "df_nuts_gauss", "df_svi"]].to_numpy()))
            hi = float(np.nanmax(g[["sd_nuts_kde", "df_nuts_gauss", "df_svi"]].to_numpy()))
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.5)
        ax.axhline(0, color="k", lw=0.3, ls=":")
        ax.axvline(0, color="k", lw=0.3, ls=":")
        ax.set_title(_title(key), fontsize=6)
        ax.set_xlabel("Savage–Dickey (NUTS KDE)")
        ax.set_ylabel("ΔF")
    style.legend_of(fig, axes[0], loc="outside lower center", ncol=2)
    return fig


PLOTS = {"marginals": plot_marginals, "inclusion": plot_inclusion, "bands": plot_bands, "bmr": plot_bmr}


def passing(df: pd.DataFrame, runs: pd.DataFrame | None) -> pd.DataFrame:
    """The rows of ``df`` whose NUTS reference passed its diagnostics (``nuts_ok`` of ``runs``, the main table):
    an SVI-vs-NUTS comparison against an unconverged reference is no comparison. Without the main table, all rows."""
    if runs is None or "nuts_ok" not in runs:
        return df
    keys = [k for k in (*RUN, "seed") if k in df and k in runs]
    ok = runs.loc[reference_passed(runs), keys].drop_duplicates()
    return df.merge(ok, on=keys, how="inner")[df.columns]


def make(results_dir: Path, out_dir: Path) -> list[Path]:
    """Every figure whose table exists under ``results_dir``, drawn from the runs whose reference passed; ``[]`` when none do."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    main = results_dir / "svi_vs_nuts.csv"
    runs = pd.read_csv(main) if main.exists() else None
    paths = []
    for name, plot in PLOTS.items():
        table = results_dir / f"svi_vs_nuts_{name}.csv"
        if not table.exists():
            continue
        df = passing(pd.read_csv(table), runs)
        if df.empty:
            continue
        paths += style.save(plot(df), out_dir / f"svi_vs_nuts_{name}")
    return paths
