"""SVI vs reference NUTS on small networks: predictive agreement, marginals, inclusion, BMR, cost.

    python -m experiments.svi_vs_nuts [--quick] [--seed S] [--out results] [--overwrite]
                                      [--priors gaussian ss-ig ...]

For every (dataset, network, prior) the same :class:`sparsebnn.model.BNN` (non-centred weights) is
fitted by full-batch mean-field SVI (Concrete-relaxed indicators) and sampled by NUTS
(:func:`sparsebnn.infer.nuts`; indicators enumerated up to 8 of them, else Metropolised Gibbs; ``--replicas R``:
replica exchange over R likelihood temperatures, indicators enumerated up to 10 of them; 4 chains x (500 warm-up +
1000 draws), maximum tree depth 8, target acceptance 0.99, diagonal mass matrix, except the weight-wise horseshoe:
``SAMPLER``; ``--quick``: 2 x (150 + 150), 0.9; every chain started at the SVI fit, so both describe the same
posterior mode). Data: a
1-D node-sparse tanh teacher (2 of 8 nodes live, noise sd 0.3, 50 points) for 1-4-1 and 1-4-4-1
networks, and 100 training points of breast cancer (30-4-2); ``--quick``: 1-4-1 on 40 teacher
points with SS-IG only. One row per run in ``<out>/svi_vs_nuts.csv``:

* predictive agreement on the test split: mean total variation ``½ Σ_c |p̄_nuts − p̄_svi|`` and
  ``KL(p̄_nuts ‖ p̄_svi)`` between predictive class distributions (regression: between
  moment-matched Gaussian predictives ``N(E f, Var f + σ²)``, both in closed form), accuracy, NLL, ECE
  (or RMSE, NLL) of each;
* marginal moments: median over weights of ``|μ_svi − μ_nuts| / sd_nuts`` and of ``sd_svi / sd_nuts``
  for the effective weights, the same on ``ln`` of every positive scale site;
* inclusion (spike-and-slab): mean ``|σ(θ_j) − P_nuts(z_j = 1)|``, the fraction of nodes on the same
  side of 0.5, and — free of node relabelling, to which NUTS is indifferent and SVI is not — the
  expected number of active nodes and the TV distance between the laws of that number (SVI:
  Poisson-binomial in σ(θ_j); NUTS: frequencies);
* BMR (every non-centred weight ``ε ~ N(0, 1)``): ΔF of ``ε → 0`` from the SVI Gaussian and from a
  Gaussian fitted to the NUTS draws, against the Savage–Dickey ratio ``ln p̂(ε = 0 | y) − ln N(0; 0, 1)``
  with ``p̂`` a KDE of the NUTS draws: RMSE, correlation, and agreement of the prune decision ΔF > 0;
* cost: NUTS wall time (compilation included), min bulk ESS, ESS/s, ESS per 1000 gradients; SVI wall
  time and steps/s; NUTS diagnostics: the verdict ``nuts_ok`` / ``nuts_problems`` on the relabelling-invariant
  functionals (``nuts_inv_*``: R-hat, ESS, divergences, E-BFMI), the same checks on every raw site (``nuts_raw_*``).

A comparison against an unconverged reference is no comparison: the printed summary and the figures
carry only runs with ``nuts_ok`` (the others are listed with their problems; the table keeps every row).

Detail tables for the figures (``paper_figures/svi_vs_nuts.py``): ``svi_vs_nuts_marginals.csv``
(densities of selected weights), ``svi_vs_nuts_inclusion.csv`` (per node), ``svi_vs_nuts_bmr.csv``
(per weight) and ``svi_vs_nuts_bands.csv`` (1-D regression predictive bands).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.distributions import constraints
from scipy import stats

from experiments._cli import execute, parse, parser, positive_int
from sparsebnn import data as datasets
from sparsebnn import metrics, nets, priors
from sparsebnn.agreement import mixture_quantiles, moment_gaps, poisson_binomial, predictive_agreement
from sparsebnn.diagnostics import DiagnosticsWarning
from sparsebnn.infer import svi
from sparsebnn.infer import model_sites, nuts, start_values
from sparsebnn.likelihood import Likelihood
from sparsebnn.results import ResultsStore, reference_passed

# --priors -> sparsebnn.priors.get arguments: non-centred weights; π = 0.5 so both node states are plausible
PRIORS = {
    "gaussian": {"name": "gaussian", "centered": False},
    "horseshoe": {"name": "horseshoe", "tau0": 0.1, "centered": False},  # the weight-wise horseshoe
    "ss-ig": {"name": "ss-ig", "pi": 0.5, "centered": False},
    "ss-gl": {"name": "ss-gl", "pi": 0.5, "centered": False},
    "ss-ghs": {"name": "ss-ghs", "pi": 0.5, "centered": False},
}
TABLE = "svi_vs_nuts.csv"
DETAILS = ("marginals", "inclusion", "bmr", "bands")
NOISE = 0.3  # teacher regression noise sd (known to both methods)
N_SVI = 1000  # draws from the SVI guide for every comparison
# NUTS settings per (prior, dataset) over the full grid's (target acceptance 0.99, tree depth 8, 500 warm-up steps,
# diagonal mass). The weight-wise horseshoe on the teacher nets keeps rare divergences with a diagonal mass matrix
# (3-11 of 2000 at 0.99, 1-7 of 4000 at 0.995-0.999 even after 1500 warm-up steps). A dense mass matrix adapted over
# 1500 warm-up steps removes them on 1-4-1 (seeds 0-2) but not on 1-4-4-1 (0-7 of 4000 by seed): that reference
# fails (docs/nuts.md). On breast cancer (~300 sites) a dense mass matrix is not learnt in 1500 steps (step sizes
# 1e-5-4e-3), and 0.995 with a diagonal one passes.
SAMPLER = {("horseshoe", "teacher1d"): dict(warmup=1500, target_accept=0.999, max_tree_depth=10, dense_mass=True),
           ("horseshoe", "breast_cancer"): dict(target_accept=0.995, max_tree_depth=10)}
MAX_ENUMERATE = 256  # sum out up to 8 indicators (every net here; Gibbs updates left 1-4-4-1 unconverged)


# ----------------------------------------------------------------------------- data and settings


def load(dataset: str, seed: int, n_train: int):
    """``(Dataset, task)``: a 1-D node-sparse teacher regression or a breast-cancer subset."""
    if dataset == "teacher1d":
        d = datasets.teacher(n_train, p=1, widths=(8,), active=(2,), noise=NOISE, n_test=200, act="tanh", seed=seed)
    elif dataset == "breast_cancer":
        full = datasets.breast_cancer(seed=seed)
        d = full._replace(train=datasets.Split(full.train.x[:n_train], full.train.y[:n_train]))
    else:
        raise ValueError(f"unknown dataset {dataset!r}; choose 'teacher1d' or 'breast_cancer'")
    return d


def grid(quick: bool, seed: int, prior_names, replicas: int = 1) -> list[dict]:
    """Every configuration; ``replicas > 1`` (replica-exchange NUTS) is part of the configuration, 1 is left out."""
    if quick:
        runs = [("teacher1d", (1, 4, 1), 40)]
        budget = dict(warmup=150, samples=150, chains=2, max_tree_depth=8, svi_steps=1500)
    else:
        runs = [("teacher1d", (1, 4, 1), 50), ("teacher1d", (1, 4, 4, 1), 50), ("breast_cancer", (30, 4, 2), 100)]
        # 1000 draws per chain: with 500, breast cancer's R-hat stayed at 1.010-1.014 (bulk ESS 234-872)
        budget = dict(warmup=500, samples=1000, chains=4, max_tree_depth=8, svi_steps=5000, target_accept=0.99)
    if replicas > 1:
        budget["replicas"] = int(replicas)
    per_run = {} if quick else SAMPLER
    return [dict(dataset=d, widths=list(w), n_train=n, prior=p, seed=seed, **budget | per_run.get((p, d), {}))
            for d, w, n in runs for p in prior_names]


# ----------------------------------------------------------------------------- comparisons


def _positive_sites(model, x, y) -> list[str]:
    sites = model_sites(handlers.block(model, hide=["f"]), x[:1], y[:1])
    return [s.name for s in sites if s.support is constraints.positive]


def _flat(tree) -> np.ndarray:
    """``(S, P)`` from a pytree of ``(S, ...)`` arrays."""
    leaves = jax.tree_util.tree_leaves(tree)
    return np.concatenate([np.asarray(a, np.float64).reshape(a.shape[0], -1) for a in leaves], axis=1)


def _scores(task, outputs, y, noise) -> dict:
    row = metrics.evaluate(np.asarray(outputs), y, task=task, noise_std=noise)
    keys = ("accuracy", "nll", "ece") if task == "classification" else ("rmse", "nll")
    return {k: row[k] for k in keys}


def _delta_f_tables(post_svi, post_nuts) -> tuple[dict, list[dict]]:
    """BMR summary and per-weight rows: ΔF (SVI, NUTS Gaussian) vs the NUTS Savage–Dickey ratio."""
    try:
        df_svi, df_nuts, sdr = post_svi.delta_f(), post_nuts.delta_f(), post_nuts.savage_dickey()
    except ValueError as e:  # BMR not defined for this prior's weight sites
        return {"bmr_note": str(e)}, []
    rows = []
    for layer in df_svi:
        for k in ("w", "b"):
            a, b, c = (np.asarray(t[layer][k], np.float64).ravel() for t in (df_svi, df_nuts, sdr))
            rows += [dict(layer=layer, param=k, index=i, df_svi=float(a[i]), df_nuts_gauss=float(b[i]),
                          sd_nuts_kde=float(c[i])) for i in range(a.size)]
    a = np.array([r["df_svi"] for r in rows])
    b = np.array([r["df_nuts_gauss"] for r in rows])
    c = np.array([r["sd_nuts_kde"] for r in rows])
    ok = np.isfinite(c)  # the KDE ratio exists where enough draws lie near 0 (NaN: 0 far in the tail, keep)
    out = {"bmr_n_weights": int(c.size), "bmr_n_sd": int(ok.sum())}
    for name, v in (("svi", a), ("nuts_gauss", b)):
        u, w = v[ok], c[ok]
        out[f"bmr_rmse_{name}"] = float(np.sqrt(np.mean((u - w) ** 2))) if ok.any() else float("nan")
        out[f"bmr_corr_{name}"] = float(np.corrcoef(u, w)[0, 1]) if ok.sum() > 2 and u.std() > 0 and w.std() > 0 else float("nan")
        # prune decisions on every weight: an undefined KDE ratio means 0 is far out in the tail (keep)
        out[f"bmr_prune_agree_{name}"] = float(np.mean((v > 0) == np.where(ok, c > 0, False)))
    out["bmr_prune_frac_sd"] = float(np.mean(np.where(ok, c > 0, False)))
    out["bmr_prune_frac_svi"] = float(np.mean(a > 0))
    return out, rows


def _inclusion_rows(post_svi, post_nuts) -> tuple[dict, list[dict]]:
    """Per-node inclusion (σ(θ_j) vs NUTS P(z_j = 1)) and, free of node relabelling, the law of the active count.

    Hidden nodes are exchangeable a priori, so NUTS spreads inclusion over symmetric relabellings
    while SVI settles on one: node-wise gaps partly measure that, the count law does not.
    """
    if not post_nuts.prior.indicators:
        return {}, []
    p_svi = {k: np.asarray(v, np.float64) for k, v in post_svi.inclusion_probs().items()}
    p_nuts = post_nuts.inclusion_probs()
    bf_nuts = post_nuts.node_log_bayes_factors()
    pi = post_nuts.prior.context(post_nuts.net, post_nuts.n_data)["pi"]
    rows, tv, active_svi, active_nuts = [], [], 0.0, 0.0
    for layer in p_nuts:
        q = np.clip(p_svi[layer], 1e-12, 1 - 1e-12)
        bf_svi = np.log1p(-q) - np.log(q) - (np.log1p(-pi[layer]) - np.log(pi[layer]))
        rows += [dict(kind="node", layer=layer, node=j, svi=float(p_svi[layer][j]), nuts=float(p_nuts[layer][j]),
                      pi=float(pi[layer]), lnbf_svi=float(bf_svi[j]), lnbf_nuts=float(bf_nuts[layer][j]))
                 for j in range(len(q))]
        z = post_nuts.samples[f"{layer}.z"]
        counts = z.reshape(-1, z.shape[-1]).sum(-1)
        law_nuts = np.bincount(counts, minlength=len(q) + 1) / len(counts)
        law_svi = poisson_binomial(p_svi[layer])
        rows += [dict(kind="count", layer=layer, node=k, svi=float(law_svi[k]), nuts=float(law_nuts[k]), pi=float(pi[layer]))
                 for k in range(len(q) + 1)]
        tv.append(0.5 * np.abs(law_svi - law_nuts).sum())
        active_svi += float(p_svi[layer].sum())
        active_nuts += float(counts.mean())
    nodes = [r for r in rows if r["kind"] == "node"]
    a, b = np.array([r["svi"] for r in nodes]), np.array([r["nuts"] for r in nodes])
    return {"incl_mae": float(np.mean(np.abs(a - b))), "incl_agree": float(np.mean((a >= 0.5) == (b >= 0.5))),
            "active_svi": active_svi, "active_nuts": active_nuts, "active_count_tv": float(np.mean(tv))}, rows


def _marginal_rows(w_nuts: np.ndarray, w_svi: np.ndarray, names: list[str], n_show: int = 4, n_grid: int = 120) -> list[dict]:
    """KDE densities of a few effective weights (largest and smallest NUTS |mean|/sd) on a shared grid."""
    sd = w_nuts.std(0)
    snr = np.where(sd > 0, np.abs(w_nuts.mean(0)) / np.maximum(sd, 1e-12), -1.0)
    order = np.argsort(-snr)
    live = [i for i in order if sd[i] > 1e-9 and w_svi[:, i].std() > 1e-9]
    pick = (live[: n_show // 2] + live[::-1][: n_show - n_show // 2])[:n_show]
    rows = []
    for i in pick:
        a, b = w_nuts[:, i], w_svi[:, i]
        lo, hi = np.quantile(np.concatenate([a, b]), [0.002, 0.998])
        pad = 0.1 * (hi - lo)
        t = np.linspace(lo - pad, hi + pad, n_grid)
        da, db = stats.gaussian_kde(a)(t), stats.gaussian_kde(b)(t)
        rows += [dict(weight=names[i], x=float(t[k]), nuts=float(da[k]), svi=float(db[k])) for k in range(n_grid)]
    return rows


def _weight_names(params_tree) -> list[str]:
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params_tree)[0]:
        base = jax.tree_util.keystr(path, simple=True, separator=".")
        names += [f"{base}{list(ix)}" for ix in np.ndindex(*leaf.shape[1:])]
    return names


def _apply(net, params, x) -> np.ndarray:
    """Network outputs ``(S, N, out)`` under every draw of ``params``."""
    return np.asarray(jax.jit(jax.vmap(net.apply, in_axes=(0, None)))(params, jnp.asarray(x)))


def _band_rows(post_nuts, svi_params, d) -> list[dict]:
    """Predictive mean and 90% band of y on a 1-D grid (exact mixture quantiles), plus the training points."""
    x = d.train.x[:, 0]
    t = np.linspace(x.min() - 0.75, x.max() + 0.75, 150).astype(np.float32)
    rows = []
    for method, out in (("nuts", post_nuts.predict(t[:, None], n_samples=None)), ("svi", _apply(post_nuts.net, svi_params, t[:, None]))):
        f = np.asarray(out, np.float64)[..., 0]
        q05, q95 = mixture_quantiles(f, NOISE, 0.05), mixture_quantiles(f, NOISE, 0.95)
        rows += [dict(kind=method, x=float(t[i]), mean=float(f[:, i].mean()), lo=float(q05[i]), hi=float(q95[i]))
                 for i in range(len(t))]
    rows += [dict(kind="data", x=float(a), mean=float(b), lo=float("nan"), hi=float("nan"))
             for a, b in zip(d.train.x[:, 0], d.train.y)]
    return rows


# ----------------------------------------------------------------------------- one run


def run(config: Mapping, out_dir: Path | None = None) -> dict:
    """Fit SVI and NUTS for one configuration; write the detail tables; return the summary row."""
    d = load(config["dataset"], config["seed"], config["n_train"])
    task = d.task
    noise = NOISE if task == "regression" else None
    likelihood = Likelihood("categorical") if task == "classification" else Likelihood("gaussian", NOISE)
    widths = list(config["widths"])
    net = nets.mlp(widths, act="tanh", name=f"mlp{'-'.join(map(str, widths))}")
    x, y = d.train
    prior = priors.get(**PRIORS[config["prior"]])
    key = jax.random.key(config["seed"])
    k_pred = jax.random.fold_in(key, 1)

    post_svi = svi(net, prior, (x, y), likelihood=likelihood, num_steps=config["svi_steps"],
                   batch_size=len(x), optimizer=optax.adam(1e-2), progress=False, seed=config["seed"],
                   chunk_size=min(500, config["svi_steps"]))
    # one jitted draw of the guide serves every comparison (eager vmaps would compile op by op)
    svi_sites = jax.jit(post_svi.sample_sites, static_argnums=1)(k_pred, N_SVI)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DiagnosticsWarning)
        replicas = config.get("replicas", 1)
        post_nuts = nuts(post_svi.model, (x, y), num_warmup=config["warmup"], num_samples=config["samples"],
                         num_chains=config["chains"], init=start_values(svi_sites), seed=config["seed"],
                         centered=None, max_tree_depth=config["max_tree_depth"],
                         max_enumerate=MAX_ENUMERATE if replicas == 1 else 1024, replicas=replicas,
                         **{k: config[k] for k in ("target_accept", "dense_mass") if k in config})  # else NUTS's defaults
    for w in caught:  # re-raise loudly with the configuration attached
        warnings.warn(f"{config['dataset']}/{config['prior']}/{widths}: {w.message}", DiagnosticsWarning, stacklevel=2)

    row = {"n_params": int(sum(np.size(v) for v in jax.tree_util.tree_leaves(net.init(key)))),
           "n_train": len(x), "task": task}
    row.update(post_nuts.diagnostics_row("nuts_"))
    row["nuts_indicators"] = post_nuts.indicators or "none"
    row.update(nuts_wall_s=post_nuts.wall_time, nuts_draws=post_nuts.num_draws, nuts_ess_per_s=post_nuts.ess_per_s,
               nuts_ess_per_1k_grad=post_nuts.ess_per_1k_grad, nuts_leapfrog=post_nuts.n_leapfrog,
               svi_wall_s=post_svi.wall_time, svi_steps_per_s=post_svi.steps_per_s,
               svi_final_loss=float(np.mean(post_svi.losses[-100:])))

    # predictive agreement and scores on the test split
    xt, yt = d.test
    out_nuts = post_nuts.predict(xt, n_samples=None)
    svi_params = jax.jit(jax.vmap(lambda s: post_svi.model.params(s, len(x))))(svi_sites)
    out_svi = _apply(net, svi_params, xt)
    row.update(predictive_agreement(task, out_nuts, out_svi, noise))
    row.update({f"nuts_{k}": v for k, v in _scores(task, out_nuts, yt, noise).items()})
    row.update({f"svi_{k}": v for k, v in _scores(task, out_svi, yt, noise).items()})

    # marginal moments: effective weights, log scales
    p_nuts = post_nuts.sample_params(n=None)
    w_nuts, w_svi = _flat(p_nuts), _flat(svi_params)
    row["weight_mean_gap"], row["weight_sd_ratio"] = moment_gaps(w_nuts, w_svi)
    scales = _positive_sites(post_nuts.model, x, y)
    if scales:
        s_nuts = post_nuts.draws()
        a = np.concatenate([np.log(np.asarray(s_nuts[s], np.float64)).reshape(post_nuts.num_draws, -1) for s in scales], 1)
        b = np.concatenate([np.log(np.asarray(svi_sites[s], np.float64)).reshape(N_SVI, -1) for s in scales], 1)
        row["logscale_mean_gap"], row["logscale_sd_ratio"] = moment_gaps(a, b)

    incl, incl_rows = _inclusion_rows(post_svi, post_nuts)
    bmr_row, bmr_rows = _delta_f_tables(post_svi, post_nuts)
    row.update(incl)
    row.update(bmr_row)

    if out_dir is not None:
        details = {"marginals": _marginal_rows(w_nuts, w_svi, _weight_names(p_nuts)), "inclusion": incl_rows,
                   "bmr": bmr_rows, "bands": _band_rows(post_nuts, svi_params, d) if config["dataset"] == "teacher1d" else []}
        for name, rows in details.items():
            store = ResultsStore(Path(out_dir) / f"svi_vs_nuts_{name}.csv")
            if rows and not store.done(config):
                store.add(config, rows)
    return row


def main(argv: list[str] | None = None):
    p = parser("svi_vs_nuts", __doc__.splitlines()[0], executor=True)
    p.add_argument("--priors", nargs="+", default=None, choices=tuple(PRIORS),
                   help="priors to compare (default: all; --quick: ss-ig)")
    p.add_argument("--replicas", type=positive_int, default=1,
                   help="NUTS replicas: > 1 runs replica exchange over likelihood temperatures with every indicator "
                        "configuration summed out (up to 1024; docs/nuts.md); default 1, plain NUTS")
    args = parse(p, argv, quick=dict(priors=["ss-ig"]), full=dict(priors=list(PRIORS)))
    configs = grid(args.quick, args.seed, args.priors, args.replicas)
    if args.overwrite:
        for name in DETAILS:
            (args.out / f"svi_vs_nuts_{name}.csv").unlink(missing_ok=True)
    out = args.out
    table = execute(args, configs, lambda c: run(c, out), out / TABLE, desc="svi vs nuts")
    show = ["dataset", "widths", "prior", "nuts_ok", "nuts_inv_max_rhat", "nuts_raw_max_rhat", "nuts_inv_min_ess_bulk",
            "nuts_inv_divergences",
            "pred_tv", "pred_kl", "weight_sd_ratio", "active_svi", "active_nuts", "active_count_tv", "bmr_rmse_svi", "bmr_rmse_nuts_gauss",
            "nuts_ess_per_s", "svi_steps_per_s"]
    passed = reference_passed(table)
    print(table.loc[passed, [c for c in show if c in table]].to_string(index=False))
    if not passed.all():  # a comparison against an unconverged reference is no comparison: listed, not compared
        print("\nreference failed its diagnostics (left out of the comparison and the figures):")
        print(table.loc[~passed, [c for c in (*show[:8], "nuts_problems") if c in table]].to_string(index=False))
    return table


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
