"""The ``numpy`` back end: the program as generated Python over NumPy, and two rewrites that
give it the eager engine's fused kernels where the recorded program spells them out (they
pay for fresh arrays the size of a layer's output, which cost more in page faults than in
arithmetic: LeNet-5's first layer)."""

from __future__ import annotations

import numpy as np

from fluxml.ad.rules.elementwise import ADD
from fluxml.ad.rules.shape import RESHAPE
from fluxml.compiler.codegen import build, constants_to, generate
from fluxml.compiler.ir import Eqn, Program, Slot, Var
from fluxml.compiler.passes import maxpool_scatters, mutates
from fluxml.compiler.trace import _call
from fluxml.nnlib import pool
from fluxml.nnlib.activations import RELU
from fluxml.nnlib.conv import CONV
from fluxml.nnlib.convbias import CONV_BIAS, CONV_BIAS_RELU


def lower(program, names, fname, device=None):
    """``(source, function)``. ``device``: the module (cupy) of the arrays it will run on,
    where a program traced on their host copies (a control-flow branch of the cupy back end)
    runs NumPy's functions on them (which hand them to that library): its constants go
    there."""
    source, namespace = generate(program, names, fname)
    if device is not None:
        namespace = constants_to(namespace, device)
    return source, build(source, namespace, fname)


def rewrite(program: Program) -> Program:
    """The program with the eager engine's fused kernels (:func:`conv_biases`,
    :func:`maxpool_grads`); dead code is left for the caller's pass."""
    return maxpool_grads(conv_biases(program))


def maxpool_grads(program: Program) -> Program:
    """The gradient of max pooling over windows that do not overlap, unpadded, computed as
    the eager engine computes it (``pool._window_grad``: one pass per window entry, each
    writing a strided view of the result) instead of as recorded, flat positions of the
    maxima and a scatter to them (``passes.maxpool_scatters``), which took three times as
    long (LeNet-5's two pools, batch 64). The same values: the gradient goes to each window's
    first maximum either way."""
    return maxpool_scatters(program, _window_grad)


def _window_grad(eqn, g, x, best, geo):
    if any(lo or hi for lo, hi in geo["pads"]) or \
            not pool._disjoint(geo["kernel"], geo["stride"], geo["dilation"]):
        return None
    kwargs = {k: geo[k] for k in ("kernel", "stride", "dilation")}
    return Eqn("maxpool_grad", _call, [], {"func": pool._window_grad,
                                           "args": (Slot(g) if type(g) is Var else g, x, best),
                                           "kwargs": kwargs}, eqn.outs)


def conv_biases(program: Program) -> Program:
    """``relu(conv(x, w) + reshape(b, (-1, 1, ...)))``, a convolutional layer as
    ``conv_bias_act`` records it under ``fl.compile``, becomes ``conv_bias_relu(x, w, b)``
    (``conv_bias(x, w, b)`` without the ReLU): the eager engine's kernel, which adds the bias
    and applies the ReLU to each block of the convolution while it is in the cache, where the
    recorded program makes an output-sized array for each. Only where nothing else reads the
    convolution or the sum (the rules of ``conv`` and ``relu`` do not: the backward pass reads
    the ReLU's result). The bias goes into the product as a column of the weight, as eagerly:
    the compiled step then rounds as the eager one does."""
    producer = {o.id: e for e in program.eqns for o in e.outs}
    readers: dict = {}
    for eqn in program.eqns:
        for v in eqn.reads():
            readers[v.id] = readers.get(v.id, 0) + 1
    for v in program.outputs + [v for _, v in program.writes]:
        if type(v) is Var:
            readers[v.id] = readers.get(v.id, 0) + 2  # (never fused away)
    fused: dict = {}  # id of the equation replaced -> its replacement (None: dropped)
    position = {id(e): k for k, e in enumerate(program.eqns)}
    relus = {e.inputs[0].id: e for e in program.eqns
             if e.prim is RELU and type(e.inputs[0]) is Var}
    for eqn in program.eqns:
        bias = _bias_add(eqn, producer, readers)
        if bias is None:
            continue
        conv, b = bias
        out, last = eqn.outs[0], eqn
        relu = relus.get(out.id)
        if readers.get(out.id) == 1 and relu is not None:
            out, last = relu.outs[0], relu
        # the fused kernel runs where the last one ran: a write in between (into the input,
        # the weight or the bias, through any view) would reach it (silently: 100 off)
        if any(mutates(e) for e in program.eqns[position[id(conv)]:position[id(last)]]):
            continue
        prim = CONV_BIAS_RELU if last is not eqn else CONV_BIAS
        fused[id(conv)] = fused[id(eqn)] = None
        fused[id(last)] = Eqn(prim.name, prim.impl, conv.inputs + [b], conv.params, [out], prim)
    if not fused:
        return program
    eqns = [fused.get(id(e), e) for e in program.eqns]
    return Program(program.inputs, [e for e in eqns if e is not None], program.outputs,
                   program.writes)


def _bias_add(eqn, producer, readers):
    """``(conv equation, b)`` if ``eqn`` is ``conv(x, w) + reshape(b, (-1, 1, ...))`` with
    the convolution read there alone and ``b`` the bias of its output channels, else None."""
    if eqn.prim is not ADD or len(eqn.inputs) != 2 or not all(type(a) is Var
                                                                for a in eqn.inputs):
        return None
    y, shaped = eqn.inputs
    conv, reshape = producer.get(y.id), producer.get(shaped.id)
    if conv is None or conv.prim is not CONV or readers.get(y.id) != 1 or reshape is None \
            or reshape.prim is not RESHAPE or type(reshape.inputs[0]) is not Var:
        return None
    b = reshape.inputs[0]
    channels = y.shape[1]
    dtypes = [a.dtype if type(a) is Var else getattr(a.value, "dtype", None)
              for a in conv.inputs]
    if b.shape != (channels,) or shaped.shape != (channels,) + (1,) * (len(y.shape) - 2) \
            or eqn.outs[0].shape != y.shape or any(d is None for d in dtypes) \
            or eqn.outs[0].dtype != np.result_type(*dtypes, b.dtype):
        return None  # (the fused kernel computes in the operands' common type, as the sum)
    return conv, b
