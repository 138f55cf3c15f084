"""What fl.compile and fl.checkpoint read from the functions' closures
(``compiler.randomness.closed_over``): the values by name, with a cell whose name is not
assigned yet (a later line of the enclosing function) passed over rather than failing."""

import numpy as np

import fluxml as fl
from fluxml.compiler.randomness import closed_over


def _with_an_empty_cell():
    """``f`` closing over ``scale`` (set) and ``later`` (its cell still empty)."""
    scale = 2.0

    def f(x):
        if scale < 0:
            return later
        return np.sin(x) * scale

    return f
    later = None  # noqa: F841 (never reached: the cell stays empty)


def test_closed_over_gives_the_values_by_name_and_passes_over_an_empty_cell():
    rng = np.random.default_rng(0)
    assert closed_over(lambda: rng) == {"rng": rng}
    assert closed_over(_with_an_empty_cell()) == {"scale": 2.0}
    assert closed_over(np.sin) == {} and closed_over(lambda: 1) == {}


def test_compile_and_checkpoint_pass_over_an_empty_closure_cell():
    # fl.compile reads the closure for NumPy generators, and the closure of a function it
    # returns for traced values; fl.checkpoint reads it for the generators it replays
    f, x = _with_an_empty_cell(), np.array([0.5, 1.0])
    np.testing.assert_allclose(fl.compile(f)(x), 2 * np.sin(x))
    y, g = fl.compile(lambda x: (np.cos(x), f))(x)
    np.testing.assert_allclose(y, np.cos(x))
    assert g is f
    grad = fl.gradient(lambda x: np.sum(fl.checkpoint(f)(x)), x)[0]
    np.testing.assert_allclose(grad, 2 * np.cos(x))
