"""Attention: MultiHeadAttention (Flux's, returning the output and the attention scores) and
a Transformer encoder block built from the layers.

Sequences are batch first, ``(N, T, E)``; the attention scores are ``(N, heads, Tq, Tk)``.

>>> import numpy as np, fluxml as fl
>>> mha = fl.MultiHeadAttention(64, nheads=4)
>>> out, scores = mha(np.zeros((2, 10, 64), np.float32))
>>> out.shape, scores.shape
((2, 10, 64), (2, 4, 10, 10))
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from fluxml import init as initialisers
from fluxml import nnlib
from fluxml._checks import flag, positive_int
from fluxml.backend.registry import array_module
from fluxml.layers.basic import Dense
from fluxml.layers.module import LayerError, Module, input_shapes, is_active, need_array
from fluxml.layers.normalise import Dropout, LayerNorm, probability
from fluxml.layers.precision import match_dtype
from fluxml.layers.show import name_of
from fluxml.nnlib import relu
from fluxml.nnlib.attention import check_mask_and_bias


def causal_mask(tq: int, tk: int, xp=np) -> np.ndarray:
    """``(Tq, Tk)`` booleans: query ``i`` may attend to keys ``j <= i``; made by the array
    module ``xp`` (the queries': CuPy's on a GPU)."""
    return xp.tril(xp.ones((tq, tk), dtype=bool))


class MultiHeadAttention(Module):
    """``MultiHeadAttention(embed_dim; nheads=8, kdim=None, vdim=None, qk_dim=None,
    v_dim=None, out_dim=None, bias=False, dropout=0.0, init=glorot_uniform, rng=None)``

    Multi-head scaled dot-product attention (Vaswani et al. 2017), as Flux's:
    ``mha(q, k=q, v=k; bias=None, mask=None)`` with ``q`` ``(N, Tq, embed_dim)``, ``k``
    ``(N, Tk, kdim)``, ``v`` ``(N, Tk, vdim)`` returns ``(output (N, Tq, out_dim),
    scores (N, nheads, Tq, Tk))``; one sequence each, ``(Tq, embed_dim)`` etc., gives
    ``(Tq, out_dim)`` and ``(nheads, Tq, Tk)``. Queries and keys are projected to
    ``qk_dim``, values to ``v_dim`` (each ``embed_dim`` by default, split over the heads),
    then ``out_proj`` maps the joined heads to ``out_dim``. ``mask``: booleans broadcasting
    to the scores (True: may attend) or ``"causal"``; ``bias``: added to the scores.
    ``dropout`` acts on the attention probabilities in training mode.

    >>> import numpy as np, fluxml as fl
    >>> fl.MultiHeadAttention(8, nheads=2)
    MultiHeadAttention(8, nheads=2)  # 264 parameters
    """

    _feature_axis = -1

    def __init__(self, embed_dim: int, *, nheads: int = 8, kdim: int | None = None,
                 vdim: int | None = None, qk_dim: int | None = None, v_dim: int | None = None,
                 out_dim: int | None = None, bias: bool = False, dropout: float = 0.0,
                 init: Callable = initialisers.glorot_uniform, rng=None, dtype=np.float32):
        kdim = embed_dim if kdim is None else kdim
        vdim = kdim if vdim is None else vdim
        qk_dim = embed_dim if qk_dim is None else qk_dim
        v_dim = embed_dim if v_dim is None else v_dim
        out_dim = embed_dim if out_dim is None else out_dim
        nheads, qk_dim, v_dim = (positive_int("MultiHeadAttention", name, n) for name, n in
                                 (("nheads", nheads), ("qk_dim", qk_dim), ("v_dim", v_dim)))
        if qk_dim % nheads or v_dim % nheads:
            raise ValueError(f"MultiHeadAttention: nheads={nheads} must divide qk_dim "
                             f"({qk_dim}) and v_dim ({v_dim})")
        bias = flag("MultiHeadAttention", "bias", bias, none=True)  # (None: none, as Dense)
        kw = dict(init=init, rng=rng, dtype=dtype)
        self.nheads = nheads
        self.q_proj = Dense(embed_dim, qk_dim, bias=bias, **kw)
        self.k_proj = Dense(kdim, qk_dim, bias=bias, **kw)
        self.v_proj = Dense(vdim, v_dim, bias=bias, **kw)
        self.attn_drop = Dropout(dropout)
        self.out_proj = Dense(v_dim, out_dim, **kw)

    def _project(self, dense, x):
        """``dense(x)`` split into heads, ``(N, heads, T, d)``, as one einsum over the weight
        seen as ``(heads, d, in)`` (a reshape-and-transpose of the projection would be a
        view of a view, which the engine turns into a gather)."""
        w, h = dense.weight, self.nheads
        x = match_dtype(dense, x, w.dtype)
        y = np.einsum("nte,hde->nhtd", x, np.reshape(w, (h, w.shape[0] // h, w.shape[1])),
                      optimize=True)
        return y if dense.bias is None else y + np.reshape(dense.bias, (h, 1, -1))

    def _join(self, out):
        """The heads ``(N, heads, Tq, d)`` joined and projected by ``out_proj``."""
        w, h = self.out_proj.weight, self.nheads
        y = np.einsum("nhtd,ohd->nto", out, np.reshape(w, (w.shape[0], h, -1)), optimize=True)
        return y if self.out_proj.bias is None else y + self.out_proj.bias

    def _check(self, q, k, v):
        dims = (self.q_proj.weight.shape[1], self.k_proj.weight.shape[1],
                self.v_proj.weight.shape[1])
        shapes = [tuple(np.shape(a)) for a in (q, k, v)]
        if any(len(s) != 3 or s[-1] != d for s, d in zip(shapes, dims)) or \
                len({s[0] for s in shapes}) != 1 or shapes[1][1] != shapes[2][1]:
            raise LayerError(f"{self._called()} expects q (N, Tq, {dims[0]}), k (N, Tk, "
                             f"{dims[1]}), v (N, Tk, {dims[2]}); got {', '.join(map(str, shapes))}")
        if any(0 in s for s in shapes):  # (the attention kernel's refusal, in this layer's name)
            raise LayerError(f"{self._called()} expects q, k and v with no empty axis; got "
                             f"{', '.join(map(str, shapes))}")
        return shapes

    def _output_shape(self, *shapes):
        q, k, v = (input_shapes(shapes) + (None, None))[:3]
        k = q if k is None else k
        v = k if v is None else v
        if all(len(s) == 2 for s in (q, k, v)):
            out, probs = self._output_shape((1,) + tuple(q), (1,) + tuple(k), (1,) + tuple(v))
            return out[1:], probs[1:]
        (n, tq, _), (_, tk, _), _ = self._check(*(np.broadcast_to(np.float32(0), s)
                                                  for s in (q, k, v)))
        return ((n, tq, self.out_proj.weight.shape[0]), (n, self.nheads, tq, tk))

    def __call__(self, q, k=None, v=None, *, bias=None, mask=None):
        k = q if k is None else k
        v = k if v is None else v
        for a in (q, k, v):
            need_array(self, a)
        if all(np.ndim(a) == 2 for a in (q, k, v)):  # one sequence (T, E), as Flux and PyTorch
            out, probs = self(q[None], k[None], v[None], bias=bias, mask=mask)
            return out[0], probs[0]
        self._check(q, k, v)
        # another precision converted (or integers refused) in the name of this layer
        same_k, same_v = k is q, v is k  # (self-attention: one conversion, not three)
        q = match_dtype(self, q, self.q_proj.weight.dtype)
        k = q if same_k else match_dtype(self, k, self.k_proj.weight.dtype)
        v = k if same_v else match_dtype(self, v, self.v_proj.weight.dtype)
        if isinstance(mask, str):
            if mask != "causal":
                raise LayerError(f"{self._called()}: mask must be boolean or 'causal'; got "
                                 f"{mask!r}")
            mask = causal_mask(q.shape[1], k.shape[1], array_module(q))
        try:  # (here, in this layer's name: the kernel would name itself)
            check_mask_and_bias(mask, bias, (q.shape[0], self.nheads, q.shape[1], k.shape[1]),
                                self._called())
        except (TypeError, ValueError) as err:
            raise LayerError(str(err)) from None
        if is_active(self.attn_drop, q) and self.attn_drop.p > 0:
            return self._composite(q, k, v, bias=bias, mask=mask)
        # the projections as plain products over (N T, features), the heads split and joined
        # inside the attention kernel: no transposes recorded around it
        qp, kp, vp = self.q_proj(q), self.k_proj(k), self.v_proj(v)
        scale = 1 / math.sqrt(qp.shape[-1] // self.nheads)
        out, probs = nnlib.dot_product_attention(qp, kp, vp, mask=mask, bias=bias, scale=scale,
                                                 nheads=self.nheads)
        return self.out_proj(out), probs

    def _composite(self, q, k, v, *, bias=None, mask=None):
        """The heads projected and joined by einsums around ``dot_product_attention`` on
        ``(N, heads, T, d)``: the path with dropout on the probabilities (and the reference
        the fused path is tested against)."""
        qh, kh, vh = (self._project(p, x) for p, x in ((self.q_proj, q), (self.k_proj, k),
                                                       (self.v_proj, v)))
        scale = 1 / math.sqrt(qh.shape[-1])
        if is_active(self.attn_drop, qh) and self.attn_drop.p > 0:
            _, probs = nnlib.dot_product_attention(qh, kh, vh, mask=mask, bias=bias, scale=scale)
            probs = self.attn_drop(probs)
            out = probs @ vh
        else:
            out, probs = nnlib.dot_product_attention(qh, kh, vh, mask=mask, bias=bias,
                                                     scale=scale)
        return self._join(out), probs

    def _line(self) -> str:
        e = self.q_proj.weight.shape[1]
        out = f"MultiHeadAttention({e}, nheads={self.nheads}"
        dims = {"kdim": self.k_proj.weight.shape[1], "vdim": self.v_proj.weight.shape[1],
                "qk_dim": self.q_proj.weight.shape[0], "v_dim": self.v_proj.weight.shape[0],
                "out_dim": self.out_proj.weight.shape[0]}
        defaults = {"kdim": e, "vdim": dims["kdim"], "qk_dim": e, "v_dim": e, "out_dim": e}
        for name, value in dims.items():
            if value != defaults[name]:
                out += f", {name}={value}"
        if self.q_proj.bias is not None:
            out += ", bias=True"
        if self.attn_drop.p:
            out += f", dropout={probability(self.attn_drop.p)}"
        return out + ")"

    def _show_children(self):
        return None


class TransformerEncoderBlock(Module):
    """``TransformerEncoderBlock(embed_dim, nheads, hidden, activation=relu; dropout=0.1,
    norm_first=False, eps=1e-5, init=glorot_uniform, rng=None)``

    One encoder block of the Transformer (as PyTorch's ``TransformerEncoderLayer``, batch
    first): self-attention and a two-layer feed-forward network ``embed_dim -> hidden ->
    embed_dim``, each with dropout, a residual connection and LayerNorm (after the residual
    by default; before each sublayer with ``norm_first=True``). ``block(x; mask=None)`` maps
    ``(N, T, embed_dim)`` (or one sequence ``(T, embed_dim)``) to the same shape.

    >>> import numpy as np, fluxml as fl
    >>> block = fl.TransformerEncoderBlock(16, 4, 32)
    >>> block(np.zeros((2, 5, 16), np.float32), mask="causal").shape
    (2, 5, 16)
    """

    _feature_axis = -1

    def __init__(self, embed_dim: int, nheads: int, hidden: int,
                 activation: Callable = relu, *, dropout: float = 0.1,
                 norm_first: bool = False, eps: float = 1e-5,
                 init: Callable = initialisers.glorot_uniform, rng=None, dtype=np.float32):
        kw = dict(init=init, rng=rng, dtype=dtype)
        self.attention = MultiHeadAttention(embed_dim, nheads=nheads, bias=True,
                                            dropout=dropout, **kw)
        self.norm1 = LayerNorm(embed_dim, eps=eps, dtype=dtype)
        self.dense1 = Dense(embed_dim, hidden, activation, **kw)
        self.dense2 = Dense(hidden, embed_dim, **kw)
        self.norm2 = LayerNorm(embed_dim, eps=eps, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.norm_first = flag("TransformerEncoderBlock", "norm_first", norm_first)

    def __call__(self, x, *, mask=None):
        need_array(self, x)
        self._output_shape(x.shape)
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout(self.attention(h, mask=mask)[0])
            return x + self.dropout(self.dense2(self.dropout(self.dense1(self.norm2(x)))))
        x = self.norm1(x + self.dropout(self.attention(x, mask=mask)[0]))
        return self.norm2(x + self.dropout(self.dense2(self.dropout(self.dense1(x)))))

    def _output_shape(self, shape):
        e = self.norm1.weight.shape[-1]
        if len(shape) not in (2, 3) or shape[-1] != e:
            raise LayerError(f"{self._called()} expects input (N, T, {e}) or (T, {e}); got "
                             f"{tuple(shape)}")
        return tuple(shape)

    def _line(self) -> str:
        hidden, e = self.dense1.weight.shape
        act = self.dense1.activation
        return (f"TransformerEncoderBlock({e}, {self.attention.nheads}, {hidden}"
                f"{'' if act is relu else ', ' + name_of(act)})")

    def _show_children(self):
        return [(k, v) for k, v in vars(self).items() if isinstance(v, Module)]

