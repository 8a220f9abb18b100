"""Conventions shared by every ``python -m experiments.<name>``.

Each experiment builds its parser with :func:`parser` (which adds ``--quick``, ``--seed``,
``--out``, ``--overwrite``), lists its configurations, and hands them to :func:`run_grid`, which
skips finished ones (resume), shows a progress bar, and adds every finished row to the table as
it finishes (:class:`sparsebnn.results.ResultsStore`: atomic, merged with concurrent writers;
``--overwrite`` replaces a configuration's rows only once its new rows are in). The output folder
is checked for writing before any work: when parsing ``--out`` and again in :func:`run_grid`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from sparsebnn.results import ResultsStore, check_writable, read_table


def _out_dir(value: str) -> Path:
    """``--out``: a folder that can be created and written, checked before any work."""
    try:
        return check_writable(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every experiment shares."""
    p = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=description)
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run (used by the tests)")
    p.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    p.add_argument("--out", type=_out_dir, default=Path("results"), help="results folder (default ./results)")
    p.add_argument("--overwrite", action="store_true", help="recompute finished configurations instead of resuming")
    return p


def run_grid(
    configs: Iterable[Mapping],
    run: Callable[[Mapping], Mapping | list[Mapping]],
    path: Path,
    overwrite: bool = False,
    desc: str = "runs",
) -> pd.DataFrame:
    """Run ``run(config)`` for each configuration not yet in ``path``; return the whole table as on disk.

    The folder of ``path`` is checked for writing before the first configuration runs. A
    configuration that another writer had added to ``path`` by this run's previous add is skipped.
    """
    store = ResultsStore(path, overwrite=overwrite)
    configs = list(configs)
    todo = [c for c in configs if not store.done(c)]
    if len(todo) < len(configs):
        print(f"resuming {path}: {len(configs) - len(todo)} of {len(configs)} configurations already done")
    for config in tqdm(todo, desc=desc, disable=len(todo) < 2):
        if not store.done(config):
            store.add(config, run(config))
    return read_table(path)
