"""Conventions shared by every ``python -m experiments.<name>``.

Each experiment builds its parser with :func:`parser` (which adds ``--quick``, ``--seed``,
``--out``, ``--overwrite``), lists its configurations, and hands them with its ``run(config)`` to
:func:`sparsebnn.results.run_grid`, which skips finished ones (resume), shows a progress bar, and
writes every finished row atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every experiment shares."""
    p = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=description)
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run (used by the tests)")
    p.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default ./results)")
    p.add_argument("--overwrite", action="store_true", help="recompute finished configurations instead of resuming")
    return p
