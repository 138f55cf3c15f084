"""Guards around a transform: the garbage collector paused while a tape is recorded."""

from __future__ import annotations

import gc

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
