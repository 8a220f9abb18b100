"""Benchmark: the cost of a BMR pruning pass, and how fast stochastic BMR reaches a sparse accurate network.

    python -m experiments.bench_bmr [--quick] [--n-params N] [--repeats R] [--seed S] [--out results] [--overwrite]

1. **Pruning pass.** A mean-field posterior over ``N`` (default 10 million) float32 parameters of an MLP;
   median wall time (``--repeats`` runs after a warm-up, ``block_until_ready``) of the jitted
   ``sparsebnn.reduction.reduce`` keep mask (threshold rule, per weight), of the same with the
   Beta–Bernoulli rule, at node level, and of the full :class:`~sparsebnn.reduction.Reduction`
   (ΔF, keep mask, node masks, reduced posterior), each against **one elementwise pass** over the same
   posterior: the jitted signal-to-noise score ``mean² / var`` (reads both arrays, writes one), timed
   alternately with it; the ratio is the median of the per-repeat ratios.
   Target: the threshold pass ≤ 3× the elementwise pass.
2. **Time to a sparse, accurate network** on digits (MLP 64-100-100-10): MAP accuracy is the reference;
   stochastic BMR (iterative, threshold, per weight) and tiered-horseshoe SVI with one-shot post-hoc BMR
   after every round run the same schedule in the same engine (``reduction.stochastic_bmr``, so the
   per-step costs differ only by the model); the first round with ≥ 90 % of the prunable weights pruned
   and test accuracy ≥ MAP − tolerance (1, 2 and 3 points) gives the steps and the training time
   (compilation and evaluation excluded). Ratio = horseshoe time / BMR time (> 1: BMR is faster).

Writes ``<out>/bench_bmr.csv`` (one row per measurement) and prints a summary.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from experiments._cli import parse, parser, positive_int
from sparsebnn import data as datasets
from sparsebnn import metrics, nets, priors
from sparsebnn.infer import map_train
from sparsebnn.posterior import GaussianFactors
from sparsebnn.reduction import reduce, stochastic_bmr
from sparsebnn.results import versions, write_table

TOLERANCES = (0.01, 0.02, 0.03)
TARGET_PRUNED = 0.9


def _paired_times(fn, ref, arg, repeats: int) -> tuple[float, float, float]:
    """Median seconds of ``fn`` and ``ref`` and median ratio, timed alternately so that machine drift cancels."""
    jax.block_until_ready(fn(arg))
    jax.block_until_ready(ref(arg))
    t_fn, t_ref = [], []
    for _ in range(repeats):
        for g, out in ((fn, t_fn), (ref, t_ref)):
            t = time.perf_counter()
            jax.block_until_ready(g(arg))
            out.append(time.perf_counter() - t)
    ratios = np.asarray(t_fn) / np.asarray(t_ref)
    return float(np.median(t_fn)), float(np.median(t_ref)), float(np.median(ratios))


def mlp_of_size(n_params: int) -> nets.Network:
    """An MLP ``[d, 4h, 1.5h, 10]`` with about ``n_params`` parameters (d = h/4)."""
    h = max(int(math.sqrt(n_params / 7.0)), 4)  # 4h·h/4 + 4h·1.5h ≈ 7h²
    return nets.mlp([max(h // 4, 1), 4 * h, int(1.5 * h), 10])


def bench_pass(n_params: int, repeats: int, seed: int) -> list[dict]:
    net = mlp_of_size(n_params)
    shapes = jax.eval_shape(net.init, jax.random.key(0))
    keys = iter(jax.random.split(jax.random.key(seed), 64))
    draw = lambda fn: jax.tree_util.tree_map(lambda s: fn(next(keys), s.shape), shapes)  # noqa: E731
    mean = draw(lambda k, s: 0.1 * jax.random.normal(k, s))
    var = draw(lambda k, s: jnp.exp(jax.random.uniform(k, s, minval=-8.0, maxval=0.0)))
    prior_var = draw(lambda k, s: jnp.ones(s))
    f = GaussianFactors(mean, var, prior_var)
    n = sum(x.size for x in jax.tree_util.tree_leaves(mean))
    ref = jax.jit(lambda f: jax.tree_util.tree_map(lambda m, v: m * m / v, f.mean, f.var))
    passes = {
        "public call (eager reduce, checks included)": lambda f: reduce(f, net),
        "threshold (keep mask)": jax.jit(lambda f: reduce(f, net).keep),
        "beta-bernoulli (keep mask)": jax.jit(lambda f: reduce(f, net, rule="beta_bernoulli").keep),
        "node threshold (keep mask)": jax.jit(lambda f: reduce(f, net, level="node").keep),
        "full reduction": jax.jit(lambda f: reduce(f, net)),
    }
    rows = []
    for name, fn in passes.items():
        t, t_ref, ratio = _paired_times(fn, ref, f, repeats)
        rows.append(dict(kind="pass", name=name, n_params=n, seconds=t, ref_seconds=t_ref, ratio=ratio))
    return rows


def first_hit(history: list[dict], floor: float) -> dict | None:
    for row in history:
        if row["pruned_fraction"] >= TARGET_PRUNED and row["accuracy"] >= floor:
            return row
    return None


def bench_time_to_target(quick: bool, seed: int) -> list[dict]:
    ds = datasets.load("digits", seed=seed)
    net = nets.mlp([ds.in_dim, 32, ds.n_classes] if quick else [ds.in_dim, 100, 100, ds.n_classes])
    sched = dict(warmup_steps=200, steps_per_round=100, rounds=3) if quick else \
        dict(warmup_steps=2000, steps_per_round=500, rounds=36)
    common = dict(optimizer=optax.adam(3e-3), init_scale=0.1, batch_size=128, eval_samples=32, seed=seed, **sched)
    steps = sched["warmup_steps"] + sched["rounds"] * sched["steps_per_round"]
    epochs = max(1, math.ceil(steps * 128 / len(ds.train.y)))
    t = time.perf_counter()
    params, _ = map_train(net, net.init(jax.random.key(seed)), ds.train, prior_prec=1.0, epochs=epochs, lr=3e-3,
                          seed=seed)
    map_time = time.perf_counter() - t
    map_acc = metrics.evaluate(np.asarray(net.apply(params, ds.test.x))[None], ds.test.y)["accuracy"]
    runs = {
        "bmr": stochastic_bmr(net, ds, prior=priors.Gaussian(1.0), **common),
        "tiered-hs": stochastic_bmr(net, ds, prior=priors.RegularizedHorseshoe(tiered=True), iterative=False, **common),
    }
    rows = [dict(kind="map", name="flat-map", accuracy=map_acc, seconds=map_time, steps=epochs * (len(ds.train.y) // 128))]
    for name, run in runs.items():
        last = run.history[-1]
        rows.append(dict(kind="final", name=name, steps=last["step"], seconds=last["train_time"],
                         pruned_fraction=last["pruned_fraction"], accuracy=last["accuracy"],
                         compile_seconds=run.compile_time,
                         best_accuracy_at_target=max([r["accuracy"] for r in run.history
                                                      if r["pruned_fraction"] >= TARGET_PRUNED], default=np.nan)))
    for tol in TOLERANCES:
        hits = {name: first_hit(run.history, map_acc - tol) for name, run in runs.items()}
        for name, hit in hits.items():
            rows.append(dict(kind="time_to_target", name=name, tolerance=tol, reached=hit is not None,
                             steps=hit["step"] if hit else np.nan, seconds=hit["train_time"] if hit else np.nan,
                             pruned_fraction=hit["pruned_fraction"] if hit else np.nan,
                             accuracy=hit["accuracy"] if hit else np.nan))
        b, h = hits["bmr"], hits["tiered-hs"]
        if b is not None:
            budget = runs["tiered-hs"].history[-1]["train_time"]
            hs_steps = h["step"] if h else runs["tiered-hs"].history[-1]["step"]
            rows.append(dict(kind="ratio", name="tiered-hs / bmr", tolerance=tol,
                             ratio=(h["train_time"] if h else budget) / b["train_time"], reached=h is not None,
                             steps_ratio=hs_steps / b["step"],
                             note="" if h else "horseshoe never reached the target: ratio is a lower bound (its full budget)"))
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = parser("bench_bmr", __doc__.splitlines()[0])
    p.add_argument("--n-params", type=positive_int, default=None, help="posterior size for the pass (default 10M; quick 1M)")
    p.add_argument("--repeats", type=positive_int, default=20)
    args = parse(p, argv, quick=dict(n_params=1_000_000), full=dict(n_params=10_000_000))
    rows = bench_pass(args.n_params, args.repeats, args.seed) + bench_time_to_target(args.quick, args.seed)
    table = pd.DataFrame([{**r, "device": jax.devices()[0].device_kind, **versions()} for r in rows])
    path = args.out / "bench_bmr.csv"
    if path.exists() and not args.overwrite:
        table = pd.concat([pd.read_csv(path), table], ignore_index=True)
    write_table(table, path)
    show = ["kind", "name", "n_params", "ref_seconds", "tolerance", "reached", "steps", "seconds", "ratio", "steps_ratio", "pruned_fraction",
            "accuracy"]
    print(pd.DataFrame(rows).reindex(columns=show).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return table


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
