"""Stochastic BMR vs Flat-MAP, Flat-FF and tiered-horseshoe SVI (the BMR paper's Figures 1 and 2).

Reads ``stochastic_bmr.csv`` (``python -m experiments.stochastic_bmr``) and draws

* ``stochastic_bmr_metrics``: accuracy, NLL and ECE of every method at the end of training, one group
  per network (every seed a dot, the mean with its 95 % t interval);
* ``stochastic_bmr_rounds``: pruned fraction and accuracy after every round of iterative BMR, one
  column per network (the mean over seeds; every seed as a thin line when there are several).

Methods keep the suite's names and looks (``paper_figures.style``): the paper's Flat-MAP is MAP,
Flat-FF is Gaussian (SVI), Tiered-HS is Horseshoe (SVI), their one-shot post-hoc BMR is
Gaussian+BMR / Horseshoe+BMR.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from paper_figures import style
from paper_figures.compare import net_label

TABLE = "stochastic_bmr.csv"
# (experiments.stochastic_bmr method, reduction) -> style key
KEYS = {("flat-map", "none"): "map", ("flat-ff", "none"): "gaussian", ("flat-ff", "one-shot"): "gaussian-bmr",
        ("tiered-hs", "none"): "horseshoe", ("tiered-hs", "one-shot"): "horseshoe-bmr",
        ("bmr", "iterative"): "bmr", ("bmr-bb", "iterative"): "bmr-bb", ("bmr-node", "iterative"): "bmr-node"}
METRICS = [("accuracy", "test accuracy"), ("nll", "test NLL (nats)"), ("ece", "ECE")]


def keyed(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``key`` column (the style key of each (method, reduction))."""
    pairs = set(zip(table["method"], table["reduction"]))
    unknown = pairs - set(KEYS)
    if unknown:
        raise ValueError(f"unknown (method, reduction) {sorted(unknown)} in {TABLE}; known: {sorted(KEYS)}")
    t = table.copy()
    t["key"] = [KEYS[p] for p in zip(t["method"], t["reduction"])]
    return t


def final_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The last round of every (net, method, reduction) and seed."""
    keys = ["net", "method", "reduction", *(["seed"] if "seed" in table else [])]
    return table.sort_values("round", kind="stable").groupby(keys, sort=False).tail(1).reset_index(drop=True)


def plot_metrics(table: pd.DataFrame):
    """Accuracy / NLL / ECE per method at the end of training, one group per network."""
    t = keyed(final_rows(table))
    keys = style.in_order(t["key"])
    fig, axes = style.figure("double", aspect=0.3, ncols=len(METRICS), layout="constrained")
    several = False
    for ax, (metric, label) in zip(axes, METRICS):
        several |= style.seed_points(ax, t, metric, keys=keys, group_label=net_label)
        ax.set_ylabel(label)
    axes[0].set_ylim(top=1.01)
    for ax in axes:
        style.zero_or_break(ax)
    style.legend(fig, keys, seeds=several, collapsed=style.any_collapsed(t))
    return fig


def plot_rounds(table: pd.DataFrame):
    """Pruned fraction (top) and test accuracy (bottom) after every round of iterative BMR, per network."""
    it = keyed(table[table["reduction"] == "iterative"])
    nets_ = list(dict.fromkeys(it["net"]))
    keys = style.in_order(it["key"])
    fig, axes = style.figure("double", aspect=0.42, nrows=2, ncols=max(len(nets_), 1), squeeze=False, sharex=True,
                             layout="constrained")
    several = False
    for j, net in enumerate(nets_):
        for k in keys:
            lk = style.look(k)
            rows = it[(it["net"] == net) & (it["key"] == k)]
            for ax, col in zip(axes[:, j], ("pruned_fraction", "accuracy")):
                if "seed" in rows and rows["seed"].nunique() > 1:
                    several = True
                    for _, g in rows.groupby("seed"):
                        g = g.sort_values("round")
                        ax.plot(g["round"], g[col], color=lk.color, lw=0.4, alpha=0.4, ls=lk.ls)
                mean = rows.groupby("round")[col].mean()
                ax.plot(mean.index, mean.to_numpy(), **lk.line())
                bad = rows.assign(_c=style.collapsed(rows)).groupby("round")["_c"].any()
                style.mark_collapsed(ax, mean.index[bad.to_numpy()], mean.to_numpy()[bad.to_numpy()])
        axes[0, j].set_title(net_label(net))
        axes[0, j].set_ylim(0, 1.02)
        axes[1, j].set_ylim(top=1.01)
        style.zero_or_break(axes[1, j])
        axes[1, j].set_xlabel("round")
        axes[1, j].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("pruned fraction")
    axes[1, 0].set_ylabel("test accuracy")
    extra = [(Line2D([], [], color="0.4", lw=0.4, alpha=0.6), "one seed")] if several else []
    style.legend(fig, keys, kind="line", extra=extra, collapsed=style.any_collapsed(it))
    return fig


def make(results_dir: Path, out_dir: Path) -> list[Path]:
    table = style.read_table(results_dir, TABLE)
    if table is None:
        return []
    paths = style.save(plot_metrics(table), Path(out_dir) / "stochastic_bmr_metrics")
    if (table["reduction"] == "iterative").any():
        paths += style.save(plot_rounds(table), Path(out_dir) / "stochastic_bmr_rounds")
    return paths


__all__ = ["KEYS", "final_rows", "make", "plot_metrics", "plot_rounds"]
