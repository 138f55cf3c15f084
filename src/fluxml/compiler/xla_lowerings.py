"""The XLA back end's lowering tables (``xla_backend.py`` runs them): each engine primitive's
JAX form, and the functions the engine runs untraced. Declarative entries only; the
machinery is in ``xla_backend.py``, the kernels the entries name in ``xla_kernels.py``. The
control-flow primitives (``cond``, ``while_loop``, ``scan``) are added by
``xla_backend.py``, which lowers their bodies.
"""

from __future__ import annotations

from fluxml.compiler import xla_kernels as kernels
from fluxml.compiler import xla_linalg as linalg
from fluxml.compiler import xla_recurrent as recurrent
from fluxml.compiler import xla_special as special

# Engine primitive name -> its JAX form: a template whose fields are the primitive's argument
# names (from its NumPy kernel's signature) and parameter names, or a kernel function, called
# with the arguments and the parameters by keyword. Primitives whose kernel is the NumPy
# ufunc or function of the same name (add, tanh, matmul, np.linalg.solve ...) need no entry.

PRIMITIVES: dict = {
    # shapes
    "reshape": "jnp.reshape({x}, {shape}, order={order})",
    "transpose": "jnp.transpose({x}, {axes})",
    "broadcast_to": "jnp.broadcast_to({x}, {shape})",
    "astype": "{x}.astype({dtype})",
    "copy": "{x}",  # JAX arrays are immutable: a copy is the value itself
    # fl.stop_gradient under compile: the program's derivatives are taken already, a copy
    "stop_gradient": "{x}",
    "pad": "jnp.pad({x}, {widths})",
    "diagonal": "jnp.diagonal({x}, {offset}, {axis1}, {axis2})",
    "concatenate": "jnp.concatenate([{xs}], axis={axis})",
    "split": kernels.split,
    "real": "jnp.real({x})",
    "imag": "jnp.imag({x})",
    # indexing: see _index for the index's source
    "getitem": "{x}[{idx}]",
    "sliding_window_view": "{x}[{idx}]",
    # (``x`` may be a constant, a NumPy array: made a JAX one, at no cost once jitted)
    "setitem": "jnp.asarray({x}).at[{idx}].set({v})",
    "index_add": "jnp.asarray({x}).at[{idx}].add({v})",
    # reductions
    "sum": "jnp.sum({x}, axis={axis}, keepdims={keepdims})",
    "prod": "jnp.prod({x}, axis={axis}, keepdims={keepdims})",
    "max": "jnp.max({x}, axis={axis}, keepdims={keepdims})",
    "min": "jnp.min({x}, axis={axis}, keepdims={keepdims})",
    "nanmax": "jnp.nanmax({x}, axis={axis}, keepdims={keepdims})",
    "nanmin": "jnp.nanmin({x}, axis={axis}, keepdims={keepdims})",
    "cumsum": "jnp.cumsum({x}, axis={axis})",
    "cumprod": "jnp.cumprod({x}, axis={axis})",
    "logsumexp": kernels.logsumexp,
    "std": "jnp.sqrt({x})",
    "norm2": "jnp.linalg.norm({x}, axis={axis}, keepdims={keepdims})",
    # elementwise
    "where": "jnp.where({cond}, {x}, {y})",
    "clip": "jnp.clip({x}, {lo}, {hi})",
    "round": "jnp.round({x}, {decimals})",
    "relu": "jnp.maximum({x}, 0)",
    "sigmoid": kernels.sigmoid,
    "swish": kernels.swish,
    "softplus": kernels.softplus,
    "mish": kernels.mish,
    "lisht": kernels.lisht,
    "mish_tail": kernels.mish_tail,
    "lisht_tail": kernels.lisht_tail,
    "elu": kernels.elu,
    "gelu_tanh": kernels.gelu_tanh,
    "gelu_erf": kernels.gelu_erf,
    "erf": kernels.erf,
    "softmax": kernels.softmax,
    "logsoftmax": kernels.logsoftmax,
    # neural-network kernels
    "conv": kernels.conv,
    "conv_data": kernels.conv_data,
    "conv_filter": kernels.conv_filter,
    "maxpool": kernels.maxpool,
    "pool_scatter": kernels.pool_scatter,
    "pool_gather": kernels.pool_gather,
    "window_sum": kernels.window_sum,
    "window_sum_t": kernels.window_sum_t,
    "lstm_sequence": recurrent.lstm_sequence,
    "lstm_step": recurrent.lstm_step,
    "gru_step": recurrent.gru_step,
    "gru_sequence": recurrent.gru_sequence,
    "normalise": kernels.normalise,
    "einsum": kernels.einsum,
    "dot_product_attention": kernels.attention,
    "embedding_gather": "jnp.take({weight}, {idx}, axis=0)",
    "embedding_scatter_add": kernels.embedding_scatter_add,
    # Fourier transforms
    "fft_c2c": kernels.fft_c2c,
    "rfft": kernels.rfft,
    "irfft": kernels.irfft,
    "slogdet": kernels.slogdet,
    "cholesky": linalg.cholesky,
    "qr": linalg.qr,
    "eigh": linalg.eigh,
    "svd": linalg.svd,
    "svdvals": linalg.svdvals,
    "pinv": linalg.pinv,
    "expm": linalg.expm,
    "modf_fraction": kernels.modf_fraction,
    # integer division by 0 is 0 in NumPy, -1 or -2 in XLA: a where on the divisor
    "floor_divide": kernels.floor_divide,
    "remainder": kernels.remainder,
    "sinc": kernels.sinc,
    **special.PRIMITIVES,  # scipy.special's ufuncs
}

# Functions the engine runs untraced on raw values (``Eqn.prim is None``), by qualified name,
# beside the NumPy functions that map to ``jnp``'s of the same name.
FUNCTIONS: dict = {
    "fluxml.nnlib.pool._maxpool_positions": kernels.maxpool_positions,
    "fluxml.nnlib.lstm_scan._lstm_vjp_kernel": recurrent.lstm_vjp_kernel,
    "fluxml.losses.common._check_labels": kernels.check_labels,
    "fluxml.data.utils._in_labels": kernels.in_labels,
    "fluxml.optimise.composite._finite_norm": kernels.check_finite_norm,
    "fluxml.ad.rules.decompositions._nonsingular": kernels.nonsingular,
    "fluxml.nnlib.normalise._vjp_kernel": kernels.normalise_vjp_kernel,
    "fluxml.layers.embedding._in_vocabulary": kernels.in_vocabulary,
    "fluxml.layers.recurrent._in_sequence": kernels.in_sequence,
    "fluxml.nnlib.embedding._check_rows": kernels.check_rows,
    "fluxml.nnlib.scatter._extremum": kernels.scatter_extremum,
    "fluxml.nnlib.scatter._shares": kernels.scatter_shares,
    "fluxml.compiler.xla_kernels.maxpool_grad": kernels.maxpool_grad,  # _rewrite_maxpool_grads
    "builtins.float": kernels.python_float,  # (core.weak_handle: a Python number)
    "builtins.complex": kernels.python_complex,
    "numpy.argsort": kernels.argsort,
    "numpy.argmax": kernels.argmax,
    "numpy.argmin": kernels.argmin,
    "numpy.nanargmax": kernels.nanargmax,
    "numpy.nanargmin": kernels.nanargmin,
    "numpy.sort": kernels.sort,
    # run untraced, as the primitives above (NumPy's integer quotient by 0 is 0)
    "numpy.floor_divide": kernels.floor_divide,
    "numpy.remainder": kernels.remainder,
    "numpy.divmod": kernels.divmod_,
    # a random draw inside fl.cond / fl.while_loop / fl.scan (trace._Drawn)
    "fluxml.compiler.trace.in_control_flow": kernels.draw_in_control_flow,
}

# The checks the rules run on the values (functions marked ``effect``) are judged after every
# run (``xla_kernels.judged``, found by ``xla_backend``); one more, not an effect (it is
# dropped with the residuals it guards where they are unused):
FUNCTIONS["fluxml.ad.rules.solvers._full_rank_residuals"] = kernels.judged(
    "fluxml.ad.rules.solvers._full_rank_residuals")

# NumPy functions (beside the ufuncs, whose every argument is an array) lowered to their jnp
# namesakes -> the positions of their array arguments, which NumPy also takes as lists and
# jnp does not: those are made arrays.
ARRAY_ARGUMENTS: dict = {
    "searchsorted": (0, 1),
    "digitize": (0, 1),
    "isin": (0, 1),
    "isclose": (0, 1),
    "allclose": (0, 1),
    "array_equal": (0, 1),
    "array_equiv": (0, 1),
}

# NumPy functions lowered to their jnp namesakes -> keywords that only lay out NumPy's memory
# (a JAX array has no memory order; jnp's namesakes take no such keyword): dropped.
LAYOUT_KEYWORDS: dict = {name: ("order", "subok") for name in (
    "zeros_like", "ones_like", "empty_like", "full_like")}
