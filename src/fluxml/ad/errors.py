"""The messages of the engine's refusals: what happened, and what to write instead."""

from __future__ import annotations

import sys

LEAKED = ("a traced value escaped the transform that created it (it was stored outside the "
          "function, or used after `gradient` returned). Return it from the function instead; "
          "or, if it was stored on an object (self.state = h) the function reached through "
          "another function, pass that object to the transform as an argument or close over "
          "it in the function itself: what is stored there is then kept as plain arrays.")


def converted(library: str | None) -> str:
    """A tracer was turned into a plain NumPy array (``__array__``)."""
    where = (f"\nThis happened inside {library}, which converts its input to a NumPy array: "
             "fluxml has no derivative rule for it. Write the computation with NumPy "
             "operations or give it a rule with @fl.custom_vjp.\n" if library else "\n")
    replacement = scipy_replacement() if library and library.startswith("scipy.") else None
    if replacement:  # SciPy's function cannot be intercepted; fluxml.scipy offers its own
        where = (f"\nThis happened inside {library}, which converts its input to a NumPy "
                 f"array. Call {replacement} instead (`import fluxml.scipy`): the same function, "
                 "differentiable.\n")
    return (
        "a traced array was converted to a plain NumPy array (np.asarray, np.array, or a "
        "write into a NumPy array such as `buf[i] = tracer`), which would cut its gradient."
        + where +
        "Possible fixes:\n"
        "  - allocate the buffer from the traced value: `buf = np.zeros_like(x)` or "
        "`np.empty(shape, like=x)` (then `buf[i] = ...` is recorded);\n"
        "  - build arrays from traced values with np.stack([a, b]) or "
        "np.array([a, b], like=a) (plain np.array([a, b]) cannot be intercepted);\n"
        "  - for a copy in C or F order (np.ascontiguousarray, np.asfortranarray): "
        "`np.copy(x, order='C')` or `x.copy(order='F')`;\n"
        "  - wrap the value in fl.stop_gradient(...) if you mean to drop its derivative.")


def in_compile() -> str:
    """The first fix to offer for a write into a plain array inside ``fl.compile``: there the
    usual cause is a model or optimiser state read from a global, not passed in."""
    # lazy: core imports this module
    from fluxml.ad.core import COMPILING, compiling

    if not COMPILING or compiling() is None:
        return ""
    return ("  - inside fl.compile, arrays the function writes in place (a model's, an "
            "optimiser state's) must be arguments of the compiled function, as in "
            "step(model, opt, x, y): globals and closed-over arrays are constants of the "
            "program;\n")


def written_into_plain(where: str, compiled: bool = False) -> str:
    """``buf[i] = tracer`` with ``buf`` a plain NumPy array (``compiled``: the value is
    traced by ``fl.compile`` only, not differentiated)."""
    why = ("whose value is known only when the compiled program runs" if compiled else
           "which would cut its gradient")
    return (
        f"a traced value was written into a plain NumPy array (`buf[i] = x`, at {where}), "
        f"{why}.\n"
        "Possible fixes:\n" + in_compile() +
        "  - allocate the buffer from a traced value: `buf = np.zeros_like(x)` or "
        "`np.zeros(shape, like=x)`, then `buf[i] = ...` is recorded;\n"
        "  - if `buf` is a copy of a constant array (`u = u0.copy()`), make it a traced copy: "
        "`u = np.array(u0, like=x)`;\n"
        "  - write fl.stop_gradient(x) if you mean to drop its derivative.")


def concrete(what: str) -> str:
    """Python asked a tracer for a concrete value (``float(x)``, ``if x:`` ...)."""
    return (
        f"{what} needs a concrete value, but this array is traced (its derivative is being "
        "taken). Python cannot record how the result depends on it.\n"
        "Possible fixes:\n"
        "  - writing it into a plain NumPy array (`buf[i] = x`)? Allocate the buffer from "
        "the traced value instead: `buf = np.zeros_like(x)`;\n"
        "  - keep the value as an array and use NumPy ops (np.where for a branch);\n"
        "  - compare instead (`x > 0` is a plain boolean array and may drive an `if`);\n"
        "  - use fl.stop_gradient(x) if the derivative through it is not wanted.")


def scipy_replacement() -> str | None:
    """``fluxml.scipy.<sub>.<name>`` for the SciPy function, on the current call stack, that
    fluxml.scipy offers in differentiable form (``scipy.linalg.expm``); or None."""
    # lazy: fluxml.scipy builds on the engine (it imports no SciPy itself)
    from fluxml import scipy as offered

    frame = sys._getframe(1)
    while frame is not None:
        parts = frame.f_globals.get("__name__", "").split(".")
        if parts[0] == "scipy":
            # the function itself, or one a SciPy decorator wraps (a variable of its frame)
            for fn in (frame.f_code, *frame.f_locals.values()):
                name = getattr(fn, "co_name", None) or getattr(fn, "__name__", None)
                module = (getattr(fn, "__module__", None) or ".".join(parts)).split(".")
                sub = getattr(offered, module[1], None) if len(module) > 1 else None
                if module[0] == "scipy" and sub is not None and name in sub.__all__:
                    return f"fluxml.scipy.{module[1]}.{name}"
        frame = frame.f_back
    return None


def calling_library() -> str | None:
    """The outermost function of a third-party library (not NumPy, not fluxml, not the
    user's code) through which a tracer was converted; or None."""
    frame = sys._getframe(2)
    found, package = None, None
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        top = module.partition(".")[0]
        third_party = "site-packages" in frame.f_code.co_filename
        if package is not None:
            if top != package:
                break
            found = f"{module}.{frame.f_code.co_name}"
        elif third_party and top not in ("numpy", "fluxml"):
            package, found = top, f"{module}.{frame.f_code.co_name}"
        elif top not in ("numpy", "fluxml"):
            return None  # the user's own code converted it
        frame = frame.f_back
    return found


def name(func) -> str:
    """How a user writes ``func``: ``np.sin``, ``np.linalg.det``, ``scipy.special.erf``."""
    name = getattr(func, "__name__", repr(func))
    special = sys.modules.get("scipy.special")
    if special is not None and getattr(special, name, None) is func:
        return f"scipy.special.{name}"
    module = getattr(func, "__module__", None) or "numpy"
    if module == "numpy" or module.startswith("numpy._"):
        module = "np"
    elif module.startswith("numpy."):
        module = "np." + module[len("numpy."):]
    return f"{module}.{name}"


def unsupported(func, what: str = "function") -> str:
    """A NumPy function (or ufunc, or ufunc method) with no derivative rule."""
    return (
        f"{name(func)} was called on a traced array, but fluxml has no derivative rule for "
        f"this {what}.\nPossible fixes:\n"
        "  - write the computation with supported NumPy operations;\n"
        "  - give it a rule: decorate a wrapper with @fl.custom_vjp and call "
        "`wrapper.defvjp(fwd, bwd)`;\n"
        "  - call it on fl.stop_gradient(x) if its derivative is not needed.")


def not_for_complex(func) -> str:
    """A rule known right for real values only, reached by complex ones."""
    return (
        f"{name(func)} was called on complex values inside a derivative, but its rule is "
        "known to be right for real values only (see fluxml.ad.rules.complex_values). Work on "
        "the real and imaginary parts (np.real, np.imag, np.abs), or give the computation a "
        "rule with @fl.custom_vjp.")
