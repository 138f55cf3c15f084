"""States as flat arrays: a tree state (or parameter tree) is packed into one vector for the
solver and unpacked for the user's function; an array state is used as it is.

>>> import numpy as np
>>> from fluxml.ode.state import Packer
>>> pk = Packer({"x": np.zeros(2), "v": np.ones((1, 2))})
>>> pk.pack({"x": np.zeros(2), "v": np.ones((1, 2))})
array([0., 0., 1., 1.])
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.arrays import library_asarray
from fluxml.ad.core import Tracer, raw
from fluxml.tree import align, flatten, keyed, unflatten


def _is_array(x) -> bool:
    return type(x) is np.ndarray or (type(x) is Tracer and np.ndim(raw(x)) > 0)


class Packer:
    """Packs trees shaped like ``like`` into flat vectors and back (identity for an array)."""

    def __init__(self, like):
        self.identity = _is_array(like)
        if self.identity:
            self.shape = np.shape(raw(like))
            self.dtype = np.result_type(raw(like))
            return
        leaves, self.spec = flatten(like)
        if not leaves:  # (None or a string: NumPy's 'need at least one array to concatenate')
            raise TypeError(f"solve: u0 must be an array or a tree of arrays; got {like!r:.80}")
        self.keyed = keyed(self.spec)  # dicts or objects: f's result is aligned to the spec
        for x in leaves:
            if not np.issubdtype(np.result_type(raw(x)), np.floating):
                raise TypeError(f"solve: every leaf of a tree state must be a float array or "
                                f"number; got {type(raw(x)).__name__} "
                                f"{np.result_type(raw(x))}")
        self.shapes = [np.shape(raw(x)) for x in leaves]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.size = sum(self.sizes)

    def pack(self, tree):
        if self.identity:
            if isinstance(tree, (int, float, complex)) and self.shape == ():
                return np.asarray(tree, self.dtype)  # f's number for a 0-d state (it failed)
            return tree
        leaves, _ = flatten(align(tree, self.spec, "solve: f's result") if self.keyed else tree)
        if len(leaves) != len(self.shapes):
            raise ValueError(f"solve: f returned a tree with {len(leaves)} leaves for a state "
                             f"with {len(self.shapes)}; return a tree shaped like u")
        parts = [np.reshape(x, (-1,)) if np.ndim(raw(x)) != 1 else x for x in leaves]
        if len(parts) == 1:  # (float32 kept: it was made float64, unlike two leaves' state)
            x = parts[0]
            if type(x) is Tracer:
                return x
            x = library_asarray(x)  # (a CuPy state stays CuPy's)
            return x if x.dtype.kind in "fc" else x.astype(float)
        return np.concatenate(parts)

    def unpack(self, y):
        if self.identity:
            return y
        out, i = [], 0
        for shape, n in zip(self.shapes, self.sizes):
            part = y[i:i + n]
            out.append(np.reshape(part, shape) if shape != (n,) else part)
            i += n
        return unflatten(self.spec, out)

    def unpack_stacked(self, ys):
        """A tree whose leaves are stacked along a new first axis, from ``(T, size)``."""
        if self.identity:
            return ys
        out, i = [], 0
        for shape, n in zip(self.shapes, self.sizes):
            out.append(np.reshape(ys[:, i:i + n], (ys.shape[0],) + shape))
            i += n
        return unflatten(self.spec, out)
