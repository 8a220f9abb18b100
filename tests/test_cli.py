"""The command line: ``python -m experiments`` (list / run / reproduce / figures) and the ``sparsebnn``
launcher, which finds the checkout and hands over to it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import experiments.__main__ as experiments_cli
from experiments import registry
from sparsebnn import cli

ROOT = Path(__file__).resolve().parent.parent


def launcher(*args, cwd, env=None):
    """The ``sparsebnn`` console script as pip writes it (``from sparsebnn.cli import main``), run in ``cwd``
    with this checkout's library importable but not on PYTHONPATH: the launcher must find the checkout."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from sparsebnn.cli import main; sys.exit(main())"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", cli.HOME)} | (env or {})
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_list_shows_experiments(capsys):
    assert experiments_cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "bmr_exact" in out
    names = [line.split()[0] for line in out.splitlines()]
    assert names == [*registry.BY_NAME, *registry.EXTRAS]


def test_unknown_experiment_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        experiments_cli.main(["run", "no_such_experiment"])
    assert exit_.value.code == 2 and "unknown experiment" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        experiments_cli.main(["run"])
    assert "experiment name" in capsys.readouterr().err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "sparsebnn.cli", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert "figures" in out.stdout


def test_run_help_is_the_experiments_own_help(tmp_path):
    """From another folder: the launcher finds the checkout (above the package), ``run X --help`` prints
    experiment X's help, and no runpy warning."""
    out = launcher("run", "bmr_exact", "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "python -m experiments.bmr_exact" in out.stdout and "--n-models" in out.stdout
    assert "Warning" not in out.stderr, out.stderr


def test_launcher_runs_an_experiment_and_passes_its_exit_code_through(tmp_path):
    out = launcher("run", "bmr_exact", "--quick", "--n-models", "25", "--out", "res", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "largest |ΔF - exact|" in out.stdout and (tmp_path / "res" / "bmr_exact.csv").exists()  # results here
    assert "RuntimeWarning" not in out.stderr and "sys.modules" not in out.stderr, out.stderr
    bad = launcher("run", "bmr_exact", "--n-models", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "argument --n-models: must be a positive integer; got 0" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr  # one line, no usage block
    listed = launcher("list", cwd=tmp_path, env={cli.HOME: str(ROOT)})
    assert listed.returncode == 0 and "svi_vs_nuts" in listed.stdout


def test_launcher_without_a_checkout_is_one_clear_error(tmp_path, monkeypatch, capsys):
    out = launcher("list", cwd=tmp_path, env={cli.HOME: str(tmp_path)})
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and cli.HOME in out.stderr
    # installed outside a checkout (site-packages), run from a folder that is none either
    monkeypatch.delenv(cli.HOME, raising=False)
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "sparsebnn" / "cli.py"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no sparsebnn checkout found" in err
    # the current folder is the checkout
    monkeypatch.chdir(ROOT)
    assert cli.checkout() == ROOT


def test_only_the_library_is_installed_and_it_imports_no_checkout_folder():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["sparsebnn*"]
    assert project["tool"]["pytest"]["ini_options"]["pythonpath"] == ["."]
    modules = sorted(f"sparsebnn.{p.stem}" for p in (ROOT / "sparsebnn").glob("*.py") if p.stem != "__init__")
    modules += sorted(f"sparsebnn.{p.parent.name}" for p in (ROOT / "sparsebnn").glob("*/__init__.py"))
    code = (f"import importlib, sys; [importlib.import_module(m) for m in {modules!r}]; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'experiments', 'paper_figures', 'theory'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
