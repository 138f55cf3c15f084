"""Threads for big element-wise passes: as many as NumPy's BLAS may use, and a small pool.

NumPy runs each ufunc loop on one core (releasing the GIL inside the loop), while its BLAS
and PyTorch's kernels use every core they are allowed. A pass over a large array (Adam's
dozen passes over a weight matrix, say) can be split into parts that threads run at once:
element-wise work on parts gives each entry exactly the numbers the whole pass gives, so the
results are bit-identical to one thread's.

How many threads: :func:`limit` reads the thread count of NumPy's BLAS at the time of the
call (OpenBLAS or MKL, found among the loaded libraries), which ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` set; where no BLAS is
found, the first of those variables that is set, else 1. Never more than the cores this
process may run on. With a limit of 1 no thread is started. :func:`blas_core` says which of
OpenBLAS's kernel families runs NumPy's products, and :func:`small_products` whether they
take small products directly (where kernels split a product in pieces, or not, by it).

:func:`run_parts` runs a list of jobs on the calling thread and the pool's threads together:
each thread takes the next job not yet taken, so a thread that the machine's scheduler holds
back (a busy shared machine) delays the others by at most one job, never the whole pass. The
pool's threads start on first use, sleep while there is no work, and are started afresh in a
forked child.

>>> from fluxml.backend import threads
>>> out = []
>>> threads.run_parts([lambda: out.append(1), lambda: out.append(2)], 2)
>>> sorted(out)
[1, 2]
"""

from __future__ import annotations

import itertools
import os
import queue
import threading

_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# the BLAS's "how many threads" function: None not looked for yet, False none found
_blas_threads = None


def _find_blas():
    """The loaded BLAS's thread-count function (a ctypes function of no argument), or False.
    The libraries are read from ``/proc/self/maps`` (Linux); elsewhere none is found."""
    found = _blas_function([f"{p}openblas_get_num_threads{s}" for p, s in _OPENBLAS]
                           + ["MKL_Get_Max_Threads"])
    if found:
        found.restype, found.argtypes = _ctypes().c_int, []
    return found


# OpenBLAS's exported names: plain, or SciPy's and NumPy's builds (``scipy_`` and ``64_``)
_OPENBLAS = [(p, s) for p in ("", "scipy_") for s in ("", "64_", "_64")]


def _ctypes():
    # lazy: fluxml's import does not pay for ctypes
    import ctypes

    return ctypes


def _blas_function(names):
    """The first of ``names`` exported by a loaded OpenBLAS or MKL library (a ctypes
    function), or False."""
    ctypes = _ctypes()
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if ".so" in line}
    except OSError:
        return False
    for path in sorted(paths):
        base = os.path.basename(path).lower()
        if "openblas" not in base and "mkl_rt" not in base:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                return fn
    return False


_core = None  # the BLAS's kernel family: None not looked for yet


def blas_core() -> str:
    """The kernels NumPy's OpenBLAS runs, as its ``openblas_get_corename`` names them in
    lower case (``"haswell"``, ``"skylakex"``, ``"zen"``: what it detected, or what
    ``OPENBLAS_CORETYPE`` chose); ``""`` for another BLAS or none found. Read once.

    >>> from fluxml.backend import threads
    >>> isinstance(threads.blas_core(), str)
    True
    """
    global _core
    if _core is None:
        # lazy: NumPy loads its BLAS, which is then found among the loaded libraries
        import numpy  # noqa: F401

        fn = _blas_function([f"{p}openblas_get_corename{s}" for p, s in _OPENBLAS])
        if fn:
            fn.restype, fn.argtypes = _ctypes().c_char_p, []
        name = fn() if fn else None
        _core = name.decode("ascii", "replace").strip().lower() if name else ""
    return _core


# OpenBLAS's kernel families that compute small products directly, without packing their
# operands (its "small matrix" and "direct sgemm" paths: the SkylakeX kernels' family)
SMALL_PRODUCT_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


def small_products() -> bool:
    """Whether NumPy's BLAS computes small products (under ~10^6 multiply-adds) directly:
    OpenBLAS with its AVX-512 kernels (``SMALL_PRODUCT_CORES``). Elsewhere (its AVX2
    kernels, Haswell or Zen, or another BLAS) every product packs its operands first, so
    several small products cost more than one larger one of the same work."""
    return blas_core() in SMALL_PRODUCT_CORES


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not on macOS)
        return os.cpu_count() or 1


def limit() -> int:
    """How many threads a big element-wise pass may use now (see the module's docstring)."""
    global _blas_threads
    if _blas_threads is None:
        # lazy: NumPy loads its BLAS, which is then found among the loaded libraries
        import numpy  # noqa: F401

        _blas_threads = _find_blas()
    if _blas_threads:
        n = _blas_threads()
    else:
        n = next((_int(os.environ[v]) for v in _ENV if os.environ.get(v)), 1)
    return max(1, min(n, _cores()))


def _int(text) -> int:
    try:
        return int(text.split(",")[0])
    except ValueError:
        return 1


class _Batch:
    """Jobs that any thread may take, one at a time, in order."""

    def __init__(self, jobs):
        self.jobs = jobs
        self.taken = itertools.count()  # (next() on it is atomic under the GIL)
        self.left = len(jobs)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.error = None

    def work(self):
        n = len(self.jobs)
        while (i := next(self.taken)) < n:
            try:
                self.jobs[i]()
            except BaseException as err:  # noqa: BLE001  (re-raised by the caller's thread)
                self.error = self.error or err
            with self.lock:
                self.left -= 1
                if not self.left:
                    self.done.set()


class _Pool:
    def __init__(self):
        self.inboxes: list = []
        self.lock = threading.Lock()

    def helpers(self, n) -> list:
        """The inboxes of ``n`` threads, started if need be."""
        with self.lock:
            self._grow(n)
            return self.inboxes[:n]

    def _grow(self, n):
        while len(self.inboxes) < n:
            inbox = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(inbox,), daemon=True,
                             name=f"fluxml-pass-{len(self.inboxes)}").start()
            self.inboxes.append(inbox)


def _serve(inbox):
    while True:
        inbox.get().work()


_pool = _Pool()


def _forked():  # a forked child has none of the parent's threads
    global _pool
    _pool = _Pool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def run_parts(jobs, threads: int) -> None:
    """Run the callables ``jobs`` (each of its own data) on ``threads`` threads, this one
    included, and return when all have run; the first error any raised is raised here."""
    if threads <= 1 or len(jobs) <= 1:
        for job in jobs:
            job()
        return
    batch = _Batch(jobs)
    for inbox in _pool.helpers(min(threads, len(jobs)) - 1):
        inbox.put(batch)
    try:
        batch.work()
        batch.done.wait()
    except BaseException:  # (Ctrl-C while waiting): the other threads finish their parts
        batch.done.wait()  # first, so that none still writes once the error has left
        raise
    if batch.error is not None:
        raise batch.error
