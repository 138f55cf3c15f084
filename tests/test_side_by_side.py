"""benchmarks/side_by_side.py reads back the rows the benchmark scripts print."""

import importlib.util
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    sys.path.insert(0, str(BENCH))  # (layers.py imports its neighbour isa.py)
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("width", [40, 52])
@pytest.mark.parametrize("ours, theirs", [(11.16, None), (None, 6.88)])
def test_layer_rows_are_read_back(width, ours, theirs):
    layers, sbs = _load("layers"), _load("side_by_side")
    name = "Conv((3, 3), 64 => 64, pad=1), 16x32x32"
    for label in ("forward", "fwd+bwd"):
        line = layers._row(name, width, label, ours, theirs)
        assert sbs._layer_row(line) == ((name, label), ours or theirs)


def test_step_rows_and_other_lines():
    sbs = _load("side_by_side")
    line = "LSTM T=50 64->128      JAX jit           20.69 ms          1.009614 1.007663"
    assert sbs._step_row(line) == (("LSTM T=50 64->128", "JAX jit"), 20.69)
    assert sbs._step_row("tiny MLP 2-32-32-2     fluxml             309 us   0.5 0.4") == (
        ("tiny MLP 2-32-32-2", "fluxml"), pytest.approx(0.309))
    for other in ("CPU: no AVX-512", "case                   peer                 step",
                  "-" * 40, ""):
        assert sbs._layer_row(other) is None and sbs._step_row(other) is None
