"""Regenerate every paper figure from whatever results tables exist.

    python -m paper_figures [--results results] [--out figures] [--verbose]

Each figure module in this package exposes ``make(results_dir, out_dir) -> list[Path]``, which
returns ``[]`` when the tables it needs are absent. A results folder that does not exist is an error
that says how to create one (one line; ``--verbose``: the traceback).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import paper_figures
from experiments._cli import Parser

_NOT_FIGURES = {"style"}


def figure_modules() -> list[str]:
    return [
        m.name
        for m in pkgutil.iter_modules(paper_figures.__path__)
        if not m.name.startswith("_") and m.name not in _NOT_FIGURES
    ]


def build_all(results: Path, out: Path) -> dict[str, list[Path]]:
    """Run every figure module's ``make``; return the paths written, by module."""
    written = {}
    for name in figure_modules():
        paths = importlib.import_module(f"paper_figures.{name}").make(Path(results), Path(out))
        if paths:
            written[name] = paths
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
