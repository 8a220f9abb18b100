"""Conventions shared by every ``python -m experiments.<name>`` (and ``python -m experiments``, ``python -m paper_figures``).

Each experiment builds its parser with :func:`parser` (``--quick``, ``--seed`` or ``--seeds``, ``--out``,
``--overwrite``, ``--compile-cache``, ``--verbose``; grid experiments also ``--executor``, ``--scheduler``,
``--workers``), types every number with a range-checked type (:func:`positive_int`, :func:`fraction`, ...:
a number out of range is an argparse error naming the option, before any work), and parses with
:func:`parse`, which fills every option the user left unset from the ``--quick`` or full defaults (a value
typed on the command line always wins), picks the seeds and turns on the compilation cache. It hands its
configurations with its ``run(config)`` to :func:`execute`, i.e. :func:`sparsebnn.results.run_grid` here or on
a Dask cluster: finished configurations are skipped (resume), every finished configuration's rows are
added to the table as it finishes (:class:`sparsebnn.results.ResultsStore`: atomic, merged with concurrent
writers; ``--overwrite`` replaces a configuration's rows only once its new rows are in). The output
folder is checked for writing when parsing ``--out``.

Every ``__main__`` runs through :func:`entry`: an error is one line (``error: ... (--verbose for the
traceback)``, exit 1), ``--verbose`` shows the traceback, Ctrl-C exits 130 saying how to resume.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

SEEDS, QUICK_SEEDS = (0, 1, 2), (0,)  # --seeds defaults: full / CPU scale, --quick
# the classification datasets of sparsebnn.data (teacher data is regression unless asked otherwise)
CLASSIFICATION_DATASETS = ("digits", "mnist5k", "breast_cancer", "mnist", "fashion_mnist", "cifar10")
INTERRUPTED = "interrupted; re-run the same command to resume"
EXECUTORS = ("local", "dask")

# ----------------------------------------------------------------------------- numbers in range


def number(convert: Callable[[str], float], ok: Callable[[float], bool], what: str) -> Callable[[str], float]:
    """An argparse ``type=``: ``convert(text)``, an error ``must be <what>; got <text>`` unless ``ok``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}; got {text}")
        return value

    parse.__name__ = what
    return parse


positive_int = number(int, lambda v: v >= 1, "a positive integer")
nonnegative_int = number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = number(float, lambda v: 0 < v < math.inf, "a positive number")
nonnegative_float = number(float, lambda v: 0 <= v < math.inf, "a number >= 0")
fraction = number(float, lambda v: 0 < v < 1, "a fraction in (0, 1)")
unit_interval = number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def _out_dir(value: str) -> Path:
    """``--out``: a folder that can be created and written, checked before any work."""
    from sparsebnn.results import check_writable

    try:
        return check_writable(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# ----------------------------------------------------------------------------- the shared parser


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``<prog>: error: <message> (--help for the options)``."""

    seeds: bool = False  # has the shared --seeds (filled by parse)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (--help for the options)\n")


def parser(name: str, description: str, *, seeds: bool = False, executor: bool = False) -> argparse.ArgumentParser:
    """An argument parser with the options every experiment shares.

    ``seeds``: ``--seeds S [S ...]`` (every configuration once per seed) instead of ``--seed S``.
    ``executor``: ``--executor local|dask``, ``--scheduler ADDRESS``, ``--workers N`` (see :func:`execute`).
    """
    p = Parser(prog=f"python -m experiments.{name}", description=description)
    p.seeds = seeds
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run (used by the tests); "
                   "options given explicitly keep their values")
    if seeds:
        p.add_argument("--seeds", type=nonnegative_int, nargs="+", default=None, metavar="S",
                       help=f"every configuration runs once per seed, column seed (default {' '.join(map(str, SEEDS))}; "
                            f"--quick: {' '.join(map(str, QUICK_SEEDS))})")
    else:
        p.add_argument("--seed", type=nonnegative_int, default=0, help="base random seed (default 0)")
    p.add_argument("--out", type=_out_dir, default=Path("results"), help="results folder (default ./results)")
    p.add_argument("--overwrite", action="store_true", help="recompute finished configurations instead of resuming")
    p.add_argument("--compile-cache", metavar="DIR", default=None,
                   help="JAX's persistent compilation cache, shared by every process and worker "
                        "(default <out>/.jax_cache; 'none': off)")
    if executor:
        p.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="local: the configurations one after another in this process (default); dask: each "
                            "configuration (x seed) one task on a Dask cluster")
        p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="with --executor dask: the scheduler of a running cluster (e.g. tcp://host:8786); "
                            "default: start one on this machine, one worker per GPU, else per CPU core")
        p.add_argument("--workers", type=positive_int, default=None,
                       help="with --executor dask and no --scheduler: worker processes to start "
                            "(default: one per GPU, else per CPU core)")
    p.add_argument("--verbose", "-v", action="store_true", help="show the full traceback on an error")
    return p


def schedule_options(p: argparse.ArgumentParser, full: dict, quick: dict, **helps: str) -> Callable[[argparse.Namespace], dict]:
    """Add ``--<name>`` (a positive integer overriding the schedule entry ``name``) for every ``name=help``; return
    ``args -> {"schedule": {name: value}}`` of the ones given, ``{}`` when none is: a configuration holds the key
    only then, so runs at the default schedule keep their keys and finished rows resume (:func:`schedule`)."""
    for name, what in helps.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=positive_int, default=None,
                       help=f"{what} (default {full[name]}; --quick {quick[name]})")

    def given(args):
        values = {k: getattr(args, k) for k in helps if getattr(args, k) is not None}
        return {"schedule": values} if values else {}

    return given


def schedule(config: Mapping, full: dict, quick: dict) -> dict:
    """The schedule of a configuration: ``quick`` (``config["quick"]``) or ``full``, with the overrides of
    :func:`schedule_options` on top."""
    return {**(quick if config["quick"] else full), **config.get("schedule", {})}


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None, *, quick: dict | None = None,
          full: dict | None = None) -> argparse.Namespace:
    """Parse ``argv``; every option left unset (``None``) takes its ``quick`` (with ``--quick``) or ``full`` default.

    Also: ``seeds`` (deduplicated; default :data:`SEEDS`, ``--quick``: :data:`QUICK_SEEDS`), the executor
    options checked together, and ``compile_cache`` resolved (``None`` when off) and turned on.
    """
    args = p.parse_args(argv)
    for key, value in ((quick if args.quick else full) or {}).items():
        if getattr(args, key) is None:
            setattr(args, key, list(value) if isinstance(value, tuple) else value)
    if getattr(p, "seeds", False):
        args.seeds = list(dict.fromkeys(args.seeds or (QUICK_SEEDS if args.quick else SEEDS)))
    check_executor(p, args)
    args.compile_cache = cache_dir(args.compile_cache, args.out)
    use_compile_cache(args.compile_cache)
    return args


def check_executor(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--scheduler`` and ``--workers`` only with ``--executor dask``, and not together."""
    if getattr(args, "executor", "dask") == "local":
        for option in ("scheduler", "workers"):
            if getattr(args, option) is not None:
                p.error(f"--{option} needs --executor dask")
    if getattr(args, "scheduler", None) is not None and args.workers is not None:
        p.error("--workers starts a cluster on this machine; with --scheduler the cluster has its own workers")


def cache_dir(value: str | None, out: Path) -> Path | None:
    """``--compile-cache``: the folder given, ``None`` for 'none', else ``<out>/.jax_cache``."""
    return None if value == "none" else Path(value) if value else Path(out) / ".jax_cache"


def use_compile_cache(path: Path | None) -> None:
    """JAX's persistent compilation cache in ``path`` for this process (:func:`sparsebnn.cluster.compile_cache`),
    unless this process already has one (the first setting of a process stays: JAX reads it once)."""
    import jax

    from sparsebnn.cluster import compile_cache

    if path is not None and jax.config.jax_compilation_cache_dir is None:
        compile_cache(path)


# ----------------------------------------------------------------------------- running the grid


def execute(args: argparse.Namespace, configs: Iterable[dict], run: Callable, path: Path, desc: str) -> pd.DataFrame:
    """:func:`sparsebnn.results.run_grid` of ``configs`` into ``path``, on the executor of ``args``.

    ``--executor dask``: every configuration is one task on the cluster at ``--scheduler``, else on one
    started for this call (:func:`sparsebnn.cluster.session`), whose workers share ``--compile-cache``.
    """
    from sparsebnn.results import run_grid

    if getattr(args, "executor", "local") == "local":
        return run_grid(configs, run, path, overwrite=args.overwrite, desc=desc)
    from sparsebnn.cluster import session

    with session(args.scheduler, n_workers=args.workers, compile_cache_dir=args.compile_cache) as client:
        return run_grid(configs, run, path, overwrite=args.overwrite, desc=desc, client=client)


def config_columns(table: pd.DataFrame) -> list[str]:
    """The configuration columns of a results table (the keys of its ``config_key``; without one, the non-numeric columns)."""
    import pandas as pd

    if "config_key" not in table or table.empty:
        return [c for c in table if not pd.api.types.is_numeric_dtype(table[c])]
    keys = set()
    for k in table["config_key"].dropna().unique():
        keys |= set(json.loads(k))
    return [c for c in table if c in keys]


def over_seeds(table: pd.DataFrame, keys: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Mean of ``columns`` over the seeds of each configuration; column ``seeds`` counts them.

    Rows are grouped by ``keys`` (those in the table) and by every other configuration column that
    varies in the table (shown after ``keys``), so runs with different settings never share a mean.
    Tables of classification runs get a last column ``collapsed``: ``"k/n: <reason>"`` when ``k`` of
    the ``n`` runs collapsed (:func:`sparsebnn.results.mark_collapsed`), else ``""``.
    """
    import pandas as pd

    from sparsebnn.results import collapse_note, mark_collapsed

    table = mark_collapsed(table)
    varying = [c for c in config_columns(table) if c not in keys and c not in ("seed", "progress")
               and table[c].astype(str).nunique() > 1]
    keys = [k for k in keys if k in table] + varying
    columns = [c for c in columns if c in table and c not in keys and pd.api.types.is_numeric_dtype(table[c])]
    if table.empty or not keys:
        return table[keys + columns]
    groups = table.groupby(keys, sort=False, dropna=False)
    out = groups[columns].mean()
    out.insert(0, "seeds", groups["seed"].nunique() if "seed" in table else 1)
    out = out.reset_index()
    return out.merge(collapse_note(table, keys), on=keys, how="left") if "collapsed" in table else out


# ----------------------------------------------------------------------------- data


def load_data(name: str, *, seed: int = 0, flat: bool = True):
    """``sparsebnn.data.load(name, seed=seed)``: flat inputs (``flat``) or images where the dataset has images.

    The last two datasets loaded are kept (read-only arrays), so checking a dataset before the grid and
    loading it for the first configuration read its files once.
    """
    from sparsebnn import data

    if name not in data.LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(data.LOADERS)}")
    takes = inspect.signature(data.LOADERS[name]).parameters
    folder = str(data.resolve_data_dir()) if "data_dir" in takes else None
    return _load(name, seed, flat if "flat" in takes else None, folder)


@functools.lru_cache(maxsize=2)
def _load(name: str, seed: int, flat: bool | None, data_dir: str | None):
    from sparsebnn import data

    ds = data.load(name, seed=seed, **({} if flat is None else {"flat": flat}),
                   **({} if data_dir is None else {"data_dir": data_dir}))
    for split in (ds.train, ds.val, ds.test):
        for array in split:
            array.flags.writeable = False
    return ds


def check_data(p: argparse.ArgumentParser, name: str, image_nets: Sequence[str] = (), batch_size: int | None = None) -> None:
    """Before any work: the dataset loads (its files exist), has images when ``image_nets`` need them, and
    has at least ``batch_size`` training examples."""
    ds = load_data(name)
    if image_nets and ds.image_shape is None:
        p.error(f"--dataset {name} has no images, but {', '.join(image_nets)} take images: use an image dataset "
                f"({', '.join(d for d in CLASSIFICATION_DATASETS if d != 'breast_cancer')}) or the mlp")
    if batch_size is not None and batch_size > len(ds.train.y):
        p.error(f"--batch-size {batch_size} is larger than the {len(ds.train.y)} training examples of {name}")


# ----------------------------------------------------------------------------- entry point


def exit_code(result) -> int:
    """An entry point's return value as an exit code (tables and figure lists mean success)."""
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def message(err: BaseException) -> str:
    """An exception as one line: its message, with its type where the type says something."""
    text = " ".join(str(err).split())
    plain = isinstance(err, (ValueError, OSError, RuntimeError)) and type(err).__module__ == "builtins"
    return text if plain and text else f"{type(err).__name__}: {text}" if text else type(err).__name__


def entry(main: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> None:
    """Run ``main(argv)`` as a command: exit with its code; an error is one line (the traceback with
    ``--verbose``), exit 1; Ctrl-C exits 130 saying how to resume (finished configurations are saved)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv or "-v" in argv
    try:
        code = exit_code(main(argv))
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        code = 130
    except BrokenPipeError:  # the reader of our output went away (e.g. | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    except Exception as err:  # noqa: BLE001  (SystemExit, argparse's errors included, passes through)
        if verbose:
            traceback.print_exc()
        print(f"error: {message(err)}" + ("" if verbose else " (--verbose for the traceback)"), file=sys.stderr)
        code = 1
    sys.stdout.flush()
    raise SystemExit(code)
