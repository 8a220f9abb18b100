"""The ``sparsebnn`` console script: the experiments and figures from anywhere.

    sparsebnn list                       # the experiments and what each reproduces
    sparsebnn run <experiment> [args]    # same as python -m experiments.<experiment> [args]
    sparsebnn figures [--results R --out F]   # regenerate every figure from the results that exist
    sparsebnn reproduce [--quick] [--scale cpu|full] ...   # same as python -m experiments.all: everything
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import runpy
import sys


def experiments() -> dict[str, str]:
    """Experiment module names mapped to the first line of their docstring."""
    import experiments as pkg

    out = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        doc = importlib.import_module(f"experiments.{info.name}").__doc__ or ""
        out[info.name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="sparsebnn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    run = sub.add_parser("run", help="run an experiment (options after the name go to it)")
    run.add_argument("experiment")
    sub.add_parser("figures", help="regenerate every figure (options go to python -m paper_figures)")
    sub.add_parser("reproduce", help="run every experiment, figure and summary table (options go to python -m experiments.all)",
                   add_help=False)
    args, rest = p.parse_known_args(argv)
    if args.command == "list":
        for name, doc in experiments().items():
            print(f"{name:<20} {doc}")
        return 0
    if args.command == "reproduce":
        from experiments.all import main as reproduce

        return reproduce(rest)
    if args.command == "run":
        names = experiments()
        if args.experiment not in names:
            p.error(f"unknown experiment {args.experiment!r}; choose one of {sorted(names)}")
        module = f"experiments.{args.experiment}"
    else:
        module = "paper_figures"
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
