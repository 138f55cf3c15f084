"""A seeded fuzzer of model structures as users write them, through every function that walks
a model, against a reference walk written here
(models.py).

Each case builds a random model: a ``Net`` (an ``fl.Module``) holding a random tree of plain
classes, classes with ``__slots__`` (alone, under a class with a ``__dict__``, a Module with
slots; made once ``fl.tree`` walks slots), dataclasses (frozen, slotted), namedtuples,
``fl.Module`` subclasses (some declaring ``nontrainable`` arrays, a slotted frozen dataclass
too), subclasses of list and tuple, lists, tuples, dicts with string and integer keys, empty
containers, float32/float64 arrays (0-d, empty, Fortran-ordered, strided views), integer
arrays, Python and NumPy numbers, strings, functions, None and random generators; and a list
of layers (Dense, Scale, BatchNorm and Dropout in test mode, nested Chains, SkipConnections)
run one after another, one of them possibly twice. Arrays are tied (the same array at two
places of the tree, or a layer's array in the tree too), and a layer object may appear in
the tree as well as in the list. Then it checks:

- ``fl.gradient``: the gradient mirrors the model (the same classes, None at static parts,
  numbers that carry none and ``nontrainable`` fields) and equals a hand computation, a tied
  array getting the total gradient at each place; ``zeros_for_none``; ``fl.pullback``'s
  cotangent is the gradient and ``fl.jvp`` along the gradient its squared norm;
- ``fl.setup``/``fl.update``: a Descent step is ``x - eta * g`` once per array, ties
  included; after ``fl.freeze`` of a random part exactly that part (and its ties) stays,
  after ``fl.adjust`` of a part it steps with the new rate, ``fl.thaw`` trains everything
  again; three Momentum or Adam steps against the rule written out per array, a random part
  frozen for one, an array replaced between steps; a checkpoint of model and state loaded
  into fresh ones;
- ``fl.f64``/``fl.f32``/``fl.f16``/``fl.cpu``/``fl.fmap`` and a round trip to a second
  registered device: exactly the float arrays converted, ties of arrays and of objects kept,
  the original untouched; ``fl.fmap`` calls its function once per array;
- ``fl.state``/``fl.loadmodel`` and ``fl.save``/``fl.load`` into a perturbed copy: every
  value back, ties kept; ``flatten``/``unflatten`` (with ``shared``) rebuild the model;
- ``fl.modules``, ``fl.trainmode``/``fl.testmode``, ``fl.trainable``, printing (the totals
  count a tied array once) of the model, its gradient and its state, ``fl.summary`` and
  ``fl.outputsize``;
- a field set after a call (on any object: slotted, frozen, a dict) is seen by the next
  gradient, by ``fl.state`` and by an update.

The suite runs 120 seeds (tests/trees/test_fuzz_trees.py, about 3 s of CPU); by hand, many more:

    PYTHONPATH=src python -m tests.trees.fuzz_trees --cases 3000
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import sys
import tempfile
import warnings

import numpy as np

import fluxml as fl
from tests.trees.models import (
    D,
    N,
    children,
    coefficients,
    expected_grads,
    fmt,
    get,
    in_state,
    is_param,
    loss,
    objects,
    params,
    perturbed,
    places,
    random_model,
    set_field,
    state_parts,
    walk,
)

# --- checks ----------------------------------------------------------------------------------


def close(a, b, what, tol):
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape or not np.allclose(a64, b64, rtol=tol, atol=tol):
        raise AssertionError(f"{what}: got {a!r}, expected {b!r}")


def tol_of(x):
    return 1e-9 if getattr(x, "dtype", np.float64) == np.float64 else 2e-4


def check_structure(g, m, path=()):
    """The gradient has the model's structure: the same class at each object, the same
    containers; None where the model has a static part."""
    kids = children(m)
    if kids is None:
        return
    if g is None:
        return  # (no gradient below: the values are checked separately)
    if isinstance(m, dict):
        assert isinstance(g, dict) and set(g) <= set(m), f"gradient at {fmt(path)}: {g!r}"
    elif isinstance(m, (list, tuple)):
        assert type(g) is type(m) and len(g) == len(m), f"gradient at {fmt(path)}: {g!r}"
    else:
        assert type(g) is type(m), f"gradient at {fmt(path)} is a {type(g).__name__}, " \
            f"the model has a {type(m).__name__}"
    for step, v in kids:
        try:
            sub = get(g, (step,))
        except (KeyError, AttributeError):
            raise AssertionError(f"gradient at {fmt(path + (step,))} is missing") from None
        if children(v) is None and not isinstance(v, (np.ndarray, float, np.floating)):
            assert sub is None, f"gradient at {fmt(path + (step,))}: {sub!r} for {v!r}"
        check_structure(sub, v, path + (step,))


def check_gradient(model, coef, x, cout):
    g = fl.gradient(lambda m: loss(m, coef, x, cout), model)[0]
    repr(g)  # (a gradient of a Module is one, its static parts None: it prints)
    check_structure(g, model)
    want = expected_grads(model, coef, x, cout)
    for path, v, train in walk(model):
        got = get(g, path)
        if isinstance(v, np.ndarray) and v.dtype.kind == "f" and train:
            expected = want.get(id(v))
            if expected is None:  # unused: None, or zeros
                assert got is None or np.array_equal(got, np.zeros_like(v)), \
                    f"gradient at {fmt(path)}: {got!r} for an unused array"
                continue
        elif isinstance(v, (float, np.floating)) and ("num", path[1:]) in want and train:
            expected = want[("num", path[1:])]
        else:
            assert got is None, f"gradient at {fmt(path)}: {got!r}, expected None for {v!r}"
            continue
        assert got is not None, f"gradient at {fmt(path)} is None, expected {expected!r}"
        if isinstance(v, np.ndarray):
            assert getattr(got, "dtype", None) == v.dtype and got.shape == v.shape, \
                f"gradient at {fmt(path)}: {got!r} for a {v.dtype} array of shape {v.shape}"
        else:
            assert type(got) is type(v), f"gradient at {fmt(path)}: {got!r} for {v!r}"
        close(got, expected, f"gradient at {fmt(path)}", tol_of(v))
    return g


def check_update(model, g, rs):
    ps = params(model)
    eta = 0.125
    state = fl.setup(fl.Descent(eta), model)
    # every trainable array has a Leaf at each of its places, one Leaf per array
    leaves = {}
    for k, (v, paths) in ps.items():
        found = {id(in_state(state, model, p)) for p in paths}
        assert len(found) == 1 and isinstance(in_state(state, model, paths[0]), fl.Leaf), \
            f"setup: {[fmt(p) for p in paths]} have Leafs {found}"
        leaves[k] = in_state(state, model, paths[0])
    repr(state)
    parts = state_parts(state, model)
    frozen_at = parts[int(rs.integers(len(parts)))][0] if parts and rs.random() < 0.7 else None
    adjust_at = parts[int(rs.integers(len(parts)))][0] if parts and rs.random() < 0.5 else None
    if frozen_at is not None:
        fl.freeze(dict(parts)[frozen_at])
    if adjust_at is not None:
        fl.adjust(dict(parts)[adjust_at], 0.5)

    def under(at):
        return set() if at is None else {
            k for k, (v, paths) in ps.items() if any(p[:len(at)] == at for p in paths)}

    frozen, adjusted = under(frozen_at), under(adjust_at)
    before = {k: v.copy() for k, (v, _) in ps.items()}
    grads = {k: get(g, paths[0]) for k, (v, paths) in ps.items()}
    fl.update(state, model, g)
    for k, (v, paths) in ps.items():
        if k in frozen or grads[k] is None:
            want = before[k]
        else:
            rate = v.dtype.type(0.5 if k in adjusted else eta)
            want = before[k] - np.multiply(grads[k], rate)
        close(v, want, f"update at {fmt(paths[0])} (frozen at {fmt(frozen_at or ())}, "
              f"adjusted at {fmt(adjust_at or ())})", 1e-6)
    fl.thaw(state)
    before = {k: v.copy() for k, (v, _) in ps.items()}
    fl.update(state, model, g)
    for k, (v, paths) in ps.items():
        rate = v.dtype.type(0.5 if k in adjusted else eta)
        want = before[k] if grads[k] is None else before[k] - np.multiply(grads[k], rate)
        close(v, want, f"update after thaw at {fmt(paths[0])}", 1e-6)


def round_trip_device(model):
    """``model`` moved to a second registered device (tests/backend/fakedevice.py) and
    back with ``fl.cpu``."""
    from tests.backend.fakedevice import FAKE

    moved = fl.backend.to_device(model, FAKE)
    for (path, v, _), (_, w, _) in zip(walk(model), walk(moved)):
        if isinstance(v, np.ndarray):
            assert type(w).__name__ == "FakeDeviceArray", f"to_device left {fmt(path)}"
    return fl.cpu(moved)


def check_conversion(model, convert, dtype, copies=False):
    """``convert(model)``: the float arrays of ``dtype`` (None: unchanged), ties of arrays and
    objects kept, the rest as it was, the original untouched; arrays already of ``dtype``
    the same objects unless the conversion ``copies``."""
    saved = [(p, v.copy() if isinstance(v, np.ndarray) else v) for p, v, _ in walk(model)]
    new = convert(model)
    name = getattr(convert, "__name__", "convert")
    ids: dict = {}
    for (path, v, _), (_, old) in zip(walk(model), saved):
        w = get(new, path)
        if isinstance(v, np.ndarray):
            assert np.array_equal(v, old) and v.dtype == old.dtype, f"{name} changed the model"
            want = v.astype(dtype) if v.dtype.kind == "f" and dtype is not None else v
            if dtype == np.float16 and fmt(path).endswith(("running_mean", "running_var")):
                want = v.astype(np.float32)  # (fl.f16 keeps norm statistics float32)
            assert isinstance(w, np.ndarray) and w.dtype == want.dtype and \
                np.array_equal(w, want, equal_nan=True), f"{name} at {fmt(path)}: {w!r}"
            if w.dtype == v.dtype:
                assert (w is not v) if copies else (w is v), \
                    f"{name}: {fmt(path)} {'not ' * copies}copied, already {v.dtype}"
            first = ids.setdefault(id(v), w)
            assert first is w, f"{name}: the tie at {fmt(path)} was broken"
        elif isinstance(v, np.random.Generator):
            assert w is v
        else:
            assert type(w) is type(v) and w == v, f"{name} at {fmt(path)}: {w!r}, was {v!r}"
    # a node object at several places is one object after the conversion too
    for _, (obj, n) in objects(model).items():
        if n > 1:
            paths = [p for p, _ in places(model, obj)]
            got = {id(get(new, p)) for p in paths}
            assert len(got) == 1, f"{name}: the {type(obj).__name__} at " \
                f"{[fmt(p) for p in paths]} became {len(got)} objects"
    return new


def check_round_trip(model, load):
    other = perturbed(model)
    loaded = load(other)
    ids: dict = {}
    for (path, v, _), (_, w, _) in zip(walk(model), walk(loaded)):
        if isinstance(v, np.ndarray):
            assert isinstance(w, np.ndarray) and w.dtype == v.dtype and \
                np.array_equal(w, v), f"loaded {fmt(path)}: {w!r}, saved {v!r}"
            first = ids.setdefault(id(v), id(w))
            assert first == id(w), f"loaded: the tie at {fmt(path)} was broken"
        else:
            assert type(w) is type(v) and (w == v or w != w), f"loaded {fmt(path)}: {w!r}"


def check_fmap_once(model):
    calls: dict = {}

    def f(x):
        calls[id(x)] = calls.get(id(x), 0) + 1
        return x

    fl.fmap(f, model)
    twice = [k for k, n in calls.items() if n > 1 and
             any(isinstance(v, np.ndarray) and id(v) == k for _, v, _ in walk(model))]
    assert not twice, f"fmap called f {max(calls.values())} times on one array"


def check_modules_and_modes(model):
    want = {k for k, (obj, _) in objects(model).items() if isinstance(obj, fl.Module)}
    got = [id(m) for m in fl.modules(model)]
    assert len(got) == len(set(got)), "fl.modules lists a module twice"
    assert set(got) == want, f"fl.modules: {len(got)} modules, expected {len(want)}"
    for mode, value in ((fl.trainmode, True), (fl.testmode, False)):
        mode(model)
        for k, (obj, _) in objects(model).items():
            if isinstance(obj, fl.Module) and hasattr(obj, "active"):
                assert obj.active is value, f"{mode.__name__} missed a {type(obj).__name__}"


def check_printing(model):
    shown = repr(model)
    ps = params(model)
    if "# Total:" in shown:
        want = f"# Total: {len(ps)} "
        assert want in shown and f"arrays, {sum(v.size for v, _ in ps.values()):,} " \
            f"parameters," in shown, f"printed {shown.splitlines()[-1]!r}; {len(ps)} arrays"
    text = io.StringIO()
    fl.summary(model, (N, D), file=text)
    n = sum(v.size for v, _ in params(model).values())
    assert f"Total: {n:,} trainable" in text.getvalue(), \
        f"summary: {text.getvalue().splitlines()[-1]}, expected {n} trainable"
    assert fl.outputsize(model, (N, D)) == (N, D)
    want = {p for _, (v, paths) in params(model).items() for p in paths}
    got = fl.trainable(model)
    assert len(got) == len(want), f"fl.trainable: {sorted(got)}, expected {len(want)} places"


def check_rules(model, g, rs, tmp, seed):
    """Three steps of Momentum or Adam against the rule written out, once per array (ties
    included), a random part frozen for the second; then a checkpoint of the model and state
    loaded into fresh ones."""
    model = copy.deepcopy(model)  # (ties kept)
    g = get(copy.deepcopy((model, g)), (("i", 1),))
    ps = params(model)
    if rs.random() < 0.5:
        rule = fl.Momentum(0.25, 0.5)
    else:
        rule = fl.Adam(0.125, (0.75, 0.875), 1e-3)
    state = fl.setup(rule, model)
    # the rule written out, per array: (x, first moment, second moment, steps taken)
    hand = {k: [v.astype(np.float64), 0.0, 0.0, 0] for k, (v, _) in ps.items()}

    def step(skip=()):
        for k, (v, paths) in ps.items():
            dx = get(g, paths[0])
            if dx is None or k in skip:
                continue
            dx = np.asarray(dx, np.float64)
            x, m, u, t = hand[k]
            t += 1
            if isinstance(rule, fl.Momentum):
                m = rule.rho * m + rule.eta * dx
                x = x - m
            else:
                (b1, b2) = rule.beta
                m, u = b1 * m + (1 - b1) * dx, b2 * u + (1 - b2) * dx ** 2
                x = x - rule.eta * (m / (1 - b1 ** t)) / (np.sqrt(u / (1 - b2 ** t))
                                                           + rule.epsilon)
            hand[k] = [x, m, u, t]

    fl.update(state, model, g)
    step()
    # an array replaced by a copy between steps (not a tied one: that is refused) is the one
    # the next step trains, with the state so far
    alone = [(k, paths[0]) for k, (v, paths) in ps.items() if len(paths) == 1
             and not isinstance(get(model, paths[0][:-1]), tuple)]
    if alone:
        k, path = alone[int(rs.integers(len(alone)))]
        new = ps[k][0].copy()
        set_field(get(model, path[:-1]), path[-1], new)
        ps[k] = (new, ps[k][1])
    # a part frozen for a step (its arrays and their state stay; the step counts diverge)
    parts = state_parts(state, model)
    at = parts[int(rs.integers(len(parts)))][0] if parts else None
    frozen = {k for k, (v, paths) in ps.items()
              if at is not None and any(p[:len(at)] == at for p in paths)}
    if at is not None:
        fl.freeze(dict(parts)[at])
    fl.update(state, model, g)
    step(frozen)
    fl.thaw(state)
    fl.update(state, model, g)
    step()
    for k, (v, paths) in ps.items():
        close(v, hand[k][0], f"{type(rule).__name__} at {fmt(paths[0])} (frozen for a step "
              f"at {fmt(at or ())})", 1e-9 if v.dtype == np.float64 else 1e-5)
    # a checkpoint, loaded into a perturbed model and a fresh state
    parts = state_parts(state, model)
    if parts and rs.random() < 0.5:
        fl.freeze(parts[int(rs.integers(len(parts)))][1])
    path = os.path.join(tmp, f"ckpt{seed}.safetensors")
    fl.save_checkpoint(path, model, state, step=3)
    other = perturbed(model)
    fresh = fl.setup(rule, other)
    info = fl.load_checkpoint(path, other, fresh)
    assert info.step == 3
    for (p, v, _), (_, w, _) in zip(walk(model), walk(other)):
        assert type(w) is type(v) and np.array_equal(v, w), f"checkpoint: {fmt(p)}"
    a, b = fl.leaves(state), fl.leaves(info.opt_state)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)), \
        "checkpoint: the optimiser state"
    from fluxml.optimise.interface import _leaves
    assert [x.frozen for x in _leaves(state)] == [x.frozen for x in _leaves(info.opt_state)]


def check_flatten(model):
    """unflatten(flatten) rebuilds the model: the same leaves at the same places, the same
    classes; with ``shared`` an object at several places is one object."""
    leaves, spec = fl.tree.flatten(model)
    for shared in (None, {}):
        new = fl.unflatten(spec, leaves, shared=shared)
        for (p, v, _), (q, w, _) in zip(walk(model), walk(new)):
            assert p == q and w is v, f"unflatten: {fmt(p)}: {w!r}, was {v!r}"
        for _, (obj, n) in objects(model).items():
            found = [get(new, p) for p, _ in places(model, obj)]
            assert all(type(o) is type(obj) for o in found), "unflatten: a class changed"
            if shared is not None and n > 1:
                assert all(o is found[0] for o in found), \
                    f"unflatten(shared={{}}): the {type(obj).__name__} is not one object"


def check_other_modes(model, g, coef, x, cout):
    """``pullback``'s cotangent of the model is the gradient; ``jvp`` along the gradient
    (a gradient is a tangent of the model) is its squared norm, each array once."""
    def f(m):
        return loss(m, coef, x, cout)

    value, back = fl.pullback(f, model)
    for (path, v, _), (_, w, _) in zip(walk(g), walk(back(np.float32(1.0))[0])):
        close(w, v, f"pullback at {fmt(path)}", tol_of(v))
    _, dot = fl.jvp(f, (model,), (g,))
    want = 0.0
    for k, (v, paths) in params(model).items():
        gk = get(g, paths[0])
        want += 0.0 if gk is None else float(np.sum(np.asarray(gk, np.float64) ** 2))
    for path, v, train in walk(model):
        if train and isinstance(v, (float, np.floating)) and get(g, path) is not None:
            want += float(get(g, path)) ** 2
    close(dot, want, "jvp along the gradient", 1e-3)


def check_zeros_for_none(model, coef, x, cout):
    g = fl.gradient(lambda m: loss(m, coef, x, cout), model, zeros_for_none=True)[0]
    want = expected_grads(model, coef, x, cout)
    for path, v, train in walk(model):
        got = get(g, path)
        if isinstance(v, np.ndarray) and v.dtype.kind == "f" and train:
            assert isinstance(got, np.ndarray) and got.shape == v.shape, \
                f"zeros_for_none: {fmt(path)}: {got!r}"
            if id(v) not in want:
                assert not np.any(got), f"zeros_for_none: {fmt(path)}: {got!r}"
        elif not train or isinstance(v, (int, np.integer)) or \
                isinstance(v, np.ndarray) and v.dtype.kind != "f":
            assert got is None, f"zeros_for_none: {fmt(path)}: {got!r} for {v!r}"


def check_changed_field(model, x, cout, rs):
    """A field set after a gradient (on any object: slotted, frozen, a dict) is seen by the
    next gradient, by state and by an update."""
    places = [(p, v) for p, v, train in walk(model.tree) if train and is_param(v)
              and p and not isinstance(get(model.tree, p[:-1]), tuple)]
    if not places:
        return
    path, old = places[int(rs.integers(len(places)))]
    new = rs.normal(size=old.shape).astype(old.dtype)
    set_field(get(model.tree, path[:-1]), path[-1], new)
    coef = coefficients(model, rs)
    g = check_gradient(model, coef, x, cout)
    assert get(fl.state(model)["tree"], tuple(("i", str(k)) for _, k in path)) is new, \
        f"state after {fmt(path)} was set"
    state = fl.setup(fl.Descent(0.5), model)
    before = new.copy()
    fl.update(state, model, g)
    if get(g, (("a", "tree"),) + path) is not None:
        close(new, before - new.dtype.type(0.5) * get(g, (("a", "tree"),) + path),
              f"update of {fmt(path)} after it was set", 1e-6)


def run_case(seed: int, tmp: str) -> None:
    model, rs = random_model(seed)
    x = rs.normal(size=(N, D)).astype(np.float32)
    cout = rs.normal(size=(N, D)).astype(np.float32)
    coef = coefficients(model, rs)
    g = check_gradient(model, coef, x, cout)
    check_modules_and_modes(model)
    fl.testmode(model)
    check_printing(model)
    for convert, dtype in ((fl.f64, np.float64), (fl.f32, np.float32), (fl.f16, np.float16),
                           (fl.cpu, None), (lambda m: fl.fmap(lambda a: a, m), None)):
        check_conversion(model, convert, dtype)
    check_conversion(model, round_trip_device, None, copies=True)
    check_fmap_once(model)
    check_round_trip(model, lambda other: fl.loadmodel(other, fl.state(model)))
    path = os.path.join(tmp, f"case{seed}.safetensors")
    fl.save(path, model)
    check_round_trip(model, lambda other: fl.loadmodel(other, fl.load(path)))
    check_flatten(model)
    check_zeros_for_none(model, coef, x, cout)
    check_other_modes(model, g, coef, x, cout)
    check_rules(model, g, rs, tmp, seed)
    check_update(model, g, rs)
    check_changed_field(model, x, cout, rs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--stop-at-first", action="store_true")
    args = parser.parse_args(argv)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(args.start, args.start + args.cases):
            try:
                run_case(seed, tmp)
            except Exception as err:  # noqa: BLE001 - report every failing seed
                failures += 1
                print(f"seed {seed}: {type(err).__name__}: {str(err)[:300]}")
                if args.stop_at_first:
                    raise
    print(f"{args.cases - failures} of {args.cases} cases clean")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
