"""The experiments and figures from the command line (what the sparsebnn console script runs).

    python -m experiments list                          # the experiments and what each reproduces
    python -m experiments run NAME [args]               # = python -m experiments.NAME [args]
    python -m experiments reproduce [args]              # = python -m experiments.all [args]: everything
    python -m experiments figures [--results R --out F] # = python -m paper_figures: every figure from the tables

Run from the checkout (or with it on PYTHONPATH); ``sparsebnn ...`` does that for you.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from experiments._cli import Parser, entry, exit_code
from experiments.registry import BY_NAME, EXPERIMENTS, EXTRAS

PROG = "sparsebnn"


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
               formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{list,run,reproduce,figures}")
    listing = sub.add_parser("list", help="list the experiments and what each reproduces")
    listing.add_argument("--verbose", "-v", action="store_true", help="show the full traceback on an error")
    sub.add_parser("run", help="run one experiment: run NAME [its options] (run NAME --help: its help)")
    sub.add_parser("reproduce", help="every experiment, figure and summary table (python -m experiments.all)")
    sub.add_parser("figures", help="regenerate every figure from the results tables (python -m paper_figures)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command, rest = (argv[0], argv[1:]) if argv else (None, [])
    if command == "run":
        if not rest or rest[0].startswith("-"):
            _parser().error("run needs an experiment name: run NAME [options]; see 'list'")
        name, rest = rest[0], rest[1:]
        if name not in BY_NAME and name not in EXTRAS:
            _parser().error(f"unknown experiment {name!r}; choose one of {sorted([*BY_NAME, *EXTRAS])}")
        return exit_code(importlib.import_module(f"experiments.{name}").main(rest))
    if command == "reproduce":
        from experiments.all import main as reproduce

        return exit_code(reproduce(rest))
    if command == "figures":
        from paper_figures.__main__ import main as figures

        return exit_code(figures(rest))
    args = _parser().parse_args(argv)  # list, --help, or an error
    if args.command == "list":
        width = max(map(len, [*BY_NAME, *EXTRAS]))
        for e in EXPERIMENTS:
            print(f"{e.name:<{width}}  {e.reproduces}{'  (benchmark: reproduce --bench)' if e.bench else ''}")
        for name, what in EXTRAS.items():
            print(f"{name:<{width}}  {what}")
    return 0


if __name__ == "__main__":
    entry(main)
