"""One figure style for the whole suite: sizes, a colour-blind-safe palette, one look per method.

Every figure function takes a results table and returns a ``matplotlib.figure.Figure``;
:func:`save` writes it as vector PDF and PNG side by side.

* :data:`METHODS` is the single mapping from a method (or pruning criterion / prior structure) to
  its :class:`Look`: display label, colour, marker, hatch and line style. Every figure module draws
  methods through :func:`look` only, so a method looks the same in every figure, and no two
  entries share a colour + hatch + marker combination.
* :func:`seed_points` draws a metric per category and method: every seed as a small dot and the mean
  with its 95 % t interval over seeds (a single seed: just the point).
* Collapsed runs (column ``collapsed``, :func:`sparsebnn.results.mark_collapsed`, applied by :func:`read_table`)
  are findings, not results: :func:`mark_collapsed` draws a black "×" over their point (and :func:`seed_points`
  draws the method's marker hollow), and ``legend(..., collapsed=True)`` explains the mark
  (:func:`any_collapsed`); the summary tables give the reason.
* :func:`legend` puts a legend of methods outside the axes (:func:`legend_of`: of what the axes label), :func:`zero_or_break` makes a value axis
  start at zero or marks the break, :func:`plain_log_ticks` labels a log axis with plain numbers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from sparsebnn import intervals  # noqa: E402
from sparsebnn.results import mark_collapsed as _flag_collapsed  # noqa: E402

# Okabe–Ito palette (colour-blind safe), for categories that are not methods (layers, kinds, measures).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
_BLACK, _SKY, _BLUE, _ORANGE, _GREEN, _RED, _PINK, _GREY = (
    "#000000", "#56B4E9", "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#7F7F7F")
_OLIVE = "#B8A200"  # Okabe–Ito yellow darkened: the yellow itself is too faint for lines and markers


@dataclass(frozen=True)
class Look:
    """How one method is drawn: legend label, colour, marker (points, line markers), hatch (bars), line style."""

    label: str
    color: str
    marker: str
    hatch: str | None = None
    ls: str = "-"

    @property
    def zorder(self) -> float:
        """Broken line styles draw above solid ones, so a line hidden under another still shows through its gaps."""
        return 2.0 + {"-": 0.0, "--": 0.1, "-.": 0.2, ":": 0.3}.get(self.ls, 0.0)

    def line(self, size: float = 3.0, **kw) -> dict:
        """Keyword arguments of ``ax.plot`` for this method's line (colour, style, marker, z-order)."""
        return dict(color=self.color, ls=self.ls, marker=self.marker, ms=marker_size(self.marker, size), lw=1,
                    zorder=self.zorder) | kw


# One entry per method. A family shares a colour; its variants differ in marker, hatch and line style.
METHODS: dict[str, Look] = {
    "map": Look("MAP", _BLACK, "o"),
    "gaussian": Look("Gaussian (SVI)", _SKY, "v", ls=":"),
    "gaussian-bmr": Look("Gaussian+BMR", _SKY, "s", "//"),
    "horseshoe": Look("Horseshoe (SVI)", _ORANGE, "<", ls=":"),
    "horseshoe-bmr": Look("Horseshoe+BMR", _ORANGE, ">", "//"),
    "bmr": Look("Iterative BMR", _BLUE, "D"),
    "bmr-bb": Look("Iterative BMR (Beta–Bern.)", _BLUE, "d", "//", "--"),
    "bmr-node": Look("Iterative BMR (nodes)", _BLUE, "H", "\\\\", ":"),
    "ss-ig": Look("SS-IG", _GREEN, "^"),
    "ss-gl": Look("SS-GL", _RED, "p"),
    "ss-ghs": Look("SS-GHS $c{=}1$", _PINK, "P"),
    "ss-ghs-fan-in": Look("SS-GHS $c{=}k_l{+}1$", _PINK, "X", "//", "--"),
    "laplace-opd-weight": Look("Laplace+OPD (weights)", _OLIVE, "*"),
    "laplace-opd-node": Look("Laplace+OPD (nodes)", _OLIVE, "h", "//", "--"),
    "nuts": Look("NUTS", _GREY, "D"),
    # SpaM (experiments.spam): pruning criteria ...
    "opd": Look("OPD", _OLIVE, "o"),
    "magnitude": Look("magnitude", "#882255", "s", ls="--"),
    "random": Look("random", "#999999", "x", ls=":"),
    "snip": Look("SNIP", "#44AA99", "^", ls="-."),
    "grasp": Look("GraSP", "#332288", "v", ls="--"),
    "synflow": Look("SynFlow", "#AA4499", "D", ls="-."),
    # ... and prior structures, coarse to fine (viridis: the order is the meaning)
    "prior-fixed": Look("fixed prior", _BLACK, "x", ls=":"),
    "prior-scalar": Look("scalar prior", "#440154", "o"),
    "prior-layer": Look("layer prior", "#3E4989", "s"),
    "prior-node": Look("node prior", "#25848E", "^"),
    "prior-unit": Look("unit prior", "#3BBB75", "v"),
    "prior-parameter": Look("parameter prior", "#8DB600", "D"),
}


def look(key: str) -> Look:
    """The :class:`Look` of a method key of :data:`METHODS`; a ``ValueError`` names unknown keys."""
    if key not in METHODS:
        raise ValueError(f"method {key!r} has no look in paper_figures.style.METHODS; add it there")
    return METHODS[key]


def in_order(keys: Iterable[str]) -> list[str]:
    """The distinct method ``keys`` in the order of :data:`METHODS` (the same order in every figure)."""
    present = set(keys)
    return [k for k in METHODS if k in present]


WIDTH = {"single": 3.4, "double": 7.0}  # inches: one column / two columns
BREAK_GID = "axis-break"  # gid of the artists of a broken-axis mark
COLLAPSED_GID = "collapsed"  # gid of the "×" marks of collapsed runs
COLLAPSED_LABEL = "collapsed run (reason in the summary)"
BREAK_BELOW = 0.4  # zero_or_break: start at zero when the data reach below this fraction of the top

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


def figure(width: str = "single", aspect: float = 0.75, ncols: int = 1, nrows: int = 1, **kw):
    """A figure sized for one or two columns; returns ``(fig, axes)`` like ``plt.subplots``."""
    if width not in WIDTH:
        raise ValueError(f"width must be one of {sorted(WIDTH)}, got {width!r}")
    w = WIDTH[width]
    return plt.subplots(nrows, ncols, figsize=(w, w * aspect), **kw)


def marker_size(marker: str, size: float = 4.0) -> float:
    """Marker size that looks as large as a circle of ``size`` (stars, crosses and hexagons draw small)."""
    return size * {"*": 1.5, "x": 0.9, "p": 1.1, "h": 1.1, "H": 1.1}.get(marker, 1.0)


def handle(key: str, kind: str = "point"):
    """A legend handle for method ``key``: ``"point"`` (marker), ``"line"`` (line style + marker) or ``"bar"`` (hatch)."""
    lk = look(key)
    if kind == "bar":
        return Patch(facecolor=lk.color, hatch=lk.hatch, edgecolor="white", linewidth=0.3)
    if kind not in ("point", "line"):
        raise ValueError(f"kind must be 'point', 'line' or 'bar', got {kind!r}")
    return Line2D([], [], color=lk.color, marker=lk.marker, ms=marker_size(lk.marker), ls=lk.ls if kind == "line" else "none", lw=1)


def legend(fig, keys: Iterable[str], kind: str = "point", loc: str = "outside right upper", **kw):
    """One legend of the methods ``keys`` outside the axes (``fig`` needs ``layout="constrained"``).

    Extra ``(handle, label)`` pairs for non-method entries go in ``extra=[...]``; ``seeds=True`` adds
    the entries that explain :func:`seed_points` (seed dots, mean and interval), ``collapsed=True`` the
    entry that explains :func:`mark_collapsed`.
    """
    keys = list(dict.fromkeys(keys))
    extra = list(kw.pop("extra", [])) + (seed_handles() if kw.pop("seeds", False) else [])
    extra += collapse_handles() if kw.pop("collapsed", False) else []
    handles = [handle(k, kind) for k in keys] + [h for h, _ in extra]
    labels = [look(k).label for k in keys] + [lab for _, lab in extra]
    return fig.legend(handles, labels, loc=loc, frameon=False, **kw)


def legend_of(fig, axes, loc: str = "outside right upper", **kw):
    """One legend outside the axes of everything labelled in ``axes`` (one entry per label), placed by
    ``fig``'s constrained layout; ``None`` when nothing is labelled."""
    entries = {}
    for ax in np.atleast_1d(axes).ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(lab, h)
    if not entries:
        return None
    return fig.legend(list(entries.values()), list(entries), loc=loc, frameon=False, **kw)


def t_interval(values) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of :func:`sparsebnn.intervals.t_interval` (95 %); ``lo = hi = mean`` for a single value."""
    m, lo, hi = intervals.t_interval(values)
    return (m, lo, hi) if np.isfinite(lo) else (m, m, m)


def seed_points(ax, table: pd.DataFrame, value: str, group: str = "net", key: str = "key",
                groups: Sequence | None = None, keys: Sequence[str] | None = None, width: float = 0.8,
                group_label: Callable[[object], str] = str) -> bool:
    """Per ``group`` (x axis) and method ``key`` (offset within the group): the mean of ``value`` over
    the rows (one per seed) as the method's marker with its 95 % t interval, every seed as a small dot
    just left of it. A single seed is drawn as just the method's marker. Where any of the rows collapsed
    the marker is hollow with a "×" over it (:func:`mark_collapsed`). Returns whether any
    (group, method) had several seeds (then say so with ``legend(..., seeds=True)``)."""
    missing = {value, group, key} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)}")
    t = table[np.isfinite(pd.to_numeric(table[value], errors="coerce"))]
    groups = list(dict.fromkeys(t[group])) if groups is None else list(groups)
    keys = list(dict.fromkeys(t[key])) if keys is None else list(keys)
    step = width / max(len(keys), 1)
    several = False
    for j, k in enumerate(keys):
        lk = look(k)
        for i, g in enumerate(groups):
            v = t.loc[(t[group] == g) & (t[key] == k), value].to_numpy(float)
            if v.size == 0:
                continue
            x = i + (j - (len(keys) - 1) / 2) * step
            m, lo, hi = t_interval(v)
            if v.size > 1:
                several = True
                ax.scatter(np.full(v.size, x - 0.3 * step), v, s=5, color=lk.color, alpha=0.6, lw=0, zorder=2,
                           clip_on=False)
                ax.errorbar(x + 0.1 * step, m, yerr=[[m - lo], [hi - m]], color=lk.color, lw=0.9, capsize=1.5,
                            zorder=3)
            bad = collapsed(t.loc[(t[group] == g) & (t[key] == k)]).any()
            xm = x + (0.1 * step if v.size > 1 else 0.0)
            ax.plot(xm, m, ls="none", marker=lk.marker, color=lk.color, ms=marker_size(lk.marker),
                    mec=lk.color if bad else "white", mfc="none" if bad else lk.color, mew=0.8 if bad else 0.3,
                    zorder=4, clip_on=False)
            if bad:
                mark_collapsed(ax, [xm], [m])
    ax.set_xticks(range(len(groups)), [group_label(g) for g in groups])
    ax.set_xlim(-0.5, len(groups) - 0.5)
    return several


def seed_handles() -> list[tuple]:
    """Legend entries that explain :func:`seed_points` with several seeds."""
    return [(Line2D([], [], ls="none", marker="o", ms=2.5, color="0.4", alpha=0.6), "one seed"),
            (Line2D([], [], ls="-", marker="o", ms=4, color="0.4", lw=0.9), "mean, 95 % t interval")]


def collapsed(rows: pd.DataFrame) -> np.ndarray:
    """Per row, whether the run collapsed (column ``collapsed``; all False without it)."""
    if "collapsed" not in rows:
        return np.zeros(len(rows), bool)
    return rows["collapsed"].eq(True).to_numpy()


def any_collapsed(table: pd.DataFrame) -> bool:
    """Whether any run of ``table`` collapsed (then pass ``collapsed=True`` to :func:`legend`)."""
    return bool(collapsed(table).any())


def mark_collapsed(ax, x, y) -> None:
    """A black "×" over each point ``(x, y)`` of a collapsed run (gid :data:`COLLAPSED_GID`)."""
    ax.plot(x, y, ls="none", marker="x", color="black", ms=5, mew=1.0, zorder=5, gid=COLLAPSED_GID)


def collapse_handles() -> list[tuple]:
    """The legend entry that explains :func:`mark_collapsed`."""
    return [(Line2D([], [], ls="none", marker="x", color="black", ms=5, mew=1.0), COLLAPSED_LABEL)]


def zero_or_break(ax, below: float = BREAK_BELOW) -> bool:
    """Make a linear y axis of non-negative values start at zero (also when an interval reaches below it),
    or, when the data sit high above zero (the autoscaled bottom is above ``below`` × the top), keep the zoom and draw a broken-axis mark at
    the bottom of the y axis. Returns whether the axis is broken."""
    lo, hi = ax.get_ylim()
    if lo == 0:
        return False
    if lo < below * hi:
        ax.set_ylim(0, hi)
        return False
    kw = dict(transform=ax.transAxes, clip_on=False, gid=BREAK_GID)
    ax.plot([0, 0], [0.0, 0.05], color="white", lw=2.5, zorder=6, **kw)  # gap in the spine
    for y in (0.0, 0.05):
        ax.plot([-0.025, 0.025], [y - 0.015, y + 0.015], color="black", lw=0.8, zorder=7, **kw)
    return True


def is_broken(ax) -> bool:
    """Whether :func:`zero_or_break` marked ``ax`` as a broken axis."""
    return any(a.get_gid() == BREAK_GID for a in ax.lines)


def _plain(v: float, _pos=None) -> str:
    return f"{v:,.0f}" if v >= 1 else f"{v:g}"


def plain_log_ticks(ax, axis: str = "y", subs: Sequence[float] = (1.0, 2.0, 5.0), max_decades: float = 2.5) -> None:
    """Label a log axis with plain numbers (0.5, 1, 2, 5, 10, …) and no minor labels (never "4×10⁰");
    an axis spanning more than ``max_decades`` decades keeps powers of ten (10², 10³, …) at the decades."""
    a = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if lo > 0 and np.log10(hi / lo) > max_decades:
        a.set_major_locator(LogLocator(base=10))
    else:
        a.set_major_locator(LogLocator(base=10, subs=subs))
        a.set_major_formatter(FuncFormatter(_plain))
    a.set_minor_formatter(NullFormatter())


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
    """The results table ``results_dir/name`` with its collapsed runs marked (:func:`sparsebnn.results.mark_collapsed`),
    or ``None`` when it is absent or empty."""
    path = Path(results_dir) / name
    if not path.exists():
        return None
    table = pd.read_csv(path, **kw)
    return None if table.empty else _flag_collapsed(table)


def latest_per_seed(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per ``keys`` and seed (the latest row wins: a table may hold reruns with other settings)."""
    keys = [*keys, "seed"] if "seed" in table else list(keys)
    return table.drop_duplicates(keys, keep="last")


def missing_results(results: Path, experiment: str) -> str:
    """What to tell a user whose ``results`` folder has nothing to draw."""
    how = f"python -m experiments.{experiment} --out {results}"
    if not Path(results).is_dir():
        return f"results folder {results} does not exist; create results with {how} (or python -m experiments.all)"
    return f"no results in {results}; run {how} first"


def figure_cli(module: str, make: Callable[[Path, Path], list[Path]], experiment: str,
               argv: list[str] | None = None) -> list[Path]:
    """``python -m paper_figures.<module> [--results R] [--out F]``: run ``make`` and list the files written."""
    p = argparse.ArgumentParser(prog=f"python -m paper_figures.{module}")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--out", type=Path, default=Path("figures"))
    args = p.parse_args(argv)
    paths = make(args.results, args.out)
    if not paths:
        raise SystemExit(missing_results(args.results, experiment))
    print("\n".join(str(x) for x in paths))
    return paths
