"""Conventions shared by every ``python -m experiments.<name>``.

Each experiment builds its parser with :func:`parser` (which adds ``--quick``, ``--seed``,
``--out``, ``--overwrite``), lists its configurations, and hands them to :func:`run_grid`, which
skips finished ones (resume), shows a progress bar, and writes every finished row atomically.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from sparsebnn.results import ResultsStore


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every experiment shares."""
    p = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=description)
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run (used by the tests)")
    p.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default ./results)")
    p.add_argument("--overwrite", action="store_true", help="recompute finished configurations instead of resuming")
    return p


def run_grid(
    configs: Iterable[Mapping],
    run: Callable[[Mapping], Mapping | list[Mapping]],
    path: Path,
    overwrite: bool = False,
    desc: str = "runs",
) -> pd.DataFrame:
    """Run ``run(config)`` for each configuration not yet in ``path``; return the whole table."""
    store = ResultsStore(path, overwrite=overwrite)
    configs = list(configs)
    todo = [c for c in configs if not store.done(c)]
    if len(todo) < len(configs):
        print(f"resuming {path}: {len(configs) - len(todo)} of {len(configs)} configurations already done")
    for config in tqdm(todo, desc=desc, disable=len(todo) < 2):
        store.add(config, run(config))
    return store.table
