"""Reductions: sum, mean, prod, max/min, var, std, cumulative sums, logsumexp, norm."""

from __future__ import annotations

import numpy as np

from fluxml.ad.define import deflinear, defvjp, function, primitive


def _expand(g, shape, axis, keepdims):
    """Broadcast a reduced cotangent back over the reduced axes."""
    if not keepdims and axis is not None:
        axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
        axes = sorted(a % len(shape) for a in axes)
        for a in axes:
            g = np.expand_dims(g, a)
    elif not keepdims:
        g = np.reshape(g, (1,) * len(shape))
    return np.broadcast_to(g, shape)


SUM = primitive("sum", lambda x, *, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims),
                keeps_inputs=False, keeps_output=False)
defvjp(SUM, lambda g, ans, x, axis, keepdims: _expand(g, x.shape, axis, keepdims))
deflinear(SUM)


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


@function(np.sum)
def sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    if dtype is not None:
        a = a.astype(dtype)
    result = SUM(a, axis=_axis(axis), keepdims=bool(keepdims))
    if initial is not None:
        result = result + initial
    if where is not None:
        raise TypeError("np.sum(..., where=) is not supported on traced arrays; "
                        "use np.sum(np.where(mask, x, 0))")
    return _out(result, out, "np.sum")


def _out(result, out, name):
    if out is None:
        return result
    from fluxml.ad.mutation import assign_out

    assign_out(out, result, name)
    return out
