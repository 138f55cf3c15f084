"""A seeded fuzzer of dtype propagation (issue 11's policy: float32 by default, ``fl.f16`` /
``fl.f32`` / ``fl.f64`` convert whole trees, a layer given input of another float precision
converts it and warns once naming the layer, float32 stays float32).

Each case (tests/layers/dtype_cases.py) is a random model of the layer zoo converted to a
random precision, an input of that precision, of another float precision, or of an integer
type where indices are expected, a loss of ``fluxml.losses`` and an optimiser rule. It
checks, for the plain call, ``fl.gradient``, ``fl.withgradient``, ``fl.jvp``, ``fl.compile``
(NumPy back end) and a ``fl.train`` step:

- every array the model gives is of the model's precision, and so is each top-level layer's
  output inside a Chain; an input of another float precision brings warnings that name the
  precision and the input's dtype and nothing else (no intermediate value of a third dtype),
  the same warnings in every transform; an input of the model's precision brings none;
- gradients have their parameters' dtypes; the loss has the model's precision (targets
  follow the prediction); the optimiser state's arrays, the updated parameters and the
  running statistics keep their dtypes;
- the traced and compiled calls give the same dtypes as the plain call;
- the values (forward, loss, gradient, jvp tangent) agree with the same model (its weights
  as rounded) in float64, to a tolerance that fits the precision, and are finite where the
  float64 values are finite and moderate;
- ``fl.save`` / ``fl.load`` and ``fl.save_checkpoint`` / ``fl.load_checkpoint`` give back
  every array (the optimiser state's too) with its dtype.

    PYTHONPATH=src python -m tests.layers.fuzz_dtypes N [SEED]     (N cases from SEED)
    PYTHONPATH=src python -m tests.layers.fuzz_dtypes --case I     (one case, verbose)

The suite runs a few seeds (tests/layers/test_fuzz_dtypes.py).
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
import traceback
import warnings

import numpy as np

import fluxml as fl
from fluxml.compiler import CompileError
from fluxml.layers import precision
from tests.layers.dtype_cases import draw_case, leaves, loss_of

TOL = {np.float16: 6e-2, np.float32: 2e-3, np.float64: 1e-8}
MODERATE = 1e3  # a float64 value below this must be finite in float16 too (max 65504)


class Mismatch(AssertionError):
    """What a check found."""


def check(ok, message):
    if not ok:
        raise Mismatch(message)


def dtypes(y):
    return [str(a.dtype) for a in leaves(y)]


def float_arrays(tree):
    """``{path: array}`` of the float arrays of a tree (a model, gradient, optimiser state)."""
    return {p: a for p, a in fl.tree.leaves_with_paths(tree)
            if hasattr(a, "dtype") and np.ndim(a) >= 0 and a.dtype.kind in "fc"}


def precision_warnings(record):
    return sorted({str(w.message) for w in record if "parameters and got" in str(w.message)})


def recorded(f):
    """``(f(), precision warnings)``, each layer's once-per-process warning re-armed (and
    the process's record of warnings given put back after)."""
    given = precision._warned
    precision._warned = set()
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            out = f()
    finally:
        precision._warned = given
    return out, precision_warnings(record)


# ---------------------------------------------------------------- the checks

def check_warnings(case, found, where, converted):
    name = np.dtype(case.precision).name
    if not converted:
        check(not found, f"{where}: warnings where no layer converts its input: {found}")
        return
    check(found, f"{where}: a {case.x.dtype} input to a {name} model converted with no warning")
    lines = {fl.layers.show.line_of(m) for m in fl.modules(case.model)}
    for w in found:
        check(f"has {name} parameters and got {case.x.dtype} input" in w,
              f"{where}: a warning of another conversion: {w}")
        check(w.split(" has ")[0] in lines, f"{where}: a warning naming no layer of the "
                                            f"model: {w}")


def check_chain_steps(case, model, x):
    """Each top-level layer of a Chain gives the dtype expected (a layer that leaks another
    dtype is caught where it leaks, even if the next layer converts it back)."""
    if not isinstance(model, fl.Chain):
        return
    for i, layer in enumerate(model):
        want, _ = expected_dtype(layer, x.dtype, case.precision)
        if isinstance(layer, fl.Chain):
            check_chain_steps(case, layer, x)
        x = layer(x)
        for d in dtypes(x):
            check(d == want.name, f"Chain[{i}] ({fl.layers.show.line_of(layer)}) gave {d} in a "
                                  f"{np.dtype(case.precision).name} model; expected {want}")
        if not isinstance(x, np.ndarray):
            return


def compare(what, got, want, dtype, kinked=False):
    """``got`` (of precision ``dtype``) against ``want`` (float64); ``kinked``: derivatives
    of a function with kinks (relu, a max pool, mae ...), compared in float16 for finiteness
    only: a value float16 rounds across a kink takes the derivative of the other side."""
    got, want = leaves(got), leaves(want)
    check(len(got) == len(want), f"{what}: {len(got)} arrays against {len(want)}")
    tol = TOL[dtype]
    for k, (a, b) in enumerate(zip(got, want)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        check(a.shape == b.shape, f"{what}[{k}]: shape {a.shape} against {b.shape}")
        sure = np.isfinite(b) & (np.abs(b) < MODERATE)
        bad = sure & ~np.isfinite(a)
        check(not bad.any(), f"{what}[{k}]: {int(bad.sum())} non-finite values where float64's "
                             f"are finite (e.g. {b[bad].ravel()[:3]})")
        if kinked and dtype is np.float16:
            continue
        if sure.any():
            err = float(np.max(np.abs(a[sure] - b[sure])))
            scale = 1.0 + float(np.max(np.abs(b[sure])))
            check(err <= tol * scale, f"{what}[{k}]: max error {err:.3g} against float64 "
                                      f"(scale {scale:.3g}, tolerance {tol:g})")


KINKS = ("relu", "hardtanh", "hardsigmoid", "hardswish", "leakyrelu", "trelu", "shrink",
         "selu", "MaxPool", "Maxout", "'max'")  # (in the lines of layers and functions)


def kinked(case):
    """Does the case's loss have kinks (a derivative that jumps)?"""
    text = repr(case.model)
    return case.loss in ("mae", "hinge_loss") or any(k in text for k in KINKS)


def check_model_dtypes(model, before, where):
    now = {p: str(a.dtype) for p, a in float_arrays(model).items()}
    changed = {p: (before.get(p), d) for p, d in now.items() if before.get(p) != d}
    check(not changed, f"{where}: arrays changed dtype (before, after): {changed}")


def check_gradient_dtypes(model, grads, where):
    params = float_arrays(model)
    for p, g in float_arrays(grads).items():
        check(p in params, f"{where}: a gradient at {p}, which is no parameter")
        check(g.dtype == params[p].dtype and g.shape == params[p].shape,
              f"{where}: gradient of {p} is {g.dtype} {g.shape}; the parameter "
              f"{params[p].dtype} {params[p].shape}")


def check_state_dtypes(case, model, state, where):
    """Each optimiser-state array of a parameter's shape has the parameter's dtype (the
    dtype of fl.MixedPrecision's copy under that rule)."""
    params = float_arrays(model)
    mixed = case.rule.dtype if isinstance(case.rule, fl.MixedPrecision) else None
    for p, s in float_arrays(state).items():
        owner = max((q for q in params if p.startswith(q + ".")), key=len, default=None)
        if owner is not None and s.shape == params[owner].shape:
            want = np.dtype(mixed) if mixed is not None else params[owner].dtype
            check(s.dtype == want, f"{where}: state {p} is {s.dtype}; its parameter "
                                   f"{params[owner].dtype}" + (f", the rule's copy {want}"
                                                                if mixed is not None else ""))


def loss_function(case, eps=None):
    seen = []

    def loss(m, *x):
        y = m(*(x or (case.x,)))
        seen.append(dtypes(y))
        return loss_of(case.loss, y, case.target, eps)
    return loss, seen


def expected_dtype(model, xdtype, dtype):
    """``(output dtype, converted)``: a layer holding float arrays computes in the model's
    precision, converting an input of another (``converted``); one holding none (a pool, an
    activation, a Chain of such) keeps its input's float dtype; a Chain folds its layers."""
    if isinstance(model, fl.Chain):
        converted = False
        for layer in model:
            xdtype, c = expected_dtype(layer, xdtype, dtype)
            converted |= c
        return xdtype, converted
    if float_arrays(model) or xdtype.kind != "f":
        return np.dtype(dtype), xdtype.kind == "f" and xdtype != dtype
    return xdtype, False


def run_checks(case, model, dtype):
    """Every check of a case, in order; the first mismatch raises."""
    name = np.dtype(dtype).name
    before = {p: str(a.dtype) for p, a in float_arrays(model).items()}
    for p, d in before.items():  # (fl.f16 keeps running statistics float32, as Flux)
        kept = name == "float16" and d == "float32" and p.endswith(("running_mean",
                                                                   "running_var"))
        check(d in (name, "complex64", "complex128") or kept, f"{name}(model): {p} is {d}")
    out, converted = expected_dtype(model, case.x.dtype, dtype)
    # the plain call (test mode)
    y, found = recorded(lambda: model(case.x))
    check(all(d == out.name for d in dtypes(y)), f"plain call gave {dtypes(y)}; expected {out}")
    check_warnings(case, found, "plain call", converted)
    plain = dtypes(y)
    _, extra = recorded(lambda: model(case.x))
    check(extra == found, f"a second call warned differently: {extra} against {found}")
    recorded(lambda: check_chain_steps(case, model, case.x))
    # the values: against the same weights in float64, to the lowest precision's tolerance
    x_ref = case.x.astype(np.float64) if case.x.dtype.kind == "f" else case.x
    # (layers without parameters before the first with keep the input's precision)
    low = min((np.dtype(dtype), out, case.x.dtype if case.x.dtype.kind == "f" else out),
              key=lambda d: d.itemsize).type
    compare("forward", y, fl.f64(model)(x_ref), low)
    check_model_dtypes(model, before, "plain call")

    # fl.gradient and fl.withgradient (training mode)
    loss, seen = loss_function(case)
    (g,), found_g = recorded(lambda: fl.gradient(loss, model))
    check(seen[-1] == plain, f"fl.gradient: forward pass gave {seen[-1]}; the plain call {plain}")
    check(found_g == found, f"fl.gradient warned {found_g}; the plain call {found}")
    check_gradient_dtypes(model, g, "fl.gradient")
    check_model_dtypes(model, before, "fl.gradient")
    (value, (g2,)), _ = recorded(lambda: fl.withgradient(loss, model))
    check(np.asarray(value).dtype == out, f"fl.withgradient: loss value is "
                                          f"{np.asarray(value).dtype}; the output {out}")
    check_gradient_dtypes(model, g2, "fl.withgradient")
    check(np.asarray(loss(model)).dtype == out, "plain loss of another dtype")

    # values of the loss and the gradient, in test mode (no dropout), against float64 (the
    # running statistics as the gradients above updated them)
    ref = fl.f64(model)
    for m in (model, ref):
        fl.testmode(m)
    try:
        loss16, _seen = loss_function(case, eps=1e-3)
        loss64, _seen = loss_function(case, eps=1e-3)
        lv, (gv,) = fl.withgradient(loss16, model)
        lr, (gr,) = fl.withgradient(lambda m: loss64(m, x_ref), ref)
        compare("loss", lv, lr, low)
        gv, gr = float_arrays(gv), float_arrays(gr)
        check(gv.keys() == gr.keys(), f"gradient paths {sorted(gv)} against {sorted(gr)}")
        for p in gv:
            compare(f"gradient {p}", gv[p], gr[p], low, kinked(case))
        check_jvp(case, model, ref, x_ref, low, plain)
    finally:
        for m in (model, ref):
            fl.trainmode(m, None)
    check_model_dtypes(model, before, "fl.jvp")
    check_compile(case, model, out, low, plain)
    if fl.trainable(model):  # (fl.train refuses a model with nothing to train, by name)
        check_train(case, model, before)
    check_saved(case, model, before)


def tangent_of(tree, rng):
    return fl.fmap(lambda a: rng.normal(size=a.shape).astype(a.dtype)
                   if hasattr(a, "dtype") and a.dtype.kind == "f" else a, tree)


def check_jvp(case, model, ref, x_ref, dtype, plain):
    """fl.jvp along the input (a float input) or along the parameters."""
    rng = np.random.default_rng(0)
    if case.x.dtype.kind == "f" and len(case.x.shape) % 2:  # (along the parameters else)
        t = rng.normal(size=case.x.shape)
        (y, ty), _ = recorded(lambda: fl.jvp(model, (case.x,), (t.astype(case.x.dtype),)))
        y64, ty64 = fl.jvp(ref, (x_ref,), (t.astype(case.x.dtype).astype(np.float64),))
    else:
        tm = tangent_of(model, rng)
        (y, ty), _ = recorded(lambda: fl.jvp(lambda m: m(case.x), (model,), (tm,)))
        y64, ty64 = fl.jvp(lambda m: m(case.x), (ref,), (fl.f64(tm),))
    check(dtypes(y) == plain and dtypes(ty) == plain,
          f"fl.jvp gave {dtypes(y)} and tangent {dtypes(ty)}; the plain call {plain}")
    compare("jvp tangent", ty, ty64, dtype, kinked(case))


def check_compile(case, model, out, low, plain):
    """fl.compile (NumPy back end) of the forward pass and of a gradient step."""
    try:
        fwd = fl.compile(lambda m, x: m(x), background=False)
        y, _ = recorded(lambda: fwd(model, case.x))
        y2 = model(case.x)
    except CompileError:
        return  # (refused by name: fuzz_models checks what compiles)
    check(dtypes(y) == plain, f"fl.compile forward gave {dtypes(y)}; the plain call {plain}")
    compare("compiled forward", y, [np.asarray(a, np.float64) for a in leaves(y2)], low)

    def step(m, x, target):  # (the target traced: it follows the prediction's dtype)
        return fl.withgradient(lambda m: loss_of(case.loss, m(x), target), m)

    m2 = copy.deepcopy(model)
    try:
        value, (g,) = fl.compile(step, background=False)(m2, case.x, case.target)
    except CompileError:
        return
    check(np.asarray(value).dtype == out, f"fl.compile: loss value {np.asarray(value).dtype}")
    check_gradient_dtypes(m2, g, "fl.compile gradient")


def check_train(case, model, before):
    """fl.setup, fl.update and a fl.train step: the state and the parameters keep dtypes."""
    m = copy.deepcopy(model)
    state = fl.setup(case.rule, m)
    check_state_dtypes(case, m, state, "fl.setup")
    loss, _seen = loss_function(case)
    _, (g,) = fl.withgradient(loss, m)
    if any(not np.all(np.isfinite(a)) for a in float_arrays(g).values()):
        return  # (a step fl.train refuses by name)
    start = float_arrays(copy.deepcopy(m))
    m64, g64 = fl.f64(m), fl.f64(g)
    fl.update(state, m, g)
    check_state_dtypes(case, m, state, "fl.update")
    check_model_dtypes(m, before, "fl.update")
    fl.update(fl.setup(case.rule, m64), m64, g64)
    check_step(case, start, float_arrays(m), float_arrays(m64), float_arrays(g64))
    try:
        fl.train(lambda m, x: loss(m, x), m, [(case.x,)], state, progress=False)
    except fl.TrainingError:
        return
    check_state_dtypes(case, m, state, "fl.train")
    check_model_dtypes(m, before, "fl.train")
    check_saved(case, m, before, state)
    try:
        fl.train(lambda m, x: loss(m, x), m, [(case.x,)], state, progress=False,
                 compile="numpy")
    except (fl.TrainingError, CompileError):
        return
    check_state_dtypes(case, m, state, "fl.train(compile=)")
    check_model_dtypes(m, before, "fl.train(compile=)")


def rule_of(case, name):
    rules = case.rule.rules if isinstance(case.rule, fl.OptimiserChain) else (case.rule,)
    return any(type(r).__name__ == name for r in rules)


def check_step(case, start, got, want, grads):
    """One optimiser step on the model's precision against the same step (the same rule,
    parameters and gradients) in float64: the change of each parameter agrees to the rounding
    of the precision. In float16 the rules' second moments of gradients below about 0.25 are
    subnormal (Adam's 0.001 * g**2 < 6e-5: a few bits) and below about 1e-2 they underflow
    (fl.MixedPrecision is the remedy), so a step there may be off or vanish, but never
    exceed twice float64's (an underflowed moment must not become a huge step)."""
    if rule_of(case, "AdaDelta") and np.float16 in {a.dtype.type for a in got.values()}:
        return  # (its float16 eps is raised to 1e-7, as Optimisers.jl's: steps ~3.5x float64's)
    for p, x0 in start.items():
        if p not in grads:  # (running statistics, frozen or unused parameters)
            continue
        x0 = x0.astype(np.float64)
        d, d64 = got[p].astype(np.float64) - x0, want[p] - x0
        ulp = 2 * np.spacing(np.abs(got[p])).astype(np.float64) + 1e-300
        bad = np.abs(d - d64) > TOL[got[p].dtype.type] * np.abs(d64) + ulp
        if got[p].dtype == np.float16:  # a vanishing step where the moments underflow
            small = np.abs(grads[p]) < 0.25
            bad &= ~(small & (np.abs(d) <= 2 * np.abs(d64) + ulp))
        check(not bad.any(), f"fl.update of {p}: step {d[bad][:3]} where float64's is "
                             f"{d64[bad][:3]} (gradient {grads[p][bad][:3]})")


def check_saved(case, model, before, state=None):
    """fl.save / fl.load, and a checkpoint with the optimiser state, keep every dtype."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.safetensors")
        if state is None:
            fl.save(path, model)
            loaded = fl.load(path)
            want = {p: str(a.dtype) for p, a in float_arrays(fl.state(model)).items()}
            got = {p: str(a.dtype) for p, a in float_arrays(loaded).items()}
            check(got == want, f"fl.load gave dtypes {got}; fl.state {want}")
            fresh = fl.loadmodel(copy.deepcopy(model), loaded)
            check_model_dtypes(fresh, before, "fl.loadmodel")
            return
        fl.save_checkpoint(path, model, state, step=1)
        m2, s2 = copy.deepcopy((model, state))
        ck = fl.load_checkpoint(path, m2, s2)
        check_model_dtypes(m2, before, "fl.load_checkpoint")
        want = {p: str(a.dtype) for p, a in float_arrays(state).items()}
        got = {p: str(a.dtype) for p, a in float_arrays(ck.opt_state).items()}
        check(got == want, f"fl.load_checkpoint's optimiser state {got}; saved {want}")


def run_case(seed, verbose=False):
    """``None`` when the case runs clean, else what differed (and where)."""
    case = draw_case(seed)
    if verbose:
        print(case.description)
    dtype = case.precision
    model = {np.float16: fl.f16, np.float32: fl.f32, np.float64: fl.f64}[dtype](case.model)
    given = precision._warned  # (the process's once-per-layer warnings are left as found)
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            precision._warned = set()
            run_checks(case, model, dtype)
    except Mismatch as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - a fuzzer reports every failure
        if verbose:
            traceback.print_exc()
        where = traceback.extract_tb(err.__traceback__)[-1]
        return (f"{type(err).__name__}: {' '.join(str(err).split())[:300]} "
                f"({where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
    finally:
        precision._warned = given
    return None


def main(argv):
    if argv[:1] == ["--case"]:
        seed = int(argv[1])
        print(run_case(seed, verbose=True) or "clean")
        return
    n = int(argv[0]) if argv else 200
    start = int(argv[1]) if len(argv) > 1 else 0
    failures = 0
    for seed in range(start, start + n):
        msg = run_case(seed)
        if msg:
            failures += 1
            print(f"case {seed}: {msg[:400]}")
    print(f"{n - failures} of {n} cases clean")


if __name__ == "__main__":
    main(sys.argv[1:])
