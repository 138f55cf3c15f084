"""Random expressions mixing float16/float32/float64 arrays, a 0-d array, a NumPy float64
scalar and Python floats (NumPy's weak numbers), computed plainly and under the transforms.

Under NumPy 2's promotion a Python float is weak (``x32 * 0.5`` is float32) and a NumPy
scalar or 0-d array strong (``x32 * np.float64(0.5)`` is float64). A transform traces the
Python floats too; each operation's dtype under it must be the plain program's. ``check``
runs one expression:

- its value and every intermediate dtype (and weakness: the dtype a float16 array gets
  with it) under ``fl.withgradient``, ``fl.jvp``, a gradient of a gradient and
  ``fl.compile`` against the plain program's (under ``fl.checkpoint`` the value, its dtype
  and the gradients);
- the gradient with respect to every input: the argument's type and dtype (a Python float
  gets a Python float), and its values against central finite differences of the same
  expression on float64 copies of the arrays;
- the jvp's tangent against the gradient's dot product with the same tangents.

    PYTHONPATH=src python tests/ad/fuzz_weak.py 2000     (a long run; prints failures)

Under ``fl.compile`` the expression runs twice: its Python floats as static arguments
(constants of the program), and as traced numbers (a class's ``hyperparameters``: inputs
of the program, weak), on the numpy and the xla back end in turn.
"""

from __future__ import annotations

import sys

import numpy as np

import fluxml as fl

try:
    import jax  # noqa: F401  (the xla back end's, optional)

    BACKENDS = ("numpy", "xla")
except ModuleNotFoundError:
    BACKENDS = ("numpy", "numpy")

# the inputs, by name: (kind, dtype)
INPUTS = (("p", float), ("q", float), ("n64", np.float64), ("z0", "0-d"),
          ("a16", np.float16), ("a32", np.float32), ("b32", np.float32), ("a64", np.float64))
CONSTANTS = (2.0, 3, 0.5, -1.5)

# operations: (name, arity, function); Python operators and NumPy calls, whose results on
# Python floats differ (a float, weak; a NumPy float64, strong)
OPS = (
    ("add", 2, lambda a, b: a + b),
    ("sub", 2, lambda a, b: a - b),
    ("mul", 2, lambda a, b: a * b),
    ("div", 2, lambda a, b: a / (b * b + 1.5)),
    ("square", 1, lambda a: a ** 2),
    ("neg", 1, lambda a: -a),
    ("sin", 1, np.sin),
    ("tanh", 1, np.tanh),
    ("np.multiply", 2, np.multiply),
    ("np.add", 2, np.add),
    ("where", 2, lambda a, b: np.where(True, a, b)),
    ("maximum", 2, lambda a, b: np.maximum(a, b - 10.0)),
)


def inputs(rng):
    """One value per input, in (0.3, 1.2) (away from the kinks and overflows)."""
    out = {}
    for name, kind in INPUTS:
        if kind is float:
            out[name] = float(rng.uniform(0.3, 1.2))
        elif kind == "0-d":
            out[name] = np.array(rng.uniform(0.3, 1.2))
        elif kind is np.float64 and name == "n64":
            out[name] = np.float64(rng.uniform(0.3, 1.2))
        else:
            out[name] = rng.uniform(0.3, 1.2, 3).astype(kind)
    return out


def expression(rng, depth=3):
    """A random expression tree: ("in", name), ("const", value) or (op index, children)."""
    if depth == 0 or rng.random() < 0.25:
        if rng.random() < 0.8:
            return ("in", INPUTS[rng.integers(len(INPUTS))][0])
        return ("const", CONSTANTS[rng.integers(len(CONSTANTS))])
    k = int(rng.integers(len(OPS)))
    return (k, [expression(rng, depth - 1) for _ in range(OPS[k][1])])


def describe(e) -> str:
    if e[0] == "in":
        return e[1]
    if e[0] == "const":
        return repr(e[1])
    return f"{OPS[e[0]][0]}({', '.join(map(describe, e[1]))})"


def evaluate(e, env, seen):
    """The expression's value; ``seen`` (unless None) gets each operation's dtype, and the
    dtype a float16 array gets with it (float16 where it is weak or of at most float16's
    precision)."""
    if e[0] == "in":
        return env[e[1]]
    if e[0] == "const":
        return e[1]
    out = OPS[e[0]][2](*(evaluate(c, env, seen) for c in e[1]))
    if seen is not None:
            seen.append((str(out.dtype if hasattr(out, "dtype") else np.asarray(out).dtype),
                     str((out * _HALF).dtype)))
    return out


_HALF = np.ones(1, np.float16)


def program(e, names, seen):
    """``f(*values)``: the sum of the expression (a NumPy scalar of its dtype)."""
    def f(*values):
        return np.sum(evaluate(e, dict(zip(names, values)), seen))
    return f


def _tolerance(dtype):
    return {np.dtype(np.float16): 6e-2, np.dtype(np.float32): 2e-3}.get(np.dtype(dtype), 1e-6)


def _finite_differences(f, values, k, h=1e-6):
    """d f / d values[k] (every entry), on float64 copies of the arrays."""
    wide = [np.asarray(v, np.float64) if isinstance(v, np.ndarray) else v for v in values]
    x = wide[k]
    if not isinstance(x, np.ndarray):  # a Python float or a NumPy float64
        up, down = list(wide), list(wide)
        up[k], down[k] = type(x)(x + h), type(x)(x - h)
        return (float(f(*up)) - float(f(*down))) / (2 * h)
    out = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        up, down = list(wide), list(wide)
        up[k], down[k] = x.copy(), x.copy()
        up[k][i] += h
        down[k][i] -= h
        out[i] = (float(f(*up)) - float(f(*down))) / (2 * h)
    return out


def _same_type(g, x) -> str | None:
    """Is gradient ``g`` of argument ``x`` of ``x``'s type and dtype?"""
    if type(x) is float:
        return None if type(g) is float else f"{type(g).__name__} for a Python float"
    if type(g) is not type(x) or np.asarray(g).dtype != np.asarray(x).dtype \
            or np.shape(g) != np.shape(x):
        return (f"{type(g).__name__} {np.asarray(g).dtype} {np.shape(g)} for a "
                f"{type(x).__name__} {np.asarray(x).dtype} {np.shape(x)}")
    return None


def check(seed: int, compiled: bool = True, backend: str = "numpy") -> str | None:
    """None, or what went wrong for the expression of ``seed`` (``backend``: fl.compile's
    for the Python floats as traced numbers)."""
    rng = np.random.default_rng(seed)
    e = expression(rng)
    env = inputs(rng)
    names, values = list(env), list(env.values())
    plain_seen: list = []
    with np.errstate(all="ignore"):
        y = program(e, names, plain_seen)(*values)
    expect = (plain_seen, str(y.dtype))
    # the least precise dtype computed in sets the tolerance (a float16 step, then float64)
    tol = max([_tolerance(y.dtype)] + [_tolerance(d) for d, _ in plain_seen]
              + [_tolerance(np.asarray(v).dtype) for v in values])
    if y.dtype.kind != "f" or not np.isfinite(y):  # (an integer constant: no derivative)
        return None

    seen: list = []
    value, grads = fl.withgradient(program(e, names, seen), *values, zeros_for_none=True)
    if (seen, str(np.asarray(value).dtype)) != expect:
        return f"gradient: dtypes {seen} -> {np.asarray(value).dtype}, plainly {expect}"
    if value != y:
        return f"gradient: value {value!r}, plainly {y!r}"
    f64 = program(e, names, None)
    for k, (g, x) in enumerate(zip(grads, values)):
        wrong = _same_type(g, x)
        if wrong is not None:
            return f"gradient of {names[k]}: {wrong}"
        fd = _finite_differences(f64, values, k)
        scale = 1 + np.max(np.abs(fd))
        if not np.allclose(np.asarray(g, np.float64), fd, rtol=tol, atol=tol * scale):
            return f"gradient of {names[k]}: {g!r}, finite differences {fd!r}"

    seen = []
    tangents = [type(v)(1.0) if not isinstance(v, np.ndarray) else np.ones_like(v)
                for v in values]
    out, tangent = fl.jvp(program(e, names, seen), values, tangents)
    if (seen, str(np.asarray(out).dtype)) != expect or out != y:
        return f"jvp: dtypes {seen} -> {np.asarray(out).dtype} = {out!r}, plainly {expect}"
    dot = sum(float(np.sum(np.asarray(g, np.float64))) for g in grads)
    if not np.isclose(float(tangent), dot, rtol=tol, atol=tol * (1 + abs(dot))):
        return f"jvp: tangent {tangent!r}, the gradient's sum {dot!r}"

    # fl.checkpoint runs the expression one level down, and again for the backward pass
    block = fl.checkpoint(program(e, names, None))  # (it may not write into a closed-over list)
    value, grads_k = fl.withgradient(block, *values, zeros_for_none=True)
    if np.asarray(value).dtype != y.dtype or value != y:
        return f"fl.checkpoint: {value!r}, plainly {y!r}"
    for k, (g, h) in enumerate(zip(grads_k, grads)):
        if _same_type(g, h) is not None or not np.allclose(
                np.asarray(g, np.float64), np.asarray(h, np.float64), rtol=tol, atol=tol):
            return f"fl.checkpoint: gradient of {names[k]} {g!r}, without it {h!r}"

    seen = []
    p = names.index("p")

    def inner(s):
        return fl.gradient(lambda s: program(e, names, seen)(*values[:p], s,
                                                               *values[p + 1:]), s)[0]
    fl.gradient(lambda s: np.sum(inner(s) if inner(s) is not None else s), values[p])
    if seen[:len(plain_seen)] != plain_seen:
        return f"gradient of a gradient: dtypes {seen[:len(plain_seen)]}, plainly {plain_seen}"

    if compiled:  # the Python floats are constants of the program (static arguments)
        seen = []
        run = fl.compile(lambda *v: fl.withgradient(program(e, names, seen), *v,
                                                    zeros_for_none=True))
        value, grads_c = run(*values)
        traced = [(d, w) for d, w in seen]
        if traced != plain_seen or np.asarray(value).dtype != y.dtype:
            return f"fl.compile: dtypes {traced} -> {np.asarray(value).dtype}, plainly {expect}"
        if not np.isclose(value, y, rtol=tol):
            return f"fl.compile: value {value!r}, plainly {y!r}"
        for k, (g, h) in enumerate(zip(grads_c, grads)):
            if not np.allclose(np.asarray(g, np.float64), np.asarray(h, np.float64),
                               rtol=tol, atol=tol):
                return f"fl.compile: gradient of {names[k]} {g!r}, eagerly {h!r}"
        return _check_traced_numbers(e, names, values, y, plain_seen, grads, backend, tol)
    return None


class _Numbers:
    """The expression's Python floats as a compiled program's traced numbers (inputs, not
    constants: a class's ``hyperparameters``)."""

    hyperparameters = ("values",)

    def __init__(self, values):
        self.values = values


def _check_traced_numbers(e, names, values, y, plain_seen, grads, backend, tol):
    """Under ``fl.compile`` with the Python floats traced numbers: every step's dtype, the
    value's and the gradients' types, dtypes and bits as eager ``fl.withgradient``'s (on
    the xla back end, whose sums add in another order, the values within ``tol``)."""
    floats = [k for k, v in enumerate(values) if type(v) is float]
    seen: list = []

    def step(h, *rest):
        vals = list(rest)
        for j, k in enumerate(floats):  # (ascending: each at its place)
            vals.insert(k, h.values[j])
        return fl.withgradient(program(e, names, seen), *vals, zeros_for_none=True)

    run = fl.compile(step, backend=backend, background=False)
    same = np.array_equal if backend == "numpy" else \
        lambda a, b: np.allclose(a, b, rtol=tol, atol=tol)
    others = [v for k, v in enumerate(values) if k not in floats]
    for call in range(2):  # the trace, then the generated code
        value, grads_c = run(_Numbers(tuple(values[k] for k in floats)), *others)
        if call == 0 and seen[:len(plain_seen)] != plain_seen:
            return f"fl.compile, traced numbers: dtypes {seen}, plainly {plain_seen}"
        if type(value) is not type(y) or np.asarray(value).dtype != y.dtype or \
                not same(value, y):
            return f"fl.compile, traced numbers: value {value!r}, plainly {y!r}"
        for k, (g, h) in enumerate(zip(grads_c, grads)):
            if (type(h) is float) != (type(g) is float) or \
                    np.asarray(g).dtype != np.asarray(h).dtype or not same(g, h):
                return f"fl.compile, traced numbers: gradient of {names[k]} {g!r}, eagerly {h!r}"
    return None


def main(n: int) -> int:
    failures = 0
    for seed in range(n):
        message = check(seed, compiled=seed % 5 == 0, backend=BACKENDS[seed // 5 % 2])
        if message is not None:
            failures += 1
            rng = np.random.default_rng(seed)
            print(f"seed {seed}: {describe(expression(rng))}: {message}")
    print(f"{n} expressions, {failures} failures")
    return failures


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500) > 0)
