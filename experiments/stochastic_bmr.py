"""Stochastic BMR against Flat-MAP, Flat-FF and tiered-horseshoe SVI (the BMR paper's Figures 1 and 2).

    python -m experiments.stochastic_bmr [--quick] [--net mlp lenet vit mixer] [--dataset digits]
                                         [--methods ...] [--seeds 0 1 2] [--out results] [--overwrite]
                                         [--executor local|dask] [--scheduler ADDRESS] (--help: every option)

Every method gets the same budget of SVI steps (``warmup + rounds · steps_per_round``), batch size,
optimiser and Gaussian prior scale σ0:

* ``bmr``:       iterative BMR, per weight, threshold rule (prune where ΔF > 0); one row per round
* ``bmr-bb``:    iterative BMR, per weight, Marković et al.'s per-layer Beta–Bernoulli rule (docs/bmr.md); one row per round
* ``bmr-node``:  iterative BMR per node/filter (group ΔF, threshold 0); one row per round
* ``flat-map``:  MAP under N(0, σ0²) (Adam, the same number of minibatch steps)
* ``flat-ff``:   mean-field Gaussian SVI under N(0, σ0²) (``sparsebnn.infer.svi``); rows for the dense
                 posterior (``reduction = none``) and its one-shot post-hoc BMR (``reduction = one-shot``)
* ``tiered-hs``: mean-field SVI under the non-centred tiered regularised horseshoe; dense and one-shot BMR

Writes tidy rows to ``<out>/stochastic_bmr.csv``: dataset, net, method, seed, reduction, round, step,
pruned_fraction (of the weights and biases of all layers but the output layer), accuracy, nll, ece
(10 equal-width bins), ece_mass (20 equal-mass bins, as in Marković et al.'s code), brier, nodes_kept, weight_sparsity,
train_time (s, compilation and evaluation excluded for the BMR rounds), wall_time, collapsed / collapse_reason
(:func:`sparsebnn.metrics.collapse_columns`; the summary adds the margin lost against flat-map).
"""

from __future__ import annotations

import math
import time

import jax
import numpy as np
import optax

from experiments._cli import (CLASSIFICATION_DATASETS, check_data, execute, load_data, over_seeds, parse, parser,
                             positive_float, positive_int, schedule, schedule_options)
from sparsebnn import metrics, nets, priors
from sparsebnn.infer import svi
from sparsebnn.infer import map_train
from sparsebnn.masks import to_nodes
from sparsebnn.reduction import pruned_fraction, reduce, stochastic_bmr

# --net name -> (sparsebnn.nets.build name, options), sized for CPU runs (mlp: hidden widths from the scale)
NETS = {
    "mlp": ("mlp", {}),
    "lenet": ("lenet5", {}),
    "lenet-caffe": ("lenet5_caffe", {}),
    "vit": ("vit", {"patch": 2, "width": 32, "depth": 2, "heads": 4}),
    "mixer": ("mixer", {"patch": 2, "width": 32, "depth": 2}),
}
METHODS = ("bmr", "bmr-bb", "bmr-node", "flat-map", "flat-ff", "tiered-hs")
RULES = {"bmr": dict(rule="threshold", level="weight"), "bmr-bb": dict(rule="beta_bernoulli", level="weight"),
         "bmr-node": dict(rule="threshold", level="node")}

FULL = dict(warmup=5000, rounds=10, steps_per_round=500, eval_samples=64, hidden=(100, 100))
QUICK = dict(warmup=100, rounds=2, steps_per_round=50, eval_samples=8, hidden=(32,))
# sparsebnn.priors.get arguments: N(0, σ0²) (σ0: --sigma0) for every method but tiered-hs
PRIORS = {"gaussian": {"name": "gaussian"}, "tiered-hs": {"name": "tiered-horseshoe"}}


def load(dataset: str, net: str, seed: int):
    """Flat inputs for the MLP, images for the others."""
    return load_data(dataset, seed=seed, flat=net == "mlp")


def _svi_rows(post, net, test, samples, key, base):
    """Dense and one-shot-BMR rows of an SVI posterior."""
    rows = []
    red = reduce(post.gaussian_factors(), net)
    keep = {k: {c: np.asarray(v) for c, v in sub.items()} for k, sub in red.keep.items()}
    for reduction, masks in (("none", None), ("one-shot", keep)):
        outs = np.asarray(post.predict(test.x, key=key, n_samples=samples, masks=masks))
        row = metrics.evaluate(outs, test.y, params=post.mean_params(key, samples, masks=masks),
                               masks=to_nodes(net, keep) if masks is not None else None)
        row.update(base, reduction=reduction, pruned_fraction=pruned_fraction(keep, net) if masks is not None else 0.0)
        rows.append(row | metrics.collapse_columns(row, units=metrics.layer_units(net)))
    return rows


def run(config: dict) -> list[dict]:
    sched = schedule(config, FULL, QUICK)
    ds = load(config["dataset"], config["net"], config["seed"])
    name, options = NETS[config["net"]]
    net = nets.build(name, ds, **options | ({"hidden": sched["hidden"]} if name == "mlp" else {}))
    steps = sched["warmup"] + sched["rounds"] * sched["steps_per_round"]
    opt = optax.adam(config["lr"])
    prior = priors.get(**PRIORS["gaussian"], sigma0=config["sigma0"])
    key = jax.random.key(config["seed"])
    common = dict(batch_size=config["batch_size"], optimizer=opt, init_scale=config["init_scale"], seed=config["seed"])
    method, units = config["method"], metrics.layer_units(net)
    t0 = time.perf_counter()
    if method in RULES:
        res = stochastic_bmr(net, ds, prior=prior, warmup_steps=sched["warmup"], steps_per_round=sched["steps_per_round"],
                             rounds=sched["rounds"], eval_samples=sched["eval_samples"], **RULES[method], **common)
        wall = time.perf_counter() - t0
        return [{**row, "reduction": "iterative", "wall_time": wall, **metrics.collapse_columns(row, units=units)}
                for row in res.history]
    if method == "flat-map":
        epochs = max(1, math.ceil(steps * config["batch_size"] / len(ds.train.y)))
        params, _ = map_train(net, net.init(key), ds.train, prior_prec=1.0 / config["sigma0"] ** 2, epochs=epochs,
                              batch_size=config["batch_size"], lr=config["lr"], seed=config["seed"])
        wall = time.perf_counter() - t0
        outs = np.asarray(net.apply(params, ds.test.x))[None]
        row = metrics.evaluate(outs, ds.test.y, params=params)
        return [{**row, **metrics.collapse_columns(row), "reduction": "none", "round": 0, "step": epochs * (len(ds.train.y) // config["batch_size"]),
                 "pruned_fraction": 0.0, "train_time": wall, "wall_time": wall}]
    if method in ("flat-ff", "tiered-hs"):
        p = prior if method == "flat-ff" else priors.get(**PRIORS["tiered-hs"])
        post = svi(net, p, ds, num_steps=steps, progress=False, chunk_size=min(500, steps), **common)
        wall = time.perf_counter() - t0
        base = dict(round=0, step=steps, train_time=steps / post.steps_per_s, wall_time=wall)
        return _svi_rows(post, net, ds.test, sched["eval_samples"], key, base)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def main(argv: list[str] | None = None):
    p = parser("stochastic_bmr", __doc__.splitlines()[0], seeds=True, executor=True)
    p.add_argument("--net", nargs="+", default=None, choices=tuple(NETS), help="architectures (default: all; quick: mlp)")
    p.add_argument("--dataset", default="digits", choices=CLASSIFICATION_DATASETS,
                   help="default digits; breast_cancer (no images): --net mlp only")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--lr", type=positive_float, default=3e-3, help="Adam learning rate for every method (default 3e-3)")
    p.add_argument("--sigma0", type=positive_float, default=1.0, help="Gaussian prior sd (default 1)")
    p.add_argument("--init-scale", type=positive_float, default=0.1,
                   help="initial sd of the SVI weight factors (default 0.1)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    given = schedule_options(p, FULL, QUICK, warmup="SVI warm-up steps before the first reduction",
                             rounds="reduction rounds", steps_per_round="SVI steps between reductions")
    args = parse(p, argv, quick=dict(net=["mlp"]), full=dict(net=list(NETS)))
    check_data(p, args.dataset, [n for n in args.net if n != "mlp"], args.batch_size)
    overrides = given(args)
    configs = [dict(dataset=args.dataset, net=n, method=m, seed=seed, lr=args.lr, sigma0=args.sigma0,
                    init_scale=args.init_scale, batch_size=args.batch_size, quick=args.quick,
                    **overrides)
               for seed in args.seeds for n in args.net for m in args.methods]
    table = execute(args, configs, run, args.out / "stochastic_bmr.csv", desc="stochastic_bmr")
    final = summary(table)
    if len(final):
        print(final.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return table


def summary(table):
    """The last round of every (dataset, net, method, reduction), means over the seeds: the accuracy–sparsity table."""
    if table.empty:
        return table
    keys = ["dataset", "net", "method", "reduction"]
    last = table.sort_values("round").groupby([*keys, "seed"], sort=False).tail(1)
    cols = ["step", "pruned_fraction", "accuracy", "nll", "ece", "ece_mass", "nodes_kept", "train_time"]
    return over_seeds(last, keys, cols).sort_values(keys).reset_index(drop=True)


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
