"""Runs across processes and machines: a Dask cluster for a grid of runs, and one compilation cache for all.

* :func:`start` starts a cluster on this machine (``dask.distributed``, one single-threaded worker process
  per GPU, else ``n_workers`` of them, default one per CPU core). Each GPU worker sees only its own GPU
  (``CUDA_VISIBLE_DEVICES``); every worker runs with ``XLA_PYTHON_CLIENT_PREALLOCATE=false``. GPUs are
  counted with ``nvidia-smi -L`` (:func:`gpus`), so the client never initialises JAX.
* :func:`session` connects to a running scheduler (``address``) or starts such a cluster for as long as
  it is open, and points every worker, present and future (a worker restarted after a crash), at the
  same persistent compilation cache (:class:`CompileCache`).
* :func:`compile_cache` turns JAX's persistent compilation cache on in this process: every compiled
  program is stored in a folder and reused by later processes with the same program, JAX and device.
* :func:`run_tasks` runs one task per item on the cluster, with a progress bar as tasks finish.

:func:`sparsebnn.results.run_grid` (``client=``) sends every configuration of a grid as one task, which
adds its own rows to the table (merge-safe under the table's lock); a worker killed mid-task loses only
that task, which the scheduler runs again on another worker. Workers on other machines need this
package and the checkout's ``experiments`` on their path, and the results folder at the same path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

#: The environment every worker starts with (besides the compilation cache's).
WORKER_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def gpus() -> list[str]:
    """The GPUs a worker may be given, as ``CUDA_VISIBLE_DEVICES`` entries, without initialising JAX.

    ``$CUDA_VISIBLE_DEVICES`` when set (empty or ``-1``: none), else one per line of ``nvidia-smi -L``
    (none when the command is missing or fails).
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d.strip() for d in visible.split(",") if d.strip()]
        return [] if ids[:1] == ["-1"] else ids
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    lines = [line for line in out.stdout.splitlines() if line.startswith("GPU ")] if out.returncode == 0 else []
    return [str(i) for i in range(len(lines))]


def cache_env(path: str | os.PathLike | None) -> dict[str, str]:
    """Environment variables that give a new process JAX's persistent compilation cache in ``path``."""
    if path is None:
        return {}
    return {"JAX_COMPILATION_CACHE_DIR": str(Path(path).resolve()),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}


def compile_cache(path: str | os.PathLike | None) -> Path | None:
    """Store every program JAX compiles in this process in ``path`` (created) and reuse it from there.

    Every program is cached however fast it compiled or small it is. Call before the first compilation;
    ``None`` leaves JAX's setting as it is.
    """
    if path is None:
        return None
    import jax

    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


def _worker_plugin():
    from distributed import WorkerPlugin

    class CompileCache(WorkerPlugin):
        """Sets :func:`compile_cache` on every worker as it starts (restarted workers too)."""

        name = "sparsebnn-compile-cache"

        def __init__(self, path: str):
            self.path = path

        def setup(self, worker):
            compile_cache(self.path)

    return CompileCache


def start(n_workers: int | None = None, compile_cache_dir: str | os.PathLike | None = None):
    """A Dask cluster on this machine (module docstring): one worker per GPU, else ``n_workers`` (default: cores).

    ``n_workers`` with GPUs: that many workers, the GPUs dealt out in turn. Close it (or use it as a
    context manager) to stop the workers.
    """
    import logging

    from distributed import Nanny, Scheduler, SpecCluster

    devices = gpus()
    if n_workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        n_workers = len(devices) or cores
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1; got {n_workers}")
    env = {**WORKER_ENV, **cache_env(compile_cache_dir)}
    workers = {}
    for i in range(n_workers):
        gpu = {"CUDA_VISIBLE_DEVICES": devices[i % len(devices)]} if devices else {}
        workers[i] = {"cls": Nanny, "options": {"nthreads": 1, "env": {**env, **gpu}, "silence_logs": logging.ERROR}}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False, "dashboard_address": ":0"}}
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.WARNING, name="sparsebnn")


@contextlib.contextmanager
def session(address: str | None = None, *, n_workers: int | None = None,
            compile_cache_dir: str | os.PathLike | None = None) -> Iterator:
    """A ``distributed.Client`` of the scheduler at ``address``, else of a cluster :func:`start` ed for the session.

    Every worker gets the compilation cache ``compile_cache_dir`` (a folder every worker can reach).
    """
    from distributed import Client

    with contextlib.ExitStack() as stack:
        if address is None:
            cluster = stack.enter_context(start(n_workers, compile_cache_dir))
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(address, timeout="30s"))
            except OSError as e:
                raise OSError(f"cannot reach the Dask scheduler at {address} ({e}); start one with "
                              "'dask scheduler' and workers with 'dask worker ADDRESS', or leave --scheduler "
                              "out to start a cluster on this machine") from None
        if compile_cache_dir is not None:
            client.register_plugin(_worker_plugin()(str(Path(compile_cache_dir).resolve())))
        yield client


def run_tasks(client, task: Callable, items: Sequence, desc: str = "tasks") -> list:
    """``task(item)`` for each item as one task on ``client``'s cluster; the results in the items' order.

    A progress bar advances as tasks finish. The first task that raises cancels the others and its
    error is raised here (what finished before stays finished). A task whose worker dies is run again
    by the scheduler on another worker (up to its ``allowed-failures``, default 3).
    """
    from distributed import as_completed

    futures = [client.submit(task, item, pure=False) for item in items]
    index = {f.key: i for i, f in enumerate(futures)}
    results = [None] * len(futures)
    try:
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, disable=len(futures) < 2):
            results[index[future.key]] = future.result()
    except BaseException:
        client.cancel(futures)
        raise
    return results
