"""Reproduce everything: run every comparison experiment, build every figure, write the summary tables.

    python -m experiments.all [--quick] [--scale cpu|full] [--bench] [--only NAME ...] [--skip NAME ...]
                              [--seed 0] [--out results] [--figures figures] [--overwrite] [--verbose]
                              [--executor local|dask] [--scheduler ADDRESS] [--workers N] [--compile-cache DIR]
    sparsebnn reproduce ...                 # the same

Each experiment runs as ``python -m experiments.<name> <scale arguments> --seed S --out OUT`` in its
own process (its output goes to ``OUT/logs/<name>.log``; ``--verbose`` streams it instead), with a
progress line and the elapsed time. The comparison experiments (``compare``, ``svi_sparsity``,
``stochastic_bmr``, ``spam``) take no ``--seed``: they run every configuration once per seed of their
own ``--seeds`` (default 0 1 2, ``--quick``: 0). ``--executor dask`` starts one Dask cluster on this
machine (one worker per GPU, else per CPU core; or uses the one at ``--scheduler``) and runs every
experiment that has a grid with ``--executor dask --scheduler ADDRESS``: each configuration one task
(``sparsebnn.cluster``); the others run as usual. Every experiment shares JAX's persistent compilation
cache (``--compile-cache``, default ``OUT/.jax_cache``). Rerunning resumes: an invocation that finished with the same
arguments is skipped (stamp in ``OUT/.reproduce/``, honoured while its tables exist), and every experiment itself skips finished
configurations (``sparsebnn.results.run_grid``). A failed experiment is reported and the rest still
run; the command exits non-zero at the end if any failed. Then every figure is regenerated
(``paper_figures.build_all``) and ``OUT/summary.md`` / ``OUT/summary.tex`` summarise every results
table that exists (config columns as rows, metrics averaged over seeds/replicates).

Scales (``--quick`` overrides ``--scale`` and passes only ``--quick`` to each experiment):

* ``cpu`` (default): the embedded data (``digits``, ``breast_cancer``, teacher networks) at the
  reduced settings in :data:`experiments.registry.EXPERIMENTS`, the comparisons once per seed 0, 1, 2
  (about 25 minutes on 2 CPU cores for everything with one seed).
* ``full``: the seeds' settings for a GPU: each experiment's own defaults (its full schedule), and
  the image experiments once per dataset on the MNIST / Fashion-MNIST / CIFAR-10 files (see
  ``sparsebnn.data.resolve_data_dir`` for where they are looked up).

``--bench`` adds the benchmarks (``bench_*``), which are otherwise left out.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from experiments._cli import EXECUTORS, Parser, cache_dir, check_executor, config_columns, nonnegative_int, positive_int
from experiments.registry import BY_NAME, EXPERIMENTS, Experiment, invocations, select, tables
from sparsebnn.cluster import start
from sparsebnn import intervals
from sparsebnn.results import _VERSIONED, REFERENCE_ARMS, atomic_write, collapse_note, mark_collapsed

# ----------------------------------------------------------------------------- running


def _stamp(out: Path, name: str, argv: Sequence[str]) -> Path:
    key = re.sub(r"[^A-Za-z0-9_.=-]+", "_", " ".join(argv))[:150]
    return out / ".reproduce" / f"{name}__{key}.json"


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"


def run_experiment(exp: Experiment, args: Sequence[str], out: Path, verbose: bool = False) -> int:
    """Run ``python -m experiments.<name> *args`` (output to ``out/logs/<name>.log``); return its exit code."""
    cmd = [sys.executable, "-m", f"experiments.{exp.name}", *args]
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    if verbose:
        return subprocess.run(cmd, env=env).returncode
    log = out / "logs" / f"{exp.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def run_all(experiments: Sequence[Experiment], *, out: Path, scale: str = "cpu", quick: bool = False, seed: int = 0,
            overwrite: bool = False, verbose: bool = False, executor: Sequence[str] = (),
            compile_cache: str | None = None) -> dict[str, str]:
    """Run each experiment (resuming); return ``{name: "ok" | "skipped" | "failed" | "missing"}``.

    ``seed`` goes to the experiments that take ``--seed``; ``executor`` (e.g. ``["--executor", "dask",
    "--scheduler", ADDRESS]``) to those that take it; ``compile_cache`` (``--compile-cache``) to every one.
    Neither changes what is computed, so neither is part of the resume stamp.
    """
    status, t_all = {}, time.perf_counter()
    for i, exp in enumerate(experiments, 1):
        head = f"[{i}/{len(experiments)}] {exp.name:<16}"
        if importlib.util.find_spec(f"experiments.{exp.name}") is None:
            status[exp.name] = "missing"
            print(f"{head} MISSING: no module experiments.{exp.name} in this checkout", flush=True)
            continue
        t0, codes, ran = time.perf_counter(), [], False
        for scale_args in invocations(exp, scale, quick):
            argv = [*scale_args, *([] if exp.seeds else ["--seed", str(seed)]), "--out", str(out)]
            argv += ["--overwrite"] if overwrite else []
            stamp = _stamp(out, exp.name, argv)
            if stamp.exists() and not overwrite and all((out / t).exists() for t in tables(exp)):
                continue
            ran = True
            how = [*(executor if exp.distributed else ()), *(["--compile-cache", compile_cache] if compile_cache else [])]
            print(f"{head} running: python -m experiments.{exp.name} {' '.join(argv + how)}", flush=True)
            code = run_experiment(exp, argv + how, out, verbose)
            codes.append(code)
            if code == 0:
                stamp.parent.mkdir(parents=True, exist_ok=True)
                stamp.write_text(json.dumps({"experiment": exp.name, "argv": argv, "seconds": time.perf_counter() - t0}))
        dt, total = _clock(time.perf_counter() - t0), _clock(time.perf_counter() - t_all)
        if not ran:
            status[exp.name] = "skipped"
            print(f"{head} done earlier (resumed; --overwrite to recompute)   total {total}", flush=True)
        elif all(c == 0 for c in codes):
            status[exp.name] = "ok"
            print(f"{head} ok in {dt}   total {total}", flush=True)
        else:
            status[exp.name] = "failed"
            print(f"{head} FAILED (exit {[c for c in codes if c]}) after {dt}   total {total}", flush=True)
            if not verbose:
                log = out / "logs" / f"{exp.name}.log"
                print(f"    last lines of {log}:\n" + "\n".join("    " + l for l in _tail(log).splitlines()), flush=True)
    return status


# ----------------------------------------------------------------------------- summary tables

_DROP = {"config_key", "python", *_VERSIONED, "seed", "seeds", "progress", "backend", "problems"}
_FILE = r".+\.(npz|csv|json|png|pdf|pkl|npy)"  # per-run detail files named in a column: not a summary key
_PRIORITY = ("accuracy", "nll", "ece", "brier", "sparsity", "weight_sparsity", "nodes_kept", "pruned_fraction",
             "compression_ratio", "flops_ratio", "ratio", "abs_err", "min_ess_per_s", "wall_time_s", "seconds")


REFERENCES = REFERENCE_ARMS  # the reference arm of a comparison table
ROW_KEYS = {"spam.csv": ("structured", "sparsity")}  # per-row settings that are not configuration columns
LAST = {"stochastic_bmr.csv": "round"}  # tables of runs over rounds: summarise each run's last round
ARM_PARTS = ("reduction", "c_reg", "pruning")  # keys that tell apart arms of one method (compared with MAP too)


def view(df: pd.DataFrame, name: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The rows of table ``name`` to summarise and its extra key columns (``ROW_KEYS``, ``LAST``)."""
    if name in LAST and LAST[name] in df:
        col = LAST[name]
        run = [c for c in df if c in set(config_columns(df)) or c == "reduction"]
        df = df[df[col] == df.groupby(run, dropna=False, sort=False)[col].transform("max")]
        df = df.drop(columns=[col, "step"], errors="ignore")
    return df, tuple(c for c in ROW_KEYS.get(name, ()) if c in df)


def summarise(df: pd.DataFrame, max_metrics: int = 8, max_rows: int = 40, keys: Sequence[str] = ()) -> pd.DataFrame:
    """Config columns that vary as row keys; every numeric metric as its mean over seeds with the 95 % t interval
    (``sparsebnn.intervals.summarise``: columns ``m``, ``m_lo``, ``m_hi``) and ``n_seeds``; for comparison tables,
    the accuracy difference to the reference arm (MAP) paired by seed (``Δ accuracy``, ``_lo``, ``_hi``);
    for classification tables, column ``collapsed``: ``"k/n: <reason>"`` when ``k`` of a row's ``n`` runs
    collapsed (:func:`sparsebnn.results.mark_collapsed`), else ``""``.
    ``keys``: extra per-row settings to group by."""
    df = mark_collapsed(df)
    flags = df[["collapsed", "collapse_reason"]] if "collapsed" in df else None
    df = df.drop(columns=["collapsed", "collapse_reason"], errors="ignore")
    config = [c for c in config_columns(df) if c not in _DROP] + [k for k in keys if k in df]
    files = [c for c in df if c not in config and df[c].dtype == object or pd.api.types.is_string_dtype(df[c])]
    files = [c for c in files if c not in config and df[c].dropna().astype(str).str.fullmatch(_FILE).all()]
    seeds = df["seed"] if "seed" in df else pd.Series(0, index=df.index)
    df = df.drop(columns=[c for c in df if c in _DROP or c in files]).assign(seed=seeds)
    numeric = {c for c in df if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])}
    keys = [c for c in df if c != "seed" and (c in config or c not in numeric) and not pd.api.types.is_bool_dtype(df[c])
            and df[c].nunique(dropna=False) > 1]
    metrics = [c for c in df if c in numeric and c not in config and c != "seed"]
    metrics = sorted(metrics, key=lambda c: (_PRIORITY.index(c) if c in _PRIORITY else len(_PRIORITY), metrics.index(c)))
    metrics = metrics[:max_metrics]
    if not metrics:
        return df[keys].drop_duplicates().head(max_rows)
    df = df.assign(**{k: df[k].astype(object).astype(str) for k in keys})
    table = intervals.summarise(df, keys or ["seed"], metrics) if keys else intervals.summarise(
        df.assign(all="all"), ["all"], metrics)
    arm = next((c for c in REFERENCES if c in keys), None)
    ref = next((r for r in REFERENCES.get(arm, ()) if r in set(df[arm])), None) if arm else None
    if ref is not None and "accuracy" in metrics:
        # an arm is the value of ``arm`` with every other key that splits it within a cell (e.g. its reduction)
        split = [k for k in keys if k != arm and k in ARM_PARTS]
        # settings that come with the arm (one value per arm, e.g. its own learning rate) do not split cells
        own = [k for k in keys if k not in (arm, *split) and df.groupby(arm)[k].nunique(dropna=False).max() <= 1]
        rest = [k for k in keys if k not in (arm, *split, *own)]
        name = lambda d: d[[arm, *split]].map(str).agg(" / ".join, axis=1)  # noqa: E731
        df, table = df.assign(_arm=name(df)), table.assign(_arm=name(table))
        base = next(iter(df.loc[df[arm] == ref, "_arm"].unique()), None)
        diffs = [intervals.paired_difference(df, rest, "_arm", a, base, "accuracy").assign(_arm=a)
                 for a in table["_arm"].unique() if a != base]
        if diffs:
            d = pd.concat(diffs).rename(columns={"diff": "Δ accuracy", "diff_lo": "Δ accuracy_lo",
                                                 "diff_hi": "Δ accuracy_hi"}).drop(columns=["n_seeds"])
            table = table.merge(d, on=[*rest, "_arm"], how="left")
        table = table.drop(columns=[c for c in ("_arm",) if c in table])
    if flags is not None:
        by = keys or ["all"]
        note = collapse_note(df.assign(**flags, all="all")[[*by, *flags]], by)
        table = table.merge(note, on=by, how="left") if keys else table.assign(collapsed=note["collapsed"].iloc[0])
    return table.head(max_rows)


def _cells(df: pd.DataFrame) -> pd.DataFrame:
    """Every ``m`` with ``m_lo`` / ``m_hi`` columns as one text column ``m [95 % CI]``: ``mean [lo, hi]``."""
    out = {}
    for c in df.columns:
        if c.endswith("_lo") or c.endswith("_hi"):
            continue
        if f"{c}_lo" in df and f"{c}_hi" in df:
            out[f"{c} [95 % CI]"] = [_fmt(m) + (f" [{_fmt(lo)}, {_fmt(hi)}]" if np.isfinite(lo) else "")
                                    for m, lo, hi in zip(df[c], df[f"{c}_lo"], df[f"{c}_hi"])]
        else:
            out[c] = df[c]
    return pd.DataFrame(out)


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if np.isnan(v) else f"{v:.4g}"
    return str(v)


def to_markdown(df: pd.DataFrame) -> str:
    df = _cells(df)
    rows = [[str(c) for c in df.columns]] + [[_fmt(v) for v in r] for r in df.itertuples(index=False)]
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("---" for _ in df.columns) + "|")
    return "\n".join(lines)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(df: pd.DataFrame, caption: str) -> str:
    df = _cells(df)
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df]
    body = [" & ".join(_tex(str(c)) for c in df.columns) + r" \\", r"\midrule"]
    body += [" & ".join(_tex(_fmt(v)) for v in r) + r" \\" for r in df.itertuples(index=False)]
    return "\n".join([r"\begin{table}[ht]", r"\centering\small", rf"\caption{{{_tex(caption)}}}",
                      r"\begin{tabular}{" + "".join("r" if n else "l" for n in numeric) + "}", r"\toprule",
                      *body, r"\bottomrule", r"\end{tabular}", r"\end{table}"])


def write_summary(out: Path, experiments: Sequence[Experiment] = EXPERIMENTS) -> tuple[Path, Path]:
    """``out/summary.md`` and ``out/summary.tex`` from every results table of ``experiments`` that exists."""
    md = ["# Results summary", "", f"Generated from the tables in `{out}`: every metric is the mean over seeds with its "
          "95 % t interval (`n_seeds` seeds); `Δ accuracy` is the difference to the reference arm (MAP), paired by "
          "seed. The papers' claims are checked in `claims.md`.", ""]
    tex = [r"% Results summary generated by python -m experiments.all; needs \usepackage{booktabs}", ""]
    for exp in experiments:
        for name in tables(exp):
            path = out / name
            if not path.exists():
                continue
            try:
                rows, keys = view(pd.read_csv(path), name)
                table = summarise(rows, keys=keys)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
                md += [f"## {name}", "", f"(could not summarise: {err})", ""]
                continue
            md += [f"## {exp.name}: {exp.reproduces}", "", f"`{name}`", "", to_markdown(table), ""]
            tex += [to_latex(table, f"{exp.name}: {exp.reproduces} ({name})"), ""]
    return _write_text("\n".join(md), out / "summary.md"), _write_text("\n".join(tex), out / "summary.tex")


def _write_text(text: str, path: Path) -> Path:
    """Write ``text`` atomically (:func:`sparsebnn.results.atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write((text + "\n").encode()))


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m experiments.all", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="every experiment's --quick smoke settings")
    p.add_argument("--scale", choices=("cpu", "full"), default="cpu",
                   help="cpu: embedded data, reduced settings (default); full: the seeds' settings and image files, for a GPU")
    p.add_argument("--bench", action="store_true", help="also run the benchmarks (bench_*)")
    p.add_argument("--only", nargs="+", metavar="NAME", help=f"run only these (of {', '.join(BY_NAME)})")
    p.add_argument("--skip", nargs="+", metavar="NAME", help="leave these out")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of the experiments that take one (default 0); compare, svi_sparsity, stochastic_bmr "
                        "and spam run their own --seeds (default 0 1 2; --quick: 0)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default ./results)")
    p.add_argument("--figures", type=Path, default=Path("figures"), help="figures folder (default ./figures)")
    p.add_argument("--overwrite", action="store_true", help="recompute everything instead of resuming")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: each experiment's configurations one after another (default); dask: one Dask "
                        "cluster for the whole run, each configuration of every grid experiment one task")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="with --executor dask: a running cluster's scheduler (default: start one on this machine)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="with --executor dask and no --scheduler: worker processes (default: one per GPU, else per core)")
    p.add_argument("--compile-cache", metavar="DIR", default=None,
                   help="JAX's persistent compilation cache of every experiment (default <out>/.jax_cache; 'none': off)")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="stream each experiment's output instead of logging it; full tracebacks on errors")
    p.add_argument("--list", action="store_true", help="print what each scale runs and exit")
    args = p.parse_args(argv)
    check_executor(p, args)
    try:
        chosen = select(args.only, args.skip, args.bench)
    except ValueError as err:
        p.error(str(err))
    if args.list:
        for e in chosen:
            for a in invocations(e, args.scale, args.quick):
                print(f"python -m experiments.{e.name} {' '.join(a)}".rstrip())
        return 0
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        executor = []
        if args.executor == "dask":
            address = args.scheduler
            if address is None:
                cache = cache_dir(args.compile_cache, args.out)
                cluster = stack.enter_context(start(args.workers, cache))
                address = cluster.scheduler_address
                print(f"dask: {len(cluster.workers)} workers at {address}", flush=True)
            executor = ["--executor", "dask", "--scheduler", address]
        status = run_all(chosen, out=args.out, scale=args.scale, quick=args.quick, seed=args.seed,
                         overwrite=args.overwrite, verbose=args.verbose, executor=executor,
                         compile_cache=args.compile_cache)

    from paper_figures.__main__ import build_all

    written = build_all(args.out, args.figures)
    n_fig = sum(len(v) for v in written.values())
    print(f"figures: {n_fig} files from {len(written)} modules in {args.figures}")
    md, tex = write_summary(args.out)
    print(f"summary: {md}, {tex}")
    from experiments import claims

    claims.main(["--out", str(args.out)], quiet=True)
    print(f"claims: {args.out / 'claims.md'}")
    bad = {k: v for k, v in status.items() if v in ("failed", "missing")}
    print(f"finished in {_clock(time.perf_counter() - t0)}: "
          + ", ".join(f"{sum(v == s for v in status.values())} {s}" for s in ("ok", "skipped", "failed", "missing")))
    if bad:
        print("not reproduced: " + ", ".join(f"{k} ({v})" for k, v in bad.items()), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
