"""Simulation-based calibration (Talts et al. 2018) of the NUTS sampler on a tiny BNN (horseshoe, Gaussian, spike-and-slab).

    python -m experiments.sbc [--quick] [--seed S] [--out results] [--n-sims N]
                              [--prior horseshoe|gaussian|ss-ig|ss-gl|ss-ghs]

For each simulation: draw every latent site θ̃ and data ỹ from the prior predictive of
``BNN(mlp([1, 3, 1], tanh), prior, gaussian, noise=0.3)`` at 12 fixed inputs, run NUTS (one chain,
300 warm-up steps, 99 draws kept from every second of 198), and record the rank
``r = #{draws < θ̃}`` ∈ {0, …, 99} of every scalar latent quantity (each element of every site, plus
the network output at three probe inputs; ties, which only discrete quantities have, are broken
uniformly at random). Spike-and-slab priors (SS-IG, SS-GL, SS-GHS with π = 0.5; node indicators summed
out during NUTS and drawn exactly afterwards) are ranked on quantities invariant to relabelling the
hidden nodes (:mod:`sparsebnn.invariants`), since one chain from a random start need not visit every
relabelled copy of the posterior: the network output at the probe inputs, the log-likelihood of the
simulated data, the number of active nodes, the sorted incoming node norms and every scalar site.
All simulations of a block run in one vmapped, once-compiled NUTS call
(:func:`sparsebnn.infer.nuts.batched_sampler`). If the sampler is exact the ranks are uniform; each
quantity's 100 possible ranks are pooled into 10 equal bins and tested with a χ² test (9 d.o.f.).
A sampler passes when every p-value exceeds ``0.001 / #quantities`` (Bonferroni; ``sparsebnn.sbc``).

Writes ``<out>/sbc_ranks.csv`` (one row per simulation and quantity; simulations run in blocks of 25
seeded by ``(seed, block)``, so a larger run resumes a smaller one) and ``<out>/sbc.csv`` (one row per
quantity: χ², p-value, bin counts, pass flag).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro  # noqa: F401  (the package before its submodules; see sparsebnn.diagnostics)
import numpyro.distributions as dist
import pandas as pd
from numpyro import handlers

from experiments._cli import execute, parse, parser, positive_int
from sparsebnn import invariants, nets, priors
from sparsebnn.infer import NUTSOptions, batched_sampler
from sparsebnn.model import BNN
from sparsebnn.likelihood import Likelihood
from sparsebnn.results import write_table
from sparsebnn.sbc import rank, uniformity

BLOCK = 25
N_DRAWS = 99  # kept posterior draws per simulation: ranks take N_DRAWS + 1 values
BINS = 10
PROBES = np.array([[-1.5], [0.0], [1.5]], np.float32)
PRIORS = {  # --prior -> sparsebnn.priors.get arguments
    "horseshoe": {"name": "horseshoe", "tau0": 0.5, "slab_scale": 2.0, "slab_df": 4.0, "centered": False},
    "gaussian": {"name": "gaussian", "scale_prior": dist.HalfNormal(1.0), "centered": False},  # per-layer scale ~ HalfNormal(1)
    "ss-ig": {"name": "ss-ig", "pi": 0.5, "centered": False},
    "ss-gl": {"name": "ss-gl", "pi": 0.5, "centered": False},
    "ss-ghs": {"name": "ss-ghs", "pi": 0.5, "centered": False},
}


def make_model(prior: str = "horseshoe") -> BNN:
    """The tiny BNN under test: 1-3-1 tanh MLP, Gaussian likelihood with known noise 0.3."""
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {tuple(PRIORS)}; got {prior!r}")
    return BNN(nets.mlp([1, 3, 1], act="tanh", name="sbc"), priors.get(**PRIORS[prior]), Likelihood("gaussian", 0.3))


def inputs(n: int = 12) -> np.ndarray:
    return np.linspace(-2.0, 2.0, n, dtype=np.float32)[:, None]


def prior_draw(model: BNN, x, key) -> tuple[dict, np.ndarray]:
    """One draw ``(θ̃, ỹ)`` from the prior predictive: every latent site and the data."""
    tr = handlers.trace(handlers.seed(handlers.block(model, hide=["f"]), key)).get_trace(jnp.asarray(x))
    theta = {k: np.asarray(s["value"]) for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"] and k != "y"}
    return theta, np.asarray(tr["y"]["value"])


def quantities(model: BNN, sites: dict, n_data: int, data: tuple | None = None) -> dict[str, np.ndarray]:
    """Scalar quantities per draw ``(S,)`` from site values with a leading draw axis: f(probes), and every element
    of every site; with node indicators the relabelling-invariant ones instead of the elements (module docstring;
    ``data = (x, y)`` the simulated data, for the log-likelihood)."""
    out = {}
    flat = {k: jnp.asarray(v) for k, v in sites.items()}
    if model.prior.indicators:
        if data is None:
            raise ValueError("quantities of a spike-and-slab model need data=(x, y) for the log-likelihood")
        out["log_lik"] = np.asarray(invariants.log_likelihood(model, flat, *data), np.float64)
        for layer, k in invariants.active_nodes(flat).items():
            out[f"active.{layer}"] = np.asarray(k, np.float64)
        norms = jax.vmap(lambda s: invariants.sorted_node_norms(model.net, model.params(s, n_data)))(flat)
        for layer, v in norms.items():
            for j in range(v.shape[1]):
                out[f"norm.{layer}[{j}]"] = np.asarray(v[:, j], np.float64)
        sites = {k: v for k, v in sites.items() if np.ndim(v) == 1}  # scalar sites (per-layer scales)
    for name, v in sites.items():
        v = np.asarray(v, np.float64)
        for ix in np.ndindex(*v.shape[1:]):
            out[f"{name}{list(ix) if ix else ''}"] = v[(slice(None), *ix)]
    f = jax.vmap(lambda s: model.net.apply(model.params(s, n_data), jnp.asarray(PROBES)))(flat)
    for i, x0 in enumerate(PROBES[:, 0]):
        out[f"f({x0:+.1f})"] = np.asarray(f[:, i, 0], np.float64)
    return out


def run(config: dict, run_nuts=None, n_sims: int = BLOCK) -> list[dict]:
    """Ranks of every quantity for ``n_sims`` simulations of ``config`` (``prior``, ``seed``, ``block``), seeded by
    ``(seed, block)`` and sampled in one vmapped call.

    ``run_nuts``: a :func:`sparsebnn.infer.nuts.batched_sampler` for this model (built when None).
    """
    seed, block = config["seed"], config["block"]
    model = make_model(config["prior"])
    x = inputs()
    run_nuts = sampler(model) if run_nuts is None else run_nuts
    base = jax.random.fold_in(jax.random.key(seed), block)
    keys = jax.random.split(base, 2 * n_sims).reshape(n_sims, 2)
    draws = [prior_draw(model, x, k) for k in keys[:, 0]]
    ys = np.stack([y for _, y in draws])
    samples, stats_ = run_nuts(keys[:, 1], np.broadcast_to(x, (n_sims, *x.shape)), ys)
    rows = []
    for i, (theta, y) in enumerate(draws):
        truth = quantities(model, {k: v[None] for k, v in theta.items()}, len(x), (x, y))
        post = quantities(model, {k: np.asarray(v[i]) for k, v in samples.items()}, len(x), (x, y))
        div = int(np.asarray(stats_["diverging"][i]).sum())
        rng = np.random.default_rng([seed, block, i])
        for name, t in truth.items():
            rows.append(dict(sim=block * BLOCK + i, quantity=name, rank=rank(post[name], t[0], rng), divergences=div))
    return rows


def sampler(model: BNN, num_warmup: int = 300, thinning: int = 2):
    """The compiled, dataset-vmapped NUTS used for every simulation."""
    x = inputs()
    return batched_sampler(model, x, np.zeros(len(x), np.float32),
                           NUTSOptions(num_warmup=num_warmup, num_samples=N_DRAWS, thinning=thinning))


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = parser("sbc", __doc__.splitlines()[0], executor=True)
    p.add_argument("--n-sims", type=positive_int, default=None,
                   help=f"simulations (default 200; --quick {BLOCK}), rounded up to blocks of {BLOCK}")
    p.add_argument("--prior", default="horseshoe", choices=tuple(PRIORS))
    args = parse(p, argv, quick=dict(n_sims=BLOCK), full=dict(n_sims=200))
    blocks = math.ceil(args.n_sims / BLOCK)
    configs = [dict(prior=args.prior, seed=args.seed, block=b) for b in range(blocks)]
    if args.executor == "dask":  # a compiled sampler does not pickle: each task builds its own (--compile-cache)
        task = lambda c: run(c, sampler(make_model(c["prior"])))  # noqa: E731
    else:
        run_nuts = sampler(make_model(args.prior))
        task = lambda c: run(c, run_nuts)  # noqa: E731
    table = execute(args, configs, task, args.out / "sbc_ranks.csv", desc="sbc blocks")
    table = table[(table["prior"] == args.prior) & (table["seed"] == args.seed) & (table["block"] < blocks)]
    summary = uniformity(table, N_DRAWS + 1, BINS)
    summary.insert(0, "prior", args.prior)
    write_table(summary, args.out / "sbc.csv")
    print(summary.to_string(index=False))
    bad = summary[~summary["passed"]]
    print(f"SBC {args.prior}: {len(summary) - len(bad)}/{len(summary)} quantities uniform "
          f"(Bonferroni level 0.001/{len(summary)}); divergent simulations: "
          f"{int((table.groupby('sim')['divergences'].first() > 0).sum())} of {table['sim'].nunique()}")
    return summary


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
