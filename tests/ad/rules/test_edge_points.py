"""Every case of the registry-wide harness evaluated again at the edge points of formulas:
all zeros, all entries equal, entries repeated in pairs (singular matrices among them).

Where NumPy's value is finite there, the derivative must be finite and right:

- differentiable in the random direction (one-sided derivatives agree): the forward and
  reverse derivatives agree with finite differences;
- at a kink or a jump (a cone's tip, ties of max/sort, |x| at 0, floor_divide) they are
  finite, agree with each other, and follow the convention written in the rule's file
  (a cone's tip: 0, a subgradient; ties: shared evenly or given to one entry), which that
  family's tests check;
- where the slope is unbounded (sqrt, cbrt, x log x at 0; interp at a repeated xp) the
  derivative is not finite: allowed only where finite differences grow without bound too;
- where no derivative exists (qr without full rank, slogdet of a singular matrix) the rule
  refuses with a DifferentiationError that says so.

Axes of length 1 and empty arrays are checked for the reductions below the sweep.
"""

import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads
from fluxml.tree import flatten, unflatten
from tests.ad.rules.test_registry import CASES


def _edge_points(args):
    def each(fn):
        out = []
        for a in args:
            if np.asarray(a).dtype.kind != "f":
                out.append(a)
            elif isinstance(a, float):
                out.append(float(fn(np.array(a))))
            else:
                out.append(fn(np.array(a, dtype=float)))
        return tuple(out)

    def pairs(a):
        flat = a.ravel().copy()
        flat[1::2] = flat[0::2][:len(flat[1::2])]
        return flat.reshape(a.shape)

    def first(stop):  # every axis cut to its first ``stop`` entries (1: length-1 axes)
        return lambda a: a[(slice(0, stop),) * a.ndim] if a.ndim else a

    return {"zeros": each(np.zeros_like), "equal": each(lambda a: np.full_like(a, 0.5)),
            "pairs": each(pairs), "length-1": each(first(1)), "empty": each(first(0))}


def _floats(y):
    return [np.asarray(v, dtype=float) for v in flatten(y)[0]]


def _finite(y):
    return all(np.all(np.isfinite(v)) for v in _floats(y))


def _along(f, args, vs, mask, u, h):
    """``u . f(args + h v)`` (NumPy only)."""
    moved = [a + h * v if m else a for a, v, m in zip(args, vs, mask)]
    moved = [float(m) if isinstance(a, float) else m for a, m in zip(args, moved)]
    return sum(float(np.sum(ui * yi)) for ui, yi in zip(u, _floats(f(*moved))))


def _slopes(f, args, vs, mask, u):
    """The left, right and (h = 1e-9) right slopes of ``u . f`` along ``vs``."""
    try:
        left, at, right, tiny = (_along(f, args, vs, mask, u, h)
                                 for h in (-1e-6, 0.0, 1e-6, 1e-9))
    except ValueError:  # the output's shape changes nearby (trim_zeros of zeros)
        return np.nan, np.nan, np.nan
    return (at - left) / 1e-6, (right - at) / 1e-6, (tiny - at) / 1e-9


def _close(a, b, tol):
    return abs(a - b) <= tol * (1 + abs(a) + abs(b))


# Eigenvectors and singular vectors at repeated values are not unique (not even continuous):
# the rules drop the degenerate gaps, a convention that is exact for functions of the matrix
# that do not depend on the choice of basis (decompositions.py). There only finiteness and the
# agreement of the two modes are checked. Likewise the unique values of equal entries: their
# number changes with a perturbation that splits them, and the rule's derivative is taken at
# the first occurrence (sets.py).
NOT_UNIQUE = (np.linalg.eigh, np.linalg.eig, np.linalg.svd, np.unique, np.unique_values,
              np.unique_counts, np.unique_inverse, np.unique_all)

# zeros in every run; the other points behind the slow mark
PARAMS = [pytest.param(p.values[0], p.values[1], p.values[2], point, id=f"{p.id}-{point}",
                       marks=() if point == "zeros" else pytest.mark.slow)
          for p in CASES for point in ("zeros", "equal", "pairs", "length-1", "empty")]


@pytest.mark.parametrize("np_func, f, args, point", PARAMS)
def test_edge_point(np_func, f, args, point):
    args = _edge_points(args)[point]
    rng = np.random.default_rng(0)
    with np.errstate(all="ignore"):
        try:
            with warnings.catch_warnings():  # NumPy's own: the mean of an empty slice ...
                warnings.simplefilter("ignore", RuntimeWarning)
                y = f(*(np.copy(a) for a in args))
        except Exception:  # noqa: BLE001  (NumPy itself refuses: an index out of range ...)
            pytest.skip("outside NumPy's domain")
        if not _finite(y):
            pytest.skip("NumPy's value is not finite here")
        mask = [np.asarray(a).dtype.kind == "f" for a in args]
        vs = [rng.standard_normal(np.shape(a)) if m else np.zeros(np.shape(a))
              for a, m in zip(args, mask)]
        vs = [float(v) if isinstance(a, float) else v for a, v in zip(args, vs)]
        u = [rng.standard_normal(np.shape(v)) for v in _floats(y)]
        try:
            value, back = fl.pullback(f, *args)
            leaves, spec = flatten(value)
            grads = back(unflatten(spec, [np.asarray(ui, dtype=np.asarray(o).dtype)
                                         for ui, o in zip(u, leaves)]))
            _, t_out = fl.jvp(f, args, tuple(vs))
        except fl.DifferentiationError as e:  # a documented refusal: no derivative exists
            assert "no derivative" in str(e) or "not unique" in str(e), e
            return
        except np.linalg.LinAlgError:  # a borderline matrix NumPy accepted by round-off
            pytest.skip("numerically singular")
        rev = sum(float(np.sum(g * v)) for g, v, m in zip(grads, vs, mask)
                  if m and g is not None)
        fwd = sum(float(np.sum(ui * ti)) for ui, ti in zip(u, _floats(t_out)))
        ad = [fwd, rev]
        ws = [rng.standard_normal(np.shape(v)) if m else np.zeros(np.shape(v))
              for v, m in zip(vs, mask)]
        both = [v + w for v, w in zip(vs, ws)]
        slopes = [_slopes(f, args, d, mask, u) for d in (vs, ws, both)]
        left, right, tiny = slopes[0]
    if not all(np.isfinite(ad)):
        unbounded = not np.isfinite(tiny) or abs(tiny - right) > 1e-2 * (1 + abs(right))
        assert unbounded, f"non-finite derivative {ad} where the slope is bounded ({right})"
        return
    assert abs(fwd - rev) <= 1e-6 * (1 + abs(fwd)), f"forward {fwd} and reverse {rev} differ"
    # differentiable: in each direction the two one-sided slopes agree, and the slope is
    # linear in the direction (a median of equal entries has equal one-sided slopes along
    # any line, yet is not differentiable: its slope is not additive)
    smooth = all(np.isfinite([a, b, c]).all() and _close(a, b, 1e-4) and _close(c, b, 1e-2)
                 for a, b, c in slopes)
    smooth = smooth and _close(slopes[2][1], slopes[0][1] + slopes[1][1], 1e-4)
    smooth = smooth and np_func not in NOT_UNIQUE
    if smooth:  # differentiable in this direction: the derivative is the slope
        assert abs(fwd - right) <= 1e-4 * (1 + abs(right)), (
            f"derivative {fwd} differs from finite differences {right}")


# --- reductions over axes of length 1 and empty arrays --------------------------------------------

REDUCTIONS = [np.sum, np.mean, np.prod, np.max, np.min, np.var, np.std, np.ptp, np.median,
              np.cumsum, np.cumprod, np.sort, np.linalg.norm,
              lambda x, axis: np.linalg.norm(x, 3, axis=axis),
              lambda x, axis: np.quantile(x, 0.3, axis=axis),
              lambda x, axis: fl.logsumexp(x, axis=axis)]


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("x", [np.array([[0.7, -1.2, 0.4]]), np.zeros((1, 3)),
                               np.full((1, 3), 2.0)])
def test_reductions_over_an_axis_of_length_one(reduce, x):
    f = lambda x: reduce(x, axis=0)  # noqa: E731
    y, back = fl.pullback(f, x)
    g = back(np.ones_like(y))[0]
    assert np.all(np.isfinite(g))
    if reduce in (np.var, np.std, np.ptp):  # constant along an axis of length 1
        np.testing.assert_array_equal(g, np.zeros_like(x))
    if x[0, 0] == 0.7:  # zeros and equal entries are kinks for some (|x| in the norms)
        check_grads(f, x, order=2)


@pytest.mark.parametrize("reduce", [np.sum, np.prod, np.cumsum, np.cumprod, np.sort,
                                    np.linalg.norm, lambda x, axis: np.std(x, axis=axis)])
def test_reductions_of_empty_arrays(reduce):
    x = np.zeros((0, 3))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's own, for the std of nothing
        expected = reduce(x, axis=0)
        y, back = fl.pullback(lambda x: reduce(x, axis=0), x)
        g = back(np.ones_like(y))[0]
    np.testing.assert_array_equal(y, expected)
    assert g is None or g.shape == (0, 3)  # None: no entry, no derivative flows
