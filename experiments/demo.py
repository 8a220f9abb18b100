"""Demo: the main comparison on ``digits`` at a quick scale, its summary table, and every figure.

    python -m experiments.demo [--out results] [--figures figures]

Runs ``experiments.compare`` on an MLP (64-32-32-10, 2000 SVI steps) with MAP, Gaussian SVI + BMR,
the horseshoe + BMR, SS-GHS (c_reg = 1 and k_l + 1), SS-IG and Laplace + OPD side by side, prints
accuracy, NLL, ECE, sparsity and wall time, runs ``experiments.bmr_exact`` (BMR's ΔF against exact
Bayes factors, seconds), then rebuilds every figure from whatever results exist
(``paper_figures.build_all``) and prints where they were written. Resumes like every experiment.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments import bmr_exact, compare
from paper_figures.__main__ import build_all

METHODS = ["map", "gaussian-bmr", "horseshoe", "ss-ghs", "ss-ig", "laplace-opd"]


def main(argv: list[str] | None = None) -> dict[str, list[Path]]:
    p = argparse.ArgumentParser(prog="python -m experiments.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--figures", type=Path, default=Path("figures"))
    args = p.parse_args(argv)
    out = ["--out", str(args.out)]
    compare.main(["--nets", "mlp", "--methods", *METHODS, "--steps", "2000", "--hidden", "32", "32",
                  "--samples", "16", *out])
    bmr_exact.main(["--n-models", "100", *out])
    written = build_all(args.out, args.figures)
    print(f"figures written to {args.figures}/:")
    for name, paths in written.items():
        print(f"  {name:<22} " + ", ".join(p.name for p in paths))
    return written


if __name__ == "__main__":
    main()
