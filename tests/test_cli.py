import subprocess
import sys

import pytest

from sparsebnn import cli


def test_list_shows_experiments(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "bmr_exact" in out


def test_unknown_experiment_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "no_such_experiment"])
    assert "unknown experiment" in capsys.readouterr().err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "sparsebnn.cli", "--help"], capture_output=True, text=True, check=True)
    assert "figures" in out.stdout
