"""The accelerator check: SVI / Adam step ratios, scaling, compile reuse and one MNIST-shaped comparison, in minutes.

    python -m experiments.bench_gpu [--quick] [--out results]       # on whatever JAX runs on (GPU when present)

Made to finish in under 8 minutes on one GPU (and to run, slowly, on a CPU). In one process, all ratios
measured in this run:

1. **SVI step / Adam step** (``experiments.bench_svi``) at 784-400-400-10, batch 128, and 784-2000-2000-10,
   batch 1024, for the Gaussian prior and the node priors (SS-IG, SS-GL, SS-GHS) and the tiered horseshoe,
   with the backend's default weight noise and, for the Gaussian prior, the other choice;
2. **scaling** (``experiments.bench_scaling``, SVI / BMR / Laplace ratios at 10³ … 10⁷ parameters, no NUTS);
3. **compile reuse**: the compilation seconds of a second identical ``svi()`` call against the first;
4. **BMR as a user calls it**: the eager ``reduction.reduce`` on a posterior's factors at 10⁶ parameters
   against one elementwise pass (``experiments.bench_bmr``);
5. **one comparison configuration on MNIST-shaped inputs**: ``experiments.compare`` on ``mnist5k`` (28×28),
   the MLP, MAP / Gaussian+BMR / SS-GHS, one seed.

Writes ``<out>/bench_gpu.csv`` (one tidy row per measurement, with the device and date) next to the
tables of the steps it runs (``<out>/bench_gpu/``), and prints a summary.
"""

from __future__ import annotations

import datetime
import time

import jax
import numpy as np
import pandas as pd

from experiments._cli import parse, parser
from sparsebnn.results import write_table

SIZES = (("784-400-400-10", 128), ("784-2000-2000-10", 1024))
PRIORS = ("gaussian", "tiered-horseshoe", "ss-ig", "ss-gl", "ss-ghs")


def svi_ratios(out, quick: bool) -> list[dict]:
    from experiments import bench_svi

    rows = []
    for widths, batch in (("64-32-10", 32),) if quick else SIZES:
        argv = ["--widths", *widths.split("-"), "--batch-size", str(batch), "--priors", *PRIORS[:2 if quick else None],
                "--out", str(out / f"svi_{widths}"), "--chunk", "20" if quick else "200", "--chunks", "2" if quick else "5",
                "--n-data", "500" if quick else "10000"]
        table = bench_svi.main(argv)
        for r in table[table["method"].str.startswith("svi_")].itertuples(index=False):
            rows.append(dict(what="svi/adam", network=widths, batch_size=batch, case=r.method, value=r.ratio_to_adam,
                             ms_per_step=r.ms_per_step))
    return rows


def scaling(out, quick: bool) -> list[dict]:
    from experiments import bench_scaling

    sizes = ["1e3"] if quick else ["1e3", "1e5", "1e6", "1e7"]
    table = bench_scaling.main(["--sizes", *sizes, "--nuts-sizes", "--out", str(out / "scaling"), "--repeats", "3"])
    return [dict(what="scaling", case=r.measure, n_params=r.n_params, value=r.ratio) for r in table.itertuples(index=False)]


def compile_reuse(quick: bool) -> list[dict]:
    from sparsebnn import nets, priors
    from sparsebnn.infer import svi

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 784)).astype(np.float32)
    y = rng.integers(0, 10, 2048).astype(np.int32)
    net = nets.mlp([784, 16, 10] if quick else [784, 400, 400, 10])
    times = []
    for seed in (0, 1):  # the second call: same model and settings, another seed
        post = svi(net, priors.SpikeSlabGroupHorseshoe(), (x, y), num_steps=20 if quick else 200,
                   chunk_size=10 if quick else 100, progress=False,
                   seed=seed)
        times.append(post.compile_time)
    return [dict(what="compile reuse", case="second svi() / first svi(), compile seconds", value=times[1] / times[0],
                 first_s=times[0], second_s=times[1])]


def bmr_call(quick: bool) -> list[dict]:
    from experiments.bench_bmr import bench_pass

    rows = bench_pass(10_000 if quick else 1_000_000, 10, 0)
    return [dict(what="bmr/elementwise", case=r["name"], n_params=r["n_params"], value=r["ratio"]) for r in rows]


def comparison(out, quick: bool) -> list[dict]:
    from experiments import compare

    argv = ["--dataset", "mnist5k", "--nets", "mlp", "--methods", "map", "gaussian-bmr", "ss-ghs", "--no-creg",
            "--seeds", "0", "--steps", "50" if quick else "3000",
            *(["--hidden", "16"] if quick else ["--hidden", "400", "400"]), "--out", str(out / "compare")]
    table = compare.main(argv)
    return [dict(what="compare mnist5k", case=f"{r.method}/{r.pruning}", value=r.accuracy, wall_time_s=r.wall_time_s,
                 steps_per_s=getattr(r, "steps_per_s", np.nan)) for r in table.itertuples(index=False)]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = parser("bench_gpu", __doc__.splitlines()[0])
    args = parse(p, argv)
    out = args.out / "bench_gpu"
    device = jax.devices()[0]
    rows, t0 = [], time.perf_counter()
    for name, step in (("svi", lambda: svi_ratios(out, args.quick)), ("scaling", lambda: scaling(out, args.quick)),
                       ("compile", lambda: compile_reuse(args.quick)), ("bmr", lambda: bmr_call(args.quick)),
                       ("compare", lambda: comparison(out, args.quick))):
        t = time.perf_counter()
        got = step()
        rows += got
        print(f"[bench_gpu] {name}: {len(got)} rows in {time.perf_counter() - t:.0f} s", flush=True)
        table = pd.DataFrame(rows).assign(device=f"{device.platform}: {device.device_kind}",
                                          date=datetime.date.today().isoformat(), total_s=time.perf_counter() - t0)
        write_table(table, args.out / "bench_gpu.csv")  # after every step: an interrupted run keeps what it measured
    with pd.option_context("display.width", 200, "display.max_rows", 200, "display.precision", 3):
        print(table[["what", "case", "network", "batch_size", "n_params", "value"]].to_string(index=False))
    return table


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
