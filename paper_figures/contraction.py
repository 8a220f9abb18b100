"""Empirical contraction on teacher data (tables: results/contraction.csv, contraction_slopes.csv).

    python -m paper_figures.contraction [--results results] [--out figures]

* ``contraction_rate``: E_q[d_H] against n (log-log), one panel per prior: every run (small points),
  the mean over seeds (line), and the theoretical eps_n scaled to the first mean point (dotted; it holds
  up to constants only), per prior inclusion probability pi; NUTS runs as grey diamonds; the fitted
  slope with its bootstrap interval next to eps_n's;
* ``contraction_recovery``: kept nodes, true positives and (when recorded) kept nodes that are not
  inert per hidden layer against n, one panel per prior, with the teacher's active counts s_l;
* ``contraction_fan_in`` (when the table has a width grid): E_q[d_H] against the hidden width at fixed
  n and active nodes, with eps_n scaled to the narrowest width.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from paper_figures import style
from sparsebnn.results import reference_passed

TABLE = "contraction.csv"
SLOPES = "contraction_slopes.csv"
STEMS = ("contraction_rate", "contraction_recovery", "contraction_fan_in")
NEEDED = {"method", "prior", "pi", "n", "width", "seed", "dh_mean", "eps_n"}
PI_STYLE = ("-", "--", "-.", ":")


def _check(table: pd.DataFrame, needed: set[str]) -> pd.DataFrame:
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)}")
    if table.empty:
        raise ValueError("table is empty")
    table = table.copy()
    table["pi"] = table["pi"].map(lambda v: v if isinstance(v, str) else f"{float(v):g}")
    return table


def _base(table: pd.DataFrame) -> pd.DataFrame:
    """SVI runs at the base width (the most common one) of the n grid."""
    svi = table[table["method"] == "svi"]
    if svi.empty:
        raise ValueError("table has no SVI runs")
    return svi[svi["width"] == svi["width"].mode().iloc[0]]


def _pi_label(pi: str) -> str:
    return "π theory" if pi == "theory" else f"π = {float(pi):.0e}"


def _priors(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["prior"]))


def _panels(k: int):
    """``k`` panels side by side: one column for a single panel, two columns otherwise."""
    fig, axes = style.figure("double" if k > 1 else "single", aspect=0.36 if k > 1 else 0.75, ncols=k, squeeze=False,
                             layout="constrained")
    return fig, list(axes[0])


def plot_rate(table: pd.DataFrame, slopes: pd.DataFrame | None = None) -> Figure:
    """E_q[d_H] vs n (log-log) per prior, with eps_n scaled to the first mean point."""
    table = _check(table, NEEDED)
    runs = _base(table)
    priors = _priors(runs)
    fig, axes = _panels(len(priors))
    for ax, prior in zip(axes, priors):
        colour = style.look(prior).color
        part = runs[runs["prior"] == prior]
        notes, several = [], part["pi"].nunique() > 1
        for j, (pi, g) in enumerate(part.groupby("pi", sort=False)):
            ls = PI_STYLE[j % len(PI_STYLE)]
            mean = g.groupby("n")[["dh_mean", "eps_n"]].mean()
            ax.scatter(g["n"], g["dh_mean"], s=5, alpha=0.4, lw=0, color=colour)
            ax.plot(mean.index, mean["dh_mean"], ls=ls, marker="o", ms=3, color=colour, label=f"E_q d_H, {_pi_label(pi)}")
            scaled = mean["eps_n"] * mean["dh_mean"].iloc[0] / mean["eps_n"].iloc[0]
            ax.plot(mean.index, scaled, ls=ls, color="0.35", lw=0.8, label=f"ε_n scaled, {_pi_label(pi)}")
            if slopes is not None and not slopes.empty:
                row = slopes[(slopes["prior"] == prior) & (slopes["pi"].astype(str) == pi)]
                if not row.empty:
                    r = row.iloc[0]
                    interval = "" if np.isnan(r["slope_lo"]) else f" [{r['slope_lo']:.2f}, {r['slope_hi']:.2f}]"
                    prefix = f"{_pi_label(pi)}: " if several else ""
                    notes.append(f"{prefix}{r['slope']:.2f}{interval} vs ε_n {r['eps_slope']:.2f}")
        ref = table[(table["method"] == "nuts") & (table["prior"] == prior) & reference_passed(table)]
        if not ref.empty:
            ax.scatter(ref["n"], ref["dh_mean"], marker=style.look("nuts").marker, s=14, color=style.look("nuts").color, label="NUTS", zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("n")
        title = style.look(prior).label + (": log–log slope [95% CI]" if notes else "")
        ax.set_title("\n".join([title, *notes]), loc="left", fontsize=6.5)
    axes[0].set_ylabel("E_q[d_H]")
    for ax in axes:
        style.plain_log_ticks(ax, "x")
        style.plain_log_ticks(ax, "y")
    style.legend_of(fig, axes, loc="outside lower center", ncol=3)
    return fig


def plot_recovery(table: pd.DataFrame) -> Figure:
    """Kept nodes and true positives per hidden layer vs n (mean over seeds), per prior, first pi."""
    table = _check(table, NEEDED)
    layers = sorted(int(c.split("_")[1]) for c in table.columns if c.startswith("kept_"))
    if not layers:
        raise ValueError("table lacks node-recovery columns kept_<l>")
    for i in layers:
        missing = {f"tp_{i}", f"s_{i}"} - set(table.columns)
        if missing:
            raise ValueError(f"table lacks columns {sorted(missing)}")
    runs = _base(table)
    priors = _priors(runs)
    fig, axes = _panels(len(priors))
    for ax, prior in zip(axes, priors):
        part = runs[runs["prior"] == prior]
        pi = "theory" if (part["pi"] == "theory").any() else part["pi"].iloc[0]
        g = part[part["pi"] == pi].groupby("n").mean(numeric_only=True)
        for i in layers:
            colour = style.PALETTE[(i - 1) % len(style.PALETTE)]
            # open circles under crosses and dashes over the solid line: equal counts stay visible
            ax.plot(g.index, g[f"kept_{i}"], marker="o", ms=4, mfc="white", color=colour, label=f"kept, layer {i}")
            ax.plot(g.index, g[f"tp_{i}"], marker="x", ms=3, ls="--", color=colour, zorder=2.1,
                    label=f"true positives, layer {i}")
            if f"inert_{i}" in g:
                ax.plot(g.index, g[f"kept_{i}"] - g[f"inert_{i}"], marker="+", ms=4, ls="-.", color=colour, lw=0.8,
                        zorder=2.2, label=f"kept, not inert, layer {i}")
            ax.axhline(g[f"s_{i}"].iloc[0], color=colour, lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        ax.set_xlabel("n")
        ax.set_title(f"{style.look(prior).label} ({_pi_label(pi)}; dotted: s_l)", loc="left")
    axes[0].set_ylabel("hidden nodes")
    for ax in axes:
        style.plain_log_ticks(ax, "x")
    style.legend_of(fig, axes, loc="outside lower center", ncol=len(layers))  # one column per layer
    return fig


def fan_in_n(table: pd.DataFrame) -> int | None:
    """The n of the width grid (the SVI n with the most widths), or None without one."""
    svi = table[table["method"] == "svi"]
    widths = svi.groupby("n")["width"].nunique()
    return None if widths.empty or widths.max() < 2 else int(widths.idxmax())


def plot_fan_in(table: pd.DataFrame) -> Figure:
    """E_q[d_H] vs hidden width at fixed n and active nodes, with eps_n scaled to the narrowest width."""
    table = _check(table, NEEDED)
    n = fan_in_n(table)
    if n is None:
        raise ValueError("table has no width grid (SVI runs at one n with several widths)")
    runs = table[(table["method"] == "svi") & (table["n"] == n)]
    runs = runs[runs.groupby(["prior", "pi"])["width"].transform("nunique") > 1]  # (prior, pi) with a width grid
    fig, ax = style.figure("single", layout="constrained")
    for prior, part in runs.groupby("prior", sort=False):
        colour = style.look(prior).color
        for j, (pi, g) in enumerate(part.groupby("pi", sort=False)):
            mean = g.groupby("width")[["dh_mean", "eps_n"]].mean()
            ax.scatter(g["width"], g["dh_mean"], s=5, alpha=0.4, lw=0, color=colour)
            ax.plot(mean.index, mean["dh_mean"], marker="o", ms=3, ls=PI_STYLE[j % len(PI_STYLE)], color=colour,
                    label=f"{style.look(prior).label}, {_pi_label(pi)}")
            ax.plot(mean.index, mean["eps_n"] * mean["dh_mean"].iloc[0] / mean["eps_n"].iloc[0], color=colour, lw=0.6, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("hidden width (fan-in of layer 2)")
    ax.set_ylabel("E_q[d_H]")
    ax.set_title(f"n = {n}; dotted: ε_n scaled to the narrowest width", loc="left")
    style.plain_log_ticks(ax, "y")
    style.legend_of(fig, ax, loc="outside lower center", ncol=2)
    return fig


def make(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw the figures from ``results_dir/contraction.csv`` into ``out_dir``; ``[]`` if the table is absent."""
    table = style.read_table(results_dir, TABLE)
    if table is None:
        return []
    slopes = style.read_table(results_dir, SLOPES, dtype={"pi": str})
    out = Path(out_dir)
    paths = style.save(plot_rate(table, slopes), out / STEMS[0]) + style.save(plot_recovery(table), out / STEMS[1])
    if fan_in_n(table) is not None:
        paths += style.save(plot_fan_in(table), out / STEMS[2])
    return paths


def main(argv: list[str] | None = None) -> list[Path]:
    return style.figure_cli("contraction", make, "contraction", argv)


if __name__ == "__main__":
    main()
