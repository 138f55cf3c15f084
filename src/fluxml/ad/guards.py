"""Guards around a transform: the garbage collector paused while a tape is recorded, and the
plain arrays a tape keeps made read-only until it is done."""

from __future__ import annotations

import gc
import threading

_gc_paused_by_us = 0  # nesting depth of transforms that found the collector enabled


def pause_gc():
    """Pause Python's cyclic garbage collector while a transform records and sweeps; pair
    with :func:`resume_gc` in a ``finally``.

    A tape holds many small containers; the collector's periodic full passes over them make
    a long loop's cost grow with its length. The tape has no reference cycles (reference
    counting frees it), so nothing accumulates. Nested transforms resume it once, at the
    outermost; with threads, the collector may resume while another thread still records,
    which costs only time."""
    global _gc_paused_by_us
    if _gc_paused_by_us or gc.isenabled():
        gc.disable()
        _gc_paused_by_us += 1


def resume_gc():
    global _gc_paused_by_us
    if _gc_paused_by_us:
        _gc_paused_by_us -= 1
        if not _gc_paused_by_us:
            gc.enable()


_frozen: dict = {}  # id -> [array, count]: plain arrays made read-only by live tapes
_frozen_lock = threading.Lock()  # tapes in several threads may keep the same array


def freeze(a) -> bool:
    """Make ``a`` read-only for a tape that keeps it; True if this call counts (pair each
    with one :func:`thaw`). Arrays that were read-only already are left alone."""
    with _frozen_lock:
        entry = _frozen.get(id(a))
        if entry is not None and entry[0] is a:
            entry[1] += 1
            return True
        if not a.flags.writeable:
            return False
        a.flags.writeable = False
        _frozen[id(a)] = [a, 1]
        return True


def thaw(arrays):
    """Undo :func:`freeze` for each array, restoring writability when no tape keeps it."""
    with _frozen_lock:
        for a in arrays:
            entry = _frozen.get(id(a))
            if entry is None or entry[0] is not a:
                continue
            entry[1] -= 1
            if entry[1] == 0:
                del _frozen[id(a)]
                try:
                    a.flags.writeable = True
                except ValueError:  # its base became read-only meanwhile
                    pass
