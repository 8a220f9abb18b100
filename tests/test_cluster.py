"""A grid on a Dask cluster (``sparsebnn.cluster``, ``run_grid(client=)``, ``--executor dask``): the same table
as run locally, every configuration once even when a worker is killed mid-task; one GPU per worker."""

from __future__ import annotations

import os
import signal
import threading
import time

import pandas as pd
import pytest

from experiments import bmr_exact
from sparsebnn import cluster
from sparsebnn.results import config_key, run_grid

pytest.importorskip("distributed")

ORDER = ["block", "model", "kind", "coordinate"]


def same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal up to row order (bmr_exact has no timing columns)."""
    a, b = (t.sort_values(ORDER).reset_index(drop=True) for t in (a, b))
    pd.testing.assert_frame_equal(a, b)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A local cluster of 2 worker processes for the module, with a compilation cache."""
    with cluster.session(n_workers=2, compile_cache_dir=tmp_path_factory.mktemp("cache")) as client:
        client.wait_for_workers(2)
        yield client


def test_dask_executor_gives_the_local_table(client, tmp_path):
    args = ["--quick", "--n-models", "100"]
    local = bmr_exact.main([*args, "--out", str(tmp_path / "local")])
    dask = bmr_exact.main([*args, "--out", str(tmp_path / "dask"), "--executor", "dask",
                           "--scheduler", client.scheduler.address, "--compile-cache", str(tmp_path / "cache")])
    same_table(pd.read_csv(tmp_path / "dask" / "bmr_exact.csv"), pd.read_csv(tmp_path / "local" / "bmr_exact.csv"))
    same_table(dask, local)
    assert any((tmp_path / "cache").iterdir())  # the workers compiled into the cache the experiment named


def slow_block(config):
    """A bmr_exact block that takes long enough to be killed in the middle of."""
    time.sleep(1.0)
    return bmr_exact.run(config)


def test_a_worker_killed_mid_task_loses_only_that_task(client, tmp_path):
    configs = [dict(seed=1, block=b, block_size=5) for b in range(4)]
    local = run_grid(configs, bmr_exact.run, tmp_path / "local.csv")
    killed = []

    def kill_a_busy_worker():
        pids = client.run(os.getpid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                time.sleep(0.3)  # inside its task (a 1 s sleep, then the block)
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    table = run_grid(configs, slow_block, tmp_path / "dask.csv", client=client, desc="blocks")
    killer.join()
    assert killed, "no worker was busy to kill"
    assert sorted(table["config_key"].unique()) == sorted(config_key(c) for c in configs)  # every one, once
    assert table.groupby("config_key")["model"].nunique().eq(5).all()  # ... with its rows once each
    same_table(table, local)
    resumed = run_grid(configs, lambda c: pytest.fail("finished configurations rerun"), tmp_path / "dask.csv")
    same_table(resumed, local)


def test_one_gpu_per_worker(monkeypatch, tmp_path):
    """Workers of a local cluster each see one GPU of CUDA_VISIBLE_DEVICES, the compilation cache and no
    preallocation (no GPU needed: the variables are only read)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert cluster.gpus() == ["3", "5"]
    # GPUs 3 and 5 are fictional: keep Dask's NVML monitor (scheduler here, workers via the environment)
    # from looking them up on a machine that has real GPUs and NVML.
    from distributed.diagnostics import nvml

    monkeypatch.setenv("DASK_DISTRIBUTED__DIAGNOSTICS__NVML", "False")
    monkeypatch.setattr(nvml, "NVML_STATE", nvml.NVMLState.DISABLED_CONFIG)
    with cluster.session(compile_cache_dir=tmp_path / "cache") as client:
        client.wait_for_workers(2)
        env = client.run(lambda: {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE",
                                                                   "JAX_COMPILATION_CACHE_DIR")})
    assert sorted(e["CUDA_VISIBLE_DEVICES"] for e in env.values()) == ["3", "5"]
    assert {e["XLA_PYTHON_CLIENT_PREALLOCATE"] for e in env.values()} == {"false"}
    assert {e["JAX_COMPILATION_CACHE_DIR"] for e in env.values()} == {str((tmp_path / "cache").resolve())}


def test_gpus_without_initialising_jax(monkeypatch):
    for visible, expected in (("", []), ("-1", []), ("0", ["0"]), ("1, 2", ["1", "2"])):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert cluster.gpus() == expected
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PATH", "")  # no nvidia-smi: no GPUs
    assert cluster.gpus() == []
    with pytest.raises(ValueError, match="n_workers"):
        cluster.start(0)

