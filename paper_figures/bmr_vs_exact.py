"""BMR's ΔF against the exact log Bayes factor on conjugate regressions (table: results/bmr_exact.csv).

    python -m paper_figures.bmr_vs_exact [--results results] [--out figures]

(a) ΔF against the exact value, one point per comparison, symmetric-log axes, largest |error| printed;
(b) |ΔF - exact| against |exact|, with the float64 rounding level 1e-16 |exact| for reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from paper_figures import style

TABLE = "bmr_exact.csv"
STEM = "bmr_vs_exact"
KIND_LABELS = {
    "drop_subset": "drop a subset (full cov.)",
    "shrink": "shrink prior (full cov.)",
    "coordinate": "one coefficient (Savage–Dickey)",
}
FLOOR = 1e-18  # where exact zeros are drawn on the log axis


def plot(table: pd.DataFrame) -> Figure:
    """The two-panel figure from a ``bmr_exact`` table (columns kind, delta_f, exact, abs_err)."""
    missing = {"kind", "delta_f", "exact", "abs_err"} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)}")
    if table.empty:
        raise ValueError("table is empty")
    fig, (ax, ax_err) = style.figure("double", aspect=0.36, ncols=2, layout="constrained")
    kinds = [k for k in KIND_LABELS if k in set(table["kind"])] + sorted(set(table["kind"]) - set(KIND_LABELS))
    for i, kind in enumerate(kinds):
        part = table[table["kind"] == kind]
        colour = style.PALETTE[i % len(style.PALETTE)]
        label = KIND_LABELS.get(kind, kind)
        ax.scatter(part["exact"], part["delta_f"], s=6, alpha=0.6, lw=0, color=colour, label=label)
        ax_err.scatter(part["exact"].abs().clip(lower=FLOOR), part["abs_err"].clip(lower=FLOOR), s=6, alpha=0.6, lw=0, color=colour)
    lo = float(min(table["exact"].min(), table["delta_f"].min()))
    hi = float(max(table["exact"].max(), table["delta_f"].max()))
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.6, zorder=0)
    for axis in (ax.set_xscale, ax.set_yscale):
        axis("symlog", linthresh=1.0)
    ax.set_xlabel("exact ln p(y | reduced) − ln p(y | full)")
    ax.set_ylabel("BMR ΔF")
    big = table["exact"].abs() > 1e-3
    rel = (table["abs_err"][big] / table["exact"][big].abs()).max() if big.any() else 0.0
    ax.text(0.03, 0.97, f"{len(table)} comparisons\nlargest |ΔF − exact| = {table['abs_err'].max():.1e}\n"
            f"largest relative error = {rel:.1e}", transform=ax.transAxes, va="top", ha="left")
    ax.set_title("(a) ΔF vs exact log Bayes factor", loc="left")

    grid = np.logspace(np.log10(max(table["exact"].abs().min(), FLOOR)), np.log10(max(table["exact"].abs().max(), 1.0)), 50)
    ax_err.plot(grid, 1e-16 * grid, color="0.3", lw=0.6, ls="--", label="1e-16 × |exact|")
    ax_err.set_xscale("log")
    ax_err.set_yscale("log")
    ax_err.set_xlabel("|exact|")
    ax_err.set_ylabel("|ΔF − exact|")
    ax_err.set_title(f"(b) absolute error (errors of exactly 0 drawn at {FLOOR:g})", loc="left")
    style.legend_of(fig, [ax, ax_err], loc="outside lower center", ncol=4, markerscale=2)
    return fig


def make(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw the figure from ``results_dir/bmr_exact.csv`` into ``out_dir``; ``[]`` if the table is absent."""
    table = style.read_table(results_dir, TABLE)
    return [] if table is None else style.save(plot(table), Path(out_dir) / STEM)


def main(argv: list[str] | None = None) -> list[Path]:
    return style.figure_cli("bmr_vs_exact", make, "bmr_exact", argv)


if __name__ == "__main__":
    main()
