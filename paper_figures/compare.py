"""Figures of the main comparison (``experiments.compare``): ``results/compare.csv`` + ``results/compare/*.npz``.

* ``compare_metrics``      accuracy / NLL / ECE by architecture × inference scheme
* ``compare_pruned``       fraction of weights and of nodes pruned, per architecture × scheme
* ``compare_cost``         compression ratio (total / nonzero) and FLOPs ratio (compacted / dense)
* ``compare_cdf``          CDF of |posterior mean| (before pruning) per layer of the first net
* ``compare_first_layer``  first-layer posterior means of kept MLP hidden units as 8×8 images, one symmetric
                           colour scale (± the 99th percentile of |w|) with a colour bar
* ``compare_training``     validation accuracy and fraction of nodes kept per layer over training (SS-IG/GL/GHS),
                           the final fraction kept marked at the end
* ``compare_creg``         SS-GHS with c_reg = 1 vs c_reg = k_l + 1: accuracy and nodes kept per layer

Per-run metrics are drawn with :func:`paper_figures.style.seed_points` (every seed a dot, the mean with
its 95 % t interval); the npz-based figures show the lowest seed of each run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from paper_figures import style

TRAINING = ("ss-ig", "ss-gl", "ss-ghs", "ss-ghs-fan-in")
CLIP = 0.99  # compare_first_layer: colour scale ± this quantile of |w| over every panel
NET_LABELS = {"mlp": "MLP", "lenet": "LeNet-5", "vit": "ViT", "mixer": "MLP-Mixer"}
# experiments.compare method (and pruning / c_reg) -> style key
KEYS = {"map": "map", "gaussian-bmr": "gaussian-bmr", "horseshoe": "horseshoe-bmr", "ss-ig": "ss-ig",
        "ss-gl": "ss-gl", "ss-ghs": "ss-ghs", "laplace-opd": "laplace-opd-weight"}


def net_label(net: str) -> str:
    return NET_LABELS.get(net, str(net))


def key(row) -> str:
    """The :data:`paper_figures.style.METHODS` key of one run: its method, Laplace-OPD's pruning, SS-GHS's c_reg."""
    method = row["method"]
    if method not in KEYS:
        raise ValueError(f"unknown method {method!r} in compare.csv; known: {sorted(KEYS)}")
    if method == "laplace-opd" and row.get("pruning") == "opd-node":
        return "laplace-opd-node"
    if method == "ss-ghs":
        c = row.get("c_reg")
        if str(c) == "fan_in":
            return "ss-ghs-fan-in"
        if c is not None and not (isinstance(c, float) and np.isnan(c)) and float(c) != 1.0:
            raise ValueError(f"SS-GHS with c_reg = {c} has no look (only 1 and 'fan_in')")
    return KEYS[method]


def keyed(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``key`` column (style key per row) and a ``label`` column (its display name)."""
    t = table.copy()
    t["key"] = [key(r) for r in t.to_dict("records")]
    t["label"] = [style.look(k).label for k in t["key"]]
    return t


def _metric_panels(t: pd.DataFrame, panels, aspect=0.3):
    """One panel per ``(column, y label)``, nets on x, methods as seed points; one legend outside."""
    keys = style.in_order(t["key"])
    fig, axes = style.figure("double", aspect=aspect, ncols=len(panels), layout="constrained")
    axes = np.atleast_1d(axes)
    several = False
    for ax, (col, name) in zip(axes, panels):
        several |= style.seed_points(ax, t, col, keys=keys, group_label=net_label)
        ax.set_ylabel(name)
    style.legend(fig, keys, seeds=several, collapsed=style.any_collapsed(t))
    return fig, axes


def plot_metrics(table: pd.DataFrame):
    """Accuracy, NLL and ECE by architecture × inference scheme."""
    t = keyed(table)
    fig, axes = _metric_panels(t, (("accuracy", "test accuracy"), ("nll", "test NLL (nats)"), ("ece", "ECE")))
    axes[0].set_ylim(top=1.0)
    for ax in axes:
        style.zero_or_break(ax)
    return fig


def plot_pruned(table: pd.DataFrame):
    """Fraction of weights and of nodes pruned per architecture × scheme."""
    t = keyed(table)
    # unpruned MAP: no node pruned; a run without a node count (unstructured pruning) is left out, not drawn at 0
    kept = t["nodes_kept"] if "nodes_kept" in t else pd.Series(np.nan, index=t.index)
    t["nodes_pruned"] = (1.0 - kept).where(t["key"] != "map", 0.0)
    fig, axes = _metric_panels(t, (("weight_sparsity", "fraction of weights pruned"),
                                   ("nodes_pruned", "fraction of nodes pruned")))
    for ax in axes:
        ax.set_ylim(0, 1.02)
    return fig


def plot_cost(table: pd.DataFrame):
    """Compression ratio (total / nonzero parameters, log scale) and FLOPs ratio (compacted / dense)."""
    t = keyed(table)
    fig, axes = _metric_panels(t, (("compression_ratio", "compression ratio (total / nonzero)"),
                                   ("flops_ratio", "FLOPs ratio (compact / dense)")))
    axes[0].set_yscale("log")
    style.plain_log_ticks(axes[0])
    axes[1].set_ylim(0, 1.05)
    return fig


def plot_cdf(absmeans: dict[str, dict[str, np.ndarray]]):
    """``absmeans[key][layer]`` = |posterior mean| of the layer's weights: one CDF panel per layer."""
    layers = list(dict.fromkeys(k for d in absmeans.values() for k in d))
    fig, axes = style.figure("double", aspect=0.28, ncols=len(layers), squeeze=False, layout="constrained")
    for ax, layer in zip(axes[0], layers):
        for j, (k, d) in enumerate(absmeans.items()):
            if layer in d:
                lk = style.look(k)
                v = np.sort(d[layer])
                ax.plot(np.maximum(v, 1e-8), np.arange(1, len(v) + 1) / len(v),
                        **lk.line(markevery=(0.03 + 0.025 * j, 0.25)))
        ax.set_xscale("log")
        ax.set_xlim(1e-5, None)
        ax.set_ylim(0, 1.0)
        ax.set_title(layer)
    fig.supxlabel("|posterior mean| of a weight (before pruning)", fontsize=8)
    axes[0][0].set_ylabel("CDF")
    style.legend(fig, absmeans, kind="line")
    return fig


def plot_first_layer(weights: dict[str, tuple[np.ndarray, np.ndarray]], side: int = 8, n_units: int = 8):
    """``weights[key] = (w (side², units), kept (units,))``: the ``n_units`` largest-norm kept units as
    images, every panel on one symmetric colour scale ±(the ``CLIP`` quantile of |w| over all panels) with
    a colour bar; larger weights saturate, which the colour bar's arrows show."""
    fig, axes = style.figure("double", aspect=len(weights) / n_units * 0.8, ncols=n_units, nrows=len(weights),
                             squeeze=False, layout="constrained")
    shown = {}
    for k, (w, kept) in weights.items():
        norms = np.linalg.norm(w, axis=0) * np.asarray(kept, bool)
        order = [u for u in np.argsort(-norms)[:n_units] if norms[u] > 0]
        shown[k] = w[:, order]
    values = np.abs(np.concatenate([v.ravel() for v in shown.values()] or [np.zeros(1)]))
    lim = float(np.quantile(values, CLIP)) or 1.0  # a few large weights would wash out every other panel
    extend = "both" if values.max() > lim else "neither"
    image = None
    for r, (k, w) in enumerate(shown.items()):
        for c in range(n_units):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < w.shape[1]:
                image = ax.imshow(w[:, c].reshape(side, side), cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[r][0].set_ylabel(style.look(k).label, rotation=0, ha="right", va="center")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, extend=extend, label="posterior mean weight")
    return fig


def plot_training(histories: dict[str, dict[str, np.ndarray]], final_layers: dict[str, dict[str, float]]):
    """Validation accuracy, then the fraction of nodes kept over training, one panel per layer (overall
    where a history has no per-layer record); the final per-layer fraction kept (the pruning rule applied
    to the trained posterior) as the method's marker at the last step."""
    layers = list(dict.fromkeys(l for h in histories.values() for l in _prefixed(h, "nodes_kept/")))
    panels = layers or [None]
    fig, axes = style.figure("double", aspect=0.3, ncols=1 + len(panels), layout="constrained")
    for j, (k, h) in enumerate(histories.items()):
        lk = style.look(k)
        line = lk.line(markevery=(j, len(histories)))
        if "val_accuracy" in h:
            axes[0].plot(h["step"], h["val_accuracy"], **line)
        per_layer = _prefixed(h, "nodes_kept/")
        for ax, layer in zip(axes[1:], panels):
            kept = per_layer.get(layer) if layer is not None else h.get("nodes_kept")
            if kept is not None:
                ax.plot(h["step"], kept, **line)
            end = final_layers.get(k, {}).get(layer) if layer is not None else None
            if end is not None and len(h["step"]):
                ax.plot(h["step"][-1], end, ls="none", marker=lk.marker, color=lk.color, ms=5, mec="black", mew=0.5,
                        clip_on=False, zorder=4)
    axes[0].set_ylabel("validation accuracy")
    axes[0].set_ylim(top=1.0)
    style.zero_or_break(axes[0])
    for ax, layer in zip(axes[1:], panels):
        ax.set_ylim(0, 1.05)
        ax.set_title(f"nodes kept, {layer}" if layer is not None else "nodes kept")
    axes[1].set_ylabel("fraction of nodes kept")
    for ax in axes:
        ax.set_xlabel("SVI step")
    style.legend(fig, histories, kind="line",
                 extra=[(Line2D([], [], ls="none", marker="o", color="0.6", mec="black", mew=0.5, ms=5),
                         "final (pruned)")])
    return fig


def nodes_per_layer(table: pd.DataFrame) -> pd.DataFrame:
    """Long table of the per-layer fractions kept (``nodes_kept/<layer>`` columns): one row per run × layer."""
    cols = [c for c in table.columns if c.startswith("nodes_kept/")]
    ids = [c for c in ("net", "key", "seed") if c in table]
    long = table[ids + cols].melt(id_vars=ids, var_name="layer", value_name="kept").dropna(subset=["kept"])
    long["layer"] = long["layer"].str[len("nodes_kept/"):]
    nets_ = list(dict.fromkeys(table["net"]))
    long = long.sort_values("net", key=lambda c: c.map(nets_.index), kind="stable")
    long["net_layer"] = [f"{net_label(n)} {l}" for n, l in zip(long["net"], long["layer"])]
    return long


def plot_creg(table: pd.DataFrame):
    """SS-GHS with c_reg = 1 vs k_l + 1: test accuracy per net and final nodes kept per layer."""
    t = keyed(table)
    keys = style.in_order(t["key"])
    fig, axes = style.figure("double", aspect=0.3, ncols=2, layout="constrained",
                             gridspec_kw={"width_ratios": [1, 2]})
    several = style.seed_points(axes[0], t, "accuracy", keys=keys, group_label=net_label)
    axes[0].set_ylabel("test accuracy")
    axes[0].set_ylim(top=1.0)
    style.zero_or_break(axes[0])
    long = nodes_per_layer(t)
    if len(long):
        several |= style.seed_points(axes[1], long, "kept", group="net_layer", keys=keys)
        axes[1].tick_params(axis="x", rotation=30)
        for lab in axes[1].get_xticklabels():
            lab.set_ha("right")
    axes[1].set_ylabel("fraction of nodes kept")
    axes[1].set_ylim(0, 1.05)
    style.legend(fig, keys, seeds=several, collapsed=style.any_collapsed(t))
    return fig


def _load(results: Path, t: pd.DataFrame) -> dict[int, dict]:
    """The npz summaries of the rows (keyed by row index); rows whose file is missing are skipped."""
    out = {}
    for i, f in t["summary"].items() if "summary" in t else []:
        path = results / str(f)
        if path.exists():
            with np.load(path) as d:
                out[i] = {k: d[k] for k in d.files}
    return out


def _prefixed(d: dict, prefix: str) -> dict:
    return {k[len(prefix):]: d[k] for k in d if k.startswith(prefix)}


def make(results_dir: Path, out_dir: Path) -> list[Path]:
    table = style.read_table(results_dir, "compare.csv")
    if table is None:
        return []
    table = style.latest_per_seed(keyed(table), ["net", "key"])
    out = Path(out_dir)
    paths = style.save(plot_metrics(table), out / "compare_metrics")
    paths += style.save(plot_pruned(table), out / "compare_pruned")
    paths += style.save(plot_cost(table), out / "compare_cost")
    # npz figures: the first net, the lowest seed, one run per posterior (Laplace-OPD's two rows share one;
    # its node-pruning row names it, as the first-layer images show the units that pruning keeps)
    first_net = "mlp" if "mlp" in set(table["net"]) else table["net"].iloc[0]
    sel = table[(table["net"] == first_net) & (table["key"] != "laplace-opd-weight")]
    if "seed" in sel:
        sel = sel[sel["seed"] == sel["seed"].min()]
    runs = _load(Path(results_dir), sel)
    idx = {sel.loc[i, "key"]: i for i in runs}
    keys = style.in_order(idx)
    if keys:
        paths += style.save(plot_cdf({k: _prefixed(runs[idx[k]], "absmean/") for k in keys}), out / "compare_cdf")
        images = {k: (runs[idx[k]]["first_layer"], runs[idx[k]]["first_layer_kept"]) for k in keys
                  if runs[idx[k]]["first_layer"].ndim == 2 and runs[idx[k]]["first_layer"].shape[0] == 64}
        if images:
            paths += style.save(plot_first_layer(images), out / "compare_first_layer")
        train = [k for k in keys if k in TRAINING and "history/step" in runs[idx[k]]]
        if train:
            fig = plot_training({k: _prefixed(runs[idx[k]], "history/") for k in train},
                                {k: {n: float(v) for n, v in _prefixed(runs[idx[k]], "nodes_kept/").items()}
                                 for k in train})
            paths += style.save(fig, out / "compare_training")
    ghs = table[table["key"].isin(["ss-ghs", "ss-ghs-fan-in"])]
    if ghs["key"].nunique() > 1:
        paths += style.save(plot_creg(ghs), out / "compare_creg")
    return paths
