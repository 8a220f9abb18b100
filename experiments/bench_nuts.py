"""Benchmark: NUTS efficiency of the non-centred vs the centred horseshoe BNN (ESS per second, divergences).

    python -m experiments.bench_nuts [--quick] [--seed S] [--out results] [--overwrite]

Model: ``BNN(mlp([4, 8, 1], tanh), RegularizedHorseshoe(tau0=0.1), gaussian, noise=0.5)`` on 50 points
of a node-sparse teacher (2 of 8 hidden nodes live, noise sd 0.5): weakly informative data, where most
weights sit in the horseshoe's funnel. (With 100 points at noise 0.1 and τ0 = 0.01 both
parameterisations hit the maximum tree depth with step sizes ≈ 0.004 and neither mixes.) Each
parameterisation runs 4 chains (500 warm-up steps, 500 draws; ``--quick``: 2 chains, 150 + 150) with
NumPyro's NUTS (target acceptance 0.95, diagonal mass matrix) through
:func:`sparsebnn.infer.nuts.batched_sampler`, compiled once and then timed chain by chain, so the
times exclude compilation. Every chain starts at the same point (the network's initialisation, scales
at their prior medians), so chains share one of the posterior's symmetric modes (hidden-node
permutations and sign flips) and ESS measures mixing within it. ESS is the ArviZ bulk ESS of the quantities both parameterisations share:
every effective weight ``w`` (centred: the site; non-centred: ``τ λ̃ ε``), the log of every scale
(``τ``, ``c²``, ``λ``) and the network output at 5 probe inputs. Reported per parameterisation (one
row each in ``<out>/bench_nuts.csv``): min and median ESS, seconds (warm-up + sampling), min ESS/s,
median ESS/s, ESS per 1000 gradients, divergences after warm-up, R-hat; and the non-centred /
centred ratios. Target: min-ESS/s ratio ≥ 3 with zero divergences for the non-centred model.
"""

from __future__ import annotations

import time

import numpyro  # noqa: F401  (before arviz, see sparsebnn.diagnostics)
import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from experiments._cli import parse, parser
from sparsebnn import data as datasets
from sparsebnn import nets, priors
from sparsebnn.diagnostics import diagnose
from sparsebnn.infer import model_sites
from sparsebnn.infer import NUTSOptions, batched_sampler, to_datatree
from sparsebnn.likelihood import Likelihood
from sparsebnn.model import BNN
from sparsebnn.results import run_grid

PROBES = 5
NOISE = 0.5
TARGET_ACCEPT = 0.95


def problem(seed: int, centered: bool):
    d = datasets.teacher(50, p=4, widths=(8,), active=(2,), noise=NOISE, n_test=PROBES, act="tanh", seed=seed)
    net = nets.mlp([4, 8, 1], act="tanh", name="bench")
    model = BNN(net, priors.RegularizedHorseshoe(tau0=0.1, centered=centered), Likelihood("gaussian", NOISE))
    return model, d


def shared_quantities(model: BNN, samples: dict, probes) -> dict[str, np.ndarray]:
    """``(chains, draws, k)`` arrays: effective weights, log scales, outputs at the probe inputs."""
    chains, draws = next(iter(samples.values())).shape[:2]
    flat = {k: jnp.asarray(v.reshape((chains * draws,) + v.shape[2:])) for k, v in samples.items()}
    params = jax.jit(jax.vmap(lambda s: model.params(s, probes.shape[0])))(flat)
    outs = jax.jit(jax.vmap(model.net.apply, in_axes=(0, None)))(params, jnp.asarray(probes))
    sites = model_sites(model, jnp.asarray(probes[:1]), jnp.zeros(1))
    scales = [s.name for s in sites if s.support is constraints.positive]
    weights = np.concatenate([np.asarray(a).reshape(chains * draws, -1) for a in jax.tree_util.tree_leaves(params)], 1)
    logs = np.concatenate([np.log(np.asarray(samples[k])).reshape(chains * draws, -1) for k in scales], 1)
    return {"w": weights.reshape(chains, draws, -1), "log_scale": logs.reshape(chains, draws, -1),
            "f": np.asarray(outs)[..., 0].reshape(chains, draws, -1)}


def run(config: dict) -> dict:
    model, d = problem(config["seed"], config["centered"])
    x, y = d.train
    options = NUTSOptions(num_warmup=config["warmup"], num_samples=config["samples"], target_accept=TARGET_ACCEPT)
    sampler = batched_sampler(model, x, y, options, init="shared")
    keys = jax.random.split(jax.random.key(config["seed"]), config["chains"])
    t0 = time.perf_counter()
    jax.block_until_ready(sampler(keys[:1], x[None], y[None]))  # compile (and one throw-away chain)
    compile_s = time.perf_counter() - t0
    samples, steps, div, seconds = [], [], [], 0.0
    for k in keys:
        t0 = time.perf_counter()
        s, st = jax.block_until_ready(sampler(k[None], x[None], y[None]))
        seconds += time.perf_counter() - t0
        samples.append({name: np.asarray(v[0]) for name, v in s.items()})
        steps.append(np.asarray(st["n_steps"][0]))
        div.append(np.asarray(st["diverging"][0]))
    stacked = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    q = shared_quantities(model, stacked, d.test.x)
    trace = to_datatree(q, {"diverging": np.stack(div)})
    ess = np.concatenate([np.asarray(v.values).ravel() for v in az.ess(trace, method="bulk").dataset.data_vars.values()])
    diag = diagnose(trace)
    grads = float(np.sum(steps))  # leapfrog steps after warm-up (each one gradient)
    return {"min_ess": float(ess.min()), "median_ess": float(np.median(ess)), "seconds": seconds,
            "compile_s": compile_s, "min_ess_per_s": float(ess.min()) / seconds,
            "median_ess_per_s": float(np.median(ess)) / seconds,
            "min_ess_per_1k_grad": 1000 * float(ess.min()) / grads, "mean_tree_steps": float(np.mean(steps)),
            "divergences": int(np.sum(div)), "max_rhat": diag.max_rhat, "ok": diag.ok,
            "problems": "; ".join(diag.problems)}


def main(argv: list[str] | None = None):
    p = parser("bench_nuts", __doc__.splitlines()[0])
    args = parse(p, argv)
    budget = dict(warmup=150, samples=150, chains=2) if args.quick else dict(warmup=500, samples=500, chains=4)
    configs = [dict(centered=c, seed=args.seed, **budget) for c in (False, True)]
    table = run_grid(configs, run, args.out / "bench_nuts.csv", overwrite=args.overwrite, desc="parameterisations")
    table = table[(table["seed"] == args.seed) & (table["samples"] == budget["samples"])]
    cols = ["centered", "min_ess", "median_ess", "seconds", "min_ess_per_s", "median_ess_per_s",
            "min_ess_per_1k_grad", "mean_tree_steps", "divergences", "max_rhat"]
    print(table[cols].to_string(index=False))
    nc, c = table[~table["centered"]].iloc[0], table[table["centered"]].iloc[0]
    ratio = nc["min_ess_per_s"] / c["min_ess_per_s"]
    print(f"non-centred / centred: min-ESS/s x{ratio:.1f}, median-ESS/s x{nc['median_ess_per_s'] / c['median_ess_per_s']:.1f}; "
          f"divergences after warm-up: non-centred {int(nc['divergences'])}, centred {int(c['divergences'])} "
          f"(target: x3 and 0) -> {'MET' if ratio >= 3 and nc['divergences'] == 0 else 'NOT MET'}")
    return table


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
