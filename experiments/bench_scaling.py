"""How inference costs grow with network size: SVI, BMR and Laplace relative to their plain counterparts, NUTS ESS/s.

    python -m experiments.bench_scaling [--sizes 1e3 1e4 1e5 1e6 1e7] [--nuts-sizes 1e2 1e3] [--d-in 64]
                                        [--batch 128] [--repeats 5] [--prior gaussian] [--quick] [--seed 0]
                                        [--out results] [--overwrite]

For every target size ``n`` the MLP ``[d_in, h, h, 10]`` has the smallest width ``h`` with at least
``n`` parameters (``h² + (d_in + 12) h + 10 ≥ n``); inputs and labels are random (costs do not depend
on the values). Each measurement is a ratio of two timings taken in the same process (after compilation):

* ``svi``: one mean-field SVI step of :func:`sparsebnn.infer.svi` (steady-state steps/s of its
  ``lax.scan`` chunks of 50–200 steps) / one plain Adam step on the negative log joint (same minibatch size,
  same on-device index draws, same ``lax.scan`` chunking);
* ``bmr-weight`` / ``bmr-node``: one jitted :func:`sparsebnn.reduction.reduce` pass (threshold rule)
  / one jitted elementwise pass over the same mean, variance and prior-variance trees;
* ``laplace-<kind>-<fisher>``: the curvature of one minibatch (``experiments.bench_laplace.bench``:
  diagonal GGN / EF, KFAC GGN / EF) / one jitted Adam gradient step;
* ``nuts`` (``--nuts-sizes`` only, a ``[4, h, h, 1]`` teacher regression with 200 points, 2 chains,
  200 + 200 draws; ESS/s includes compilation): leapfrog gradients per effective sample (min bulk ESS), with ESS/s beside it.

One tidy row per (size, measure) in ``<out>/bench_scaling.csv``: ``measure``, ``baseline``,
``n_params``, ``width``, ``seconds``, ``baseline_seconds``, ``ratio`` (and ``ess_per_s`` for NUTS).
``--quick``: size 10³, NUTS at 10² (100 + 100 draws), 2 repeats. The figure is ``paper_figures/benchmarks.py``.
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from experiments._cli import number, parse, parser, positive_int
from experiments.bench_laplace import median_seconds
from experiments.bench_laplace import bench as laplace_bench
from sparsebnn import data as datasets
from sparsebnn import nets, priors
from sparsebnn.likelihood import Likelihood
from sparsebnn.infer import neg_log_joint
from sparsebnn.infer import nuts
from sparsebnn.infer import svi
from sparsebnn.reduction import GaussianFactors, reduce
from sparsebnn.results import run_grid

N_CLASSES = 10
N_DATA = 1024


def width_for(n_params: float, d_in: int, d_out: int = N_CLASSES) -> int:
    """Smallest ``h`` with ``[d_in, h, h, d_out]`` having at least ``n_params`` parameters."""
    b = d_in + 2 + d_out
    h = max(1, math.ceil((-b + math.sqrt(b * b + 4 * max(n_params - d_out, 0))) / 2))
    while h > 1 and (h - 1) ** 2 + b * (h - 1) + d_out >= n_params:
        h -= 1
    return h


def _problem(width: int, d_in: int, seed: int):
    net = nets.mlp([d_in, width, width, N_CLASSES])
    kp, kx, ky = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(kx, (N_DATA, d_in))
    y = jax.random.randint(ky, (N_DATA,), 0, N_CLASSES)
    return net, net.init(kp), x, y


def _steps_per_chunk(n_params: int) -> int:
    """Steps per ``lax.scan`` chunk: ≥ 50, so that SVI's per-chunk noise pool is amortised as in real runs
    (``svi`` defaults to 500 steps a chunk; at 5 steps the pool alone cost 0.8 normals per weight and step)."""
    return int(np.clip(2e6 // max(n_params, 1), 50, 200))


def adam_step_seconds(net, params, x, y, batch: int, steps: int, repeats: int) -> float:
    """Seconds per plain Adam step on the negative log joint, in ``lax.scan`` chunks of ``steps``."""
    lik, opt, n = Likelihood("categorical"), optax.adam(1e-3), x.shape[0]
    prec = jax.tree.map(jnp.ones_like, params)

    def step(carry, key):
        p, s = carry
        idx = jax.random.randint(key, (batch,), 0, n)
        g = jax.grad(neg_log_joint, argnums=3)(net, lik, n, p, prec, x[idx], y[idx])
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    chunk = jax.jit(lambda c, k: jax.lax.scan(step, c, jax.random.split(k, steps))[0])
    carry = (params, opt.init(params))
    return median_seconds(lambda: chunk(carry, jax.random.PRNGKey(0)), repeats) / steps


def svi_step_seconds(net, x, y, prior, batch: int, steps: int, repeats: int, seed: int) -> float:
    """Seconds per SVI step: the steady-state rate of ``svi`` over ``repeats`` chunks after the compiling one."""
    post = svi(net, prior, (np.asarray(x), np.asarray(y)), num_steps=steps * (repeats + 1), chunk_size=steps,
               batch_size=batch, progress=False, seed=seed)
    return 1.0 / post.steps_per_s


def bmr_rows(net, params, repeats: int, seed: int) -> list[dict]:
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed + 1))
    var = jax.tree.map(lambda t: jnp.exp(jax.random.normal(k1, t.shape)) * 0.01, params)
    factors = GaussianFactors(params, var, jax.tree.map(jnp.ones_like, params))

    @jax.jit
    def elementwise(f):  # reads the same three trees, writes one: a posterior-over-prior SNR mask
        return jax.tree.map(lambda m, v, p: jnp.where(m * m > v * p, m, 0.0), f.mean, f.var, f.prior_var)

    t_elem = median_seconds(lambda: elementwise(factors), repeats)
    rows = []
    for level in ("weight", "node"):
        run = jax.jit(functools.partial(reduce, net=net, level=level))
        t = median_seconds(lambda: run(factors).keep, repeats)
        rows.append(dict(measure=f"bmr-{level}", baseline="elementwise pass", seconds=t, baseline_seconds=t_elem))
    return rows


def nuts_row(width: int, seed: int, draws: int) -> dict:
    d = datasets.teacher(200, p=4, widths=(4,), active=(2,), noise=0.5, seed=seed)
    net = nets.mlp([4, width, width, 1], act="tanh")
    post = nuts(net, priors.get("gaussian", centered=False), d, likelihood=Likelihood("gaussian", 0.5), num_warmup=draws,
                num_samples=draws, num_chains=2, chain_method="sequential", seed=seed, warn=False)
    ess = post.diagnostics.min_ess_bulk
    return dict(measure="nuts", baseline="gradient per effective sample", seconds=post.wall_time / max(ess, 1e-9),
                baseline_seconds=np.nan, ratio=post.n_leapfrog / max(ess, 1e-9), ess_per_s=post.ess_per_s,
                n_params=nets.n_params(net.init(jax.random.PRNGKey(0))), width=width)


def run(config: dict) -> list[dict]:
    if config["kind"] == "nuts":
        return [nuts_row(config["width"], config["seed"], config["draws"])]
    width, d_in, batch, repeats, seed = (config[k] for k in ("width", "d_in", "batch", "repeats", "seed"))
    net, params, x, y = _problem(width, d_in, seed)
    n = nets.n_params(params)
    steps = _steps_per_chunk(n)
    t_adam = adam_step_seconds(net, params, x, y, batch, steps, repeats)
    t_svi = svi_step_seconds(net, x, y, priors.get(config["prior"]), batch, steps, repeats, seed)
    rows = [dict(measure=f"svi-{config['prior']}", baseline="adam step", seconds=t_svi, baseline_seconds=t_adam)]
    rows += bmr_rows(net, params, repeats, seed)
    for r in laplace_bench(width, d_in, batch, repeats, seed):
        rows.append(dict(measure=f"laplace-{r['curvature']}-{r['fisher']}", baseline="gradient step",
                         seconds=r["curvature_s"], baseline_seconds=r["grad_step_s"]))
    for r in rows:
        r.update(ratio=r["seconds"] / r["baseline_seconds"], n_params=n, width=width)
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = parser("bench_scaling", __doc__.splitlines()[0])
    count = number(float, lambda v: 10 <= v < math.inf, "a parameter count >= 10")
    p.add_argument("--sizes", type=count, nargs="+", default=None, help="target parameter counts (default 1e3 ... 1e7)")
    p.add_argument("--nuts-sizes", type=count, nargs="*", default=None, help="target sizes for NUTS (default 1e2 1e3)")
    p.add_argument("--d-in", type=positive_int, default=64)
    p.add_argument("--batch", type=number(int, lambda v: 1 <= v <= N_DATA, f"an integer in [1, {N_DATA}]"), default=128)
    p.add_argument("--repeats", type=positive_int, default=None, help="timed repeats (median) per measurement (default 5)")
    p.add_argument("--prior", default="gaussian", help="SVI prior (a sparsebnn.priors name)")
    args = parse(p, argv, quick=dict(sizes=[1e3], nuts_sizes=[1e2], repeats=2),
                 full=dict(sizes=[1e3, 1e4, 1e5, 1e6, 1e7], nuts_sizes=[1e2, 1e3], repeats=5))
    try:
        priors.get(args.prior)  # validates the name
    except ValueError as e:
        p.error(f"--prior: {e}")
    backend = jax.default_backend()
    configs = [dict(kind="costs", target=int(s), width=width_for(s, args.d_in), d_in=args.d_in, batch=args.batch,
                    repeats=args.repeats, prior=args.prior, seed=args.seed, backend=backend) for s in args.sizes]
    draws = 100 if args.quick else 200
    configs += [dict(kind="nuts", target=int(s), width=width_for(s, 4, 1), draws=draws, seed=args.seed, backend=backend)
                for s in args.nuts_sizes]
    t0 = time.perf_counter()
    table = run_grid(configs, run, args.out / "bench_scaling.csv", overwrite=args.overwrite, desc="sizes")
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table.pivot_table(index="n_params", columns="measure", values="ratio").to_string(float_format=lambda v: f"{v:.3g}"))
    print(f"bench_scaling: {time.perf_counter() - t0:.0f} s")
    return table


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
