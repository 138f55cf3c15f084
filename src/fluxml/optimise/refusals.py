"""``update``'s refusals: the errors that name the part of the model at fault (its path, as
``model.layers[0].weight``), what was expected there and what came, and the checks off
its common path (a gradient of another dtype or type than ``fl.gradient`` gives), which
``interface.py`` calls only where its own cheap tests fail.
"""

from __future__ import annotations

from threading import get_ident

import numpy as np

from fluxml._checks import shown
from fluxml._dtypes import is_complex
from fluxml.ad.core import COMPILING

_MISSING = object()


def _refuse_misfit(path, kept, x, want, err=None):
    note = f" (complex: its state arrays hold pairs, of shape {want})" if want != x.shape \
        else ""
    raise ValueError(
        f"update: the optimiser state of {_where(path)} holds arrays of shape {kept}, the "
        f"parameter has shape {x.shape}{note}; was the state set up for another model? Set "
        f"it up for this one: fl.setup(rule, model)") from err


def _check_gradient_dtype(path, x, dx):
    """A gradient of numbers that can step ``x``: real for a real array (a complex one, or
    strings or objects, raised NumPy's casting error in the middle of the step, after the
    arrays before it had been stepped)."""
    dtype = np.dtype(dx.dtype if hasattr(dx, "dtype") else np.asarray(dx).dtype)
    if dtype.kind not in ("biufc" if is_complex(x) else "biuf"):
        raise TypeError(f"update: the gradient of {_where(path)} has dtype {dtype}, the "
                        f"parameter {x.dtype}: expected "
                        f"{'numbers' if is_complex(x) else 'real numbers'}")


def _missing(path, k, model):
    raise TypeError(f"update: the optimiser state has {_where((path, 'attr', k))} but the "
                    f"model ({type(model).__name__}) has no {k!r}; was the state set up for "
                    f"this model? state = fl.setup(rule, model)")


def _read_only(path):
    raise ValueError(f"update: {_where(path)} is a read-only array (flags.writeable is False: "
                     f"memory-mapped, np.frombuffer, a broadcast view?), which fl.update "
                     f"steps in place; nothing was stepped. Give the model a writable copy "
                     f"(x.copy()), or freeze its part of the state (fl.freeze)")


def _not_its_gradient(path, model, grads):
    """A tuple of gradients where one object's gradient belongs (the whole of what
    ``fl.gradient`` returns): its fields were not found, and nothing was trained."""
    raise TypeError(f"update: the gradient of {_where(path)} is a {type(grads).__name__} of "
                    f"{len(grads)}, but the model there is a {type(model).__name__}. "
                    f"fl.gradient returns one gradient per argument: pass "
                    f"fl.gradient(loss, model)[0]")


def _where(path):
    """``model.layers[0].weight`` from the keys walked to get there (``path`` is linked:
    ``(parent path, kind, key)``, or ``()`` at the root)."""
    steps = []
    while path:
        path, kind, k = path
        steps.append(f".{k}" if isinstance(k, str) and kind == "attr" else f"[{k!r}]")
    return "model" + "".join(reversed(steps))


def _check_foreign_gradient(path, state, model, grads, in_dict):
    """A gradient built by hand for a layer: a dict of its fields, or an object with some of
    them. A dict key the layer does not have (a typo: ``{"weigth": g}``) and an object with
    none of its trainable fields (a string, a number, an array where a layer is) each left
    their part of the model unstepped, silently."""
    if in_dict:
        for k in grads:
            if k not in state._fields and getattr(model, k, _MISSING) is _MISSING:
                raise TypeError(f"update: the gradient of {_where(path)} has key {k!r}, but "
                                f"the model there ({type(model).__name__}) has no field {k!r}; "
                                f"its fields with a gradient: {', '.join(state._fields)}")
    elif not any(hasattr(grads, k) for k in state._fields):
        what = f"an array of shape {grads.shape}" if hasattr(grads, "shape") else shown(grads)
        raise TypeError(f"update: the gradient of {_where(path)} is {what}, with none "
                        f"of the fields of the model there ({type(model).__name__}: "
                        f"{', '.join(state._fields)}); pass fl.gradient(loss, model)[0], or "
                        "None for no step")


def _refuse_an_argument(leaves, what: str) -> None:
    """Inside ``fl.compile``, an optimiser state (its ``leaves``) among the compiled
    function's arguments is not changed: the function's Python runs once, when traced, so
    the change would be made then only, while the program reads the hyperparameters as
    inputs and its frozen flags as part of the signature (a generic error came, or a
    structure change). A state made inside the function (``fl.setup`` there) may be: it is
    made anew on every call."""
    me = get_ident()  # (every compile of this thread: an fl.cond branch has a trace of its own)
    arguments = [t.arguments for t in COMPILING[:] if t.thread == me and t.arguments]
    if not any(id(leaf) in a for leaf in leaves for a in arguments):
        return
    # lazy: the compiler imports the optimisers
    from fluxml.compiler.trace import CompileError

    raise CompileError(
        f"fl.compile: fl.{what} was called inside the compiled function on an optimiser state "
        f"that is one of its arguments; the function's Python runs once, when it is traced, "
        f"so the change would not happen on later calls. Call fl.{what} outside the compiled "
        f"step, between calls (fl.{what}(state, ...); step(model, state, x, y)): each call "
        f"reads the state's hyperparameters and frozen flags as they are then.")
