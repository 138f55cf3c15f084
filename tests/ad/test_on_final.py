"""``withgradient(..., on_final=)``: each leaf's gradient handed out during the backward pass,
once, as soon as it is final. Checked on random programs (``fuzz_programs``'s steps) whose
registers are the leaves themselves, so that the program writes into traced arguments, reads
them again later, and may hold one array at two positions: the gradient each callback saw,
copied when it was called, must equal, bit for bit, what ``withgradient`` returns at the end
(the same object) and what it returns without ``on_final``."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.ad.sweep import _final_points
from tests.ad import fuzz_programs as fp

# steps beyond fuzz_programs': a leaf read again late, and written in place
EXTRA = [
    ("r[i] = r[i] + w * r[j]", lambda r, w, i, j, k: r.__setitem__(i, r[i] + w * r[j])),
    ("w[1] += r[j][0]", lambda r, w, i, j, k: w[1].__iadd__(r[j][0])),
    ("r[i] *= w", lambda r, w, i, j, k: r[i].__imul__(w)),
]
NSTEPS = len(fp.STEPS) + len(EXTRA)


def _program(program, weights):
    def f(a, b, c, w):
        regs = [a, b, c]  # the leaves themselves: in-place steps write into the arguments
        for s, i, j, k in program:
            if s < len(fp.STEPS):
                fp.STEPS[s][1](regs, i, j, k)
            else:
                EXTRA[s - len(fp.STEPS)][1](regs, w, i, j, k)
        return sum(np.sum(r * v) for r, v in zip(regs, weights)) + np.sum(w * w)
    return f


def check_final(program, seed, shared=False):
    """None when every callback saw the final gradient, else a message."""
    rng = np.random.default_rng(seed)
    a, b, c, w = (rng.standard_normal(fp.SHAPE) for _ in range(4))
    if shared:
        c = a  # one array at two positions: one leaf of the tape, two gradients
    weights = [rng.standard_normal(fp.SHAPE) for _ in range(fp.REGISTERS)]
    f = _program(program, weights)
    seen: dict = {}

    def on_final(k, g):
        if k in seen:
            raise AssertionError(f"leaf {k} handed out twice")
        seen[k] = (g, None if g is None else np.array(g, copy=True))

    with np.errstate(all="ignore"):
        _, expected = fl.withgradient(f, a, b, c, w)  # the caller's arrays stay as they are
        _, got = fl.withgradient(f, a, b, c, w, on_final=on_final)
    if sorted(seen) != [0, 1, 2, 3]:
        return f"callbacks for {sorted(seen)}"
    for k, (g, e) in enumerate(zip(got, expected)):
        given_, copy = seen[k]
        if g is not given_:
            return f"leaf {k}: the returned gradient is not the object handed out"
        if (g is None) != (e is None):
            return f"leaf {k}: {g} vs {e}"
        if g is not None and (copy.tobytes() != g.tobytes() or g.tobytes() != e.tobytes()):
            return f"leaf {k}: changed after it was handed out, or differs: {copy} {g} {e}"
    return None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, NSTEPS - 1), st.integers(0, 2), st.integers(0, 2),
                          st.integers(0, 2)), min_size=1, max_size=8),
       st.integers(0, 2**16), st.booleans())
def test_random_programs_hand_out_final_gradients(program, seed, shared):
    assert check_final(program, seed, shared) is None


def test_every_step_alone():
    for s in range(NSTEPS):
        for shared in (False, True):
            program = [(s, 0, 1, 2), (s, 2, 0, 1)]
            assert check_final(program, s, shared) is None, (s, shared)


def test_a_gradient_is_handed_out_before_the_sweep_ends():
    """The last layer's gradient comes while the first layer's is still being computed."""
    events = []
    x = np.ones((2, 3))

    def f(w1, w2):
        events.append("forward")
        return np.sum(np.tanh(np.tanh(x @ w1) @ w2))

    def on_final(k, g):
        events.append(k)

    w1, w2 = np.full((3, 3), 0.1), np.full((3, 1), 0.2)
    _, (g1, g2) = fl.withgradient(f, w1, w2, on_final=on_final)
    assert events == ["forward", 1, 0]
    np.testing.assert_array_equal(g1, fl.gradient(f, w1, w2)[0])


def test_final_points_follow_the_first_use():
    x = np.ones(3)
    trace = fl.ad.reverse.ReverseTrace()
    a, b = trace.leaf(x), trace.leaf(x)  # tape 0, 1
    t = np.sin(b)  # 2: b's first use
    u = a * t  # 3: a's first use
    _ = np.sum(u * b)  # 4, 5: b used again
    points = _final_points(trace.tape, [0, None, 1, 0], 5)
    # a after node 3, b after node 2; None (no gradient) at once
    assert points == [(6, [1]), (3, [0, 3]), (2, [2])]


def test_structural_gradients_and_zeros_for_none():
    model = {"w": np.array([1.0, 2.0]), "unused": np.ones(2), "n": 3}
    given_: dict = {}
    _, (g,) = fl.withgradient(lambda m: np.sum(m["w"] ** 2), model, zeros_for_none=True,
                              on_final=lambda k, v: given_.setdefault(k, v))
    leaves = fl.tree.flatten((model,), trainable=True)[0]
    assert len(given_) == len(leaves)
    assert g["w"] is given_[[i for i, v in enumerate(leaves) if v is model["w"]][0]]
    np.testing.assert_array_equal(g["unused"], np.zeros(2))
    assert g["n"] is None


def test_output_independent_of_the_inputs():
    given_ = []
    out = fl.withgradient(lambda x: 1.0, np.ones(2), on_final=lambda k, g: given_.append(g))
    assert out == (1.0, (None,)) and given_ == [None]


def test_the_same_array_twice_gets_two_arrays():
    x = np.array([1.0, 2.0])
    given_ = {}
    _, (g1, g2) = fl.withgradient(lambda a, b: np.sum(a * b), x, x,
                                  on_final=lambda k, g: given_.setdefault(k, g))
    assert g1 is given_[0] and g2 is given_[1] and not np.shares_memory(g1, g2)
    np.testing.assert_array_equal(g1, 2 * x)


def test_an_error_in_the_callback_propagates():
    def on_final(k, g):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        fl.withgradient(lambda x: np.sum(x * x), np.ones(2), on_final=on_final)
    assert fl.gradient(lambda x: np.sum(x * x), np.ones(2))[0].tolist() == [2.0, 2.0]


def _inner(x, w, hook):
    """The sum of squares of the gradients as the callback saw them (traced, at any order)."""
    seen = {}
    f = lambda x, w: np.sum(np.sin(x * w) * w) + np.sum(x ** 3)
    if hook:
        _, grads = fl.withgradient(f, x, w, on_final=lambda k, g: seen.setdefault(k, g))
        grads = (seen[0], seen[1])
    else:
        _, grads = fl.withgradient(f, x, w)
    return sum(np.sum(g * g) for g in grads)


def test_higher_order_reverse_and_forward():
    x, w = np.array([0.3, -0.7, 1.1]), np.array([0.5, 2.0, -1.0])
    for hook in (True, False):  # the callback receives tracers of the outer transforms
        got = fl.gradient(lambda x, w: _inner(x, w, hook), x, w)
        np.testing.assert_allclose(got[0], fl.gradient(lambda x, w: _inner(x, w, False),
                                                       x, w)[0], rtol=0, atol=0)
        fl.testing.check_grads(lambda x: _inner(x, w, hook), x, order=2)
    v = np.array([1.0, 0.0, -1.0])
    t_hook = fl.jvp(lambda x: _inner(x, w, True), (x,), (v,))[1]
    t_plain = fl.jvp(lambda x: _inner(x, w, False), (x,), (v,))[1]
    assert t_hook == t_plain


def test_a_leaf_used_only_after_the_output_is_final_at_once():
    """Nodes recorded after the output never run in the sweep: b's gradient is None from
    the start, before a's."""
    order = []

    def f(a, b):
        out = np.sum(np.sin(a))
        _ = b * 2.0  # recorded after the output
        return out

    _, (ga, gb) = fl.withgradient(f, np.ones(2), np.ones(2),
                                  on_final=lambda k, g: order.append((k, g is None)))
    assert order == [(1, True), (0, False)] and gb is None
    np.testing.assert_allclose(ga, np.cos(np.ones(2)))


def test_on_final_inside_compile_is_a_clear_error():
    # the compiled program records the backward pass once: the callback would run at trace
    # time, with tracers, and never when the program runs
    calls = []

    def step(w):
        return fl.withgradient(lambda w: np.sum(np.tanh(w) ** 2), w,
                               on_final=lambda k, g: calls.append(k))

    w0 = np.ones(3)

    def closure(v):  # the leaf is not traced, its gradient is (through v)
        return fl.withgradient(lambda a: np.sum(np.tanh(a * v) ** 2), w0,
                               on_final=lambda k, g: calls.append(k))

    for f in (step, closure):
        with pytest.raises(fl.DifferentiationError, match="on_final cannot be used inside "
                                                          "fl.compile"):
            fl.compile(f)(np.ones(3))
    assert calls == []
    # eager, and the same step compiled without on_final, as before
    value, (g,) = fl.compile(lambda w: fl.withgradient(lambda w: np.sum(w ** 2), w))(w0)
    np.testing.assert_allclose(g, 2 * w0)
