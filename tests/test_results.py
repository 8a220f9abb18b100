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


# ----------------------------------------------------------------------------- overwrite, concurrency, kills, modes


def _grid_writer(path, tag, n, pause, log=None, reps=2, slow_disk=0.0):
    """A child process: ``run_grid`` over configurations ``(tag, i)``; log each finished config.

    ``slow_disk``: seconds each CSV write lingers before returning (the temporary file exists),
    so that kills land in the middle of writes.
    """
    import random
    import time

    rng = random.Random(f"{tag}{os.getpid()}")
    if slow_disk:
        to_csv = pd.DataFrame.to_csv

        def lingering(self, *a, **k):
            out = to_csv(self, *a, **k)
            time.sleep(slow_disk)
            return out

        pd.DataFrame.to_csv = lingering

    def run(cfg):
        time.sleep(rng.uniform(0, pause))
        return [{"metric": cfg["i"] * 1000 + r, "rep": r} for r in range(reps)]  # several rows per configuration

    configs = [{"tag": tag, "i": i} for i in range(n)]
    if log is None:
        run_grid(configs, run, path)
        return
    store = ResultsStore(path)
    for cfg in configs:
        if not store.done(cfg):
            store.add(cfg, run(cfg))
            with open(log, "a") as fh:  # appended only once the row is in the table
                fh.write(config_key(cfg) + "\n")


def _fork():
    import multiprocessing

    return multiprocessing.get_context("fork")


def _only_table(folder, name="r.csv"):
    return sorted(p.name for p in folder.iterdir()) == [name]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork of a multi-threaded process: children use no threads
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_concurrent_writers_keep_both_sets_of_rows(tmp_path):
    path = tmp_path / "r.csv"
    ctx = _fork()
    procs = [ctx.Process(target=_grid_writer, args=(path, tag, 15, 0.02)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    table = pd.read_csv(path)
    assert len(table) == 2 * 15 * 2
    assert sorted(table.groupby("tag")["i"].nunique().items()) == [("a", 15), ("b", 15)]
    assert _only_table(tmp_path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_writer_killed_repeatedly_then_resumed_loses_and_duplicates_nothing(tmp_path):
    import random
    import signal
    import time

    path, log, n, reps = tmp_path / "out" / "r.csv", tmp_path / "finished.log", 40, 50
    ctx, rng, orphans = _fork(), random.Random(0), 0
    for round in range(5):
        p = ctx.Process(target=_grid_writer, args=(path, "k", n, 0.002, log, reps, 0.02))
        p.start()
        if round % 2:  # at a random moment
            time.sleep(rng.uniform(0.05, 0.3))
        else:  # in the middle of writing the table
            t0 = time.monotonic()
            while not any(f.name.endswith(".tmp") for f in path.parent.glob(".*")) and time.monotonic() < t0 + 10:
                time.sleep(0.001)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        orphans += len([f for f in path.parent.glob(".*.tmp")]) if path.parent.exists() else 0
        finished = set(log.read_text().splitlines()) if log.exists() else set()
        if path.exists():  # every logged configuration is in the table, each exactly once per row
            table = pd.read_csv(path)
            assert finished <= set(table["config_key"])
            assert not table.duplicated(["config_key", "rep"]).any()
    calls = []
    table = run_grid([{"tag": "k", "i": i} for i in range(n)],
                     lambda c: calls.append(c) or [{"metric": c["i"] * 1000 + r, "rep": r} for r in range(reps)], path)
    assert len(finished) > 0 and len(calls) < n  # the kills interrupted a run that had made progress
    assert orphans > 0  # and some landed in the middle of a write
    table = pd.read_csv(path)
    assert len(table) == reps * n and not table.duplicated(["config_key", "rep"]).any()
    assert sorted(table["i"].unique()) == list(range(n))
    assert list(table["metric"]) == [i * 1000 + r for i, r in zip(table["i"], table["rep"])]
    assert _only_table(path.parent)  # no stray temporaries or lock files


def test_overwrite_replaces_rows_only_as_they_finish(tmp_path):
    path = tmp_path / "r.csv"
    configs = [{"n": n} for n in range(4)]
    run_grid(configs, lambda c: {"metric": c["n"]}, path)

    def rerun(cfg):
        if cfg["n"] == 2:
            raise KeyboardInterrupt
        return {"metric": 100 + cfg["n"]}

    with pytest.raises(KeyboardInterrupt):
        run_grid(configs, rerun, path, overwrite=True)
    table = pd.read_csv(path).sort_values("n")
    assert list(table["n"]) == [0, 1, 2, 3]  # nothing lost, nothing duplicated
    assert list(table["metric"]) == [100, 101, 2, 3]  # replaced rows are new, the rest kept
    table = run_grid(configs, lambda c: {"metric": 100 + c["n"]}, path, overwrite=True)
    assert sorted(pd.read_csv(path)["metric"]) == [100, 101, 102, 103]


def test_add_of_a_finished_configuration_replaces_its_rows(tmp_path):
    # a retried task (same configuration, e.g. after its worker was killed) never duplicates rows
    store = ResultsStore(tmp_path / "r.csv")
    store.add({"n": 1}, [{"rep": 0, "m": 1.0}, {"rep": 1, "m": 2.0}])
    ResultsStore(tmp_path / "r.csv").add({"n": 1}, [{"rep": 0, "m": 3.0}, {"rep": 1, "m": 4.0}])
    assert list(pd.read_csv(tmp_path / "r.csv")["m"]) == [3.0, 4.0]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_table_mode_follows_the_umask_and_existing_mode_is_kept(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = tmp_path / "r.csv"
        ResultsStore(path).add({"n": 0}, {"m": 0})
        assert (path.stat().st_mode & 0o777) == 0o666 & ~umask
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
        assert ((tmp_path / "t.csv").stat().st_mode & 0o777) == 0o666 & ~umask
        os.chmod(path, 0o604)
        ResultsStore(path).add({"n": 1}, {"m": 1})
        assert (path.stat().st_mode & 0o777) == 0o604
    finally:
        os.umask(old)


def test_stale_temporaries_are_removed_and_others_kept(tmp_path):
    path = tmp_path / "r.csv"
    stale = [tmp_path / ".r.csv.ab_c12yz.tmp", tmp_path / ".r.csv.0123abcd.tmp"]  # a killed writer's
    others = [tmp_path / ".r.csv.bak.0123abcd.tmp", tmp_path / ".other.csv.0123abcd.tmp", tmp_path / "notes.tmp"]
    for p in stale + others:
        p.write_text("x")
    ResultsStore(path).add({"n": 0}, {"m": 0})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["r.csv", *(p.name for p in others)])


def test_malformed_table_names_the_file_and_what_to_do(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('a,b\n1,"2\n3,4,5,6\n')
    with pytest.raises(ValueError, match=rf"(?s){path.name}.*(delete|move)"):
        ResultsStore(path)
    path.write_bytes(b"\x00\xff\xfe garbage")
    with pytest.raises(ValueError, match=rf"(?s){path.name}.*(delete|move)"):
        run_grid([{"n": 0}], lambda c: {"m": 0}, path)
    path.write_text("a,b\n1,2\n")  # a table, but not one a ResultsStore wrote
    with pytest.raises(ValueError, match="config_key"):
        ResultsStore(path)


# ----------------------------------------------------------------------------- checks before work


@pytest.mark.parametrize("where", ["file", "below_file", "read_only"])
def test_unwritable_output_fails_before_the_first_configuration(tmp_path, where):
    from experiments._cli import parser

    (tmp_path / "file").write_text("x")
    if where == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        (tmp_path / "ro").mkdir(mode=0o555)
    folder = {"file": tmp_path / "file", "below_file": tmp_path / "file" / "sub", "read_only": tmp_path / "ro"}[where]
    calls = []
    with pytest.raises(ValueError, match=f"(?s)cannot write.*{folder.name}"):
        run_grid([{"n": 0}], lambda c: calls.append(c) or {"m": 0}, folder / "r.csv")
    assert calls == []
    with pytest.raises(SystemExit):
        parser("x", "test").parse_args(["--out", str(folder)])


def test_mark_collapsed_against_map_of_the_same_seed_and_collapse_note():
    import numpy as np

    from sparsebnn.results import collapse_note, mark_collapsed

    t = pd.DataFrame(dict(net="mlp", method=["map", "x", "x", "y", "map"], seed=[0, 0, 1, 0, 1],
                          accuracy=[0.97, 0.2, 0.5, np.nan, 0.6], n=360.0, n_classes=10.0,
                          collapsed=[False, np.nan, False, True, False],
                          collapse_reason=[np.nan, np.nan, np.nan, "pruned every node of dense_0", np.nan]))
    m = mark_collapsed(t)
    assert list(m["collapsed"]) == [False, True, False, True, False]
    assert m.loc[1, "collapse_reason"] == "lost 89% of the reference's margin over chance (accuracy 0.200 vs 0.970)"
    assert m.loc[2, "collapse_reason"] == ""  # seed 1's MAP is 0.6: 0.5 keeps 80 % of its margin
    assert m.loc[3, "collapse_reason"] == "pruned every node of dense_0"  # the row's own reason stays
    notes = collapse_note(m, ["method"]).set_index("method")["collapsed"]
    assert notes.to_dict() == {"map": "", "x": "1/2: " + m.loc[1, "collapse_reason"], "y": "1/1: pruned every node of dense_0"}
    regression = pd.DataFrame(dict(method=["map"], rmse=[0.1]))
    assert mark_collapsed(regression) is regression
