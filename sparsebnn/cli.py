"""The ``sparsebnn`` console script: a launcher for ``python -m experiments`` in the sparsebnn checkout.

    sparsebnn list | run NAME [args] | reproduce [args] | figures [args]     (sparsebnn --help)

Only the library ``sparsebnn`` is installed; ``experiments/``, ``paper_figures/`` and ``theory/`` stay
folders of the checkout. The checkout is ``$SPARSEBNN_HOME``, else the folder above the installed
package when it holds ``experiments/`` (an editable install, ``pip install -e .``), else the current
directory. The command runs there as ``python -m experiments ARGS`` with the checkout on PYTHONPATH,
in the current directory (results and figures go where you are), and its exit code is passed through.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HOME = "SPARSEBNN_HOME"


def _is_checkout(path: Path) -> bool:
    return (path / "experiments" / "__main__.py").is_file()


def checkout() -> Path:
    """The sparsebnn checkout (module docstring); ``FileNotFoundError`` naming what was looked at when none."""
    env = os.environ.get(HOME)
    if env:
        path = Path(env).expanduser().resolve()
        if not _is_checkout(path):
            raise FileNotFoundError(f"{HOME}={env} is not a sparsebnn checkout (no experiments/__main__.py there)")
        return path
    for path in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if _is_checkout(path):
            return path
    raise FileNotFoundError(f"no sparsebnn checkout found: set {HOME} to the folder holding experiments/, or run "
                            "from it (the experiments and figures are not installed, only the library is)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        root = checkout()
    except FileNotFoundError as err:
        print(f"sparsebnn: {err}", file=sys.stderr)
        return 2
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    child = subprocess.Popen([sys.executable, "-m", "experiments", *argv], env={**os.environ, "PYTHONPATH": path})
    while True:
        try:
            code = child.wait()
            break
        except KeyboardInterrupt:  # the child got the same Ctrl-C: let it stop cleanly, then report its code
            continue
    return 128 - code if code < 0 else code  # killed by signal s: exit 128 + s, as a shell reports it


if __name__ == "__main__":
    raise SystemExit(main())
