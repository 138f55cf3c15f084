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

What the NumPy tier does as eager NumPy does rather than as XLA's code: an index array out of
range raises NumPy's ``IndexError`` (XLA reads NaN); the old ``jax.Array``s of written device
state are not donated (they stay valid); and its float rounding is NumPy's, so a run is not
bit-identical to one with ``background=False``. A call that raises leaves the arguments as
they were on both tiers (:func:`restoring`).

Device-resident state (``jax.Array`` arguments, ``fl.xla``) on XLA's CPU device is tiered too
(:func:`on_host`): the NumPy code runs on host copies of those arrays, and the new values of
the ones it writes go back as new ``jax.Array``s that the caller's tree is rebound to, as XLA's
code does (without donating the old ones). On a GPU or TPU, where that would copy all state
across the bus on every call, XLA compiles in the caller's thread, as it does with
``fl.compile(..., background=False)``. ``Compiled.wait()`` waits for the compilations under
way (e.g. before timing, or for tests).

One worker thread compiles, one program at a time, in the order the signatures came: the
NumPy tier keeps the other core. A program whose entry has left the compiled function's cache
before its turn is not compiled, nor are those still waiting when the script ends (the
interpreter waits for the one under way only, rather than tear XLA down in the middle of it).

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
import os
import queue
import threading
import time
import warnings

import numpy as np

# Outside ``held()`` (for tests) compiled programs take over as soon as XLA is ready; inside
# it they wait for the block's end, so that a test decides when the switch happens.
_held: list | None = None  # inside ``held()``: the jobs whose switch waits for its end
_held_lock = threading.Lock()


class Background:
    """XLA's compilation of one signature's program, a job of the one compile worker.

    ``entry.run`` is the NumPy code (``numpy``) until ``xla.prepare()`` is done, then ``xla``.
    ``ready`` is set when XLA's compilation has ended, ``done`` when the entry has switched
    (or the compilation failed, or was skipped); ``error`` holds what XLA's compilation
    raised (the entry then keeps the NumPy code, and says so in a warning); ``seconds`` is
    how long the compilation took."""

    __slots__ = ("entry", "numpy", "xla", "shardings", "ready", "done", "error", "seconds",
                 "dropped")

    def __init__(self, entry, numpy, xla, shardings):
        self.entry, self.numpy, self.xla = entry, numpy, xla
        self.shardings = shardings  # of the device-resident arguments (xla.prepare's)
        self.ready, self.done = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.seconds = None
        self.dropped = False  # set when the entry leaves the cache: not worth compiling
        entry.run = numpy
        _submit(self)

    def skip(self):
        """Not compiled (the entry left the cache, or the script is ending): the entry keeps
        the NumPy code, and anyone waiting is let go."""
        self.ready.set()
        self.done.set()

    def _compile(self):
        start = time.perf_counter()
        try:
            self.xla.prepare(self.shardings)
        except BaseException as err:  # noqa: BLE001 - reported by warning and by wait()
            self.error = err
            # no XLA code to match any more: the NumPy code without the copy per call that
            # made a failed call write nothing, as XLA's would
            self.entry.run = getattr(self.numpy, "plain", self.numpy)
            self.skip()  # (before the warning, which a filter may turn into an exception)
            warnings.warn(f"fl.compile(backend='xla'): XLA could not compile the program "
                          f"({type(err).__name__}: {err}); its calls keep running the NumPy "
                          "back end's code", RuntimeWarning, stacklevel=1)
        else:
            self.seconds = time.perf_counter() - start
            self.ready.set()
            with _held_lock:
                if _held is not None:  # the switch comes at the block's end; the worker
                    _held.append(self)  # goes on with the next job meanwhile
                    return
            self._switch()

    def _switch(self):
        self.entry.run = self.xla
        self.numpy = None  # its buffers kept between calls go (a call in progress holds its
        # own reference)
        self.done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the compilation has ended and the entry switched; False on timeout.
        Inside ``held()`` the switch waits for the block's end: waiting there is an error."""
        if _held is not None and not self.done.is_set():
            raise RuntimeError("fl.compile: wait() inside tiered.held() would never return "
                               "(the switch to XLA waits for the block's end); wait after it")
        return self.done.wait(timeout)

    @property
    def tier(self) -> str:
        """``"xla"`` once the entry runs XLA's code, else ``"numpy"``."""
        return "xla" if self.entry.run is self.xla else "numpy"


_jobs: queue.SimpleQueue = queue.SimpleQueue()
_worker: threading.Thread | None = None
_worker_lock = threading.Lock()


def _submit(job):
    global _worker
    _jobs.put(job)
    with _worker_lock:
        if _worker is None or not _worker.is_alive():
            # not a daemon: the interpreter waits for the compilation under way at exit
            # instead of tearing XLA down in the middle of it
            _worker = threading.Thread(target=_serve, name="fluxml-xla", daemon=False)
            _worker.start()


def _serve():
    """The worker: compile the jobs in turn; skip dropped ones, and every one left once the
    main thread has ended (the script is exiting). It lives while the main thread does."""
    main = threading.main_thread()
    while True:
        try:
            job = _jobs.get(timeout=0.2)
        except queue.Empty:
            if not main.is_alive():
                return
            continue
        if job.dropped or not main.is_alive():
            job.skip()
        else:
            job._compile()


def _forked():  # a forked child has no worker: the next job starts one
    global _worker, _jobs
    _worker, _jobs = None, queue.SimpleQueue()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


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

    guarded.plain = run  # (what runs if XLA's compilation fails)
    return guarded


def on_cpu(x) -> bool:
    """Is the ``jax.Array`` on XLA's CPU device (its memory the host's)?"""
    return all(d.platform == "cpu" for d in x.devices())


def on_host(run, devices, rebinds):
    """``run`` (NumPy code) for arguments of which those marked in ``devices`` are
    ``jax.Array``s on the CPU: they go in as writable NumPy copies; the results come back as
    ``jax.Array``s, followed by the new values of the inputs ``rebinds`` lists (the ones the
    program writes) as new ``jax.Array``s on the same device, for the caller's tree to be
    rebound to: what XLA's code returns for the same call."""
    # lazy: JAX is imported by the xla back end only (device-resident arguments came with it)
    import jax

    device_in = [k for k, d in enumerate(devices) if d]

    def hosted(*arrays):
        host = list(arrays)
        for k in device_in:
            host[k] = np.array(arrays[k])  # (a copy: the program writes into it)
        outs = run(*host)
        with jax.enable_x64(True):  # float64 stays float64, as on XLA's tier
            # (committed to a device as XLA's results and new values would be: JAX's caches
            # tell committed arrays from uncommitted ones)
            where = placement(arrays[device_in[0]])
            results = tuple(jax.device_put(o, where) if isinstance(o, (np.ndarray, np.generic))
                            else o for o in outs)
            return results + tuple(jax.device_put(host[k], placement(arrays[k]))
                                   for k in rebinds)

    return hosted


def placement(x):
    """The sharding of a committed ``jax.Array``; None for an uncommitted one."""
    return x.sharding if x.committed else None


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
    global _held
    with _held_lock:
        _held = []
    try:
        yield
    finally:
        with _held_lock:
            jobs, _held = _held, None
        for job in jobs:
            job._switch()
