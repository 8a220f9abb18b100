"""Conventions shared by every ``python -m experiments.<name>``.

Each experiment builds its parser with :func:`parser` (which adds ``--quick``, ``--seed``,
``--out``, ``--overwrite``), lists its configurations, and hands them with its ``run(config)`` to
:func:`sparsebnn.results.run_grid`, which skips finished ones (resume), shows a progress bar, and adds
every finished row to the table as it finishes (:class:`sparsebnn.results.ResultsStore`: atomic, merged
with concurrent writers; ``--overwrite`` replaces a configuration's rows only once its new rows are in).
The output folder is checked for writing before any work: when parsing ``--out`` and again in ``run_grid``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsebnn.results import check_writable


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
