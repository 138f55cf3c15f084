"""Tiered start of ``fl.compile(backend="xla")``: XLA compiles a new signature's program in a
background thread while the calls run the NumPy back end's code for the same traced program;
the first call after XLA is ready runs XLA's.

XLA's compiler takes 0.5-3 s for a training step (LLVM code generation; JAX's own first call
of the same step by hand takes as long), where tracing, the passes and the NumPy back end's
code take a tenth of a second: the caller waits for the short part only. Both tiers run the
same program, after the same passes, on the same arguments: they compute the same values (to
float rounding: XLA orders sums and fuses differently) and write the same NumPy arguments in
place, so state stays consistent across the switch. The switch is one attribute assignment
(``Entry.run``): a call in progress finishes on the code it started with, the next one runs
the new code; calls from several threads see one or the other, each complete.

Not tiered (XLA compiles in the caller's thread, as before): arguments that are ``jax.Array``s
(device-resident state, ``fl.xla``: running it on NumPy would copy all state off the device
and back on every call, and rebind it, where the user asked for it to stay put), and
``fl.compile(..., background=False)``. ``Compiled.wait()`` waits for the compilations under
way (e.g. before timing, or for tests).

>>> import numpy as np, fluxml as fl
>>> f = fl.compile(lambda x: np.tanh(x) * 2, backend="xla")
>>> f(np.zeros(2)).tolist()  # the NumPy tier answers while XLA compiles
[0.0, 0.0]
>>> f.wait()
>>> f.tier, f(np.ones(2)).round(4).tolist()
('xla', [1.5232, 1.5232])
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings

# Set: compiled programs take over as soon as XLA is ready. Cleared (``held()``, for tests):
# they wait, so that a test decides when the switch happens.
_RELEASED = threading.Event()
_RELEASED.set()


class Background:
    """XLA's compilation of one signature's program, under way in a thread.

    ``entry.run`` is the NumPy code (``numpy``) until ``xla.prepare()`` is done, then ``xla``.
    ``ready`` is set when XLA's compilation has ended, ``done`` when the entry has switched
    (or the compilation failed) and the thread ends; ``error`` holds what XLA's compilation
    raised (the entry then keeps the NumPy code, and says so in a warning); ``seconds`` is
    how long the compilation took."""

    __slots__ = ("entry", "numpy", "xla", "ready", "done", "error", "seconds", "thread")

    def __init__(self, entry, numpy, xla, name: str):
        self.entry, self.numpy, self.xla = entry, numpy, xla
        self.ready, self.done = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.seconds = None
        entry.run = numpy
        # not a daemon: the interpreter waits for it at exit instead of tearing XLA down
        # under a compilation in progress
        self.thread = threading.Thread(target=self._compile, name=f"fluxml-xla:{name}")
        self.thread.start()

    def _compile(self):
        start = time.perf_counter()
        try:
            self.xla.prepare()
        except BaseException as err:  # noqa: BLE001 - reported by warning and by wait()
            self.error = err
            warnings.warn(f"fl.compile(backend='xla'): XLA could not compile the program "
                          f"({type(err).__name__}: {err}); its calls keep running the NumPy "
                          "back end's code", RuntimeWarning, stacklevel=1)
        else:
            self.seconds = time.perf_counter() - start
            self.ready.set()
            _RELEASED.wait()
            self.entry.run = self.xla
            self.numpy = None  # its buffers kept between calls go (a call in progress
            # holds its own reference)
        finally:
            self.ready.set()
            self.done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the compilation has ended and the entry switched; False on timeout."""
        return self.done.wait(timeout)

    @property
    def tier(self) -> str:
        """``"xla"`` once the entry runs XLA's code, else ``"numpy"``."""
        return "xla" if self.entry.run is self.xla else "numpy"


def restoring(run, written):
    """``run`` (the NumPy code) that, when it raises, puts back the arguments it writes
    (``written``: their input positions) as they were before the call: XLA's code judges
    its run-time checks (a label out of range, ClipNorm's non-finite norm) before it writes
    anything, so a failed call leaves the caller's arrays as they were on both tiers. A copy
    of the written arrays per call, while the NumPy code serves."""
    if not written:
        return run

    def guarded(*arrays):
        saved = [arrays[k].copy() for k in written]
        try:
            return run(*arrays)
        except BaseException:
            for k, old in zip(written, saved):
                arrays[k][...] = old
            raise

    return guarded


@contextlib.contextmanager
def held():
    """Within the block, background compilations finish but do not switch their entries to
    XLA (they do when it ends): tests decide when the switch comes.

    >>> import numpy as np, fluxml as fl
    >>> f = fl.compile(lambda x: x + 1, backend="xla")
    >>> with held():
    ...     _ = f(np.ones(2))
    ...     f.tier
    'numpy'
    >>> f.wait()
    >>> f.tier
    'xla'
    """
    _RELEASED.clear()
    try:
        yield
    finally:
        _RELEASED.set()
