"""Demo: BMR's ΔF against exact Bayes factors on random conjugate regressions, table and figure.

    python -m experiments.demo

Runs ``experiments.bmr_exact`` on 100 models (a few seconds; resumes into results/bmr_exact.csv)
and draws figures/bmr_vs_exact.pdf/.png.
"""

from __future__ import annotations

from pathlib import Path

from experiments import bmr_exact
from paper_figures import bmr_vs_exact


def main() -> list[Path]:
    bmr_exact.main(["--n-models", "100"])
    paths = bmr_vs_exact.make(Path("results"), Path("figures"))
    print("figures: " + ", ".join(str(p) for p in paths))
    return paths


if __name__ == "__main__":
    main()
