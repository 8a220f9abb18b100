"""The one registry of experiments: what each reproduces, how it runs at each scale, which tables it writes.

Used by ``python -m experiments.all`` (what to run), ``python -m experiments list`` (the ``sparsebnn``
console script) and the README check in the tests. Importing it imports no experiment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10")
CPU_DATASETS = ("digits", "mnist5k")


class Experiment(NamedTuple):
    """One experiment module and its argument lists per scale (one process per argument list)."""

    name: str
    reproduces: str
    cpu: tuple[tuple[str, ...], ...] = ((),)
    full: tuple[tuple[str, ...], ...] = ((),)
    bench: bool = False
    tables: tuple[str, ...] = ()  # results tables summarised (default: <name>.csv)
    seeds: bool = False  # takes --seeds S [S ...] (its own defaults) instead of --seed S
    distributed: bool = False  # takes --executor local|dask, --scheduler ADDRESS (its grid as Dask tasks)


def _per_dataset(*args: str) -> tuple[tuple[str, ...], ...]:
    return tuple((*args, "--dataset", d) for d in IMAGE_DATASETS)


def _cpu(*args: str) -> tuple[tuple[str, ...], ...]:
    """CPU scale of the comparisons: the embedded datasets (digits, and the 5,000 real MNIST images)."""
    return tuple((*args, "--dataset", d) for d in CPU_DATASETS)


# LeNet-5-Caffe at CPU scale: shorter schedules than the MLP's (on 2 cores a 28x28 LeNet SVI step costs ~0.03 s and a
# Laplace curvature pass over mnist5k ~30 s; the README's results section gives the measured wall times)
LENET_CPU = {"compare": ("--nets", "lenet-caffe", "--steps", "800", "--marglik-updates", "3", "--samples", "16"),
             "svi_sparsity": ("--net", "lenet5_caffe", "--steps", "1000", "--samples", "16"),
             "stochastic_bmr": ("--net", "lenet-caffe", "--warmup", "500", "--rounds", "5", "--steps-per-round", "100"),
             "spam": ("--net", "lenet-caffe", "--epochs", "10", "--marglik-every", "5", "--marglik-burnin", "5",
                      "--structures", "map", "scalar", "unit", "parameter")}

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("compare", "main comparison: priors x inference schemes (accuracy, NLL, ECE, sparsity, time)",
               cpu=(*_cpu("--nets", "mlp"), *_cpu(*LENET_CPU["compare"])),
               full=_per_dataset("--nets", "mlp", "lenet", "vit", "mixer"), seeds=True, distributed=True),
    Experiment("svi_sparsity", "SVI with each sparsity prior: accuracy, calibration, node sparsity, compression",
               cpu=(*_cpu("--hidden", "100", "100", "--steps", "3000", "--samples", "32"), *_cpu(*LENET_CPU["svi_sparsity"])),
               full=(("--dataset", "mnist"), ("--dataset", "fashion_mnist"),
                     ("--dataset", "cifar10", "--net", "lenet5")), seeds=True, distributed=True),
    Experiment("stochastic_bmr", "iterative (stochastic) BMR vs flat/tiered baselines over training",
               cpu=(*_cpu("--net", "mlp"), *_cpu(*LENET_CPU["stochastic_bmr"])),
               full=_per_dataset("--net", "mlp", "lenet", "vit", "mixer"), seeds=True, distributed=True),
    Experiment("spam", "SpaM: accuracy vs sparsity per pruning criterion (Laplace marginal likelihood)",
               cpu=(*_cpu("--net", "mlp"), *_cpu(*LENET_CPU["spam"])), full=_per_dataset("--net", "mlp", "lenet"),
               seeds=True, distributed=True),
    Experiment("bmr_exact", "BMR vs exact Savage-Dickey on conjugate regressions", cpu=((),), full=((),),
               distributed=True),
    Experiment("svi_vs_nuts", "SVI vs NUTS: marginals, inclusion, BMR decisions, predictive bands",
               cpu=(("--priors", "gaussian", "horseshoe", "ss-ig"),), full=((),), distributed=True),
    Experiment("sbc", "simulation-based calibration of the NUTS reference", cpu=(("--n-sims", "100"),),
               full=((), ("--prior", "gaussian")), tables=("sbc.csv",), distributed=True),
    Experiment("contraction", "posterior contraction rates on teacher networks",
               cpu=(("--n", "500", "1000", "2000", "5000", "--widths", "50", "100", "--fan-in-n", "2000",
                     "--steps", "4000", "--no-nuts"),),
               full=((),), tables=("contraction_summary.csv", "contraction_slopes.csv"), distributed=True),
    Experiment("bench_scaling", "cost ratios vs network size (SVI, BMR, Laplace, NUTS)", bench=True),
    Experiment("bench_svi", "SVI step cost vs a plain Adam step", bench=True),
    Experiment("bench_bmr", "BMR pass cost vs an elementwise pass", bench=True),
    Experiment("bench_laplace", "Laplace curvature cost vs a gradient step", bench=True),
    Experiment("bench_nuts", "NUTS ESS/s, centred vs non-centred", bench=True),
    Experiment("bench_compact", "compacted network size, FLOPs and latency", bench=True,
               tables=("bench_compact_size.csv", "bench_compact_latency.csv")),
)
BY_NAME = {e.name: e for e in EXPERIMENTS}
# runnable with ``python -m experiments run NAME`` too, but not reproduced by ``experiments.all``
EXTRAS = {"demo": "the main comparison on digits at a quick scale, its summary table and every figure (minutes)",
          "claims": "the papers' headline claims checked on the results tables, with intervals (run by all)",
          "bench_reference": "the reference sampler on the svi_vs_nuts networks judged on relabelling-invariant "
                             "diagnostics: NUTS (Gibbs / enumerated indicators) vs replica exchange, ESS/s",
          "bench_gpu": "the accelerator check: SVI/Adam at two MNIST sizes, scaling, compile reuse, BMR call, one mnist5k "
                       "comparison, in under 8 minutes on a GPU"}


def invocations(exp: Experiment, scale: str, quick: bool) -> tuple[tuple[str, ...], ...]:
    """The argument lists (scale part only) with which ``exp`` runs."""
    if quick:
        return (("--quick",),)
    if scale not in ("cpu", "full"):
        raise ValueError(f"scale must be 'cpu' or 'full'; got {scale!r}")
    return exp.cpu if scale == "cpu" else exp.full


def tables(exp: Experiment) -> tuple[str, ...]:
    """The results tables ``exp`` writes that the summary reads."""
    return exp.tables or (f"{exp.name}.csv",)


def select(only: Sequence[str] | None, skip: Sequence[str] | None, bench: bool) -> list[Experiment]:
    """The experiments to run: ``only`` these (else every one, benchmarks only with ``bench``), less ``skip``."""
    for what, names in (("--only", only), ("--skip", skip)):
        unknown = sorted(set(names or ()) - set(BY_NAME))
        if unknown:
            raise ValueError(f"{what}: unknown experiment(s) {unknown}; choose from {sorted(BY_NAME)}")
    if only:
        return [e for e in EXPERIMENTS if e.name in only and e.name not in (skip or ())]
    return [e for e in EXPERIMENTS if (bench or not e.bench) and e.name not in (skip or ())]
