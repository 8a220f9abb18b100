"""Stochastic BMR vs Flat-MAP, Flat-FF and tiered-horseshoe SVI (the BMR paper's Figures 1 and 2).

Reads ``stochastic_bmr.csv`` (``python -m experiments.stochastic_bmr``) and draws

* ``stochastic_bmr_metrics``: accuracy, NLL and ECE of every method at the end of training, one
  column per network (one-shot post-hoc BMR of the SVI baselines hatched);
* ``stochastic_bmr_rounds``: pruned fraction and accuracy after every round of iterative BMR.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paper_figures.style import PALETTE, figure, method_color, read_table, save

TABLE = "stochastic_bmr.csv"
# experiment method -> style method (colours shared across figures)
STYLE = {"flat-map": "map", "flat-ff": "gaussian", "tiered-hs": "horseshoe", "bmr": "bmr"}
LABELS = {"flat-map": "Flat-MAP", "flat-ff": "Flat-FF", "tiered-hs": "Tiered-HS", "bmr": "BMR", "bmr-bb": "BMR (Beta-Bern.)",
          "bmr-node": "BMR (nodes)"}
ORDER = ["flat-map", "flat-ff", "tiered-hs", "bmr", "bmr-bb", "bmr-node"]
METRICS = [("accuracy", "accuracy"), ("nll", "NLL"), ("ece", "ECE")]


def final_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The last round of every (net, method, reduction)."""
    keys = ["net", "method", "reduction"]
    return table.sort_values("round").groupby(keys, sort=False).tail(1).reset_index(drop=True)


EXTRA = {"bmr-bb": PALETTE[2], "bmr-node": PALETTE[3]}  # BMR variants: colours unused by the other methods here


def _color(method: str) -> str:
    return EXTRA.get(method) or method_color(STYLE.get(method, method), ORDER.index(method) if method in ORDER else 0)


def plot_metrics(table: pd.DataFrame):
    """Accuracy / NLL / ECE per method (rows) and network (columns) at the end of training."""
    final = final_rows(table)
    nets_ = list(dict.fromkeys(final["net"]))
    fig, axes = figure("double", aspect=0.55, nrows=len(METRICS), ncols=len(nets_), squeeze=False, sharex="col")
    for j, net in enumerate(nets_):
        sub = final[final["net"] == net]
        variants = [(m, r) for m in ORDER for r in ("none", "iterative", "one-shot")
                    if ((sub["method"] == m) & (sub["reduction"] == r)).any()]
        for i, (metric, label) in enumerate(METRICS):
            ax = axes[i, j]
            for x, (m, r) in enumerate(variants):
                row = sub[(sub["method"] == m) & (sub["reduction"] == r)].iloc[0]
                ax.bar(x, row[metric], color=_color(m), hatch="///" if r == "one-shot" else None,
                       edgecolor="white" if r == "one-shot" else None, linewidth=0)
            ax.set_xticks(range(len(variants)))
            ax.set_xticklabels([LABELS.get(m, m) + (" +BMR" if r == "one-shot" else "") for m, r in variants],
                               rotation=60, ha="right")
            if metric == "accuracy":
                lo = min(sub[metric].min(), 0.9)
                ax.set_ylim(max(0.0, lo - 0.02), 1.0)
            if j == 0:
                ax.set_ylabel(label)
            if i == 0:
                ax.set_title(net)
    return fig


def plot_rounds(table: pd.DataFrame):
    """Pruned fraction (top) and test accuracy (bottom) after every round of iterative BMR, per network."""
    it = table[table["reduction"] == "iterative"]
    methods = [m for m in ORDER if (it["method"] == m).any()] or sorted(set(it["method"]))
    fig, axes = figure("double", aspect=0.45, nrows=2, ncols=max(len(methods), 1), squeeze=False, sharex=True)
    for j, m in enumerate(methods):
        sub = it[it["method"] == m]
        for k, net in enumerate(dict.fromkeys(sub["net"])):
            rows = sub[sub["net"] == net].sort_values("round")
            c = PALETTE[k % len(PALETTE)]
            axes[0, j].plot(rows["round"], rows["pruned_fraction"], marker="o", ms=2.5, color=c, label=net)
            axes[1, j].plot(rows["round"], rows["accuracy"], marker="o", ms=2.5, color=c, label=net)
        axes[0, j].set_title(LABELS.get(m, m))
        axes[0, j].set_ylim(0, 1)
        axes[1, j].set_xlabel("round")
    axes[0, 0].set_ylabel("pruned fraction")
    axes[1, 0].set_ylabel("test accuracy")
    if len(it):
        axes[0, -1].legend(frameon=False, loc="lower right")
    return fig


def make(results_dir: Path, out_dir: Path) -> list[Path]:
    table = read_table(results_dir, TABLE)
    if table is None:
        return []
    paths = save(plot_metrics(table), Path(out_dir) / "stochastic_bmr_metrics")
    if (table["reduction"] == "iterative").any():
        paths += save(plot_rounds(table), Path(out_dir) / "stochastic_bmr_rounds")
    return paths


__all__ = ["final_rows", "make", "plot_metrics", "plot_rounds"]
