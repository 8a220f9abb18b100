"""Figures of the main comparison (``experiments.compare``): ``results/compare.csv`` + ``results/compare/*.npz``.

* ``compare_metrics``      accuracy / NLL / ECE by architecture × inference scheme
* ``compare_pruned``       fraction of weights and of nodes pruned, per architecture × scheme
* ``compare_cdf``          CDF of |posterior mean| per layer (one panel per layer of the first net)
* ``compare_first_layer``  first-layer posterior means of MLP hidden units as 8×8 images
* ``compare_training``     validation accuracy and fraction of nodes kept over training (SS-IG/GL/GHS),
                           with the final per-layer fraction kept
* ``compare_cost``         compression ratio (total / nonzero) and FLOPs ratio (compacted / dense)
* ``compare_creg``         SS-GHS with c_reg = 1 vs c_reg = k_l + 1: accuracy and nodes kept per layer
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures.style import PALETTE, figure, method_color, save

TRAINING = ("ss-ig", "ss-gl", "ss-ghs")
_LABELS = {"map": "MAP", "gaussian-bmr": "Gaussian+BMR", "horseshoe": "Horseshoe+BMR", "ss-ig": "SS-IG",
           "ss-gl": "SS-GL", "ss-ghs": "SS-GHS", "laplace-opd": "Laplace+OPD"}
_COLOURS = {"gaussian-bmr": "bmr", "laplace-opd": "laplace"}


def label(row) -> str:
    """Display name of one run: the method, its pruning variant (Laplace-OPD) and c_reg (SS-GHS)."""
    name = _LABELS.get(row["method"], row["method"])
    if row.get("pruning") in ("opd-weight", "opd-node"):
        name += " (nodes)" if row["pruning"] == "opd-node" else " (weights)"
    c = row.get("c_reg")
    if isinstance(c, str) and c == "fan_in":
        name += r" $c=k_l{+}1$"
    return name


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    t = table.copy()
    if "c_reg" in t:
        t["c_reg"] = t["c_reg"].astype(object).where(t["c_reg"].notna(), None)
        t["c_reg"] = t["c_reg"].map(lambda c: "fan_in" if str(c) == "fan_in" else c)
    t["label"] = [label(r) for r in t.to_dict("records")]
    return t


def _colour(method: str, i: int) -> str:
    return method_color(_COLOURS.get(method, method), i) or PALETTE[i % len(PALETTE)]


def _grouped_bars(ax, t: pd.DataFrame, value: str):
    """Bars of ``value``: groups = nets, one bar per label (coloured by method, hatched for variants)."""
    nets_ = list(dict.fromkeys(t["net"]))
    labels = list(dict.fromkeys(t["label"]))
    width = 0.8 / max(len(labels), 1)
    for j, lab in enumerate(labels):
        sub = t[t["label"] == lab].set_index("net")
        method = sub["method"].iloc[0]
        xs = [i + (j - (len(labels) - 1) / 2) * width for i, n in enumerate(nets_) if n in sub.index]
        ys = [float(sub.loc[n, value]) if np.ndim(sub.loc[n, value]) == 0 else float(sub.loc[n, value].iloc[0])
              for n in nets_ if n in sub.index]
        variant = "(nodes)" in lab or "k_l" in lab
        ax.bar(xs, ys, width, color=_colour(method, j), hatch="//" if variant else None, edgecolor="white",
               linewidth=0.3, label=lab)
    ax.set_xticks(range(len(nets_)), [n.upper() if n in ("mlp", "vit") else n.capitalize() for n in nets_])
    return labels


def plot_metrics(table: pd.DataFrame):
    """Accuracy, NLL and ECE by architecture × inference scheme."""
    t = labelled(table)
    fig, axes = figure("double", aspect=0.3, ncols=3, layout="constrained")
    for ax, (col, name) in zip(axes, (("accuracy", "test accuracy"), ("nll", "test NLL (nats)"), ("ece", "ECE"))):
        _grouped_bars(ax, t, col)
        ax.set_ylabel(name)
    lo = t["accuracy"].min()
    axes[0].set_ylim(max(0.0, lo - 0.1), 1.0)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def plot_pruned(table: pd.DataFrame):
    """Fraction of weights and of nodes pruned per architecture × scheme."""
    t = labelled(table)
    t["nodes_pruned"] = 1.0 - t["nodes_kept"].fillna(1.0) if "nodes_kept" in t else 0.0
    fig, axes = figure("double", aspect=0.3, ncols=2, layout="constrained")
    _grouped_bars(axes[0], t, "weight_sparsity")
    axes[0].set_ylabel("fraction of weights pruned")
    _grouped_bars(axes[1], t, "nodes_pruned")
    axes[1].set_ylabel("fraction of nodes pruned")
    for ax in axes:
        ax.set_ylim(0, 1)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def plot_cost(table: pd.DataFrame):
    """Compression ratio (total / nonzero parameters, log scale) and FLOPs ratio (compacted / dense)."""
    t = labelled(table)
    fig, axes = figure("double", aspect=0.3, ncols=2, layout="constrained")
    _grouped_bars(axes[0], t, "compression_ratio")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("compression ratio")
    _grouped_bars(axes[1], t, "flops_ratio")
    axes[1].set_ylabel("FLOPs ratio (compact / dense)")
    axes[1].set_ylim(0, 1.05)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def _colours(labels, colours: dict | None) -> dict:
    return {lab: (colours or {}).get(lab) or PALETTE[i % len(PALETTE)] for i, lab in enumerate(labels)}


def plot_cdf(absmeans: dict[str, dict[str, np.ndarray]], colours: dict[str, str] | None = None):
    """``absmeans[label][layer]`` = |posterior mean| of the layer's weights: one CDF panel per layer."""
    colours = _colours(absmeans, colours)
    layers = list(dict.fromkeys(k for d in absmeans.values() for k in d))
    fig, axes = figure("double", aspect=0.28, ncols=len(layers), squeeze=False,
                       layout="constrained")
    for ax, layer in zip(axes[0], layers):
        for i, (lab, d) in enumerate(absmeans.items()):
            if layer in d:
                v = np.sort(d[layer])
                ax.plot(np.maximum(v, 1e-8), np.arange(1, len(v) + 1) / len(v), color=colours[lab],
                        label=lab, lw=1)
        ax.set_xscale("log")
        ax.set_xlim(1e-5, None)
        ax.set_title(layer)
        ax.set_xlabel("|posterior mean|")
    axes[0][0].set_ylabel("CDF")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def plot_first_layer(weights: dict[str, tuple[np.ndarray, np.ndarray]], side: int = 8, n_units: int = 8):
    """``weights[label] = (w (side², units), kept (units,))``: the ``n_units`` largest-norm kept units as images."""
    fig, axes = figure("double", aspect=len(weights) / n_units * 1.05, ncols=n_units, nrows=len(weights),
                       squeeze=False)
    for r, (lab, (w, kept)) in enumerate(weights.items()):
        norms = np.linalg.norm(w, axis=0) * np.asarray(kept, bool)
        order = np.argsort(-norms)[:n_units]
        lim = np.abs(w[:, order]).max() or 1.0
        for c in range(n_units):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(order) and norms[order[c]] > 0:
                ax.imshow(w[:, order[c]].reshape(side, side), cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[r][0].set_ylabel(lab, rotation=0, ha="right", va="center")
    return fig


def plot_training(histories: dict[str, dict[str, np.ndarray]], final_layers: dict[str, dict[str, float]],
                  colours: dict[str, str] | None = None):
    """Validation accuracy and nodes kept per layer over training (colour: method, line style: layer;
    overall fraction where a history has no per-layer record); final fraction kept per layer."""
    colours = _colours(histories, colours)
    fig, axes = figure("double", aspect=0.3, ncols=3, layout="constrained")
    styles = ("-", "--", ":", "-.")
    for i, (lab, h) in enumerate(histories.items()):
        col = colours[lab]
        if "val_accuracy" in h:
            axes[0].plot(h["step"], h["val_accuracy"], color=col, label=lab)
        per_layer = _prefixed(h, "nodes_kept/")
        for j, (layer, kept) in enumerate(per_layer.items()):
            axes[1].plot(h["step"], kept, color=col, ls=styles[j % len(styles)], label=layer if i == 0 else None)
        if not per_layer and "nodes_kept" in h:
            axes[1].plot(h["step"], h["nodes_kept"], color=col)
    axes[0].set_ylabel("validation accuracy")
    axes[1].set_ylabel("fraction of nodes kept")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(frameon=False, fontsize="small")
    axes[1].set_ylim(0, 1.05)
    for ax in axes[:2]:
        ax.set_xlabel("SVI step")
    layers = list(dict.fromkeys(k for d in final_layers.values() for k in d))
    width = 0.8 / max(len(final_layers), 1)
    for j, (lab, d) in enumerate(final_layers.items()):
        xs = [i + (j - (len(final_layers) - 1) / 2) * width for i, l in enumerate(layers) if l in d]
        axes[2].bar(xs, [d[l] for l in layers if l in d], width, color=colours[lab], label=lab)
    axes[2].set_xticks(range(len(layers)), layers)
    axes[2].set_ylabel("nodes kept (final)")
    axes[2].set_ylim(0, 1.05)
    axes[2].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def plot_creg(table: pd.DataFrame, layers: dict[str, dict[str, float]]):
    """SS-GHS with c_reg = 1 vs k_l + 1: test accuracy per net and final nodes kept per layer."""
    t = labelled(table)
    fig, axes = figure("double", aspect=0.3, ncols=2, layout="constrained")
    _grouped_bars(axes[0], t, "accuracy")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_ylim(max(0.0, t["accuracy"].min() - 0.1), 1.0)
    names = list(dict.fromkeys(k for d in layers.values() for k in d))
    width = 0.8 / max(len(layers), 1)
    for j, (lab, d) in enumerate(layers.items()):
        xs = [i + (j - (len(layers) - 1) / 2) * width for i, l in enumerate(names) if l in d]
        axes[1].bar(xs, [d[l] for l in names if l in d], width, color=PALETTE[j % len(PALETTE)], label=lab)
    axes[1].set_xticks(range(len(names)), names, rotation=30, ha="right")
    axes[1].set_ylabel("nodes kept")
    axes[1].set_ylim(0, 1.05)
    axes[1].legend(frameon=False)
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
    path = Path(results_dir) / "compare.csv"
    if not path.exists():
        return []
    table = labelled(pd.read_csv(path))
    if table.empty:
        return []
    # one run per (net, label): the latest row wins (the table may hold several seeds or settings)
    table = table.drop_duplicates(["net", "label"], keep="last")
    out = Path(out_dir)
    paths = save(plot_metrics(table), out / "compare_metrics")
    paths += save(plot_pruned(table), out / "compare_pruned")
    paths += save(plot_cost(table), out / "compare_cost")
    runs = _load(Path(results_dir), table)
    one = table.drop_duplicates("summary")  # Laplace-OPD's two rows share one posterior
    first_net = "mlp" if "mlp" in set(table["net"]) else table["net"].iloc[0]
    sel = one[(one["net"] == first_net) & one.index.isin(list(runs))]
    name = {i: _LABELS.get(r["method"], r["method"]) + (r" $c=k_l{+}1$" if r.get("c_reg") == "fan_in" else "")
            for i, r in sel.iterrows()}
    colours = {name[i]: (PALETTE[5] if r.get("c_reg") == "fan_in" else _colour(r["method"], k))
               for k, (i, r) in enumerate(sel.iterrows())}
    if len(sel):
        fig = plot_cdf({name[i]: _prefixed(runs[i], "absmean/") for i in sel.index}, colours)
        paths += save(fig, out / "compare_cdf")
        images = {name[i]: (runs[i]["first_layer"], runs[i]["first_layer_kept"]) for i in sel.index
                  if runs[i]["first_layer"].ndim == 2 and runs[i]["first_layer"].shape[0] == 64}
        if images:
            paths += save(plot_first_layer(images), out / "compare_first_layer")
        train = [i for i in sel.index if sel.loc[i, "method"] in TRAINING and "history/step" in runs[i]]
        if train:
            fig = plot_training({name[i]: _prefixed(runs[i], "history/") for i in train},
                                {name[i]: {k: float(v) for k, v in _prefixed(runs[i], "nodes_kept/").items()}
                                 for i in train}, colours)
            paths += save(fig, out / "compare_training")
    ghs = table[(table["method"] == "ss-ghs") & table.index.isin(list(runs))]
    if "c_reg" in table and ghs["c_reg"].nunique() > 1:
        layers = {f"{r['net']} {r['label']}": {k: float(v) for k, v in _prefixed(runs[i], "nodes_kept/").items()}
                  for i, r in ghs.iterrows()}
        paths += save(plot_creg(ghs, layers), out / "compare_creg")
    return paths
