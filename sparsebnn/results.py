"""Tidy results tables, safe under resume, overwrite, concurrent writers and kills.

A results table is one CSV with one row per run: configuration columns, metric columns,
``config_key`` (the canonical configuration, :func:`config_key`) and the package versions.
Rows are added through :class:`ResultsStore`; ``store.done(config)`` tells a resumed run which
configurations to skip, and :func:`run_grid` runs a list of configurations that way.

Guarantees:

* **Atomic files.** Every file is written by :func:`atomic_write`: a temporary file in the same
  folder, flushed to disk, then ``os.replace`` d over the target, so a reader or a killed writer
  never sees a half-written file. A new file gets the mode the umask allows (``0o666 & ~umask``);
  a replaced file keeps its mode.
* **Concurrent writers merge.** Each change of a file is made under an exclusive advisory lock
  (``flock`` on ``.<name>.lock`` beside it, plus a thread lock within one process); adding rows
  re-reads the table under the lock, replaces the rows of the same configuration and writes the
  merge. We chose one locked table over one row file per configuration merged on read because the
  table stays a single, always complete CSV that every reader (pandas, ``paper_figures``, a
  spreadsheet) sees whole with no merge step, and a lock suffices for the coming use: Dask tasks
  (threads or processes, on one or several machines sharing a folder — ``flock`` is honoured
  across NFS clients) each adding their rows. The kernel drops the lock of a killed process, so a
  kill never leaves a stale lock; a retried task adds the same configuration again and so
  replaces, never duplicates, its rows.
* **No stray temporaries.** Temporaries of a file are created only under its lock, so any found
  while holding the lock (``.<name>.XXXXXXXX.tmp``) were left by a killed writer and are removed.
* **Nothing lost on overwrite.** ``ResultsStore(path, overwrite=True)`` recomputes every
  configuration but replaces each one's rows only when its new rows are added; an interrupted
  overwrite keeps the old rows of the configurations it has not reached.

The file system must support ``flock`` (local disks, NFS); on one that does not, writing fails
with an error saying so.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import platform
import re
import secrets
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

_VERSIONED = ("sparsebnn", "jax", "jaxlib", "numpyro", "optax", "arviz", "numpy", "scipy")


@functools.cache
def _versions() -> tuple[tuple[str, str], ...]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return tuple(out.items())


def versions() -> dict[str, str]:
    """Versions of Python and the packages that determine the numbers, for the results table."""
    return dict(_versions())


# ----------------------------------------------------------------------------- atomic, locked files


_THREAD_LOCKS: dict[str, threading.Lock] = {}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``path`` (``flock`` on ``.<name>.lock``), removing the lock file after.

    The lock file is removed while still held; a process that was waiting on it finds on waking
    that the file it locked is no longer the one at that name, and tries again.
    """
    lock = path.with_name(f".{path.name}.lock")
    with _THREAD_LOCKS.setdefault(os.path.abspath(lock), threading.Lock()):
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                current = os.stat(lock)
            except FileNotFoundError:
                os.close(fd)
                continue
            except OSError as e:
                os.close(fd)
                raise OSError(e.errno, f"cannot lock {lock} (does this file system support file locks?): "
                              f"{e.strerror}") from None
            if os.path.samestat(current, os.fstat(fd)):
                break
            os.close(fd)
        try:
            yield
        finally:
            try:
                os.unlink(lock)
            finally:
                os.close(fd)


def _remove_stale_temporaries(path: Path) -> None:
    """Remove ``.<name>.XXXXXXXX.tmp`` beside ``path``: left by killed writers (call under the lock)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    for entry in os.scandir(path.parent):
        if pattern.fullmatch(entry.name):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass


def _replace(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through ``write(binary file)`` to a temporary file, then ``os.replace`` it over ``path``."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode: 0o666 & ~umask
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # a replaced file keeps its mode
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` atomically: ``write`` fills a binary file object, which then replaces ``path``.

    The folder is created if needed; the write happens under the file's lock, after removing
    temporaries that killed writers left; a new file's mode follows the umask, a replaced file
    keeps its mode. E.g. ``atomic_write(p, lambda fh: np.savez(fh, **arrays))``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        _remove_stale_temporaries(path)
        _replace(path, write)
    return path


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as CSV atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: df.to_csv(fh, index=False))


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A results table (an empty frame when the file does not exist); ValueError naming a file that is not CSV."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except ValueError as e:  # pandas' ParserError, UnicodeDecodeError
        raise ValueError(f"results table {path} is not a readable CSV file ({e}). Delete it or move it "
                         "aside to recompute its rows, or choose another output folder.") from None


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and create + remove a probe file in it; ValueError saying why not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe.{secrets.token_hex(4)}"
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as e:
        why = "a file is in the way" if isinstance(e, (FileExistsError, NotADirectoryError)) else e.strerror
        raise ValueError(f"cannot write results in {folder}: {why} ({e.filename}). "
                         "Choose another output folder.") from None
    return folder


# ----------------------------------------------------------------------------- results store


def config_key(config: Mapping) -> str:
    """A canonical string for a configuration (sorted JSON), used to recognise finished runs."""
    return json.dumps({k: config[k] for k in sorted(config)}, sort_keys=True, default=str)


class ResultsStore:
    """A results table keyed by run configuration, merged with other writers on every add.

    >>> store = ResultsStore("results/svi.csv")            # doctest: +SKIP
    >>> if not store.done(cfg): store.add(cfg, metrics)    # doctest: +SKIP

    ``overwrite=True``: :meth:`done` counts only configurations added through this store, so every
    configuration is recomputed, and each one's old rows stay until its new rows replace them.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        check_writable(self.path.parent)
        self.overwrite = overwrite
        self._added: set[str] = set()
        self._load(read_table(self.path))

    def _load(self, table: pd.DataFrame) -> None:
        if not table.empty and "config_key" not in table:
            raise ValueError(f"{self.path} has no config_key column: it is not a table a ResultsStore "
                             "wrote. Move it aside or choose another output folder.")
        self.table = table
        self._keys = set(table["config_key"]) if "config_key" in table else set()

    def done(self, config: Mapping) -> bool:
        """Whether ``config`` has rows (with ``overwrite``: rows added through this store)."""
        return config_key(config) in (self._added if self.overwrite else self._keys)

    def add(self, config: Mapping, metrics: Mapping | list[Mapping]) -> None:
        """Record one finished configuration (one row, or several rows sharing the config).

        Under the table's lock: re-read the table, drop earlier rows of this configuration, append
        the new ones and write the merge atomically.
        """
        rows = [metrics] if isinstance(metrics, Mapping) else list(metrics)
        key = config_key(config)
        new = pd.DataFrame([{**config, **row, "config_key": key, **versions()} for row in rows])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path):
            self._load(read_table(self.path))
            _remove_stale_temporaries(self.path)
            old = self.table[self.table["config_key"] != key] if key in self._keys else self.table
            table = new if old.empty else pd.concat([old, new], ignore_index=True)
            _replace(self.path, lambda fh: table.to_csv(fh, index=False))
        self._load(table)
        self._added.add(key)


def _run_and_add(run: Callable[[Mapping], Mapping | list[Mapping]], path: str, overwrite: bool, config: Mapping) -> None:
    """One configuration as a task of its own (any process): run it and add its rows to ``path``.

    Skipped when its rows are already there and not ``overwrite`` (a retry of a task whose first worker
    died after adding them, or another writer's run).
    """
    if not overwrite and ResultsStore(path).done(config):
        return
    rows = run(config)
    ResultsStore(path).add(config, rows)


def run_grid(
    configs: Iterable[Mapping],
    run: Callable[[Mapping], Mapping | list[Mapping]],
    path: str | os.PathLike,
    overwrite: bool = False,
    desc: str = "runs",
    client=None,
) -> pd.DataFrame:
    """Run ``run(config)`` for each configuration not yet in ``path``; return the whole table as on disk.

    The folder of ``path`` is checked for writing before the first configuration runs. Every finished
    configuration's rows are added as it finishes (resume skips them); a configuration that another
    writer had added to ``path`` by this run's previous add is skipped.

    ``client``: a ``distributed.Client`` (:func:`sparsebnn.cluster.session`): every configuration is one
    task on its cluster (:func:`sparsebnn.cluster.run_tasks`, ``run`` must pickle), which adds its own
    rows under the table's lock, so a worker killed mid-task loses only that configuration, run again
    by the scheduler, and the table holds every configuration once.
    """
    store = ResultsStore(path, overwrite=overwrite)
    configs = list(configs)
    todo = [c for c in configs if not store.done(c)]
    if len(todo) < len(configs):
        print(f"resuming {path}: {len(configs) - len(todo)} of {len(configs)} configurations already done")
    if client is not None:
        from sparsebnn.cluster import run_tasks

        run_tasks(client, functools.partial(_run_and_add, run, str(Path(path).resolve()), overwrite), todo, desc)
        return read_table(path)
    for config in tqdm(todo, desc=desc, disable=len(todo) < 2):
        if not store.done(config):
            store.add(config, run(config))
    return read_table(path)


# ----------------------------------------------------------------------------- reference runs


def reference_passed(table: pd.DataFrame, column: str = "nuts_ok") -> pd.Series:
    """Per row, whether its reference sampler passed its diagnostics (``column`` True, as written or as read back
    from CSV). A table without the column has no verdict: every row is False. SVI-vs-NUTS tables and figures
    compare only these rows; the others are listed with their problems."""
    if column not in table:
        return pd.Series(False, index=table.index)
    return table[column].astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))


# ----------------------------------------------------------------------------- collapsed runs

# the reference arm of a comparison table: column -> its values, the first present wins (MAP)
REFERENCE_ARMS = {"method": ("map", "flat-map"), "prior": ("map",)}
REFERENCE_MATCH = ("dataset", "net", "seed")  # a run is compared with the reference run of the same cell and seed


def _reasons(*texts) -> str:
    """Reason strings (``"; "``-joined) merged, duplicates dropped, order kept."""
    parts = [p for t in texts if isinstance(t, str) for p in t.split("; ") if p]
    return "; ".join(dict.fromkeys(parts))


def mark_collapsed(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``collapsed`` / ``collapse_reason`` completed against the reference arm.

    Run rows carry their own reasons (:func:`sparsebnn.metrics.collapse_columns`: an emptied layer,
    accuracy not above chance). Here every row of a comparison table (a column of :data:`REFERENCE_ARMS`
    holding its reference, MAP) is also checked for the margin over chance lost against the reference's
    mean accuracy in the same :data:`REFERENCE_MATCH` cell (:func:`sparsebnn.metrics.collapse_reason`).
    Tables without ``accuracy``, ``n`` and ``n_classes`` come back unchanged (regression, older tables).
    """
    from sparsebnn.metrics import collapse_reason

    if table.empty or not {"accuracy", "n", "n_classes"} <= set(table):
        return table
    arm = next((c for c in REFERENCE_ARMS if c in table), None)
    ref_value = next((r for r in REFERENCE_ARMS.get(arm, ()) if r in set(table[arm])), None) if arm else None
    reference = pd.Series(np.nan, index=table.index)
    if ref_value is not None:
        match = [c for c in REFERENCE_MATCH if c in table]
        refs = table[table[arm] == ref_value].groupby(match, dropna=False)["accuracy"].mean().rename("_ref")
        reference = table[match].join(refs, on=match)["_ref"] if match else pd.Series(refs.iloc[0], table.index)
    own = table["collapse_reason"].astype(object) if "collapse_reason" in table else pd.Series("", index=table.index)
    reasons = [_reasons(o, collapse_reason(float(a), int(n), int(c), reference_accuracy=None if np.isnan(r) else r))
               if np.isfinite(a) and np.isfinite(n) and np.isfinite(c) else _reasons(o)
               for o, a, n, c, r in zip(own.fillna(""), table["accuracy"], table["n"], table["n_classes"], reference)]
    return table.assign(collapsed=[bool(r) for r in reasons], collapse_reason=reasons)


def collapse_note(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per ``keys`` group, column ``collapsed``: ``""`` when no run collapsed, else ``"k/n: <reason>"``
    (the most frequent reason of the ``k`` collapsed runs out of ``n``)."""
    if "collapsed" not in table:
        return table[keys].drop_duplicates().assign(collapsed="")

    def note(g):
        bad = g[g["collapsed"].eq(True)]
        return "" if bad.empty else f"{len(bad)}/{len(g)}: {bad['collapse_reason'].astype(object).fillna('').mode().iloc[0]}"

    groups = table.groupby(keys, sort=False, dropna=False)
    return groups[["collapsed", "collapse_reason"]].apply(note).rename("collapsed").reset_index()
