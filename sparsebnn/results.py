"""Tidy results tables: atomic writes and resumable runs.

A results table is a CSV with one row per run (config columns + metric columns). Rows are
appended through :class:`ResultsStore`, which rewrites the file atomically (write to a temporary
file in the same folder, then ``os.replace``), so an interrupted run never leaves a half-written
table and every finished configuration survives. ``store.done(config)`` tells a resumed run
which configurations to skip; :func:`run_grid` runs a list of configurations that way.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

_VERSIONED = ("sparsebnn", "jax", "jaxlib", "numpyro", "optax", "arviz", "numpy", "scipy")


def versions() -> dict[str, str]:
    """Versions of Python and the packages that determine the numbers, for the results table."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as CSV atomically (temporary file + rename in the same directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            df.to_csv(fh, index=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def config_key(config: Mapping) -> str:
    """A canonical string for a configuration (sorted JSON), used to recognise finished runs."""
    return json.dumps({k: config[k] for k in sorted(config)}, sort_keys=True, default=str)


class ResultsStore:
    """An append-only, atomically rewritten results table keyed by run configuration.

    >>> store = ResultsStore("results/svi.csv")            # doctest: +SKIP
    >>> if not store.done(cfg): store.add(cfg, metrics)    # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        if overwrite and self.path.exists():
            self.path.unlink()
        self.table = pd.read_csv(self.path) if self.path.exists() else pd.DataFrame()
        self._keys = set(self.table["config_key"]) if "config_key" in self.table else set()

    def done(self, config: Mapping) -> bool:
        return config_key(config) in self._keys

    def add(self, config: Mapping, metrics: Mapping | list[Mapping]) -> None:
        """Record one finished configuration (one row, or several rows sharing the config) and save."""
        rows = [metrics] if isinstance(metrics, Mapping) else list(metrics)
        key = config_key(config)
        new = pd.DataFrame([{**config, **row, "config_key": key, **versions()} for row in rows])
        self.table = new if self.table.empty else pd.concat([self.table, new], ignore_index=True)
        self._keys.add(key)
        write_table(self.table, self.path)


def run_grid(
    configs: Iterable[Mapping],
    run: Callable[[Mapping], Mapping | list[Mapping]],
    path: Path,
    overwrite: bool = False,
    desc: str = "runs",
) -> pd.DataFrame:
    """Run ``run(config)`` for each configuration not yet in ``path``; return the whole table."""
    store = ResultsStore(path, overwrite=overwrite)
    configs = list(configs)
    todo = [c for c in configs if not store.done(c)]
    if len(todo) < len(configs):
        print(f"resuming {path}: {len(configs) - len(todo)} of {len(configs)} configurations already done")
    for config in tqdm(todo, desc=desc, disable=len(todo) < 2):
        store.add(config, run(config))
    return store.table
