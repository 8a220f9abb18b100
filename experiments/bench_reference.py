"""Benchmark: the reference sampler on the svi_vs_nuts configurations, judged on relabelling-invariant functionals.

    python -m experiments.bench_reference [--quick] [--seed S] [--out results] [--overwrite]
                                          [--priors ss-ig ...] [--samplers nuts replica] [--replicas R]
                                          [--init dispersed|shared]

Models and data as :mod:`experiments.svi_vs_nuts`'s grid (non-centred weights, π = 0.5, tanh): a
node-sparse 1-D teacher (2 of 8 nodes live, known noise sd 0.3) for 1-4-1 on 40 points (its ``--quick``
run) and 1-4-4-1 on 50, and 30-4-2 on 100 breast-cancer points (``--nets 1-4-1/n300``: 1-4-1 on 300 teacher
points, a sharper posterior); sampled by :func:`sparsebnn.infer.nuts`
with maximum tree depth 8 from ``--init`` starts (default ``dispersed``: one start per chain, the hard
case for mode exploration; ``svi_vs_nuts`` starts every chain at the SVI fit). Samplers:

* ``nuts``: today's reference as ``svi_vs_nuts`` runs it: indicators enumerated up to 6 of them, else
  Metropolised Gibbs (the 8 indicators of 1-4-4-1);
* ``enumerate``: plain NUTS with every indicator configuration summed out (up to 1024);
* ``replica``: replica exchange over ``--replicas`` likelihood temperatures (``NUTSOptions(replicas=R)``,
  ``docs/nuts.md``), indicators summed out, draws from the β = 1 replica.

One row per (prior, sampler) in ``<out>/bench_reference.csv``: the verdict on invariant functionals
(``ok``, ``inv_max_rhat``, ``inv_min_ess_bulk``, ``inv_min_ess_tail``, ``inv_divergences``), raw-site
R-hat (``raw_max_rhat``), wall seconds (compilation included), invariant bulk ESS per second and per 1000
gradients (all replicas' leapfrog steps counted), and the swap acceptance and divergences of the hot (β < 1)
replicas of the tempered runs. The
summary prints, per prior, the ratio of ESS/s (replica / nuts) measured in the same invocation.
Targets: invariant R-hat ≤ 1.01, bulk ESS ≥ 400, no divergences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments._cli import parse, parser, positive_int
from experiments.svi_vs_nuts import NOISE, PRIORS, load
from sparsebnn import nets, priors
from sparsebnn.infer import nuts
from sparsebnn.likelihood import Likelihood
from sparsebnn.model import BNN
from sparsebnn.results import run_grid

SAMPLERS = ("nuts", "enumerate", "replica")
RUNS = {"1-4-1": ("teacher1d", [1, 4, 1], 40), "1-4-4-1": ("teacher1d", [1, 4, 4, 1], 50),
        "30-4-2": ("breast_cancer", [30, 4, 2], 100), "1-4-1/n300": ("teacher1d", [1, 4, 1], 300)}
TABLE = "bench_reference.csv"


def run(config: dict) -> dict:
    dataset, widths, n_train = RUNS[config["net"]]
    d = load(dataset, config["seed"], n_train)
    lik = Likelihood("gaussian", NOISE) if d.task == "regression" else Likelihood("categorical")
    net = nets.mlp(widths, act="tanh", name=f"mlp{'-'.join(map(str, widths))}")
    model = BNN(net, priors.get(**PRIORS[config["prior"]]), lik)
    sampler = config["sampler"]
    post = nuts(model, d.train, num_warmup=config["warmup"], num_samples=config["samples"],
                num_chains=config["chains"], init=config["init"], seed=config["seed"], max_tree_depth=8,
                max_enumerate=64 if sampler == "nuts" else 1024, target_accept=config.get("target_accept", 0.9),
                replicas=config["replicas"] if sampler == "replica" else 1, warn=False)
    row = post.diagnostics_row("")
    row.update(indicators=post.indicators or "none", wall_s=post.wall_time, ess_per_s=post.ess_per_s,
               ess_per_1k_grad=post.ess_per_1k_grad, leapfrog=post.n_leapfrog)
    stats = post.trace["sample_stats"]
    row["swap_accept"] = float(np.asarray(stats["swap_accept"].values).mean()) if "swap_accept" in stats else float("nan")
    row["hot_divergences"] = int(np.asarray(stats["hot_divergences"].values).sum()) if "hot_divergences" in stats else 0
    return row


def main(argv: list[str] | None = None):
    p = parser("bench_reference", __doc__.splitlines()[0])
    p.add_argument("--priors", nargs="+", default=["ss-ig"], choices=tuple(PRIORS), help="priors (default: ss-ig)")
    p.add_argument("--nets", nargs="+", default=None, choices=tuple(RUNS),
                   help="networks (default: the svi_vs_nuts ones; --quick 1-4-1); 1-4-1/n300: 300 teacher points")
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    p.add_argument("--replicas", type=positive_int, default=4, help="temperatures of the replica sampler")
    p.add_argument("--init", default="dispersed", choices=("dispersed", "shared"))
    p.add_argument("--target-accept", type=float, default=0.9, help="NUTS target acceptance (default 0.9)")
    args = parse(p, argv, quick=dict(nets=["1-4-1"]), full=dict(nets=["1-4-1", "1-4-4-1", "30-4-2"]))
    budget = dict(warmup=150, samples=150, chains=2) if args.quick else dict(warmup=300, samples=500, chains=4)
    if not 0 < args.target_accept < 1:
        p.error(f"--target-accept must lie in (0, 1); got {args.target_accept}")
    extra = {} if args.target_accept == 0.9 else {"target_accept": args.target_accept}  # in the configuration when set
    configs = [dict(net=n, prior=pr, sampler=s, replicas=args.replicas, init=args.init, seed=args.seed, **budget, **extra)
               for n in args.nets for pr in args.priors for s in args.samplers]
    table = run_grid(configs, run, args.out / TABLE, overwrite=args.overwrite, desc="samplers")
    keys = ("net", "prior", "sampler", "replicas", "init", "seed", "samples", "chains", *extra)
    mine = table.merge(pd.DataFrame(configs)[list(keys)], on=list(keys))
    cols = ["net", "prior", "sampler", "indicators", "ok", "inv_max_rhat", "raw_max_rhat", "inv_min_ess_bulk", "inv_min_ess_tail",
            "inv_divergences", "wall_s", "ess_per_s", "ess_per_1k_grad", "swap_accept"]
    print(mine[cols].to_string(index=False))
    for (net, prior), g in mine.groupby(["net", "prior"]):
        by = g.set_index("sampler")["ess_per_s"]
        for s in ("enumerate", "replica"):
            if {"nuts", s} <= set(by.index):
                print(f"{net} {prior}: ESS/s {s} / nuts = {by[s] / by['nuts']:.2f}")
    return mine


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
