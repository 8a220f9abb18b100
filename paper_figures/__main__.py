"""Regenerate every paper figure from whatever results tables exist.

    python -m paper_figures [--results results] [--out figures] [--verbose]

Each figure module in this package exposes ``make(results_dir, out_dir) -> list[Path]``, which
returns ``[]`` when the tables it needs are absent. A results folder that does not exist is an error
that says how to create one (one line; ``--verbose``: the traceback).
"""

from __future__ import annotations

import importlib
import pkgutil
import tempfile
from pathlib import Path

import pandas as pd

import paper_figures
from experiments._cli import Parser
from sparsebnn.results import read_table

_NOT_FIGURES = {"style"}


def figure_modules() -> list[str]:
    return [
        m.name
        for m in pkgutil.iter_modules(paper_figures.__path__)
        if not m.name.startswith("_") and m.name not in _NOT_FIGURES
    ]


def _build(results: Path, out: Path, written: dict[str, list[Path]]) -> dict[str, list[Path]]:
    for name in figure_modules():
        paths = importlib.import_module(f"paper_figures.{name}").make(Path(results), Path(out))
        if paths:
            written.setdefault(name, []).extend(paths)
    return written


def _several(results: Path) -> dict[Path, pd.DataFrame]:
    """The results tables that hold more than one dataset (``dataset`` column), read once."""
    tables = {f: read_table(f) for f in sorted(results.glob("*.csv"))}
    return {f: t for f, t in tables.items() if "dataset" in t and t["dataset"].nunique() > 1}


def _datasets(results: Path) -> list[str]:
    """The datasets of the tables of :func:`_several`, in order of appearance."""
    return list(dict.fromkeys(d for t in _several(results).values() for d in t["dataset"].dropna().astype(str)))


def build_all(results: Path, out: Path) -> dict[str, list[Path]]:
    """Run every figure module's ``make``; return the paths written, by module.

    A table with several datasets is drawn once per dataset, into ``out/<dataset>/`` (a figure never mixes
    datasets); the other tables into ``out``.
    """
    results, out = Path(results), Path(out)
    several = _several(results)
    if not several:
        return _build(results, out, {})
    datasets = dict.fromkeys(d for t in several.values() for d in t["dataset"].dropna().astype(str))
    written: dict[str, list[Path]] = {}
    for part in (*datasets, None):
        with tempfile.TemporaryDirectory() as tmp:
            for f in results.iterdir():
                if f not in several:  # other tables: in the dataset-free pass; other files (npz summaries): in every pass
                    if part is None or f.suffix != ".csv":
                        (Path(tmp) / f.name).symlink_to(f.resolve())
                elif part is not None:
                    table = several[f]
                    table[table["dataset"].astype(str) == part].to_csv(Path(tmp) / f.name, index=False)
            _build(Path(tmp), out if part is None else out / part, written)
    return written


def main(argv: list[str] | None = None) -> dict[str, list[Path]]:
    p = Parser(prog="python -m paper_figures", description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--out", type=Path, default=Path("figures"))
    p.add_argument("--verbose", "-v", action="store_true", help="show the full traceback on an error")
    args = p.parse_args(argv)
    if not args.results.is_dir():
        raise FileNotFoundError(f"results folder {args.results} does not exist: run the experiments first, e.g. "
                         f"python -m experiments.all --out {args.results} (every table; --quick for a smoke run) "
                         f"or python -m experiments.<name> --out {args.results}")
    written = build_all(args.results, args.out)
    for name, paths in written.items():
        print(f"{name:<24} " + ", ".join(str(x) for x in paths))
    missing = sorted(set(figure_modules()) - set(written))
    if missing:
        print(f"no results in {args.results} yet for: {', '.join(missing)}")
    return written


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
