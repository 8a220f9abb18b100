"""One figure style for the whole suite: sizes, a colour-blind-safe palette, fixed method colours.

Every figure function takes a results table and returns a ``matplotlib.figure.Figure``;
:func:`save` writes it as vector PDF and PNG side by side.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Okabe–Ito palette (colour-blind safe).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

# Consistent display names and colours for methods across every figure.
METHODS = {
    "map": ("MAP", "#000000"),
    "gaussian": ("Gaussian (SVI)", "#56B4E9"),
    "bmr": ("BMR", "#0072B2"),
    "horseshoe": ("Horseshoe (SVI)", "#E69F00"),
    "ss-ig": ("SS-IG", "#009E73"),
    "ss-gl": ("SS-GL", "#D55E00"),
    "ss-ghs": ("SS-GHS", "#CC79A7"),
    "nuts": ("NUTS", "#7F7F7F"),
    "laplace": ("Laplace", "#F0E442"),
}

WIDTH = {"single": 3.4, "double": 7.0}  # inches: one column / two columns

RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "savefig.bbox": "tight",
    "savefig.dpi": 200,
    "pdf.fonttype": 42,
}


plt.rcParams.update(RC)


def method_label(method: str) -> str:
    return METHODS.get(method, (method, None))[0]


def method_color(method: str, i: int = 0) -> str:
    return METHODS.get(method, (None, PALETTE[i % len(PALETTE)]))[1]


def figure(width: str = "single", aspect: float = 0.75, ncols: int = 1, nrows: int = 1, **kw):
    """A figure sized for one or two columns; returns ``(fig, axes)`` like ``plt.subplots``."""
    if width not in WIDTH:
        raise ValueError(f"width must be one of {sorted(WIDTH)}, got {width!r}")
    w = WIDTH[width]
    return plt.subplots(nrows, ncols, figsize=(w, w * aspect), **kw)


def save(fig, stem: str | Path) -> list[Path]:
    """Save ``fig`` as ``stem.pdf`` and ``stem.png``; return the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths


def read_table(results_dir: str | Path, name: str, **kw) -> pd.DataFrame | None:
    """The results table ``results_dir/name``, or ``None`` when it is absent or empty."""
    path = Path(results_dir) / name
    if not path.exists():
        return None
    table = pd.read_csv(path, **kw)
    return None if table.empty else table


def figure_cli(module: str, make: Callable[[Path, Path], list[Path]], experiment: str,
               argv: list[str] | None = None) -> list[Path]:
    """``python -m paper_figures.<module> [--results R] [--out F]``: run ``make`` and list the files written."""
    p = argparse.ArgumentParser(prog=f"python -m paper_figures.{module}")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--out", type=Path, default=Path("figures"))
    args = p.parse_args(argv)
    paths = make(args.results, args.out)
    if not paths:
        raise SystemExit(f"no results in {args.results}; run python -m experiments.{experiment} first")
    print("\n".join(str(x) for x in paths))
    return paths
