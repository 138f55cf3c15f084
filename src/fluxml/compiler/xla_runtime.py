"""How a lowered XLA program is called (``xla_backend.lower`` builds the program): NumPy
arguments packed into a few buffers and copied to XLA, their writes copied back; device-resident
arguments (``jax.Array``s, ``fl.xla``) passed as they are, the large ones the program writes
donated, their new values handed back for the caller to rebind; run-time checks judged before
anything is written. JAX is imported here: only the xla back end loads this module.

>>> import numpy as np
>>> from fluxml.compiler.xla_runtime import _Packing
>>> p = _Packing([((2,), np.float64), ((3,), np.float64), ((1 << 15,), np.float64)])
>>> [len(b) for b in p.pack([np.ones(2), np.zeros(3), np.ones(1 << 15)], np)]  # 2 buffers
[5, 32768]
"""

from __future__ import annotations

import math
import operator
import struct

import jax
import numpy as np

from fluxml.compiler.ir import Const, Var
from fluxml.compiler.trace import _draw


def _wrapper(jitted, program, kept, draws, inward, outward, judges, host_in, device_in,
             host_writes, n_device_writes, checked, numbers=None):
    """The function the compiled call runs: arrays in (NumPy ones packed, traced numbers in
    their vector, ``numbers``), results out, run-time checks judged, then the writes into
    NumPy arguments copied back; the new values of device arguments the program writes come
    last (the caller rebinds them). ``checked``: the program may record run-time checks
    (``judges`` is filled when it is traced)."""
    outputs = program.outputs
    n_out = len(kept)
    x64 = jax.enable_x64
    n_host = len(outward.groups) + len(outward.single)
    n_judged = n_out + n_host + n_device_writes
    specs = [(e.params["rng"], e.params["method"], e.params["args"], e.params["kwargs"])
             for e in draws]
    n_in = len(program.inputs)
    host_args = [k for k in host_in if k < n_in]
    convert = (lambda r: r) if device_in else _numpy  # device state in: results stay there
    # the results that are Python numbers (``ir.Var.weak``: a gradient with respect to one)
    numbers_out = [k for k, v in enumerate(outputs) if type(v) is Var and v.weak]
    device = _picker(device_in)
    if not host_in and not host_writes:  # all state on the device: nothing to pack or copy
        if numbers is None:
            def call(*arrays):
                with x64(True):
                    return jitted(*arrays)
        else:
            def call(*arrays):
                with x64(True):
                    return jitted(numbers(arrays), *device(arrays))

        if not checked and n_out == len(outputs) and device_in and not numbers_out:
            # XLA's results are the call's, in order, and nothing else runs (one Python
            # call less on a path a small step waits on)
            return call
    elif specs:
        def call(*arrays):
            host = [arrays[k] for k in host_args] + [_draw(*s) for s in specs]
            with x64(True):
                if numbers is None:
                    return jitted(*inward.pack(host, np), *device(arrays))
                return jitted(*inward.pack(host, np), numbers(arrays), *device(arrays))
    else:  # (the buffers joined straight from the call's arrays: no list of them first)
        pack = inward.packer(host_args)

        def call(*arrays):
            with x64(True):
                if numbers is None:
                    return jitted(*pack(arrays), *device(arrays))
                return jitted(*pack(arrays), numbers(arrays), *device(arrays))

    write = _WriteBack(outward, host_writes) if host_writes else None

    def run(*arrays):
        results = call(*arrays)
        if judges:
            for judge, value in zip(judges, results[n_judged:]):
                judge(value)  # raises, as the eager code would, before anything is written
        if write is not None:
            write(results[n_out:n_out + n_host], arrays)
        if n_out == len(outputs):
            out = tuple(map(convert, results[:n_out]))
        else:
            out = [v.value if type(v) is Const else None for v in outputs]
            for k, r in zip(kept, results[:n_out]):
                out[k] = convert(r)
            out = tuple(out)
        if numbers_out:
            out = list(out)
            for k in numbers_out:
                out[k] = out[k].item()
            out = tuple(out)
        return out + tuple(results[n_out + n_host:n_judged]) if n_device_writes else out

    return run


def _picker(positions):
    """``pick(arrays)``: the tuple of ``arrays`` at ``positions`` (one C call)."""
    if len(positions) > 1:
        return operator.itemgetter(*positions)
    if positions:
        k = positions[0]
        return lambda arrays: (arrays[k],)
    return lambda arrays: ()


class _Numbers:
    """The traced numbers (``numbers.py``: an optimiser's learning rate, betas ...) as XLA
    takes them: one float64 vector, a ``jax.Array`` made when their values change and passed
    again while they stay. A training loop whose hyperparameters stay then copies nothing
    for them (a NumPy buffer would be joined and copied to XLA on every call: about a tenth
    of a small step), and a schedule that sets a new learning rate each step copies one
    small buffer. The values are compared by their float64 bits (``0.0`` and ``-0.0``
    differ), as XLA receives them; called inside ``jax.enable_x64``, so float64 stays.

    >>> import jax, numpy as np
    >>> numbers = _Numbers([0, 2])
    >>> with jax.enable_x64(True):
    ...     a = numbers([0.5, "an array", np.float64(0.9)])
    ...     b = numbers([0.5, "another", np.float64(0.9)])  # the same values: no new buffer
    >>> a is b, a.dtype.name, a.tolist()
    (True, 'float64', [0.5, 0.9])
    """

    def __init__(self, positions, device_in=(), ints=()):
        self.pick = _picker(positions)
        self.ints = ints  # the positions of Python ints (exact in the vector up to 2**53)
        self.device_in = device_in  # the vector goes where the device-resident state is
        self.bits = struct.Struct(f"={len(positions)}d").pack
        self.last = (None, None)  # (bits, vector): replaced whole (a thread reads either)

    def __call__(self, arrays):
        bits = self.bits(*self.pick(arrays))
        last = self.last
        if bits == last[0]:
            return last[1]
        for k in self.ints:
            if abs(arrays[k]) > 1 << 53:
                raise ValueError(
                    f"fl.compile(backend='xla'): a traced Python int ({arrays[k]}) beyond "
                    "2**53 cannot cross exactly (the traced numbers cross as float64); use "
                    "backend='numpy', or pass it as a 0-d int64 array")
        where = _single_device(a.sharding if getattr(a, "committed", False) else None
                               for a in (arrays[k] for k in self.device_in))
        vector = jax.device_put(np.frombuffer(bits, np.float64), where)
        self.last = (bits, vector)
        return vector


_PACK_LIMIT = 1 << 14  # elements

# Donating a small buffer saves only its allocation, and XLA often pays for it with a copy
# (an input still read after the output aliased to it is written: step counters, a weight
# the backward pass reads), one more kernel each: small arrays are not donated.
_DONATE_LIMIT = 1 << 14  # elements


class _Packing:
    """Arrays of at most ``_PACK_LIMIT`` elements cross between NumPy and XLA packed into one
    flat buffer per dtype (each array crossing costs about as much as a small step computes:
    a training step's biases, moments and step counts travel as a few buffers); larger ones
    cross alone. ``pack`` joins (NumPy before the call, ``jnp`` inside it), ``unpack``
    splits (slices inside the call, NumPy views of one transferred buffer after it)."""

    def __init__(self, avals):
        self.n = len(avals)
        self.shapes = [tuple(shape) for shape, _ in avals]
        self.dtypes = [np.dtype(dtype) for _, dtype in avals]
        groups: dict = {}
        self.single = []
        for k, (shape, dtype) in enumerate(avals):
            size = math.prod(shape)
            if size <= _PACK_LIMIT:
                groups.setdefault(np.dtype(dtype), []).append((k, size, tuple(shape)))
            else:
                self.single.append(k)
        self.groups = []  # [(k, offset, size, shape)] per dtype
        for members in groups.values():
            if len(members) == 1:  # nothing to join
                self.single.append(members[0][0])
                continue
            offset, group = 0, []
            for k, size, shape in members:
                group.append((k, offset, size, shape))
                offset += size
            self.groups.append(group)
        self.members = [[k for k, *_ in group] for group in self.groups]
        self.count = len(self.groups) + len(self.single)  # the buffers that cross

    def crossing(self) -> list:
        """The shapes and dtypes of the buffers that cross, in ``pack``'s order."""
        return [jax.ShapeDtypeStruct((sum(size for _, _, size, _ in group),),
                                     self.dtypes[group[0][0]]) for group in self.groups] + \
            [jax.ShapeDtypeStruct(self.shapes[k], self.dtypes[k]) for k in self.single]

    def packer(self, positions):
        """``pack(arrays)``: :meth:`pack` of ``[arrays[k] for k in positions]`` (NumPy),
        each buffer joined straight from ``arrays``."""
        joins = [_picker([positions[k] for k in members]) for members in self.members]
        single = _picker([positions[k] for k in self.single])
        concatenate = np.concatenate

        def pack(arrays):
            return [concatenate(join(arrays), axis=None) for join in joins] + \
                list(single(arrays))

        return pack

    def pack(self, values, xp) -> list:
        joined = [xp.concatenate([values[k] for k in members], axis=None)  # flattened
                  for members in self.members]
        return joined + [values[k] for k in self.single]

    def unpack(self, args, convert=None) -> list:
        out = [None] * self.n
        for buf, group in zip(args, self.groups):
            buf = buf if convert is None else convert(buf)
            for k, offset, size, shape in group:
                out[k] = buf[offset:offset + size].reshape(shape)
        for k, value in zip(self.single, args[len(self.groups):]):
            out[k] = value if convert is None else convert(value)
        return out


class _WriteBack:
    """``write(buffers, arrays)``: the new values of the NumPy arguments the program writes
    (``buffers``, packed as :class:`_Packing` packs them) copied into them (``positions``:
    where each is among the call's ``arrays``).

    A packed buffer is first copied whole into a staging buffer of the same layout, kept
    between calls, whose views (one per argument, made once) are then copied into the
    arguments: slicing XLA's new buffer into a view per argument on every call costs more
    than the extra copy (about half the write-back of a small training step). A call that
    comes while another uses the staging buffers (another thread) gets a set of its own."""

    def __init__(self, packing, positions):
        self.packing = packing
        self.positions = positions
        self.spare = []  # staging sets not in use (list.pop/append: atomic, no lock)
        n = len(packing.groups)
        # the singles cross alone: copied straight from XLA's buffer
        self.single = [(positions[k], n + j) for j, k in enumerate(packing.single)]

    def _staging(self):
        """``(buffers, [(argument position, view of a buffer)])``: one staging set."""
        buffers, views = [], []
        for group in self.packing.groups:
            buf = np.empty(sum(size for _, _, size, _ in group), self.packing.dtypes[group[0][0]])
            buffers.append(buf)
            views += [(self.positions[k], buf[offset:offset + size].reshape(shape))
                      for k, offset, size, shape in group]
        return buffers, views

    def __call__(self, results, arrays):
        copyto, asarray = np.copyto, np.asarray
        try:
            staging = self.spare.pop()
        except IndexError:
            staging = self._staging()
        buffers, views = staging
        for buf, value in zip(buffers, results):
            copyto(buf, asarray(value))
        for pos, view in views:
            copyto(arrays[pos], view)
        self.spare.append(staging)
        for pos, j in self.single:
            copyto(arrays[pos], asarray(results[j]))


def _numpy(x):
    """A JAX result as NumPy returns it: an array (a writable copy), a scalar for 0-d."""
    a = np.array(x)
    return a[()] if a.ndim == 0 else a


def _single_device(shardings):
    """Where the numbers' vector goes, given the shardings of the device-resident arguments
    (None for an uncommitted one): the device of the first committed to one device (else
    JAX's default: state committed elsewhere would have it copied there on every call)."""
    for s in shardings:
        if s is not None and len(s.device_set) == 1:
            return jax.sharding.SingleDeviceSharding(next(iter(s.device_set)))
    return None


def _ahead(jitted, host, device, numbers=0):
    """``prepare(shardings)``: XLA's compilation of the program done now (``fl.compile`` runs
    it in a background thread, see ``tiered.py``), on the shapes and dtypes of its arguments
    and the shardings of its device-resident ones (None for an uncommitted ``jax.Array``: a
    committed one is another entry of JAX's caches); the first call then finds the executable
    in JAX's caches instead of compiling."""
    def prepare(shardings):
        specs = list(host)
        if numbers:  # placed as _Numbers places it
            specs.append(jax.ShapeDtypeStruct((numbers,), np.float64,
                                              sharding=_single_device(shardings)))
        specs += [jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
                  for (shape, dtype), sharding in zip(device, shardings)]
        with jax.enable_x64(True):
            jitted.trace(*specs).lower().compile()

    return prepare
