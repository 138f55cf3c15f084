"""The ``numpy`` back end: the program as generated Python over NumPy."""

from __future__ import annotations

from fluxml.compiler.codegen import build, generate


def lower(program, names, fname):
    """``(source, function)``."""
    source, namespace = generate(program, names, fname)
    return source, build(source, namespace, fname)
