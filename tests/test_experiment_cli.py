"""The experiments' command lines (``experiments/_cli.py``): numbers in range, ``--quick`` that never overrides
what was typed, datasets that work, ``--seeds``, one-line errors and Ctrl-C, the compilation cache."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import pandas as pd
import pytest

from experiments import _cli, compare, registry, spam, stochastic_bmr, svi_sparsity
from experiments import all as reproduce

ROOT = Path(__file__).resolve().parent.parent
NAMES = [e.name for e in registry.EXPERIMENTS]


class Parsed(Exception):
    """Raised instead of parsing: carries the experiment's parser."""


def parser_of(name: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser experiment ``name`` builds (its ``main`` stopped at :func:`experiments._cli.parse`)."""
    module = importlib.import_module(f"experiments.{name}")

    def capture(p, argv, **kw):
        raise Parsed(p, kw)

    monkeypatch.setattr(module, "parse", capture)
    with pytest.raises(Parsed) as got:
        module.main([])
    return got.value.args[0]


# ----------------------------------------------------------------------------- numbers in range

RANGES = [
    (_cli.positive_int, ["1", "7"], ["0", "-3", "1.5", "x"]),
    (_cli.nonnegative_int, ["0", "5"], ["-5", "2.0"]),
    (_cli.positive_float, ["1e-3", "2"], ["0", "-1", "inf", "nan", "x"]),
    (_cli.nonnegative_float, ["0", "0.5"], ["-1e-9", "inf", "nan"]),
    (_cli.fraction, ["0.5", "1e-6"], ["0", "1", "1.5", "nan"]),
    (_cli.unit_interval, ["0", "1", "0.3"], ["-0.1", "1.01", "nan"]),
]


@pytest.mark.parametrize("kind,good,bad", RANGES, ids=lambda v: getattr(v, "__name__", ""))
def test_range_types_accept_and_reject(kind, good, bad):
    for text in good:
        kind(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"must be {kind.__name__}")):
            kind(text)


CHECKED = {t for t, _, _ in RANGES}


@pytest.mark.parametrize("name", NAMES)
def test_every_numeric_option_is_range_checked(name, monkeypatch):
    """No raw int/float option and no numeric default parsed as text, in every experiment."""
    for action in parser_of(name, monkeypatch)._actions:
        numeric = isinstance(action.default, (int, float)) and not isinstance(action.default, bool)
        assert action.type not in (int, float), (name, action.option_strings)
        if numeric and action.nargs != 0:  # a checked type, or one made with _cli.number ("a ...", "an ...")
            assert action.type in CHECKED or action.type.__name__.startswith(("a ", "an ")), (name, action.option_strings)


def test_out_of_range_is_a_named_error_in_one_line(capsys):
    for argv, said in ((["--steps", "0"], "argument --steps: must be a positive integer; got 0"),
                       (["--samples", "-3"], "argument --samples: must be a positive integer"),
                       (["--opd-sparsity", "1"], "argument --opd-sparsity: must be a fraction in (0, 1)")):
        with pytest.raises(SystemExit) as exit_:
            compare.main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and said in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit):
        svi_sparsity.main(["--warmup", "-5"])
    assert "argument --warmup: must be an integer >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a warm-up longer than the run would leave the KL weight below 1 throughout
        svi_sparsity.main(["--quick", "--steps", "10", "--warmup", "20", "--prior", "ss-ig"])
    assert "--warmup 20 is longer than the 10 steps" in capsys.readouterr().err


# ----------------------------------------------------------------------------- --quick fills, never overrides


def test_parse_fills_only_unset_options(tmp_path):
    p = _cli.parser("x", "x", seeds=True)
    p.add_argument("--steps", type=_cli.positive_int, default=None)
    p.add_argument("--hidden", type=_cli.positive_int, nargs="+", default=None)
    quick, full = dict(steps=100, hidden=(16, 16)), dict(steps=4000, hidden=(100, 100))
    args = _cli.parse(p, ["--quick", "--steps", "500", "--out", str(tmp_path)], quick=quick, full=full)
    assert (args.steps, args.hidden, args.seeds) == (500, [16, 16], [0])
    args = _cli.parse(p, ["--hidden", "8", "--seeds", "3", "1", "3", "--out", str(tmp_path)], quick=quick, full=full)
    assert (args.steps, args.hidden, args.seeds) == (4000, [8], [3, 1])
    assert args.compile_cache == tmp_path / ".jax_cache"
    assert _cli.parse(p, ["--compile-cache", "none", "--out", str(tmp_path)]).compile_cache is None


def fake_compare_run(config, out):
    """compare.run without the fit: one row per configuration."""
    return [{"pruning": "none", "accuracy": 0.5 + 0.1 * config["seed"], "nll": 1.0, "wall_time_s": 0.0}]


def test_explicit_values_survive_quick_and_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "run", fake_compare_run)
    table = compare.main(["--quick", "--steps", "500", "--samples", "2", "--methods", "map", "ss-ig",
                          "--seeds", "0", "1", "--out", str(tmp_path)])
    saved = pd.read_csv(tmp_path / "compare.csv")
    assert len(saved) == len(table) == 4  # 2 methods x 2 seeds, each once
    assert set(saved["steps"]) == {500} and set(saved["samples"]) == {2}
    assert set(saved["hidden"]) == {"[16, 16]"} and set(saved["net"]) == {"mlp"}  # what --quick left unset
    assert sorted(saved["seed"]) == [0, 0, 1, 1] and saved["config_key"].is_unique
    summary = compare.summary_table(saved)  # means over the seeds
    assert list(summary["seeds"]) == [2, 2] and summary["accuracy"].tolist() == pytest.approx([0.55, 0.55])


# ----------------------------------------------------------------------------- every listed dataset starts


class Started(Exception):
    """The first configuration reached its fit, with a network that takes the data."""


def fake_fit(net, _, data, *args, **kwargs):
    """Stands in for map_train / laplace: the network's output on two examples has one logit per class."""
    x = data[0][:2]
    out = jax.eval_shape(net.apply, jax.eval_shape(net.init, jax.random.key(0)), x)
    raise Started(out.shape)


# experiment -> (fit function its first configuration calls, arguments choosing that configuration, image net)
STARTS = {
    compare: ("map_train", ["--methods", "map"], ["--nets", "lenet"]),
    svi_sparsity: ("map_train", ["--prior", "map"], ["--net", "lenet5"]),
    stochastic_bmr: ("map_train", ["--methods", "flat-map"], ["--net", "lenet"]),
    spam: ("laplace", ["--structures", "map"], ["--net", "lenet"]),
}


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory):
    """Tiny MNIST / Fashion-MNIST / CIFAR-10 files of the real image sizes."""
    from test_data import write_cifar, write_mnist

    folder = tmp_path_factory.mktemp("data")
    write_mnist(folder / "mnist", size=(28, 28))
    write_mnist(folder / "fashion_mnist", size=(28, 28))
    write_cifar(folder / "cifar-10-batches-py")
    return folder


@pytest.mark.parametrize("experiment", list(STARTS), ids=lambda m: m.__name__.split(".")[-1])
def test_every_listed_dataset_starts(experiment, data_folder, tmp_path, monkeypatch, capsys):
    fit, choose, image_net = STARTS[experiment]
    listed = next(a for a in parser_of(experiment.__name__.split(".")[-1], monkeypatch)._actions
                  if a.dest == "dataset").choices
    assert set(listed) == set(_cli.CLASSIFICATION_DATASETS)
    monkeypatch.undo()
    monkeypatch.setenv("SPARSEBNN_DATA", str(data_folder))
    monkeypatch.setattr(experiment, fit, fake_fit)
    base = ["--quick", "--batch-size", "4", "--out", str(tmp_path), *choose]
    for dataset in listed:
        nets_ = [[]] + ([image_net] if dataset in ("digits", "mnist") else [])  # the mlp; an image net
        for net in nets_:
            with pytest.raises(Started) as started:
                experiment.main([*base, "--dataset", dataset, *net])
            assert started.value.args[0] == (2, 2 if dataset == "breast_cancer" else 10), (dataset, net)
    with pytest.raises(SystemExit):  # image nets on data without images: an error before any work
        experiment.main([*base, "--dataset", "breast_cancer", *image_net])
    assert "has no images" in capsys.readouterr().err


def test_datasets_are_loaded_once_read_only_and_per_data_folder(data_folder, tmp_path, monkeypatch):
    assert _cli.load_data("breast_cancer") is _cli.load_data("breast_cancer", flat=False)  # no images: one load
    assert not _cli.load_data("breast_cancer").train.x.flags.writeable
    monkeypatch.setenv("SPARSEBNN_DATA", str(data_folder))
    assert _cli.load_data("mnist").train.x.shape[1:] == (784,)
    monkeypatch.setenv("SPARSEBNN_DATA", str(tmp_path))  # another data folder: not the earlier load
    with pytest.raises(FileNotFoundError, match="mnist"):
        _cli.load_data("mnist")


# ----------------------------------------------------------------------------- seeds and experiments.all


@pytest.mark.parametrize("name", NAMES)
def test_registry_says_which_experiments_take_seeds_and_an_executor(name, monkeypatch, tmp_path):
    exp, p = registry.BY_NAME[name], parser_of(name, monkeypatch)
    options = {o for a in p._actions for o in a.option_strings}
    assert ("--seeds" in options and "--seed" not in options) == exp.seeds
    assert exp.seeds or "--seed" in options
    assert {"--executor", "--scheduler"} <= options if exp.distributed else "--executor" not in options
    assert {"--verbose", "--compile-cache", "--out", "--quick"} <= options
    for scale in ("cpu", "full"):  # every argument list experiments.all passes parses
        for args in registry.invocations(exp, scale, quick=False) + registry.invocations(exp, scale, quick=True):
            extra = [] if exp.seeds else ["--seed", "3"]
            extra += ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:1"] if exp.distributed else []
            p.parse_args([*args, *extra, "--out", str(tmp_path), "--compile-cache", "none"])


def test_all_passes_seed_and_executor_only_where_taken(tmp_path, monkeypatch):
    calls = {}

    def record(exp, argv, out, verbose):
        calls[exp.name] = argv
        return 0

    monkeypatch.setattr(reproduce, "run_experiment", record)
    chosen = [registry.BY_NAME[n] for n in ("compare", "bmr_exact", "bench_nuts")]
    reproduce.run_all(chosen, out=tmp_path, quick=True, seed=4, compile_cache="none",
                      executor=["--executor", "dask", "--scheduler", "tcp://h:1"])
    assert "--seed" not in calls["compare"] and calls["bmr_exact"][calls["bmr_exact"].index("--seed") + 1] == "4"
    assert "--executor" in calls["compare"] and "--executor" in calls["bmr_exact"]
    assert "--executor" not in calls["bench_nuts"] and "--seed" in calls["bench_nuts"]  # benchmarks time alone
    assert all(a[-2:] == ["--compile-cache", "none"] for a in calls.values())


# ----------------------------------------------------------------------------- errors and Ctrl-C as a person sees them


def command(*args, env=None, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_errors_are_one_line_and_verbose_shows_the_traceback(tmp_path, monkeypatch, capsys):
    env = {"SPARSEBNN_DATA": str(tmp_path)}
    run = command("experiments.svi_sparsity", "--quick", "--dataset", "mnist", "--out", str(tmp_path), env=env)
    _, err = run.communicate(timeout=120)
    # one line of ours, no traceback; a GPU backend may log lines of its own to stderr before it
    lines = err.strip().splitlines()
    assert run.returncode == 1 and sum(line.startswith("error:") for line in lines) == 1, err
    assert "Traceback" not in err and (len(lines) == 1 or jax.default_backend() != "cpu"), err
    assert lines[-1].startswith("error: mnist: file 'train-images-idx3-ubyte'") and lines[-1].endswith(
        "(--verbose for the traceback)")
    # the same wrapper (experiments._cli.entry) behind python -m experiments and python -m paper_figures
    from experiments.__main__ import main as experiments_main
    from paper_figures.__main__ import main as figures_main

    monkeypatch.setenv("SPARSEBNN_DATA", str(tmp_path))
    with pytest.raises(SystemExit) as exit_:
        _cli.entry(experiments_main, ["run", "svi_sparsity", "--quick", "--dataset", "cifar10", "--verbose",
                                      "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "Traceback (most recent call last)" in err and "FileNotFoundError: cifar10" in err
    with pytest.raises(SystemExit) as exit_:
        _cli.entry(figures_main, ["--results", str(tmp_path / "absent")])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and len(err.strip().splitlines()) == 1 and err.startswith("error: results folder")
    with pytest.raises(SystemExit) as exit_:
        _cli.entry(lambda argv: {}["no such key"], [])
    assert exit_.value.code == 1 and capsys.readouterr().err.startswith("error: KeyError: 'no such key'")


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path):
    run = command("experiments.bmr_exact", "--n-models", "100000", "--out", str(tmp_path), "--compile-cache", "none")
    deadline = time.monotonic() + 120
    while not (tmp_path / "bmr_exact.csv").exists() and time.monotonic() < deadline:  # a block is done: mid-run
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "bmr_exact blocks" not in line]
    assert run.returncode == 130 and lines == [_cli.INTERRUPTED], err[-2000:]
    assert not pd.read_csv(tmp_path / "bmr_exact.csv").empty  # what finished is kept
