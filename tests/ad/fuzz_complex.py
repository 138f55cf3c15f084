"""A fuzzer of random programs through complex intermediates, with a real loss.

Each program starts from a real vector ``x`` and a complex vector ``z`` and applies a random
sequence of operations (holomorphic ones, conj/real/imag/abs/angle, FFTs, products with
complex matrices, solves ...), then reduces to a real number. Its gradient is checked against
central finite differences in float64 (``df/dx - i df/dy`` for the complex input), and, when
JAX is importable, against ``jax.grad`` (the same convention), both written from one program
text for ``xp`` = NumPy or ``jax.numpy``. The suite runs a short form
(``tests/ad/test_complex_fuzz.py``); a long run::

    PYTHONPATH=src:. /work/.bench-venv/bin/python -m tests.ad.fuzz_complex --programs 2000 --jax
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import fluxml as fl

N = 6


def _ops(rng):
    """The operations, each ``(arity, make)``: ``make(rng)`` draws its constants and returns
    ``op(xp, *values)``. Constants keep values moderate and away from branch cuts."""
    def const(shape=()):
        return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)

    def matrix():
        return 0.4 * const((N, N))

    def unary(fn):
        return 1, fn

    return {
        "scale": unary(lambda: (lambda c: lambda xp, v: v * c)(const())),
        "scale_real": unary(lambda: (lambda c: lambda xp, v: v * c)(rng.standard_normal())),
        "exp": unary(lambda: lambda xp, v: xp.exp(0.3 * v)),
        "exp_i": unary(lambda: lambda xp, v: xp.exp(0.5j * v)),
        "sin": unary(lambda: lambda xp, v: xp.sin(0.5 * v)),
        "cos": unary(lambda: lambda xp, v: xp.cos(0.5 * v)),
        "tanh": unary(lambda: lambda xp, v: xp.tanh(0.3 * v)),
        "square": unary(lambda: lambda xp, v: 0.3 * v * v),
        "sqrt": unary(lambda: lambda xp, v: xp.sqrt(v + 5.0)),
        "log": unary(lambda: lambda xp, v: xp.log(v + 5.0)),
        "conj": unary(lambda: lambda xp, v: xp.conj(v)),
        "real": unary(lambda: lambda xp, v: xp.real(v)),
        "imag": unary(lambda: lambda xp, v: xp.imag(v)),
        "abs": unary(lambda: (lambda c: lambda xp, v: xp.abs(v + c))(3.0 + const())),
        "angle": unary(lambda: lambda xp, v: xp.angle(v + 4.0)),
        "damp": unary(lambda: lambda xp, v: v / (2.0 + xp.abs(v) ** 2)),
        "matvec": unary(lambda: (lambda a: lambda xp, v: a @ v)(matrix())),
        "einsum": unary(lambda: (lambda a: lambda xp, v: xp.einsum("ij,j->i", a, v))(matrix())),
        "solve": unary(lambda: (lambda a: lambda xp, v: xp.linalg.solve(a, v))(
            matrix() + 3.0 * np.eye(N))),
        "fft": unary(lambda: lambda xp, v: xp.fft.fft(v, norm="ortho")),
        "ifft": unary(lambda: lambda xp, v: xp.fft.ifft(v) * 2.0),
        "rfft_irfft": unary(lambda: (lambda c: lambda xp, v: xp.fft.irfft(
            xp.fft.rfft(xp.real(v)) * c, n=N))(const(N // 2 + 1))),
        "irfft": unary(lambda: lambda xp, v: xp.fft.irfft(v[: N // 2 + 1], n=N)),
        "fftshift": unary(lambda: lambda xp, v: xp.fft.fftshift(v)),
        "cumsum": unary(lambda: lambda xp, v: 0.4 * xp.cumsum(v)),
        "roll": unary(lambda: lambda xp, v: xp.roll(v, 2)),
        "reverse": unary(lambda: lambda xp, v: xp.concatenate([v[3:], v[:3]])[::-1]),
        "center": unary(lambda: lambda xp, v: v - xp.mean(v)),
        "outer_sum": unary(lambda: lambda xp, v: xp.sum(xp.outer(v, v), axis=0) * 0.1),
        # decompositions of matrices built from v (Hermitian ones as v v^H + a positive one)
        "qr": unary(lambda: (lambda a, c: lambda xp, v: xp.linalg.qr(
            a + 0.3 * xp.outer(v, c))[0] @ c)(matrix() + 2.0 * np.eye(N), const(N))),
        "svdvals": unary(lambda: (lambda a, c: lambda xp, v: xp.linalg.svd(
            a + 0.3 * xp.outer(v, c), compute_uv=False))(matrix(), const(N))),
        "cholesky": unary(lambda: (lambda h, c: lambda xp, v: xp.linalg.cholesky(
            h + 0.2 * xp.outer(v, xp.conj(v))) @ c)(_hpd(matrix()), const(N))),
        "eigh_projector": unary(lambda: (lambda h, c: lambda xp, v: (lambda w, u: (
            u[:, :3] @ (xp.conj(u[:, :3].T) @ c)) * w[0])(*xp.linalg.eigh(
                h + 0.2 * xp.outer(v, xp.conj(v)))))(_hpd(matrix()), const(N))),
        "add": (2, lambda: lambda xp, a, b: a + b),
        "sub": (2, lambda: lambda xp, a, b: a - b),
        "mul": (2, lambda: lambda xp, a, b: 0.5 * a * b),
        "div": (2, lambda: lambda xp, a, b: a / (2.0 + xp.abs(b) ** 2)),
        "dot": (2, lambda: lambda xp, a, b: a * xp.dot(a, b) * 0.1),
    }


def _hpd(a):
    """A Hermitian positive definite matrix with well separated eigenvalues."""
    return a @ np.conj(a.T) + np.diag(np.arange(1.0, N + 1) * 2.0)


def random_program(seed: int, length: int = 8):
    """A random program ``f(xp, x, z) -> real scalar`` and a text that describes it."""
    rng = np.random.default_rng(seed)
    ops = _ops(rng)
    names = sorted(ops)
    steps = []
    for _ in range(length):
        name = names[rng.integers(len(names))]
        arity, make = ops[name]
        args = [int(rng.integers(2 + len(steps))) for _ in range(arity)]
        steps.append((name, make(), args))
    weights = rng.standard_normal(N) + 1j * rng.standard_normal(N)
    last = (1 + len(steps), int(rng.integers(2 + len(steps))))

    def f(xp, x, z):
        values = [x, z]
        for _, op, args in steps:
            values.append(op(xp, *(values[a] for a in args)))
        a, b = (values[i] for i in last)
        return 0.1 * xp.sum(xp.abs(a) ** 2) + xp.sum(xp.real(a * weights)) + xp.sum(
            xp.imag(b * weights))

    text = "; ".join(f"v{2 + i} = {name}({', '.join(f'v{a}' for a in args)})"
                     for i, (name, _, args) in enumerate(steps))
    return f, text + f"; loss of v{last[0]}, v{last[1]}"


def inputs(seed: int):
    rng = np.random.default_rng(seed + 10_000)
    return rng.standard_normal(N), rng.standard_normal(N) + 1j * rng.standard_normal(N)


def fd_gradient(f, x, z, eps=1e-6):
    """df/dx for the real x, df/dx - i df/dy for the complex z, by central differences."""
    gx = np.zeros(N)
    gz = np.zeros(N, complex)
    for k in range(N):
        e = np.zeros(N)
        e[k] = eps
        gx[k] = (f(x + e, z) - f(x - e, z)) / (2 * eps)
        for step, weight in ((eps, 1.0), (1j * eps, -1j)):
            gz[k] += weight * (f(x, z + step * (e / eps)) - f(x, z - step * (e / eps))) / (
                2 * eps)
    return gx, gz


def check(seed: int, jax_grad=None, rtol=1e-5, atol=1e-7):
    """Check one program: None when it agrees, "" when finite differences are unreliable at
    its point (skipped), else a message describing the mismatch."""
    prog, text = random_program(seed)
    f = lambda x, z: prog(np, x, z)  # noqa: E731
    x, z = inputs(seed)
    gx, gz = fl.gradient(f, x, z, zeros_for_none=True)
    fx, fz = fd_gradient(f, x, z)
    fx2, fz2 = fd_gradient(f, x, z, eps=2e-6)
    if not (np.allclose(fx, fx2, rtol=1e-4, atol=1e-6) and np.allclose(fz, fz2, rtol=1e-4,
                                                                       atol=1e-6)):
        return ""  # finite differences unreliable here (near a branch cut or a kink): skip
    for name, got, want in (("x", gx, fx), ("z", gz, fz)):
        if not np.allclose(got, want, rtol=rtol, atol=atol):
            return f"seed {seed}: gradient of {name} differs from finite differences\n" \
                   f"  program: {text}\n  fluxml: {got}\n  fd:     {want}"
    if jax_grad is not None:
        jx, jz = jax_grad(prog, x, z)
        for name, got, want in (("x", gx, jx), ("z", gz, jz)):
            if not np.allclose(got, want, rtol=1e-9, atol=1e-11):
                return f"seed {seed}: gradient of {name} differs from JAX\n" \
                       f"  program: {text}\n  fluxml: {got}\n  jax:    {want}"
    return None


def _jax_grad():
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def grad(prog, x, z):
        gx, gz = jax.grad(lambda x, z: prog(jnp, x, z), argnums=(0, 1))(x, z)
        return np.asarray(gx), np.asarray(gz)

    return grad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=500)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--jax", action="store_true", help="also compare with jax.grad")
    args = parser.parse_args(argv)
    jax_grad = _jax_grad() if args.jax else None
    failures = skipped = 0
    for seed in range(args.start, args.start + args.programs):
        message = check(seed, jax_grad)
        skipped += message == ""
        if message:
            failures += 1
            print(message)
    print(f"{args.programs} programs, {failures} failures, {skipped} skipped"
          + (" (also against JAX)" if args.jax else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
