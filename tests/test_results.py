import os

import pandas as pd
import pytest

from sparsebnn.results import ResultsStore, config_key, run_grid, versions, write_table


def test_config_key_is_order_independent():
    assert config_key({"a": 1, "b": "x"}) == config_key({"b": "x", "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})


def test_store_resumes_and_records_versions(tmp_path):
    path = tmp_path / "r.csv"
    calls = []

    def run(cfg):
        calls.append(cfg["n"])
        return {"metric": cfg["n"] ** 2}

    configs = [{"n": n} for n in range(3)]
    run_grid(configs, run, path)
    assert calls == [0, 1, 2]
    table = run_grid(configs + [{"n": 3}], run, path)  # resume: only the new config runs
    assert calls == [0, 1, 2, 3]
    assert list(table["metric"]) == [0, 1, 4, 9]
    assert {"jax", "numpyro", "python"} <= set(table.columns)
    assert versions()["jax"] != "absent"
    run_grid(configs, run, path, overwrite=True)
    assert calls[-3:] == [0, 1, 2]


def test_interrupted_run_keeps_finished_rows(tmp_path):
    path = tmp_path / "r.csv"

    def run(cfg):
        if cfg["n"] == 2:
            raise KeyboardInterrupt
        return {"metric": cfg["n"]}

    with pytest.raises(KeyboardInterrupt):
        run_grid([{"n": n} for n in range(4)], run, path)
    assert list(pd.read_csv(path)["n"]) == [0, 1]
    assert ResultsStore(path).done({"n": 1}) and not ResultsStore(path).done({"n": 2})


def test_write_table_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    write_table(pd.DataFrame({"a": [1]}), path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_table(pd.DataFrame({"a": [2]}), path)
    assert list(pd.read_csv(path)["a"]) == [1]  # old table intact
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary left behind
