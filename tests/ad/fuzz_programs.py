"""Random NumPy programs, checked against an independent reference.

A program is a list of steps over a few registers of shape (3, 4): elementwise functions,
broadcasting against reductions, matrix products, sorting, axis moves, and the in-place
writes NumPy code is made of (``r[i] = ...``, ``r[:, 1:] += ...``, writes through views,
``r.sort()``, ``np.add.at``). Its output is a weighted sum of the registers. ``check`` compares
fluxml's value with NumPy's and its gradient (reverse and forward mode) with finite
differences wherever the program is differentiable (at a kink the one-sided slopes disagree,
and the point is skipped).

The short run is ``tests/ad/test_fuzz.py``. The long run, optionally against PyTorch too:

    PYTHONPATH=src python -m tests.ad.fuzz_programs 5000 [SEED]   # finite differences
    PYTHONPATH=src /work/.bench-venv/bin/python -m tests.ad.fuzz_programs 5000 --torch

``SEED`` draws other programs and inputs (by default the programs of seed 12345, each on the
inputs of its own index, as before there was a seed argument).
"""

from __future__ import annotations

import sys

import numpy as np

import fluxml as fl

SHAPE = (3, 4)
REGISTERS = 3

UNARY = {
    "tanh": np.tanh, "sin": np.sin, "exp": lambda a: np.exp(a / 4),
    "log1p": lambda a: np.log1p(a * a), "sqrt": lambda a: np.sqrt(a * a + 1.0),
    "square": np.square, "abs": np.abs, "cos": np.cos, "arctan": np.arctan,
}
BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply,
    "div": lambda a, b: a / (b * b + 1.0), "max": np.maximum, "hypot": np.hypot,
}


def _reduce(name, axis):
    funcs = {"sum": np.sum, "mean": np.mean, "max": np.max, "std": np.std, "prod": np.prod,
             "logsumexp": lambda a, axis, keepdims: fl.logsumexp(a, axis, keepdims)}
    return lambda a: np.broadcast_to(funcs[name](a, axis=axis, keepdims=True), SHAPE) * 1.0


STEPS = []  # (name, arity, apply(regs, i, j, k) -> None), filled below


def step(name):
    def register(fn):
        STEPS.append((name, fn))
        return fn

    return register


for _n, _f in UNARY.items():
    step(f"r[i] = {_n}(r[j])")(lambda r, i, j, k, f=_f: r.__setitem__(i, f(r[j])))
for _n, _f in BINARY.items():
    step(f"r[i] = {_n}(r[j], r[k])")(
        lambda r, i, j, k, f=_f: r.__setitem__(i, f(r[j], r[k])))
for _n in ("sum", "mean", "max", "std", "prod", "logsumexp"):
    for _axis in (0, 1):
        step(f"r[i] = r[j] - {_n}(r[k], axis={_axis}, keepdims)")(
            lambda r, i, j, k, g=_reduce(_n, _axis): r.__setitem__(i, r[j] - g(r[k])))


@step("r[i] = r[j] @ r[k].T @ r[i] / 4")
def _matmul(r, i, j, k):
    r[i] = r[j] @ r[k].T @ r[i] / 4


@step("r[i] = sort(r[j], axis=1)")
def _sort(r, i, j, k):
    r[i] = np.sort(r[j], axis=1)


@step("r[i] = reshape(r[j].T, SHAPE) + flip(roll(r[k], 1))")
def _axes(r, i, j, k):
    r[i] = np.reshape(r[j].T, SHAPE) + np.flip(np.roll(r[k], 1))


@step("r[i] = cumsum(r[j], axis=1) / 4")
def _cumsum(r, i, j, k):
    r[i] = np.cumsum(r[j], axis=1) / 4


@step("r[i] = where(r[j] > 0, r[k], r[i])")
def _where(r, i, j, k):
    r[i] = np.where(r[j] > 0, r[k], r[i])


# in-place writes: registers are mutable arrays, as in NumPy code
@step("r[i][1] = tanh(r[j][0])")
def _setrow(r, i, j, k):
    r[i][1] = np.tanh(r[j][0])


@step("r[i][:, 1:] += r[j][:, :-1] * r[k][:, 1:]")
def _augment(r, i, j, k):
    r[i][:, 1:] += r[j][:, :-1] * r[k][:, 1:]


@step("v = r[i][1:].T; v *= sin(r[j][:2].T)")
def _view(r, i, j, k):
    v = r[i][1:].T
    v *= np.sin(r[j][:2].T)


@step("r[i].sort(axis=0)")
def _sort_in_place(r, i, j, k):
    r[i].sort(axis=0)


@step("np.add.at(r[i], ([0, 0, 2], [1, 1, 3]), r[j][1, :3])")
def _add_at(r, i, j, k):
    np.add.at(r[i], ([0, 0, 2], [1, 1, 3]), r[j][1, :3])


@step("d = einsum('ii->i', r[i][:, :3]); d -= r[j][0, :3] ** 2")
def _diagonal(r, i, j, k):
    d = np.einsum("ii->i", r[i][:, :3])
    d -= r[j][0, :3] ** 2


@step("r[i].real[2] = r[k][2] * 0.5")
def _real(r, i, j, k):
    r[i].real[2] = r[k][2] * 0.5


@step("r[i] = maximum.accumulate(r[j], axis=1) + logaddexp.reduce(r[k], axis=0)")
def _ufunc_methods(r, i, j, k):
    r[i] = np.maximum.accumulate(r[j], axis=1) + np.logaddexp.reduce(r[k], axis=0)


@step("r[i] = select([r[j] > 0.5, r[j] < -0.5], [r[k], r[k] ** 2], r[i])")
def _select(r, i, j, k):
    r[i] = np.select([r[j] > 0.5, r[j] < -0.5], [r[k], r[k] ** 2], r[i])


@step("r[i].partition(1, axis=1)")
def _partition(r, i, j, k):
    r[i].partition(1, axis=1)


@step("r[i] = r[j] - mean(r[k], axis=1, where=mask, keepdims) * std(r[j][:1], axis=0)")
def _masked(r, i, j, k):
    mask = np.array([True, False, True, True])
    r[i] = (r[j] - np.mean(r[k], axis=1, where=mask, keepdims=True)
            * np.std(r[j][:1], axis=0))


@step("c = ones(SHAPE); r[i] = r[j] * c; c[:] = 7 (a plain constant written after use)")
def _constant(r, i, j, k):
    c = np.linspace(0.5, 1.5, 12).reshape(SHAPE)
    r[i] = r[j] * c[::-1] + r[k] * c
    c[:] = 7.0


@step("s = stop_gradient(r[j]); s[0] = 0; r[i] = r[i] * s")
def _stop(r, i, j, k):
    s = fl.stop_gradient(r[j])
    s[0] = 0.0
    r[i] = r[i] * s


# --- more corners: repeated fancy indices, masks, out=, overlapping copies, linear algebra,
# ties that finite differences see as smooth (max(x, x), sorting a repeated row)

@step("r[i][[0, 0, 2]] += r[j][1] (a repeated index adds once, as NumPy's buffered write)")
def _fancy_repeat(r, i, j, k):
    r[i][[0, 0, 2]] += r[j][1]


@step("m = r[j] > 0; r[i][m] = r[k][m] * 2")
def _mask_write(r, i, j, k):
    m = r[j] > 0
    r[i][m] = r[k][m] * 2


@step("copyto(r[i], r[j] * r[k], where=r[k] > 0)")
def _copyto_where(r, i, j, k):
    np.copyto(r[i], r[j] * r[k], where=r[k] > 0)


@step("multiply(r[j], r[k], out=r[i])")
def _out(r, i, j, k):
    np.multiply(r[j], r[k], out=r[i])


@step("r[i][:, 1:] = r[i][:, :-1] (an overlapping copy within one array)")
def _overlap(r, i, j, k):
    r[i][:, 1:] = r[i][:, :-1]


@step("r[i] = solve(A A^T + 3I, r[k]) with A = r[j][:, :3]")
def _solve(r, i, j, k):
    a = r[j][:, :3]
    r[i] = np.linalg.solve(a @ a.T + 3 * np.eye(3), r[k])


@step("r[i] = r[k] * det(A A^T + I) ** 0.25 + inv(A A^T + 2I) @ r[i]")
def _det_inv(r, i, j, k):
    a = r[j][:, :3]
    g = a @ a.T
    r[i] = r[k] * np.linalg.det(g + np.eye(3)) ** 0.25 + np.linalg.inv(g + 2 * np.eye(3)) @ r[i]


@step("r[i] = take_along_axis(r[j], argsort(r[k], axis=1, kind='stable'), axis=1)")
def _take_along(r, i, j, k):
    # stable: ties (after an overlapping copy) have one order; NumPy's default kind orders
    # them as its SIMD sort happens to (AVX-512 here), XLA's compiled sort is stable
    r[i] = np.take_along_axis(r[j], np.argsort(r[k], axis=1, kind="stable"), axis=1)


@step("r[i] = clip(r[j], -0.5, 0.5) + minimum(r[k], 0.3)")
def _clip(r, i, j, k):
    r[i] = np.clip(r[j], -0.5, 0.5) + np.minimum(r[k], 0.3)


@step("r[i] = arctan2(r[j], r[k] ** 2 + 1) + logaddexp(r[j], r[k])")
def _arctan2(r, i, j, k):
    r[i] = np.arctan2(r[j], r[k] ** 2 + 1) + np.logaddexp(r[j], r[k])


@step("r[i] = concatenate([r[j][:, 2:], r[k][:, :2]], axis=1) + diff(r[i], axis=1, prepend=0)")
def _concat_diff(r, i, j, k):
    r[i] = (np.concatenate([r[j][:, 2:], r[k][:, :2]], axis=1)
            + np.diff(r[i], axis=1, prepend=0.0))


@step("r[i] = cbrt(r[j] ** 2 + 1) * expm1(r[k] / 4) + sinh(r[k] / 3)")
def _more_unary(r, i, j, k):
    r[i] = np.cbrt(r[j] ** 2 + 1) * np.expm1(r[k] / 4) + np.sinh(r[k] / 3)


@step("r[i] = cumprod(r[j] / 2, axis=0) + var(r[k], axis=1, ddof=1, keepdims)")
def _cumprod_var(r, i, j, k):
    r[i] = np.cumprod(r[j] / 2, axis=0) + np.var(r[k], axis=1, ddof=1, keepdims=True)


@step("r[i] = norm(r[j], axis=1, keepdims) * tril(r[k]) + (r[j].T @ r[k])[:3] / 4")
def _norm_tril(r, i, j, k):
    r[i] = (np.linalg.norm(r[j], axis=1, keepdims=True) * np.tril(r[k])
            + (r[j].T @ r[k])[:3] / 4)


@step("fill_diagonal(r[i], r[j][0, :3]); r[i] = r[i][[2, 0, 1]][:, [3, 3, 0, 1]]")
def _diag_gather(r, i, j, k):
    np.fill_diagonal(r[i], r[j][0, :3])
    r[i] = r[i][[2, 0, 1]][:, [3, 3, 0, 1]]


@step("r[i] = pad(r[j][:, 1:3], ((0, 0), (1, 1)), mode='reflect') * roll(r[k], -1, axis=0)")
def _pad(r, i, j, k):
    r[i] = np.pad(r[j][:, 1:3], ((0, 0), (1, 1)), mode="reflect") * np.roll(r[k], -1, axis=0)


@step("r[i] = maximum(r[j], r[j] * 1.0) + max(stack([r[k], r[k]]), axis=0) (ties everywhere)")
def _ties(r, i, j, k):
    r[i] = np.maximum(r[j], r[j] * 1.0) + np.max(np.stack([r[k], r[k]]), axis=0)


@step("r[i] = sort(concatenate([r[j], r[j]], axis=1), axis=1)[:, ::2] (sorting repeats)")
def _sort_ties(r, i, j, k):
    r[i] = np.sort(np.concatenate([r[j], r[j]], axis=1), axis=1)[:, ::2]


@step("put(r[i], [0, 5, 5], r[j][0, :3]) (the last write to a repeated index wins)")
def _put(r, i, j, k):
    np.put(r[i], [0, 5, 5], r[j][0, :3])


def random_program(rng, length=6, steps=None):
    """A list of (step index, i, j, k); the indices drawn from ``steps`` (default: all)."""
    if steps is None:
        return [(int(rng.integers(len(STEPS))),)
                + tuple(int(v) for v in rng.integers(REGISTERS, size=3)) for _ in range(length)]
    return [(int(steps[int(rng.integers(len(steps)))]),)
            + tuple(int(v) for v in rng.integers(REGISTERS, size=3)) for _ in range(length)]


def describe(program):
    return "; ".join(STEPS[s][0].replace("[i]", f"[{i}]").replace("[j]", f"[{j}]")
                     .replace("[k]", f"[{k}]") for s, i, j, k in program)


def run(program, x, weights):
    """The program on ``x`` (NumPy arrays, or fluxml tracers: the same code)."""
    regs = [x * 1.0, np.sin(x) + 0.5, x * x - 1.0]
    for s, i, j, k in program:
        STEPS[s][1](regs, i, j, k)
    return sum(np.sum(r * w) for r, w in zip(regs, weights))


def _slope(program, x, weights, v, h):
    return (run(program, x + h * v, weights) - run(program, x, weights)) / h


def check(program, seed=0):
    """None when fluxml agrees with NumPy and finite differences (or the point is a kink),
    else a message."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE)
    weights = [rng.standard_normal(SHAPE) for _ in range(REGISTERS)]
    with np.errstate(all="ignore"):
        expected = run(program, x.copy(), weights)
        if not np.isfinite(expected) or abs(expected) > 1e6:
            return None
        value, (g,) = fl.withgradient(lambda x: run(program, x, weights), x)
        if not np.isclose(value, expected, rtol=1e-10, atol=1e-10):
            return f"value {value} != NumPy's {expected}"
        v = rng.standard_normal(SHAPE)
        _, tangent = fl.jvp(lambda x: run(program, x, weights), (x,), (v,))
        right, left = _slope(program, x, weights, v, 1e-6), -_slope(program, x, weights, v, -1e-6)
    rev = float(np.sum(g * v))
    if not np.isclose(rev, tangent, rtol=1e-8, atol=1e-8):
        return f"reverse {rev} != forward {tangent}"
    scale = 1e-4 * (1 + abs(left) + abs(right))
    if abs(left - right) > scale:
        return None  # a kink (ties of max/sort, |x| at 0): not differentiable here
    if abs(rev - (left + right) / 2) > scale:
        return f"gradient . v = {rev}, finite differences {(left + right) / 2}"
    return None


def check_torch(program, seed=0):
    """The same program on PyTorch tensors (only its out-of-place steps translate); None when
    the gradients agree or the program has a step PyTorch cannot run as written."""
    import torch

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE)
    weights = [rng.standard_normal(SHAPE) for _ in range(REGISTERS)]
    torch_steps = {"tanh": torch.tanh, "sin": torch.sin, "cos": torch.cos,
                   "arctan": torch.arctan, "square": torch.square, "abs": torch.abs,
                   "exp": lambda a: torch.exp(a / 4), "log1p": lambda a: torch.log1p(a * a),
                   "sqrt": lambda a: torch.sqrt(a * a + 1.0), "add": torch.add,
                   "sub": torch.sub, "mul": torch.mul, "div": lambda a, b: a / (b * b + 1.0),
                   "hypot": torch.hypot}
    xt = torch.tensor(x, requires_grad=True)
    regs = [xt * 1.0, torch.sin(xt) + 0.5, xt * xt - 1.0]
    for s, i, j, k in program:
        name = STEPS[s][0]
        op = name.split(" = ")[-1].split("(")[0] if name.startswith("r[i] = ") else None
        if op in UNARY and op in torch_steps:
            regs[i] = torch_steps[op](regs[j])
        elif op in BINARY and op in torch_steps:
            regs[i] = torch_steps[op](regs[j], regs[k])
        else:  # reductions, views and in-place steps are checked against finite differences
            return None
    out = sum(torch.sum(r * torch.tensor(w)) for r, w in zip(regs, weights))
    (gt,) = torch.autograd.grad(out, xt)
    g = fl.gradient(lambda x: run(program, x, weights), x)[0]
    if not np.allclose(g, gt.numpy(), rtol=1e-8, atol=1e-8):
        return f"fluxml {g} != PyTorch {gt.numpy()}"
    return None


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    n = int(args[0]) if args else 1000
    base = int(args[1]) if len(args) > 1 else None
    use_torch = "--torch" in argv
    rng = np.random.default_rng(12345 if base is None else base)
    failures = 0
    for t in range(n):
        program = random_program(rng, int(rng.integers(1, 10)))
        seed = t if base is None else base * 1_000_003 + t
        for checker in (check, check_torch) if use_torch else (check,):
            message = checker(program, seed)
            if message:
                failures += 1
                print(f"seed {seed}: {describe(program)}\n  {message}")
    print(f"{n} programs, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
