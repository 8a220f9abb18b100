"""SVI step time against a plain jitted Adam step, and where the time goes.

    python -m experiments.bench_svi [--quick] [--widths 784 400 400 10] [--batch-size 128]
                                    [--chunk 200] [--chunks 5] [--out results]

Same network, batch and loop for everything: ``lax.scan`` over ``--chunk`` steps per jitted call,
minibatch indices drawn on the device, one host sync per chunk; the time of a step is the fastest
of ``--chunks`` chunks (compilation excluded) divided by the chunk length — the minimum, because on
a shared machine other processes only ever add time. Rows of ``<out>/bench_svi.csv`` (all measured
in one run; the ratios of the SVI rows are to the faster of two Adam timings taken right before and
right after each SVI run):

* ``adam``: cross-entropy + Adam on the network's parameters (the reference);
* ``adam_2x_params``: the same with a second, unused parameter copy also updated by Adam — the floor
  of any mean-field method, which optimises a mean and a scale per weight;
* ``mf_no_noise`` / ``mf_threefry``: a hand-written mean-field Gaussian ELBO (log-scale
  parameters, analytic KL) with the weight noise set to 0 / drawn with ``jax.random.normal``: the
  cost of the guide's arithmetic and of one normal per weight;
* ``normals_<impl>``: drawing one standard normal per weight alone, for JAX's PRNGs
  ``threefry2x32`` (default), ``rbg`` and ``unsafe_rbg``;
* ``svi_<prior>``: :func:`sparsebnn.infer.svi` itself (NumPyro model + mean-field guide +
  ``TraceMeanField_ELBO``) for every prior with ``--weight-noise`` (default ``auto``: the per-chunk pool
  on CPU, fresh normals on GPU), and ``svi_<first prior>_<other>`` with the other choice.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from experiments._cli import parse, parser, positive_int
from sparsebnn import nets, priors
from sparsebnn.infer import svi
from sparsebnn.results import write_table

PRIORS = ("gaussian", "horseshoe", "tiered-horseshoe", "ss-ig", "ss-gl", "ss-ghs")


def loop(loss, batch_size: int, chunk: int, x, y, opt):
    """A jitted chunk of ``chunk`` optimisation steps of ``loss(params, key, xb, yb)`` (same loop as svi)."""
    n = len(x)

    def step(carry, _):
        params, state, i = carry
        k_idx, k_loss = jax.random.split(jax.random.fold_in(jax.random.key(0), i))
        idx = jax.random.randint(k_idx, (batch_size,), 0, n)
        value, grads = jax.value_and_grad(loss)(params, k_loss, x[idx], y[idx])
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state, i + 1), value

    return jax.jit(lambda carry: jax.lax.scan(step, carry, None, length=chunk))


def time_loop(run, params, opt, chunks: int, chunk: int) -> float:
    """Seconds per step of the fastest of ``chunks`` chunks, after one compiling chunk."""
    carry = (params, opt.init(params), jnp.zeros((), jnp.int32))
    carry, out = run(carry)
    np.asarray(out)
    times = []
    for _ in range(chunks):
        t0 = time.perf_counter()
        carry, out = run(carry)
        np.asarray(out)
        times.append((time.perf_counter() - t0) / chunk)
    return float(np.min(times))


def mean_field_loss(net, n: int, noise: str):
    """−ELBO of a mean-field Gaussian over all weights, prior N(0, 1), log-scale parameters."""

    def loss(p, key, xb, yb):
        locs, tree = jax.tree_util.tree_flatten(p["loc"])
        logs = jax.tree_util.tree_leaves(p["log_scale"])
        size = sum(a.size for a in locs)
        eps = jax.random.normal(key, (size,)) if noise == "threefry" else jnp.zeros((size,))
        weights, kl, start = [], 0.0, 0
        for loc, log_s in zip(locs, logs):
            s = jnp.exp(log_s)
            weights.append(loc + s * eps[start : start + loc.size].reshape(loc.shape))
            start += loc.size
            kl += jnp.sum(0.5 * (s * s + loc * loc - 1.0) - log_s)
        logits = net.apply(jax.tree_util.tree_unflatten(tree, weights), xb)
        return (n * optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean() + kl) / n

    return loss


def time_normals(impl: str, size: int, repeats: int) -> float:
    draw = jax.jit(lambda k: jax.random.normal(k, (size,)))
    key = jax.random.key(0, impl=impl)
    np.asarray(draw(key)[:1])
    times = []
    for i in range(repeats):
        k = jax.random.fold_in(key, i)
        t0 = time.perf_counter()
        np.asarray(draw(k)[:1])
        times.append(time.perf_counter() - t0)
    return float(np.min(times))


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = parser("bench_svi", __doc__.splitlines()[0])
    p.add_argument("--widths", type=positive_int, nargs="+", default=None, help="layer widths (default 784 400 400 10)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--chunk", type=positive_int, default=None, help="steps per jitted call (default 200)")
    p.add_argument("--chunks", type=positive_int, default=None, help="timed chunks per method (default 8)")
    p.add_argument("--n-data", type=positive_int, default=None, help="size of the synthetic training set (default 10000)")
    p.add_argument("--priors", nargs="+", default=None, choices=PRIORS, help="default: all; --quick: gaussian ss-ghs")
    p.add_argument("--weight-noise", choices=("auto", "pool", "fresh"), default="auto",
                   help="weight noise of the svi rows (default auto: the pool on CPU, fresh normals elsewhere); the "
                        "first prior also runs with the other choice")
    args = parse(p, argv, quick=dict(widths=[64, 32, 10], chunk=20, chunks=2, n_data=500, priors=["gaussian", "ss-ghs"]),
                 full=dict(widths=[784, 400, 400, 10], chunk=200, chunks=8, n_data=10000, priors=list(PRIORS)))
    if len(args.widths) < 2:
        p.error("--widths needs an input and an output width at least")
    if args.batch_size > args.n_data:
        p.error(f"--batch-size {args.batch_size} is larger than --n-data {args.n_data}")
    net = nets.mlp(args.widths)
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(args.n_data, args.widths[0])).astype(np.float32)
    y = rng.integers(0, args.widths[-1], args.n_data).astype(np.int32)
    xd, yd = jnp.asarray(x), jnp.asarray(y)
    opt = optax.adam(1e-3)
    params = net.init(jax.random.key(args.seed))
    n_weights = nets.n_params(params)
    B, C, K = args.batch_size, args.chunk, args.chunks

    def ce(p, key, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(net.apply(p, xb), yb).mean()

    def ce_2x(p, key, xb, yb):
        return ce(p["a"], key, xb, yb)

    adam = loop(ce, B, C, xd, yd, opt)
    adam_time = lambda: time_loop(adam, params, opt, K, C)  # noqa: E731
    rows = []

    def add(method: str, seconds: float, reference: float, **extra):
        rows.append({"method": method, "ms_per_step": 1e3 * seconds, "ratio_to_adam": seconds / reference, **extra})
        print(f"{method:24s} {1e3 * seconds:8.3f} ms/step   {seconds / reference:5.2f} x Adam", flush=True)

    ref = adam_time()
    add("adam", ref, ref)
    two = {"a": params, "b": jax.tree_util.tree_map(jnp.zeros_like, params)}
    add("adam_2x_params", time_loop(loop(ce_2x, B, C, xd, yd, opt), two, opt, K, C), ref)
    mf = {"loc": params, "log_scale": jax.tree_util.tree_map(lambda a: jnp.full_like(a, -4.6), params)}
    for noise in ("no_noise", "threefry"):
        run = loop(mean_field_loss(net, args.n_data, noise), B, C, xd, yd, opt)
        add(f"mf_{noise}", time_loop(run, mf, opt, K, C), ref)
    for impl in ("threefry2x32", "rbg", "unsafe_rbg"):
        add(f"normals_{impl}", time_normals(impl, n_weights, 20), ref, n_normals=n_weights)
    mode = args.weight_noise
    if mode == "auto":
        mode = "pool" if jax.devices()[0].platform == "cpu" else "fresh"
    other = "fresh" if mode == "pool" else "pool"
    runs = [(name, mode) for name in args.priors] + [(args.priors[0], other)]
    for name, noise in runs:
        before = adam_time()
        post = svi(net, priors.get(name), (x, y), num_steps=C * (K + 1), batch_size=B, chunk_size=C,
                   progress=False, seed=args.seed, weight_noise=noise)
        after = adam_time()
        steady = float(np.min([t / s for s, t in post.chunk_times[1:]]))
        add(f"svi_{name}" + (f"_{noise}" if noise != mode else ""), steady, min(before, after),
            adam_ms_before=1e3 * before, adam_ms_after=1e3 * after, weight_noise=noise)
    table = pd.DataFrame(rows)
    table["network"] = "-".join(map(str, args.widths))
    table["batch_size"] = B
    table["devices"] = str([d.device_kind for d in jax.local_devices()])
    write_table(table, args.out / "bench_svi.csv")
    return table


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
