"""Curvature cost (diagonal GGN, KFAC, empirical Fisher) relative to one Adam gradient step, for growing MLPs.

For MLPs ``[d_in, h, h, 10]`` and one minibatch, times (median over repeats, after compilation)
one jitted Adam step on the negative log joint, and ``sparsebnn.infer.curvature`` of that minibatch (input checks
included, as a user calls it):
exact diagonal GGN, diagonal empirical Fisher, KFAC (GGN) and KFAC (EF). Writes one row per
(width, curvature) with the seconds and the ratio to the gradient step to
``<out>/bench_laplace.csv``.

    python -m experiments.bench_laplace            # h = 64 ... 1024, batch 128, d_in = 784
    python -m experiments.bench_laplace --quick    # h = 32, 64, few repeats
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments._cli import parse, parser, positive_int
from sparsebnn import nets
from sparsebnn.infer import curvature, neg_log_joint
from sparsebnn.likelihood import Likelihood
from sparsebnn.results import run_grid

CURVATURES = (("diag", "ggn"), ("diag", "ef"), ("kfac", "ggn"), ("kfac", "ef"))


def median_seconds(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench(width: int, d_in: int, batch: int, repeats: int, seed: int) -> list[dict]:
    net = nets.mlp([d_in, width, width, 10])
    lik = Likelihood("categorical")
    kp, kx, ky = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = net.init(kp)
    x = jax.random.normal(kx, (batch, d_in))
    y = jax.random.randint(ky, (batch,), 0, 10)
    prec = jax.tree.map(jnp.ones_like, params)
    opt = optax.adam(1e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        g = jax.grad(neg_log_joint, argnums=3)(net, lik, batch, params, prec, x, y)
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state

    t_grad = median_seconds(lambda: step(params, state), repeats)
    rows = []
    n_params = nets.n_params(params)
    for kind, fisher in CURVATURES:
        t = median_seconds(lambda: curvature(net, params, x, y, lik, kind=kind, fisher=fisher, batch_size=batch), repeats)
        rows.append({"curvature": kind, "fisher": fisher, "n_params": n_params, "grad_step_s": t_grad, "curvature_s": t, "ratio": t / t_grad})
    return rows


def main(argv=None):
    p = parser("bench_laplace", __doc__.splitlines()[0])
    p.add_argument("--widths", type=positive_int, nargs="+", default=None, help="default 64 128 256 512 1024; --quick: 32 64")
    p.add_argument("--d-in", type=positive_int, default=784)
    p.add_argument("--batch", type=positive_int, default=128)
    p.add_argument("--repeats", type=positive_int, default=None, help="default 20; --quick: 3")
    args = parse(p, argv, quick=dict(widths=[32, 64], repeats=3), full=dict(widths=[64, 128, 256, 512, 1024], repeats=20))
    configs = [
        {"width": w, "d_in": args.d_in, "batch": args.batch, "repeats": args.repeats, "seed": args.seed,
         "backend": jax.default_backend()}
        for w in args.widths
    ]
    table = run_grid(
        configs, lambda c: bench(c["width"], c["d_in"], c["batch"], c["repeats"], c["seed"]),
        args.out / "bench_laplace.csv", overwrite=args.overwrite, desc="widths",
    )
    cols = ["width", "n_params", "curvature", "fisher", "grad_step_s", "curvature_s", "ratio"]
    with np.printoptions(precision=4):
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return table


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
