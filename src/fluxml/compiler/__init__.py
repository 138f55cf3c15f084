"""Whole-program compilation: ``fl.compile`` traces a function into an IR, optimises it and
runs generated straight-line code (NumPy, CuPy or XLA)."""

from fluxml.compiler.api import Compiled, compile
from fluxml.compiler.trace import CompileError

__all__ = ["Compiled", "CompileError", "compile"]
