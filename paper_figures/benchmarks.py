"""Cost vs network size (``python -m experiments.bench_scaling``).

Reads ``bench_scaling.csv`` and draws ``bench_scaling``: left, the cost ratio of each inference
step to its plain counterpart (SVI step / Adam step, BMR pass / elementwise pass, Laplace curvature /
gradient step) against the number of parameters, log-log, with a dashed line at ratio 1; right, NUTS
effective samples per second at the small sizes where it runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures import style
from paper_figures.style import figure, read_table

TABLE = "bench_scaling.csv"
LABELS = {"bmr-weight": "BMR (weights) / elementwise", "bmr-node": "BMR (nodes) / elementwise",
          "laplace-diag-ggn": "diag GGN / grad", "laplace-diag-ef": "diag EF / grad",
          "laplace-kfac-ggn": "KFAC GGN / grad", "laplace-kfac-ef": "KFAC EF / grad"}
MARKERS = "osD^v<>ph*"
LINESTYLES = ("-", "--", ":", "-.")


def _label(measure: str) -> str:
    if measure.startswith("svi-"):
        return f"SVI ({measure[4:]}) / Adam"
    return LABELS.get(measure, measure)


def _color(measure: str) -> str:
    """The colour of the method family a measure times (``paper_figures.style.METHODS``)."""
    family = measure[4:] if measure.startswith("svi-") else measure.split("-")[0]
    family = {"laplace": "laplace-opd-weight"}.get(family, family)
    return style.look(family).color if family in style.METHODS else "0.3"


def plot(table: pd.DataFrame):
    fig, (ax, ax_nuts) = figure("double", aspect=0.36, ncols=2, gridspec_kw={"width_ratios": [2.2, 1]},
                                 layout="constrained")
    costs = table[table["measure"] != "nuts"]
    curves = costs.groupby(["measure", "n_params"], sort=True)["ratio"].median().reset_index()
    for i, (measure, g) in enumerate(curves.groupby("measure", sort=True)):
        ax.plot(g["n_params"], g["ratio"], marker=MARKERS[i % len(MARKERS)], ms=3.5, color=_color(measure),
                ls=LINESTYLES[i % len(LINESTYLES)], label=_label(measure))
    ax.axhline(1.0, color="0.5", ls="--", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="parameters", ylabel="cost ratio (same run)")
    style.plain_log_ticks(ax, "x")
    style.plain_log_ticks(ax, "y")
    nuts = table[table["measure"] == "nuts"].sort_values("n_params")
    if len(nuts):
        nuts_look = style.look("nuts")
        ax_nuts.plot(nuts["n_params"], nuts["ess_per_s"], marker=nuts_look.marker, ms=3.5, color=nuts_look.color)
        ax_nuts.set(xscale="log", yscale="log")
        style.plain_log_ticks(ax_nuts, "x")
        style.plain_log_ticks(ax_nuts, "y")
    else:
        ax_nuts.text(0.5, 0.5, "no NUTS runs", ha="center", va="center", transform=ax_nuts.transAxes)
    ax_nuts.set(xlabel="parameters", ylabel="NUTS min ESS / s", title="NUTS (small networks)")
    style.legend_of(fig, ax, loc="outside lower center", ncol=3)
    return fig


def make(results_dir: Path, out_dir: Path) -> list[Path]:
    table = read_table(results_dir, TABLE)
    if table is None or not np.isfinite(table.get("ratio", pd.Series(dtype=float))).any():
        return []
    return style.save(plot(table), Path(out_dir) / "bench_scaling")
