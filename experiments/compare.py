"""The main comparison: every network × inference scheme on one dataset, fitted, pruned and evaluated.

    python -m experiments.compare [--quick] [--nets mlp lenet vit mixer]
                                  [--methods map gaussian-bmr horseshoe ss-ig ss-gl ss-ghs laplace-opd]
                                  [--dataset digits] [--steps N] [--hidden 100 100] [--no-creg]
                                  [--opd-sparsity 0.8] [--opd-node-sparsity 0.5] [--seeds 0 1 2] [--out results]
                                  [--executor local|dask] [--scheduler ADDRESS] (python -m experiments.compare --help)

Methods and how each is pruned (``RECIPES``: a fit returning a :class:`sparsebnn.posterior.Posterior`, its
prunings, and whether it is evaluated at the point estimate):

* ``map``: Adam on the log posterior under ``N(0, 1)`` (``sparsebnn.infer.map_train``), unpruned;
* ``gaussian-bmr``: mean-field SVI under ``N(0, 1)``, then Bayesian model reduction: a weight goes to
  the spike when its ΔF > 0 and a node when the ΔF of its incoming group is > 0;
* ``horseshoe``: SVI under the tiered (node-wise) regularised horseshoe in non-centred form, pruned by
  the same BMR rule on the non-centred weights (the package's shrinkage rule for it);
* ``ss-ig``, ``ss-gl``, ``ss-ghs``: SVI with node indicators, keep node j when ``σ(θ_j) >= 0.5``;
  ``ss-ghs`` runs twice, with ``c_reg = 1`` and ``c_reg = k_l + 1`` (``"fan_in"``), column ``c_reg``;
* ``laplace-opd``: MAP with online marginal-likelihood learning of a per-layer prior precision and a
  diagonal GGN Laplace (``sparsebnn.infer.laplace``), then OPD scores ``P_ii θ_i²`` prune the MAP: two
  rows, ``pruning = "opd-weight"`` (global unstructured, ``--opd-sparsity``) and ``"opd-node"``
  (structured, global: ``--opd-node-sparsity`` of the nodes of all prunable layers ranked together by their
  summed OPD, the best node of every layer kept, ``prune.node_mask(scope="global")``; the same fraction of
  every layer removed half of LeNet's six conv_0 filters, whose scores are 10–100× any dense node's, and
  left 0.32 test accuracy on digits instead of 0.91).

SVI uses Adam (``--svi-lr``, cosine decay to 2 %), Concrete T = 0.5 with relaxed indicators and a
linear KL warm-up over the first half of the steps (as ``experiments.svi_sparsity``); MAP and Laplace
use ``--lr``; SVI methods are evaluated with
``--samples`` posterior draws of the pruned network, MAP and Laplace-OPD at the (pruned) MAP.

Writes ``<out>/compare.csv`` (one row per run: accuracy, NLL, Brier, ECE, weight sparsity,
compression, nodes kept overall and per layer, FLOPs ratio of the compacted network, wall time,
``collapsed`` / ``collapse_reason``: :func:`sparsebnn.metrics.collapse_columns`) and,
per run, ``<out>/compare/<run>.npz`` (column ``summary``): ``absmean/<layer>`` (|posterior mean| of
the layer's weights), ``first_layer`` (posterior mean of the first layer's weights), ``history/*``
(validation step, accuracy, NLL and overall fraction of nodes kept over training, where recorded)
and ``nodes_kept/<layer>`` (final per-layer fraction kept).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import optax
import pandas as pd

from experiments._cli import (CLASSIFICATION_DATASETS, check_data, execute, fraction, load_data, over_seeds, parse,
                             parser, positive_float, positive_int)
from sparsebnn import compact, metrics, nets, priors, prune
from sparsebnn.infer import laplace, map_train, posterior_precision, svi
from sparsebnn.posterior import Point, Posterior
from sparsebnn.results import atomic_write, config_key

# --nets name -> (sparsebnn.nets.build name, options), sized for small images (mlp: hidden widths --hidden)
NETS = {
    "mlp": ("mlp", {}),
    "lenet": ("lenet5", {"padding": "SAME"}),
    "lenet-caffe": ("lenet5_caffe", {}),  # LeNet-5-Caffe (20-50 conv, 500 dense): SAME padding on 8x8 digits
    "vit": ("vit", {"patch": 2, "width": 32, "depth": 2, "heads": 4}),
    "mixer": ("mixer", {"patch": 2, "width": 32, "depth": 2}),
}
METHODS = ("map", "gaussian-bmr", "horseshoe", "ss-ig", "ss-gl", "ss-ghs", "laplace-opd")
MARGLIK_UPDATES = 10  # Laplace prior-precision updates over a fit (every epochs // 10 epochs)
# SVI methods -> sparsebnn.priors.get arguments, as experiments.svi_sparsity (ss-ghs: c_reg per run, column c_reg)
SVI_PRIORS = {
    "gaussian-bmr": {"name": "gaussian"},
    "horseshoe": {"name": "tiered-horseshoe"},
    "ss-ig": {"name": "ss-ig"},
    "ss-gl": {"name": "ss-gl", "sigma0": 0.2},
    "ss-ghs": {"name": "ss-ghs"},
}
SUMMARY_COLUMNS = ["net", "method", "c_reg", "pruning", "accuracy", "nll", "ece", "weight_sparsity", "nodes_kept",
                   "compression_ratio", "flops_ratio", "wall_time_s"]


def run_name(config: dict) -> str:
    """A file stem unique to the configuration: readable prefix + hash of the full config."""
    tag = f"_creg-{config['c_reg']}" if "c_reg" in config else ""
    digest = hashlib.sha1(config_key(config).encode()).hexdigest()[:10]
    return f"{config['dataset']}_{config['net']}_{config['method']}{tag}_s{config['seed']}_{digest}"


def save_npz(path: Path, arrays: dict) -> None:
    """``np.savez`` atomically (:func:`sparsebnn.results.atomic_write`)."""
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _summaries(net, mean_params, history: list, masks: dict | None) -> dict:
    out = {f"absmean/{l.name}": np.abs(np.asarray(mean_params[l.name]["w"], np.float32)).ravel() for l in net.layers}
    out["first_layer"] = np.asarray(mean_params[net.layers[0].name]["w"], np.float32)
    out["first_layer_kept"] = (np.asarray(masks[net.layers[0].name]) if masks and net.layers[0].name in masks
                               else np.ones(net.layers[0].n_nodes, bool))
    layers = [f"nodes_kept/{l.name}" for l in net.prunable_layers]
    for k in ("step", "val_accuracy", "val_nll", "nodes_kept", *layers):
        if history and all(k in h for h in history):
            out[f"history/{k}"] = np.array([h[k] for h in history], np.float64)
    for k, m in (masks or {}).items():
        out[f"nodes_kept/{k}"] = np.float64(np.mean(m))
    return out


def _evaluate(net, outputs, ds, params, masks) -> dict:
    small = compact.compact(net, params, masks)[0] if masks else None
    row = metrics.evaluate(outputs, ds.test.y, params=params, masks=masks or None,
                           net=net if small is not None else None, compact_net=small)
    if not masks:
        row["flops_ratio"] = 1.0
    return row | metrics.collapse_columns(row, units=metrics.layer_units(net))


# ----------------------------------------------------------------------------- methods: a fit, then prunings


def fit_map(config, net, ds, epochs) -> tuple[Posterior, dict]:
    """Adam on the log posterior under N(0, 1): a point estimate."""
    key = jax.random.key(config["seed"])
    params, _ = map_train(net, net.init(key), tuple(ds.train), epochs=epochs, batch_size=config["batch_size"],
                          lr=config["lr"], seed=config["seed"])
    return Point(net, params), {}


def fit_laplace(config, net, ds, epochs) -> tuple[Posterior, dict]:
    """MAP with online marginal-likelihood learning of a per-layer prior precision; diagonal GGN Laplace."""
    post = laplace(net, priors.Gaussian(learn="layer"), ds.train, curvature="diag", epochs=epochs,
                   batch_size=config["batch_size"], lr=config["lr"],
                   marglik_every=max(epochs // config.get("marglik_updates", MARGLIK_UPDATES), 1),
                   marglik_burnin=max(epochs // 5, 1), hyper_steps=50, seed=config["seed"], progress=False)
    return post, {}


def fit_svi(config, net, ds, epochs) -> tuple[Posterior, dict]:
    """Mean-field SVI: cosine-decayed Adam, KL warm-up over the first half (as experiments.svi_sparsity)."""
    steps, warmup = config["steps"], config["steps"] // 2
    prior = priors.get(**SVI_PRIORS[config["method"]], **({"c_reg": config["c_reg"]} if "c_reg" in config else {}))
    beta = optax.linear_schedule(1e-3, 1.0, warmup) if warmup else 1.0
    lr = optax.cosine_decay_schedule(config["svi_lr"], steps, alpha=0.02)
    post = svi(net, prior, ds, num_steps=steps, batch_size=config["batch_size"], optimizer=optax.adam(lr),
               kl_weight=beta, eval_every=max(steps // 20, 1), chunk_size=max(steps // 20, 1), seed=config["seed"],
               progress=config.get("progress", False))
    return post, {"steps_per_s": post.steps_per_s, "final_loss": float(post.losses[-20:].mean())}


def own_rule(post, config) -> tuple[str, dict | None, dict | None]:
    """The posterior's own rule (node indicators, else BMR weights): ``(pruning, node masks, masks)``."""
    nodes, applied = post.pruning_masks()
    return ("indicator" if post.inclusion_probs() else "bmr"), nodes, applied


def no_pruning(post, config):
    return "none", None, None


def opd_weight(post, config):
    """OPD ``P_ii θ_i²`` (= mean² / variance of the diagonal Laplace factors), global unstructured sparsity."""
    return "opd-weight", None, prune.weight_mask(post.net, _opd(post), config["opd_sparsity"])


def opd_node(post, config):
    """OPD summed per node, ``--opd-node-sparsity`` of the nodes of all prunable layers ranked together."""
    masks = prune.node_mask(post.net, _opd(post), config["opd_node_sparsity"], scope="global")
    nodes = {k: np.asarray(v) for k, v in masks.items()}
    return "opd-node", nodes, nodes


def _opd(post):
    return prune.opd(post.params, posterior_precision(post))


class Method(NamedTuple):
    """How a method of the comparison is fitted, pruned and evaluated."""

    fit: Callable  # (config, net, ds, epochs) -> (Posterior, extra row entries)
    prunings: tuple[Callable, ...]  # (posterior, config) -> (pruning name, node masks, masks to apply)
    at_point: bool = False  # evaluate the (pruned) posterior mean as a point, not the posterior predictive


RECIPES = {"map": Method(fit_map, (no_pruning,), at_point=True),
           "laplace-opd": Method(fit_laplace, (opd_weight, opd_node), at_point=True),
           **{m: Method(fit_svi, (own_rule,)) for m in SVI_PRIORS}}


def run(config: dict, out: Path) -> list[dict]:
    """Fit, prune and evaluate one (net, method); write its npz summary; return its row(s)."""
    ds = load_data(config["dataset"], seed=config["seed"], flat=config["net"] == "mlp")
    name, options = NETS[config["net"]]
    net = nets.build(name, ds, **options | ({"hidden": config["hidden"]} if name == "mlp" else {}))
    if config["method"] not in RECIPES:
        raise ValueError(f"unknown method {config['method']!r}; choose from {METHODS}")
    recipe = RECIPES[config["method"]]
    epochs = max(1, round(config["steps"] * config["batch_size"] / len(ds.train.y)))
    summary = f"compare/{run_name({k: v for k, v in config.items() if k != 'progress'})}.npz"
    t0 = time.perf_counter()
    post, extra = recipe.fit(config, net, ds, epochs)
    wall = time.perf_counter() - t0
    k_pred, k_mean = jax.random.split(jax.random.key(config["seed"]))
    draws = 1 if recipe.at_point else config["samples"]
    rows, shown = [], None
    for pruning in recipe.prunings:
        label, nodes, applied = pruning(post, config)
        target = Point(net, post.params) if recipe.at_point else post
        outputs = np.asarray(target.predict(ds.test.x, k_pred, draws, masks=applied))
        params = target.mean_params(k_mean, draws, masks=applied)
        rows.append(dict(pruning=label, wall_time_s=wall, **extra, **_evaluate(net, outputs, ds, params, nodes)))
        shown = nodes if nodes is not None else shown
    history = getattr(post, "history", None)
    history = history if isinstance(history, list) else []  # SVI validation rows (Laplace records epochs)
    mean = post.params if recipe.at_point else post.mean_params(k_mean, config["samples"])
    save_npz(out / summary, _summaries(net, mean, history, shown))
    return [{**r, "summary": summary} for r in rows]


def configs(nets_, methods, dataset, steps, hidden, batch_size, lr, samples, seed, opd_sparsity, opd_node_sparsity,
            creg=True, svi_lr=5e-3, marglik_updates=None) -> list[dict]:
    out = []
    for n in nets_:
        for m in methods:
            base = dict(dataset=dataset, net=n, method=m, steps=steps, hidden=list(hidden), batch_size=batch_size,
                        lr=lr, samples=samples, seed=seed)
            if m in SVI_PRIORS:
                base["svi_lr"] = svi_lr
            if m == "laplace-opd":
                base.update(opd_sparsity=opd_sparsity, opd_node_sparsity=opd_node_sparsity)
                if marglik_updates not in (None, MARGLIK_UPDATES):  # keyed only when not the default: old rows resume
                    base["marglik_updates"] = marglik_updates
            if m == "ss-ghs":
                out += [{**base, "c_reg": c} for c in ((1.0, "fan_in") if creg else (1.0,))]
            else:
                out.append(base)
    return out


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """The headline columns, one row per (dataset, net, method, c_reg, pruning) and any other setting that
    differs between rows: means over the seeds (column ``seeds``); column ``collapsed`` marks collapsed runs."""
    return over_seeds(table, ["dataset", *SUMMARY_COLUMNS[:4]], SUMMARY_COLUMNS[4:])


QUICK = dict(nets=["mlp"], steps=100, hidden=[16, 16], samples=4)
FULL = dict(nets=["mlp", "lenet"], steps=4000, hidden=[100, 100], samples=32)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = parser("compare", __doc__.splitlines()[0], seeds=True, executor=True)
    p.add_argument("--nets", nargs="+", choices=tuple(NETS), default=None, help="default: mlp lenet (--quick: mlp)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--dataset", default="digits", choices=CLASSIFICATION_DATASETS,
                   help="default digits; breast_cancer (no images): --nets mlp only")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="SVI steps, MAP/Laplace: the same number of examples (default 4000; --quick: 100)")
    p.add_argument("--hidden", type=positive_int, nargs="+", default=None,
                   help="MLP hidden widths (default 100 100; --quick: 16 16)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=2e-3, help="MAP / Laplace learning rate")
    p.add_argument("--svi-lr", type=positive_float, default=5e-3, help="SVI peak learning rate")
    p.add_argument("--samples", type=positive_int, default=None, help="posterior draws for evaluation (default 32; --quick: 4)")
    p.add_argument("--opd-sparsity", type=fraction, default=0.8, help="Laplace-OPD unstructured sparsity")
    p.add_argument("--opd-node-sparsity", type=fraction, default=0.5, help="Laplace-OPD fraction of all nodes pruned (global ranking)")
    p.add_argument("--no-creg", action="store_true", help="skip the SS-GHS c_reg = k_l + 1 run")
    p.add_argument("--marglik-updates", type=positive_int, default=MARGLIK_UPDATES,
                   help=f"Laplace: about this many prior-precision updates over the training (default {MARGLIK_UPDATES})")
    args = parse(p, argv, quick=QUICK, full=FULL)
    check_data(p, args.dataset, [n for n in args.nets if n != "mlp"], args.batch_size)
    grid = [c for seed in args.seeds
            for c in configs(args.nets, args.methods, args.dataset, args.steps, args.hidden, args.batch_size, args.lr,
                             args.samples, seed, args.opd_sparsity, args.opd_node_sparsity, creg=not args.no_creg,
                             svi_lr=args.svi_lr, marglik_updates=args.marglik_updates)]
    progress, out = len(grid) == 1, args.out
    table = execute(args, grid, lambda c: run({**c, "progress": progress}, out), out / "compare.csv", desc="compare")
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3):
        print(summary_table(table).to_string(index=False))
    return table


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
