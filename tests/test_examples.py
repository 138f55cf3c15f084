"""The examples run to completion, and fail loudly when their result is wrong."""

import functools
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import fluxml as fl

ROOT = Path(__file__).resolve().parent.parent
PROJECTILE = ROOT / "examples" / "projectile.py"


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_projectile_demo_runs():
    done = subprocess.run([sys.executable, str(PROJECTILE)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "OK"
    assert 10 <= len(lines) <= 30


def test_projectile_demo_fails_when_the_fit_does_not_converge(monkeypatch, capsys):
    demo = _load(PROJECTILE)
    monkeypatch.setattr(demo, "fit", functools.partial(demo.fit, steps=3, every=1))
    assert demo.main() == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize("script, expected", [
    ("heat_equation.py", "recovered kappa 0.80000"),
    ("nbody.py", "final miss"),
])
def test_example_checks_its_derivatives_and_converges(script, expected):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert expected in done.stdout


def test_mlp_example_trains_saves_and_reloads(tmp_path, capsys):
    mlp = _load(ROOT / "examples" / "mlp.py")
    assert mlp.main(epochs=2, out=str(tmp_path), progress=False, target=0.8, plot=False) == 0
    out = capsys.readouterr().out
    assert "reloaded model predicts the same: True" in out and out.rstrip().endswith("OK")
    assert (tmp_path / "mlp.safetensors").is_file()


def test_cnn_demo_trains_saves_and_reloads(tmp_path, capsys):
    demo = _load(ROOT / "examples" / "digits_cnn.py")
    assert demo.main(epochs=2, out=str(tmp_path), progress=False, target=0.9, plot=False) == 0
    out = capsys.readouterr().out
    assert "reloaded model predicts the same: True" in out and out.rstrip().endswith("OK")
    weights = fl.load(tmp_path / "digits-cnn.safetensors")
    assert weights["layers"]["0"]["weight"].shape == (16, 1, 3, 3)


def test_char_lstm_example_learns_and_generates(capsys):
    lstm = _load(ROOT / "examples" / "char_lstm.py")
    assert lstm.main(epochs=1, progress=False, target=3.6, length=8, sample=10) == 0
    out = capsys.readouterr().out
    assert "sample: 'Beautiful is " in out and out.rstrip().endswith("OK")


@pytest.mark.parametrize("script, args", [
    ("spiral_neural_ode.py", ["--steps", "8", "--plot", ""]),
    ("lotka_volterra_fit.py", ["--steps", "2"]),
    ("augmented_neural_ode.py", ["--steps", "3", "--points", "32"]),
])
def test_neural_ode_examples_run_on_a_small_setting(script, args):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "OK"
