"""Sparsity priors fitted by SVI (``python -m experiments.svi_sparsity``): ``results/svi_sparsity.csv``.

    python -m paper_figures.svi_sparsity [--results results] [--out figures]

``svi_sparsity``: test accuracy, NLL and ECE of the pruned network and the fraction of hidden nodes
kept, per prior (every seed a dot, the mean with its 95 % t interval), one group per setting
(dataset, network, hidden widths); the unpruned MAP as a dashed reference line (its 95 % t interval
shaded when there are several seeds).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.lines import Line2D

from paper_figures import style

TABLE = "svi_sparsity.csv"
STEM = "svi_sparsity"
# experiments.svi_sparsity prior -> style key: the Gaussian and the (tiered) horseshoe are pruned by BMR,
# SS-GHS runs with c_reg = "fan_in" (experiments.svi_sparsity.make_prior)
KEYS = {"map": "map", "gaussian": "gaussian-bmr", "horseshoe": "horseshoe-bmr", "ss-ig": "ss-ig", "ss-gl": "ss-gl",
        "ss-ghs": "ss-ghs-fan-in"}
PANELS = (("accuracy", "test accuracy"), ("nll", "test NLL (nats)"), ("ece", "ECE"), ("nodes_kept", "fraction of nodes kept"))
NET_LABELS = {"mlp": "MLP", "lenet5": "LeNet-5", "lenet5_caffe": "LeNet-5-Caffe"}
NEEDED = {"prior", "accuracy", "nll", "ece", "nodes_kept"}


def setting(row) -> str:
    """The group name of a run: dataset, network and (MLP) hidden widths."""
    net = str(row.get("net", ""))
    name = ", ".join(x for x in (str(row.get("dataset", "")), NET_LABELS.get(net, net)) if x)
    hidden = row.get("hidden")
    if net == "mlp" and isinstance(hidden, str):
        name += " (hidden " + "-".join(hidden.strip("[]").replace(",", " ").split()) + ")"
    return name


def keyed(table: pd.DataFrame) -> pd.DataFrame:
    missing = NEEDED - set(table.columns)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)}")
    unknown = set(table["prior"]) - set(KEYS)
    if unknown:
        raise ValueError(f"unknown priors {sorted(unknown)} in {TABLE}; known: {sorted(KEYS)}")
    t = table.copy()
    t["key"] = t["prior"].map(KEYS)
    t["setting"] = [setting(r) for r in t.to_dict("records")]
    return style.latest_per_seed(t, ["setting", "key"])


def plot(table: pd.DataFrame):
    """The four panels from an ``svi_sparsity`` table (one row per prior, setting and seed)."""
    t = keyed(table)
    if t.empty:
        raise ValueError("table is empty")
    settings = list(dict.fromkeys(t["setting"]))
    keys = [k for k in style.in_order(t["key"]) if k != "map"]
    fig, axes = style.figure("double", aspect=0.27, ncols=len(PANELS), layout="constrained")
    several, has_map = False, (t["key"] == "map").any()
    for ax, (col, name) in zip(axes, PANELS):
        several |= style.seed_points(ax, t[t["key"] != "map"], col, group="setting", groups=settings, keys=keys)
        for i, s in enumerate(settings):
            ref = t.loc[(t["setting"] == s) & (t["key"] == "map"), col]
            if ref.notna().any():
                m, lo, hi = style.t_interval(ref)
                ax.hlines(m, i - 0.45, i + 0.45, color=style.look("map").color, ls="--", lw=0.9, zorder=1)
                if hi > lo:
                    ax.fill_between([i - 0.45, i + 0.45], lo, hi, color=style.look("map").color, alpha=0.1, lw=0)
        ax.set_ylabel(name)
        if col == "nodes_kept":
            ax.set_ylim(0, 1.02)
        elif col == "accuracy":
            ax.set_ylim(top=1.01)
        style.zero_or_break(ax)
    if len(settings) == 1:
        for ax in axes:
            ax.set_xticks([])
        fig.suptitle(settings[0], fontsize=8)
    extra = [(Line2D([], [], color=style.look("map").color, ls="--", lw=0.9), "MAP (unpruned)")] if has_map else []
    style.legend(fig, keys, seeds=several, extra=extra, collapsed=style.any_collapsed(t[t["key"] != "map"]))
    return fig


def make(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw the figure from ``results_dir/svi_sparsity.csv`` into ``out_dir``; ``[]`` if the table is absent."""
    table = style.read_table(results_dir, TABLE)
    if table is None or not (table["prior"] != "map").any():
        return []
    return style.save(plot(table), Path(out_dir) / STEM)


def main(argv: list[str] | None = None) -> list[Path]:
    return style.figure_cli("svi_sparsity", make, "svi_sparsity", argv)


if __name__ == "__main__":
    main()


__all__ = ["KEYS", "make", "plot"]
