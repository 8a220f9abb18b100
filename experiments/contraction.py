"""Empirical contraction of spike-and-slab BNN posteriors on node-sparse teacher data (theory/README.md).

    python -m experiments.contraction [--quick] [--seed S] [--out results] [--overwrite]
        [--priors ss-ig ss-gl ss-ghs] [--n 500 1000 ...] [--seeds 0 1 2] [--pi theory 1e-4]
        [--widths 50 100 200] [--fan-in-n 5000] [--noise 0.5] [--steps 10000] [--nuts | --no-nuts]
        [--min-signal 0.1] [--particles 4] [--init-inclusion 0.5] [--kl-warmup 0.3] [--restarts 1]

**Data.** ``sparsebnn.data.teacher``: a ReLU teacher MLP ``p -> (50, 50) -> 1`` with ``s = (5, 3)``
active hidden nodes, ``x ~ N(0, I_p)``,
``y = eta0(x) + N(0, sigma^2)`` with ``sigma`` known to the model; ``--seeds`` draw the data and
the SVI noise. ``E_q`` quantities use a held-out set of ``--n-eval`` fresh ``x`` (one per seed, the
same for every ``n``). **Signal condition** (theory/README.md): the teacher is the first seed
``>= --teacher-seed`` (default 0; 3 is the first that qualifies) whose every active node ``j``, switched
off, moves the regression function by ``Delta_j = E_x[(eta0 - eta0^{-j})^2] >= --min-signal * sigma^2``
(default 0.1; checked on 20,000 fixed x; ``sparsebnn.recovery.node_signal``, ``choose_teacher_seed``).

**Fits.** A student ``nets.mlp([p, w, w, 1])`` (``w`` = ``--widths``; the first is the base width of the
``n`` grid) under SS-IG / SS-GL / SS-GHS (``sigma0 = 1``, ``pi`` theory-driven or fixed), Gaussian
likelihood with the known ``sigma``, mean-field SVI (``sparsebnn.infer.svi``: Adam with a cosine decay
of the learning rate, minibatch 256, soft Concrete indicators at T = 0.5, every ``sigma(theta)`` starting
at ``--init-inclusion`` 0.5, a KL warm-up over the first ``--kl-warmup`` 30 % of the steps, ``--particles``
4 ELBO particles per step; ``--restarts`` R > 1 keeps the restart with the best final ELBO). ``--nuts``
adds reference NUTS runs at the smallest ``n`` (first seed; ``sparsebnn.infer.nuts``, Gibbs-updated
indicators, 2 chains x (500 warm-up + 500) draws, tree depth <= 8, ~2 min per prior on 2 CPU cores: a short
reference whose indicators do not mix, see its diagnostics: ``nuts_ok`` / ``nuts_inv_*`` on relabelling-invariant
functionals, ``nuts_raw_*`` on every site). ``--nuts-replicas R`` runs replica exchange instead, which needs the
indicators enumerated (at most 10 hidden nodes in all, e.g. ``--widths 5``).

**Measurements** (one row per fit in ``<out>/contraction.csv``; per-draw distances in
``contraction_draws.csv``):

* ``dh_mean`` = E_q[d_H]: ``S = --draws`` posterior draws, each scored by the exact Gaussian Hellinger
  distance d_H^2 = E_x[1 - exp(-(eta_theta - eta0)^2 / (8 sigma^2))] on the held-out x
  (``theory.contraction.hellinger``); also its spread and d_H of the posterior-mean function;
* node recovery per hidden layer ``l``: kept nodes ``kept_l`` (inclusion probability >= 1/2; NUTS:
  posterior frequency), and true / false positives against the teacher's active nodes. Hidden nodes
  are exchangeable, so a kept student node is matched to a teacher node by the correlation of their
  activations on the held-out x (``sparsebnn.recovery.match_nodes``: Hungarian assignment, posterior-mean
  weights of the kept network):
  a match with correlation >= 0.9 is a true positive (``tp_l``), other kept nodes are false positives
  (``fp_l``), unmatched teacher nodes false negatives; ``inert_l`` counts kept nodes whose removal moves
  the posterior-mean function by less than ``1e-3 sigma^2`` in mean square; ``recovered`` = every layer
  exact, ``recovered_live`` = no false negative and every false positive inert; ``signal_l`` = the
  teacher's weakest ``Delta_j / sigma^2`` in layer ``l``;
* ``eps_n``: the theoretical rate (``theory.contraction.contraction_rate``) of the run's architecture,
  teacher bounds and pi, for shape comparisons only (it holds up to constants).

**Summary** (printed, and written to ``contraction_slopes.csv`` / ``contraction_summary.csv``): the
log-log slope of E_q[d_H] against n (``sparsebnn.rates``: least squares over every run, 95% interval from a bootstrap that
resamples seeds within each n) next to the slope of eps_n over the same design; node recovery by n;
the variational mass outside ``M * eps_n`` balls with eps_n scaled to the mean E_q[d_H] at the smallest n,
``radius_n = M * dh(n_min) * eps_n / eps_{n_min}``; E_q[d_H] against the width at fixed ``s`` and n
(``--fan-in-n``) next to the ratio of eps_n; theory-driven vs fixed pi; NUTS next to SVI.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import numpy as np
import optax
import pandas as pd

from experiments._cli import (execute, fraction, nonnegative_float, nonnegative_int, parse, parser, positive_float,
                             positive_int, unit_interval)
from sparsebnn import data, nets, priors
from sparsebnn.infer import nuts, svi
from sparsebnn.likelihood import Likelihood
from sparsebnn.rates import fit_slope, ols_slope
from sparsebnn.recovery import choose_teacher_seed, match_nodes, node_activations, node_signal, signal_check_x
from sparsebnn.results import ResultsStore, config_key, reference_passed, write_table
from theory.contraction import Architecture, architecture, contraction_rate, hellinger, mass_outside

TABLE = "contraction.csv"
DRAWS = "contraction_draws.csv"
SLOPES = "contraction_slopes.csv"
SUMMARY = "contraction_summary.csv"
# --priors -> sparsebnn.priors.get arguments (pi: --pi; sigma0 = 1, the default)
PRIORS = {"ss-ig": {"name": "ss-ig"}, "ss-gl": {"name": "ss-gl"}, "ss-ghs": {"name": "ss-ghs"}}
EVAL_SEED = 1_000_003  # data_seed offset of the held-out evaluation x (disjoint from every training seed)
RADII = (1.0, 2.0, 4.0)  # M of the M * eps_n balls (eps_n scaled to the first point)
INERT = 1e-3  # a kept node is inert when switching it off moves the posterior-mean function by < INERT sigma^2 (mean square)
RESTART_STRIDE = 1000  # SVI restart r of replicate seed s uses seed s * RESTART_STRIDE + r

FULL = dict(n=(500, 1000, 2000, 5000, 10000, 20000, 50000), widths=(50, 100, 200), fan_in_n=5000, n_eval=10000,
            draws=100, steps=10000, batch=256, lr=3e-2, particles=4, init_inclusion=0.5, kl_warmup=0.3, restarts=1,
            min_signal=0.1,
            teacher=dict(p=20, teacher_widths=(50, 50), active=(5, 3), teacher_seed=0))
QUICK = dict(n=(200, 800), widths=(8,), fan_in_n=800, n_eval=2000, draws=32, steps=1000, batch=128, lr=3e-2,
             particles=1, init_inclusion=0.5, kl_warmup=0.3, restarts=1, min_signal=0.1,
             teacher=dict(p=5, teacher_widths=(8, 8), active=(2, 1), teacher_seed=2), priors=("ss-ig",), pi=("theory",),
             seeds=2)
FULL |= dict(priors=tuple(PRIORS), pi=("theory", "1e-4"), seeds=3)
NUTS_SETTINGS = dict(warmup=500, samples=500, chains=2, tree_depth=8)
SVI_ONLY = ("steps", "batch", "lr", "particles", "init_inclusion", "kl_warmup", "restarts")


# ----------------------------------------------------------------------------- configurations


def parse_pi(value: str) -> str:
    """``"theory"`` or a probability in (0, 1), normalised to a string (``"1e-4"`` -> ``"0.0001"``)."""
    if value == "theory":
        return value
    try:
        p = float(value)
    except ValueError:
        raise ValueError(f"pi must be 'theory' or a probability in (0, 1); got {value!r}") from None
    if not 0 < p < 1:
        raise ValueError(f"pi must be 'theory' or a probability in (0, 1); got {value!r}")
    return f"{p:g}"


def _pi_value(pi: str):
    return "theory" if pi == "theory" else float(pi)


def grid(*, priors_: Sequence[str], ns: Sequence[int], seeds: Sequence[int], pis: Sequence[str],
         widths: Sequence[int], fan_in_n: int | None, settings: Mapping, with_nuts: bool,
         nuts_settings: Mapping = NUTS_SETTINGS) -> list[dict]:
    """Every configuration: the n grid at the base width (``widths[0]``) for every pi, the width grid at
    ``fan_in_n`` (first pi), and NUTS at the smallest n (first seed, first pi); duplicates dropped."""
    for name, seq in (("priors", priors_), ("n", ns), ("seeds", seeds), ("pi", pis), ("widths", widths)):
        if not seq:
            raise ValueError(f"{name} must not be empty")
    unknown = set(priors_) - set(PRIORS)
    if unknown:
        raise ValueError(f"unknown priors {sorted(unknown)}; choose from {tuple(PRIORS)}")
    if min(ns) < 2 or min(widths) < 1:
        raise ValueError(f"n must be >= 2 and widths >= 1; got n={list(ns)}, widths={list(widths)}")
    active = settings["active"]
    if min(widths) < max(active):
        raise ValueError(f"every width must hold the teacher's active nodes {tuple(active)}; got widths={list(widths)}")
    base = dict(settings, teacher_widths=list(settings["teacher_widths"]), active=list(active))
    svi_keys = dict(base, method="svi")
    nuts_keys = {k: v for k, v in base.items() if k not in SVI_ONLY} | dict(nuts_settings, method="nuts")
    configs = []
    for prior in priors_:
        for pi in pis:
            configs += [dict(svi_keys, prior=prior, pi=pi, n=int(n), width=int(widths[0]), seed=int(s))
                        for n in ns for s in seeds]
        if fan_in_n is not None:
            configs += [dict(svi_keys, prior=prior, pi=pis[0], n=int(fan_in_n), width=int(w), seed=int(s))
                        for w in widths for s in seeds]
        if with_nuts:
            configs.append(dict(nuts_keys, prior=prior, pi=pis[0], n=int(min(ns)), width=int(widths[0]), seed=int(seeds[0])))
    unique = {config_key(c): c for c in configs}
    return list(unique.values())


# ----------------------------------------------------------------------------- measurements


def teacher_data(config: Mapping, n: int, data_seed: int) -> data.Dataset:
    return data.teacher(n, p=config["p"], widths=tuple(config["teacher_widths"]), active=tuple(config["active"]),
                        noise=config["noise"], n_val=1, n_test=1, seed=config["teacher_seed"], data_seed=data_seed)


@functools.lru_cache(maxsize=None)
def student(p: int, width: int, depth: int):
    """The student ReLU MLP ``p -> (width,) * depth -> 1`` (one object per shape, so jitted code is reused)."""
    return nets.mlp([p, *[width] * depth, 1], act="relu", name=f"student{width}")


@functools.partial(jax.jit, static_argnums=0)
def _outputs(net, draws, x):
    """``(S, N)`` regression means under every draw of the parameters (one draw at a time: little memory)."""
    return jax.lax.map(lambda p: net.apply(p, x)[:, 0], draws)


def student_architecture(teacher_arch: Architecture, width: int) -> Architecture:
    """The rate's architecture for a student of hidden width ``width``: the teacher's active nodes and bounds."""
    k = teacher_arch.widths
    return Architecture((k[0],) + (int(width),) * (len(k) - 2) + (k[-1],), teacher_arch.active, teacher_arch.bounds)


def fit(config: Mapping, net, prior, train):
    """SVI (or NUTS) of ``prior`` over ``net`` on ``train`` with the known noise sd."""
    common = dict(likelihood=Likelihood("gaussian", config["noise"]), seed=config["seed"])
    if config["method"] == "nuts":
        return nuts(net, prior, train, num_warmup=config["warmup"], num_samples=config["samples"],
                    num_chains=config["chains"], max_tree_depth=config["tree_depth"],
                    replicas=config.get("replicas", 1), **common)
    steps = config["steps"]
    schedule = optax.cosine_decay_schedule(config["lr"], steps, alpha=1e-2)
    warmup = max(1, round(config["kl_warmup"] * steps))
    fits = [svi(net, prior, train, likelihood=Likelihood("gaussian", config["noise"]), seed=config["seed"] * RESTART_STRIDE + r,
                num_steps=steps, batch_size=min(config["batch"], len(train.y)), optimizer=optax.adam(schedule), hard=False,
                kl_weight=optax.linear_schedule(0.0, 1.0, warmup),
                num_particles=config["particles"], init_inclusion=config["init_inclusion"], chunk_size=min(2000, steps),
                progress=False)
            for r in range(config["restarts"])]
    return min(fits, key=final_loss)


def final_loss(post) -> float:
    """Mean −ELBO / N over the last 500 steps (or fewer): the criterion that picks the best SVI restart."""
    return float(np.mean(post.losses[-min(500, len(post.losses)):]))


def run(config: Mapping, out_dir: Path | None = None) -> dict:
    """Fit one configuration; measure E_q[d_H], node recovery and eps_n; return the row (draws go to ``out_dir``)."""
    ds = teacher_data(config, config["n"], config["seed"])
    truth = ds.teacher
    x_eval = teacher_data(config, config["n_eval"], EVAL_SEED + config["seed"]).train.x
    f0 = np.asarray(truth.net.apply(truth.params, x_eval))[:, 0]
    net = student(config["p"], config["width"], len(config["active"]))
    prior = priors.get(**PRIORS[config["prior"]], pi=_pi_value(config["pi"]))
    post = fit(config, net, prior, ds.train)

    key = jax.random.key(config["seed"])
    outputs = np.asarray(_outputs(net, post.sample_params(key, config["draws"]), x_eval), np.float64)
    dists = np.asarray(hellinger(outputs, f0, config["noise"]), np.float64)
    row = {"dh_mean": float(dists.mean()), "dh_sd": float(dists.std()), "dh_q10": float(np.quantile(dists, 0.1)),
           "dh_q90": float(np.quantile(dists, 0.9)),
           "dh_of_mean": float(hellinger(outputs.mean(0), f0, config["noise"])),
           "f_rmse": float(np.sqrt(np.mean((outputs.mean(0) - f0) ** 2)))}

    # node recovery: kept nodes of the posterior-mean network against the teacher's active nodes
    incl = {k: np.asarray(v, np.float64) for k, v in post.inclusion_probs().items()}
    masks = {k: v >= 0.5 for k, v in incl.items()}
    acts = node_activations(net, post.mean_params(masks=masks), x_eval)
    acts0 = node_activations(truth.net, truth.params, x_eval)
    recovered = True
    pis = priors.inclusion_probs(net, config["n"], _pi_value(config["pi"]))
    effect = node_signal(net, post.mean_params(masks=masks), masks, x_eval)
    live_recovered = True
    for i, layer in enumerate(l.name for l in net.prunable_layers):
        m = match_nodes(acts[layer][:, masks[layer]], acts0[layer][:, truth.masks[layer]])
        inert = int(np.sum(effect[layer] < INERT * config["noise"] ** 2))
        row.update({f"kept_{i + 1}": int(masks[layer].sum()), f"tp_{i + 1}": m["tp"], f"fp_{i + 1}": m["fp"],
                    f"fn_{i + 1}": m["fn"], f"inert_{i + 1}": inert, f"corr_{i + 1}": m["corr"],
                    f"incl_sum_{i + 1}": float(incl[layer].sum()),
                    f"s_{i + 1}": int(truth.masks[layer].sum()), f"pi_{i + 1}": float(pis[layer])})
        recovered &= m["fp"] == 0 and m["fn"] == 0
        live_recovered &= m["fn"] == 0 and m["fp"] <= inert
    row["recovered"] = bool(recovered)
    row["recovered_live"] = bool(live_recovered)
    for i, v in enumerate(node_signal(truth.net, truth.params, truth.masks, signal_check_x(config["p"])).values()):
        row[f"signal_{i + 1}"] = float(v.min() / config["noise"] ** 2)  # weakest active node, Delta_j / sigma^2

    arch = student_architecture(architecture(truth.net, truth.params), config["width"])
    pi = None if config["pi"] == "theory" else float(config["pi"])
    row["eps_n"] = float(contraction_rate(*arch, config["n"], pi=pi))
    row["wall_s"] = float(post.wall_time)
    if config["method"] == "svi":
        row["final_loss"] = final_loss(post)
    else:
        row.update(post.diagnostics_row("nuts_"))

    if out_dir is not None:
        store = ResultsStore(Path(out_dir) / DRAWS)
        if not store.done(config):
            store.add(config, [{"draw": s, "dh": float(d)} for s, d in enumerate(dists)])
    return row


# ----------------------------------------------------------------------------- summary


def _layers(table: pd.DataFrame) -> list[int]:
    return sorted(int(c.split("_")[1]) for c in table.columns if c.startswith("kept_"))


def rate_runs(table: pd.DataFrame, base_width: int | None = None) -> pd.DataFrame:
    """SVI runs of the n grid: the base width (default: the most common width)."""
    svi_rows = table[table["method"] == "svi"]
    if svi_rows.empty:
        return svi_rows
    width = svi_rows["width"].mode().iloc[0] if base_width is None else base_width
    return svi_rows[svi_rows["width"] == width]


def slopes(table: pd.DataFrame, base_width: int | None = None, n_boot: int = 2000) -> pd.DataFrame:
    """Per (prior, pi): the measured log-log slope of E_q[d_H] with its bootstrap interval, and eps_n's."""
    rows = []
    for (prior, pi), g in rate_runs(table, base_width).groupby(["prior", "pi"], sort=False):
        if g["n"].nunique() < 2:
            continue
        slope, lo, hi = fit_slope(g["n"], g["dh_mean"], n_boot=n_boot)
        rows.append(dict(prior=prior, pi=pi, runs=len(g), n_min=int(g["n"].min()), n_max=int(g["n"].max()),
                         slope=slope, slope_lo=lo, slope_hi=hi, eps_slope=ols_slope(g["n"], g["eps_n"])))
    return pd.DataFrame(rows)


def mass_table(table: pd.DataFrame, draws: pd.DataFrame, radii: Sequence[float] = RADII,
               base_width: int | None = None) -> pd.DataFrame:
    """Variational mass outside ``M * c * eps_n`` per run, ``c = mean E_q[d_H](n_min) / eps_{n_min}`` per (prior, pi)."""
    runs = rate_runs(table, base_width)
    out = []
    for (prior, pi), g in runs.groupby(["prior", "pi"], sort=False):
        first = g[g["n"] == g["n"].min()]
        c = first["dh_mean"].mean() / first["eps_n"].mean()
        for _, r in g.iterrows():
            d = draws.loc[draws["config_key"] == r["config_key"], "dh"].to_numpy()
            if d.size == 0:
                continue
            rec = dict(prior=prior, pi=pi, n=int(r["n"]), seed=int(r["seed"]))
            for m in radii:
                rec[f"mass_M{m:g}"] = float(mass_outside(d, m * c * r["eps_n"]))
            out.append(rec)
    return pd.DataFrame(out)


def by_n(table: pd.DataFrame, draws: pd.DataFrame | None = None, base_width: int | None = None) -> pd.DataFrame:
    """Per (prior, pi, n): mean (and sd over seeds) E_q[d_H], eps_n, kept/true positives per layer, recovery, mass outside."""
    runs = rate_runs(table, base_width)
    if runs.empty:
        return pd.DataFrame()
    nodes = {f"{k}_{i}": (f"{k}_{i}", "mean") for i in _layers(runs) for k in ("kept", "tp", "fp", "inert")
             if f"{k}_{i}" in runs}
    live = {"recovered_live": ("recovered_live", "mean")} if "recovered_live" in runs else {}
    out = runs.groupby(["prior", "pi", "n"], sort=False).agg(
        seeds=("seed", "count"), dh=("dh_mean", "mean"), dh_sd=("dh_mean", "std"), eps_n=("eps_n", "mean"),
        **nodes, recovered=("recovered", "mean"), **live).reset_index()
    if draws is not None and not draws.empty:
        mass = mass_table(table, draws, base_width=base_width)
        if not mass.empty:
            out = out.merge(mass.drop(columns="seed").groupby(["prior", "pi", "n"], sort=False).mean().reset_index(),
                            on=["prior", "pi", "n"], how="left")
    return out


def fan_in(table: pd.DataFrame, n: int | None = None) -> pd.DataFrame:
    """Per (prior, pi, width) at one n: E_q[d_H] (mean, sd), kept nodes, and the ratios to the narrowest width
    of E_q[d_H] and of eps_n."""
    svi_rows = table[table["method"] == "svi"]
    if svi_rows.empty:
        return pd.DataFrame()
    if n is None:  # the n with the most widths
        n = svi_rows.groupby("n")["width"].nunique().idxmax()
    g = svi_rows[svi_rows["n"] == n]
    g = g[g.groupby(["prior", "pi"])["width"].transform("nunique") > 1]  # (prior, pi) with a width grid
    if g.empty:
        return pd.DataFrame()
    nodes = {f"kept_{i}": (f"kept_{i}", "mean") for i in _layers(g)}
    out = g.groupby(["prior", "pi", "width"], sort=True).agg(
        seeds=("seed", "count"), dh=("dh_mean", "mean"), dh_sd=("dh_mean", "std"), eps_n=("eps_n", "mean"),
        **nodes).reset_index()
    first = out.groupby(["prior", "pi"])[["dh", "eps_n"]].transform("first")
    out["dh_ratio"] = out["dh"] / first["dh"]
    out["eps_ratio"] = out["eps_n"] / first["eps_n"]
    out.insert(3, "n", int(n))
    return out


def nuts_vs_svi(table: pd.DataFrame) -> pd.DataFrame:
    """NUTS rows whose reference passed its diagnostics next to the SVI fit of the same (prior, pi, n, width, seed)."""
    ref = table[(table["method"] == "nuts") & reference_passed(table)]
    if ref.empty:
        return pd.DataFrame()
    keys = ["prior", "pi", "n", "width", "seed"]
    cols = ["dh_mean", "recovered"] + [c for c in table.columns if c.split("_")[0] in ("kept", "tp", "fp")]
    extra = [c for c in ("warmup", "samples", "chains", "tree_depth", "nuts_ok", "nuts_inv_max_rhat", "nuts_raw_max_rhat", "nuts_inv_min_ess_bulk",
                         "wall_s") if c in ref]
    merged = ref[keys + cols + extra].merge(
        table[table["method"] == "svi"][keys + cols], on=keys, how="left", suffixes=("_nuts", "_svi"))
    return merged


def summarize(table: pd.DataFrame, draws: pd.DataFrame | None = None, fan_in_n: int | None = None,
              out_dir: Path | None = None) -> dict[str, pd.DataFrame]:
    """All summary tables (see the module docstring); printed, and the slope / by-n tables written to ``out_dir``."""
    if table.empty:
        raise ValueError("the results table is empty")
    failed = table[(table["method"] == "nuts") & ~reference_passed(table)]
    parts = {"slopes": slopes(table), "by_n": by_n(table, draws),
             "fan_in": fan_in(table, fan_in_n), "nuts": nuts_vs_svi(table),
             "nuts_failed": failed[[c for c in ("prior", "pi", "n", "width", "seed", "nuts_inv_max_rhat",
                                                "nuts_inv_min_ess_bulk", "nuts_problems") if c in failed]]}
    if out_dir is not None:
        write_table(parts["slopes"], Path(out_dir) / SLOPES)
        write_table(parts["by_n"], Path(out_dir) / SUMMARY)
    titles = {"slopes": "log-log slope of E_q[d_H] vs n (95% bootstrap interval) and of eps_n",
              "by_n": "by n (means over seeds): E_q[d_H], eps_n, kept / true / false positive / inert nodes per "
                      "layer, fraction recovered exactly and up to inert nodes, variational mass outside M * eps_n (scaled to the first point)",
              "fan_in": "fan-in at fixed active nodes: E_q[d_H] and eps_n relative to the narrowest width",
              "nuts": "reference NUTS vs SVI (same data; references that passed their diagnostics)",
              "nuts_failed": "reference NUTS runs that failed their diagnostics (not compared)"}
    with pd.option_context("display.width", 200, "display.max_columns", 40, "display.float_format", "{:.4g}".format):
        for name, part in parts.items():
            if not part.empty:
                print(f"\n== {titles[name]}\n{part.to_string(index=False)}")
    return parts


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = parser("contraction", __doc__.splitlines()[0], executor=True)
    p.add_argument("--priors", nargs="+", default=None, choices=PRIORS, help="default: all (--quick: ss-ig)")
    p.add_argument("--n", nargs="+", type=positive_int, default=None, help="training-set sizes (default 500 ... 50000)")
    p.add_argument("--seeds", nargs="+", type=nonnegative_int, default=None,
                   help="replicate seeds (default: --seed, --seed + 1, --seed + 2; --quick: two)")
    p.add_argument("--pi", nargs="+", default=None,
                   help="prior inclusion probabilities: 'theory' and/or fixed values (default: theory 1e-4; --quick: theory)")
    p.add_argument("--widths", nargs="+", type=positive_int, default=None,
                   help="student hidden widths; the first is used for the n grid, all at --fan-in-n (default 50 100 200)")
    p.add_argument("--fan-in-n", type=nonnegative_int, default=None, help="n of the width grid (default 5000); 0 skips it")
    p.add_argument("--noise", type=positive_float, default=0.5, help="noise sd sigma of the teacher data (known to the model)")
    p.add_argument("--teacher-seed", type=nonnegative_int, default=None, help="seed of the teacher network (default 0; --quick: 2)")
    p.add_argument("--steps", type=positive_int, default=None, help="SVI steps per fit (default 10000)")
    p.add_argument("--lr", type=positive_float, default=None, help="initial Adam learning rate, cosine-decayed to 1%% (default 3e-2)")
    p.add_argument("--particles", type=positive_int, default=None, help="ELBO particles per SVI step (default 4; --quick: 1)")
    p.add_argument("--init-inclusion", type=fraction, default=None, help="initial sigma(theta) of every node (default 0.5)")
    p.add_argument("--restarts", type=positive_int, default=None,
                   help="SVI restarts per fit; the one with the best final ELBO is kept (default 1)")
    p.add_argument("--kl-warmup", type=unit_interval, default=None,
                   help="KL warm-up: the KL weight rises linearly from 0 to 1 over this fraction of the steps (default 0.3)")
    p.add_argument("--min-signal", type=nonnegative_float, default=None,
                   help="signal condition: the teacher is the first seed >= --teacher-seed whose every active node, "
                        "switched off, moves eta0 by Delta_j >= MIN_SIGNAL * sigma^2 in mean square (default 0.1; 0: off)")
    p.add_argument("--draws", type=positive_int, default=None, help="posterior draws per fit for E_q (default 100)")
    p.add_argument("--nuts", action=argparse.BooleanOptionalAction, default=None,
                   help="reference NUTS at the smallest n (default: on, off with --quick)")
    p.add_argument("--nuts-draws", nargs=2, type=positive_int, default=None, metavar=("WARMUP", "SAMPLES"),
                   help="NUTS warm-up and kept draws per chain (default 500 500)")
    p.add_argument("--nuts-chains", type=positive_int, default=None, help="NUTS chains (default 2)")
    p.add_argument("--nuts-tree-depth", type=positive_int, default=None, help="NUTS maximum tree depth (default 8)")
    p.add_argument("--nuts-replicas", type=positive_int, default=None,
                   help="NUTS replicas: > 1 runs replica exchange over likelihood temperatures, which needs every "
                        "indicator configuration enumerated (2^(hidden nodes) <= 1024, e.g. --widths 5); default 1")
    p.add_argument("--summary-only", action="store_true",
                   help="fit nothing: summarise every run already in <out>/contraction.csv (e.g. after several invocations)")
    args = parse(p, argv)
    if args.summary_only:
        path = args.out / TABLE
        if not path.exists():
            p.error(f"no {path} to summarise")
        table = pd.read_csv(path)
        draws_path = args.out / DRAWS
        summarize(table, pd.read_csv(draws_path) if draws_path.exists() else None, args.fan_in_n or None, args.out)
        return table
    scale = QUICK if args.quick else FULL
    try:
        pis = list(dict.fromkeys(parse_pi(v) for v in (args.pi or scale["pi"])))
    except ValueError as e:
        p.error(str(e))
    ns = args.n or list(scale["n"])
    widths = args.widths or list(scale["widths"])
    fan_in_n = scale["fan_in_n"] if args.fan_in_n is None else args.fan_in_n
    seeds = args.seeds if args.seeds is not None else [args.seed + i for i in range(scale["seeds"])]
    def pick(name, key=None):
        value = getattr(args, name)
        return scale[key or name] if value is None else value

    settings = dict(scale["teacher"], noise=args.noise, n_eval=scale["n_eval"], draws=pick("draws"),
                    steps=pick("steps"), batch=scale["batch"], lr=pick("lr"), particles=pick("particles"),
                    init_inclusion=pick("init_inclusion"), kl_warmup=pick("kl_warmup"), restarts=pick("restarts"),
                    min_signal=pick("min_signal"))
    start = settings["teacher_seed"] if args.teacher_seed is None else args.teacher_seed
    try:
        settings["teacher_seed"] = choose_teacher_seed(settings["p"], settings["teacher_widths"], settings["active"],
                                                       settings["noise"], settings["min_signal"], start)
    except ValueError as e:
        p.error(str(e))
    with_nuts = (not args.quick) if args.nuts is None else args.nuts
    nuts_settings = dict(NUTS_SETTINGS)
    if args.nuts_draws is not None:
        nuts_settings.update(warmup=args.nuts_draws[0], samples=args.nuts_draws[1])
    if args.nuts_chains is not None:
        nuts_settings["chains"] = args.nuts_chains
    if args.nuts_tree_depth is not None:
        nuts_settings["tree_depth"] = args.nuts_tree_depth
    if args.nuts_replicas is not None and args.nuts_replicas > 1:  # part of the configuration only when used
        nuts_settings["replicas"] = args.nuts_replicas
    try:
        configs = grid(priors_=args.priors or list(scale["priors"]), ns=ns, seeds=seeds, pis=pis, widths=widths,
                       fan_in_n=fan_in_n if fan_in_n and len(widths) > 1 else None, settings=settings,
                       with_nuts=with_nuts, nuts_settings=nuts_settings)
    except ValueError as e:
        p.error(str(e))
    if args.overwrite:
        (args.out / DRAWS).unlink(missing_ok=True)
    out = args.out
    table = execute(args, configs, lambda c: run(c, out), out / TABLE, desc="contraction")
    keys = {config_key(c) for c in configs}
    mine = table[table["config_key"].isin(keys)]
    draws_path = args.out / DRAWS
    draws = pd.read_csv(draws_path) if draws_path.exists() else None
    summarize(mine, draws, fan_in_n or None, args.out)
    return mine


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
