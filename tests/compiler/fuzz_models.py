"""Random whole models, losses and optimisers: a compiled training step must equal the eager
one over several steps (the loss, every array of the model, running statistics among them,
and every array and number of the optimiser state), on the NumPy and XLA back ends, while the
user changes things between steps (the lifetime of a compiled program: a stale cached program
would give silently wrong numbers).

A case is drawn from a seed: a model of nested Chains (named or not), Parallel,
SkipConnection, PairwiseFusion, Maxout, Dense, Conv/ConvTranspose/pools, BatchNorm/LayerNorm/
GroupNorm, Dropout, Embedding, LSTM/GRU/RNN, MultiHeadAttention and a plain class of the
user's that writes into NumPy arrays in place; a loss; a rule (or an OptimiserChain with
ClipNorm, ClipGrad, WeightDecay, AccumGrad ...), and a few *events* between steps:
``fl.adjust`` of a hyperparameter (of all the state or a part, as a schedule does),
``fl.freeze``/``thaw`` of part of the state, ``fl.trainmode``/``testmode``, a new activation,
a changed non-array field or dict entry, a replaced layer, a partial last batch, a batch of
the other precision. Each event is applied to the compiled run's model and to a deep copy
that runs eagerly.

    PYTHONPATH=src python -m tests.compiler.fuzz_models [n_cases] [backend ...] [--MODE]

``--train``: ``fl.train(..., compile=...)`` against eager ``fl.train``, the events made by a
callback between epochs, with a learning-rate schedule, early stopping, and a checkpoint
resumed by a second run. ``--forward``: ``fl.compile(model)`` against ``model(x)``, the model
trained eagerly between calls. ``--background``: XLA compiles in the background while the
first steps run the NumPy code. ``--device`` (with ``xla``): the compiled run's model and
state are ``jax.Array``s (``fl.xla``). ``--seams``: with a tied weight, a step returning the
state and model (rebound by the caller), the loss under ``fl.checkpoint`` (``draw_seams``).

prints one line per failing case (its seed, the case and what differs) and a count. The short
run in the suite is ``tests/compiler/test_fuzz_models.py``.
"""

from __future__ import annotations

import copy
import sys
import traceback

import numpy as np

import fluxml as fl
from fluxml.compiler import CompileError

TOL = {np.float64: 1e-8, np.float32: 3e-4}


# --- a layer of the user's: a plain class (not a Module) that writes in place ----------------

class Shift:
    """``x * scale + shift``, written into a fresh buffer entry by entry along the last axis,
    and a count of the calls kept in an array of its own, written in place (as a NumPy user
    writes a running statistic). ``options`` (a dict) holds a non-array setting."""

    def __init__(self, n, rng):
        self.scale = 1.0 + 0.1 * rng.standard_normal(n)
        self.shift = 0.1 * rng.standard_normal(n)
        self.calls = np.zeros(())
        self.options = {"square": False, "gain": 1.0}

    def __call__(self, x):
        out = np.empty(x.shape, dtype=self.scale.dtype, like=self.scale)
        for j in range(x.shape[-1]):
            out[..., j] = x[..., j] * self.scale[j]
        out += self.shift
        self.calls += 1.0
        if self.options["square"]:
            out = out * out
        return out * self.options["gain"]


def _last(ys):
    return ys[-1]


def _first(ys):
    return ys[0]


def _time_mean(x):
    return np.mean(x, axis=1)


def _time_last(x):
    return x[:, -1]


# --- random models -------------------------------------------------------------------------

_ACTS = (fl.identity, np.tanh, fl.relu, fl.sigmoid, fl.gelu, fl.swish)


def _act(r):
    return _ACTS[r.integers(len(_ACTS))]


def _dense_block(r, f, depth):
    """``(layer, width out)`` for input ``(N, f)``."""
    k = r.integers(12 if depth < 2 else 5)
    g = int(r.integers(2, 6))
    if k == 0:
        return fl.Dense(f, g, _act(r), bias=bool(r.integers(4)), rng=r), g
    if k == 1:
        return fl.LayerNorm(f), f
    if k == 2:
        return fl.BatchNorm(f, _act(r), momentum=float(r.choice([0.1, 0.3]))), f
    if k == 3:
        return fl.Dropout(float(r.choice([0.2, 0.5])), rng=np.random.default_rng(
            int(r.integers(1 << 30)))), f
    if k == 4:
        return Shift(f, r), f
    if k == 5:
        return fl.SkipConnection(fl.Dense(f, f, _act(r), rng=r), r.choice([np.add,
                                                                            np.multiply])), f
    if k == 6:
        layers = [fl.Dense(f, g, _act(r), rng=r) for _ in range(int(r.integers(2, 4)))]
        if r.integers(2):
            return fl.Parallel(np.add, *layers), g
        return fl.Parallel(np.add, **{f"p{i}": m for i, m in enumerate(layers)}), g
    if k == 7:
        layers = [fl.Dense(f, f, _act(r), rng=r) for _ in range(int(r.integers(2, 4)))]
        return fl.Chain(fl.PairwiseFusion(np.add, *layers), r.choice([_last, _first])), f
    if k == 8:
        return fl.Maxout(*[fl.Dense(f, g, rng=r) for _ in range(int(r.integers(2, 4)))]), g
    return _chain(r, f, depth + 1)


def _chain(r, f, depth):
    layers = []
    for _ in range(int(r.integers(1, 4))):
        layer, f = _dense_block(r, f, depth)
        layers.append(layer)
    if r.integers(2):
        return fl.Chain(**{f"l{i}": m for i, m in enumerate(layers)}), f
    return fl.Chain(*layers), f


def _image_trunk(r, c, h):
    """``(layers, features out)`` for input ``(N, c, h, h)``."""
    layers = []
    for _ in range(int(r.integers(1, 4))):
        k = r.integers(6)
        if k == 0:
            c2 = int(r.integers(2, 5))
            layers.append(fl.Conv((3, 3), c, c2, _act(r), pad=1, rng=r))
            c = c2
        elif k == 1 and h <= 5:
            c2 = int(r.integers(2, 4))
            layers.append(fl.ConvTranspose((2, 2), c, c2, _act(r), rng=r))
            c, h = c2, h + 1
        elif k == 2 and h >= 4:
            layers.append(fl.MaxPool((2, 2)) if r.integers(2) else fl.MeanPool((2, 2)))
            h //= 2
        elif k == 3:
            layers.append(fl.BatchNorm(c, _act(r)))
        elif k == 4 and c % 2 == 0:
            layers.append(fl.GroupNorm(c, 2))
        else:
            layers.append(fl.Conv((1, 1), c, c, _act(r), rng=r))
    return layers + [fl.Flatten()], c * h * h


def _sequence_trunk(r, f):
    """``(layers, features out)`` for input ``(N, T, f)``."""
    layers = []
    for _ in range(int(r.integers(1, 3))):
        k = r.integers(5)
        if k <= 1:
            h = int(r.integers(2, 5))
            layers.append((fl.LSTM, fl.GRU, fl.RNN)[r.integers(3)](f, h, rng=r))
            f = h
        elif k == 2 and f % 2 == 0:
            layers += [fl.MultiHeadAttention(f, nheads=2, rng=r), _first]
        elif k == 3:
            layers.append(fl.LayerNorm(f))
        else:
            g = int(r.integers(2, 5))
            layers.append(fl.Dense(f, g, _act(r), rng=r))
            f = g
    return layers + [r.choice([_time_mean, _time_last])], f


def random_model(r):
    """``(model, kind, input shape after the batch axis)``."""
    kind = ("vector", "image", "sequence", "tokens")[r.choice(4, p=[0.45, 0.2, 0.2, 0.15])]
    if kind == "vector":
        f = int(r.integers(2, 6))
        trunk, g = _chain(r, f, 0)
        layers, shape = [trunk], (f,)
    elif kind == "image":
        c, h = int(r.integers(1, 4)), int(r.choice([4, 5]))
        layers, g = _image_trunk(r, c, h)
        shape = (c, h, h)
    else:
        t, f = int(r.integers(2, 5)), int(r.choice([2, 4]))
        layers, g = _sequence_trunk(r, f)
        if kind == "tokens":
            layers = [fl.Embedding(7, f, rng=r)] + layers
            shape = (t,)
        else:
            shape = (t, f)
    if r.integers(3) == 0:  # a vector tail after the trunk
        tail, g = _chain(r, g, 1)
        layers.append(tail)
    out = int(r.integers(2, 5))
    layers.append(fl.Dense(g, out, rng=r))
    return fl.Chain(*layers), kind, shape, out


# --- losses, rules, events --------------------------------------------------------------------

LOSSES = ("mse", "logitce", "huber", "ce", "mse+l2")


def loss_value(name, model, x, y):
    yhat = model(x)
    if name == "mse":
        return fl.mse(yhat, y)
    if name == "logitce":
        return fl.logitcrossentropy(yhat, y)
    if name == "huber":
        return fl.huber_loss(yhat, y, delta=0.5)
    if name == "ce":
        return fl.crossentropy(fl.softmax(yhat, axis=-1), y)
    penalty = sum(np.sum(w * w) for w in fl.trainable(model).values())
    return fl.mse(yhat, y) + 1e-3 * penalty


def batch(r, kind, shape, out, loss, n, dtype):
    if kind == "tokens":
        x = r.integers(0, 7, (n,) + shape)
    else:
        x = r.standard_normal((n,) + shape).astype(dtype)
    if loss in ("logitce", "ce"):
        y = r.integers(0, out, n)
    else:
        y = r.standard_normal((n, out)).astype(dtype)
    return x, y


def _plain_rule(r):
    k = r.integers(14)
    return [lambda: fl.Descent(0.05), lambda: fl.Momentum(0.02, 0.8),
            lambda: fl.Nesterov(0.02, 0.8), lambda: fl.RMSProp(0.01),
            lambda: fl.Adam(0.01), lambda: fl.AdamW(0.01, lambd=float(r.choice([0.0, 0.01]))),
            lambda: fl.RAdam(0.01), lambda: fl.NAdam(0.01), lambda: fl.AdaMax(0.01),
            lambda: fl.AMSGrad(0.01), lambda: fl.OAdam(0.01), lambda: fl.AdaBelief(0.01),
            lambda: fl.AdaGrad(0.05), lambda: fl.Lion(0.001)][k]()


def random_rule(r):
    k = r.integers(6)
    if k <= 2:
        return _plain_rule(r)
    parts = []
    if r.integers(2):
        parts.append(fl.ClipNorm(float(r.choice([0.1, 1.0])))
                     if r.integers(2) else fl.ClipGrad(0.05))
    if r.integers(3) == 0:
        parts.append(fl.WeightDecay(0.01) if r.integers(2) else fl.SignDecay(0.001))
    if k == 5:
        parts.insert(0, fl.AccumGrad(int(r.integers(2, 4))))
    parts.append(_plain_rule(r))
    return fl.OptimiserChain(*parts)


def _objects(model, cls):
    return [m for m in fl.modules(model) if isinstance(m, cls)] if cls is not Shift else \
        _shifts(model)


def _shifts(model):
    found = []
    stack = [model]
    while stack:
        x = stack.pop()
        if isinstance(x, Shift):
            found.append(x)
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, fl.Module):
            stack.extend(vars(x).values())
    return found


def _state_parts(state):
    """Some parts of the optimiser state (a Node or Leaf each) to freeze."""
    parts = []
    stack = [state]
    while stack:
        x = stack.pop()
        if isinstance(x, (fl.Leaf,)) or type(x).__name__ == "Node":
            parts.append(x)
        if isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif type(x).__name__ == "Node":
            stack.extend(getattr(x, k) for k in x._fields)
    return parts


EVENTS = ("eta", "eta_part", "beta", "clip", "freeze", "thaw", "trainmode", "testmode",
          "automode", "activation", "momentum", "dropout_p", "options", "replace", "partial",
          "dtype")


def random_events(r, steps):
    """``{step: event name}``: what happens before that step."""
    return {int(k): EVENTS[r.integers(len(EVENTS))]
            for k in r.choice(np.arange(1, steps), size=min(steps - 1, int(r.integers(1, 4))),
                              replace=False)}


def apply_event(event, choice, model, state):
    """Apply ``event`` to ``model`` and ``state``, choosing among candidates with ``choice``
    (a number in [0, 1), the same for both copies). Returns False when it does not apply."""
    def pick(xs):
        return xs[int(choice * len(xs))] if xs else None

    if event == "eta":
        fl.adjust(state, eta=0.001 + 0.05 * choice)
    elif event == "eta_part":  # a part of the state gets rules of its own
        part = pick(_state_parts(state))
        if part is None:
            return False
        fl.adjust(part, eta=0.001 + 0.05 * choice)
    elif event == "beta":
        names = set().union(*(leaf.rule.names() for leaf in fl.optimise.interface._leaves(
            state)))
        if "beta" in names:
            fl.adjust(state, beta=(0.5 + 0.4 * choice, 0.95))
        elif "rho" in names:
            fl.adjust(state, rho=0.5 + 0.4 * choice)
        else:
            return False
    elif event == "clip":
        names = set().union(*(leaf.rule.names() for leaf in fl.optimise.interface._leaves(
            state)))
        if "omega" in names:
            fl.adjust(state, omega=0.01 + choice)
        elif "delta" in names:
            fl.adjust(state, delta=0.001 + 0.01 * choice)
        else:
            return False
    elif event in ("freeze", "thaw"):
        part = pick(_state_parts(state))
        if part is None:
            return False
        (fl.freeze if event == "freeze" else fl.thaw)(part)
    elif event == "trainmode":
        fl.trainmode(model)
    elif event == "testmode":
        fl.testmode(model)
    elif event == "automode":
        fl.trainmode(model, None)
    elif event == "activation":
        d = pick([m for m in fl.modules(model) if hasattr(m, "activation")])
        if d is None:
            return False
        d.activation = _ACTS[int(choice * 7) % len(_ACTS)]
    elif event == "momentum":
        b = pick(_objects(model, fl.BatchNorm))
        if b is None:
            return False
        b.momentum = 0.05 + 0.5 * choice
    elif event == "dropout_p":
        # (one with a generator of its own: the eager copy then draws the same numbers)
        d = pick([d for d in _objects(model, fl.Dropout) if d.rng is not None])
        if d is None:
            return False
        d.p = 0.1 + 0.5 * choice
    elif event == "options":
        s = pick(_objects(model, Shift))
        if s is None:
            return False
        s.options["square"] = not s.options["square"]
        s.options["gain"] = 0.5 + choice
    elif event == "replace":
        # a Dense of a named Chain replaced by a fresh one of the same shape (the optimiser
        # state, keyed by path, goes on serving it)
        chains = [c for c in _objects(model, fl.Chain) if isinstance(c.layers, dict) and any(
            isinstance(v, fl.Dense) for v in c.layers.values())]
        c = pick(chains)
        if c is None:
            return False
        key = next(k for k, v in c.layers.items() if isinstance(v, fl.Dense))
        old = c.layers[key]
        new = copy.deepcopy(old)
        new.weight = (old.weight * (0.5 + choice)).astype(old.weight.dtype)
        c.layers[key] = new
    elif event in ("partial", "dtype"):
        return True  # the step's batch is smaller, or of the other precision (draw_case)
    return True


# --- the check ---------------------------------------------------------------------------------

def compare(what, got, want, dtype, skip=()):
    """None when the two trees agree (structure, then every array and number), else a
    message. Paths that start with one in ``skip`` are not compared."""
    lg, sg = fl.tree.flatten(got)
    lw, sw = fl.tree.flatten(want)
    if len(lg) != len(lw):
        return f"{what}: {len(lg)} leaves, eager has {len(lw)}"
    paths = [p for p, _ in fl.tree.leaves_with_paths(want)]
    tol = TOL[dtype]
    for p, a, b in zip(paths, lg, lw):
        if any(p == s or p.startswith(s + ".") for s in skip) or skip and (
                p.endswith(".running_mean") or p.endswith(".running_var")):
            continue  # (the running statistics after such a parameter differ with it)
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return f"{what} {p}: shape {a.shape}, eager {b.shape}"
        if b.dtype.kind not in "fc":
            if not np.array_equal(a, b):
                return f"{what} {p}: {a} but eager has {b}"
            continue
        scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
        err = float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0))
        if not err <= tol * scale:
            return f"{what} {p}: max error {err:.3g} (scale {scale:.3g})"
    return None


def make_step(loss, returns=False, checkpointed=False):
    """The training step. ``returns``: it returns the state and the model ``fl.update``
    returns, which the caller rebinds (``state, model = step(...)``); ``checkpointed``: the
    loss runs under ``fl.checkpoint`` (recomputed in the backward pass)."""
    def step(model, state, x, y):
        def f(m):
            if checkpointed:
                return fl.checkpoint(lambda m, x: loss_value(loss, m, x, y))(m, x)
            return loss_value(loss, m, x, y)

        value, (g,) = fl.withgradient(f, model)
        if returns:
            state, model = fl.update(state, model, g)
            return (value, g), state, model
        fl.update(state, model, g)
        return value, g

    return step


def draw_seams(seed, model):
    """The features a ``--seams`` case adds to the seed's case (drawn from a generator of their
    own, so that the cases stay as they are): two Dense layers of one weight shape given one
    weight (tied, where the model has such a pair), the step returning the state and model,
    the loss under ``fl.checkpoint``."""
    r = np.random.default_rng([seed, 7])
    by_shape: dict = {}
    for d in _objects(model, fl.Dense):
        by_shape.setdefault(d.weight.shape, []).append(d)
    pairs = [ds for ds in by_shape.values() if len(ds) > 1]
    tied = bool(pairs) and bool(r.integers(3))
    if tied:
        ds = pairs[int(r.integers(len(pairs)))]
        ds[1].weight = ds[0].weight
    return dict(tied=tied, returns=bool(r.integers(2)), checkpointed=r.integers(3) == 0)


def degenerate(grads, dtype) -> set:
    """The paths of the parameters whose gradient is zero but for rounding (a bias before a
    normalisation that removes it): a rule that divides by the gradient's size (Adam's
    epsilon is tiny) or takes its sign steps by the rounding, which the compiled and eager
    steps need not share."""
    tol = 1e-10 if dtype == np.float64 else 1e-5
    return {p for p, g in fl.tree.leaves_with_paths(grads)
            if hasattr(g, "dtype") and g.size and float(np.max(np.abs(g))) < tol}


def draw_case(seed):
    """The case a seed gives: ``dict`` of model, state, loss, batches, events, dtype."""
    r = np.random.default_rng(seed)
    model, kind, shape, out = random_model(r)
    dtype = np.float64 if r.integers(3) else np.float32
    model = fl.f64(model) if dtype == np.float64 else model
    for s in _shifts(model):
        s.scale, s.shift = s.scale.astype(dtype), s.shift.astype(dtype)
        s.calls = s.calls.astype(dtype)
    loss = LOSSES[r.integers(len(LOSSES))]
    rule = random_rule(r)
    steps = int(r.integers(3, 6))
    n = int(r.integers(3, 6))
    events = random_events(r, steps)
    batches = [batch(r, kind, shape, out, loss, 2 if events.get(k) == "partial" else n,
                     (np.float32 if dtype == np.float64 else np.float64)
                     if events.get(k) == "dtype" else dtype)
               for k in range(steps)]
    choices = r.random(steps)
    return dict(model=model, rule=rule, loss=loss, batches=batches, events=events,
                choices=choices, dtype=dtype, kind=kind)


def describe(case) -> str:
    ev = ", ".join(f"{k}:{e}" for k, e in sorted(case["events"].items()))
    return (f"{case['kind']} {np.dtype(case['dtype']).name} loss={case['loss']} "
            f"rule={case['rule']!r} events=[{ev}]")


def run_case(seed, backend="numpy", background=False, device=False, seams=False):
    """``"ok"``, ``"refused: ..."`` (a CompileError) or ``"FAIL: ..."``. ``background``: XLA
    compiles in a background thread while the calls run the NumPy code (its tier switch
    comes somewhere between the steps). ``device``: the compiled run's model and state are
    ``jax.Array``s (``fl.xla``: device-resident state, rebound after each step). ``seams``:
    with the features of :func:`draw_seams` (a tied weight, a step returning the state and
    model, the loss under ``fl.checkpoint``)."""
    case = draw_case(seed)
    model = case["model"]
    extra = draw_seams(seed, model) if seams else dict(returns=False, checkpointed=False)
    state = fl.setup(case["rule"], model)
    eager_model, eager_state = copy.deepcopy((model, state))
    if device:
        holder = [model, state]  # (JAX arrays are rebound in the containers that hold them)
        holder[:] = fl.xla(holder)
        model, state = holder
    step = make_step(case["loss"], extra["returns"], extra["checkpointed"])
    compiled = fl.compile(step, backend=backend, background=background)
    dtype = case["dtype"]
    skip: set = set()
    for k, (x, y) in enumerate(case["batches"]):
        event = case["events"].get(k)
        if event is not None:
            c = float(case["choices"][k])
            apply_event(event, c, model, state)
            apply_event(event, c, eager_model, eager_state)
        try:
            want = step(eager_model, eager_state, x, y)
            if extra["returns"]:
                want, eager_state, eager_model = want
        except Exception as e:  # noqa: BLE001 - an eager failure: nothing to compare
            return f"skip: eager raised {type(e).__name__}: {str(e)[:120]}"
        try:
            got = compiled(model, state, x, y)
            if extra["returns"]:
                got, state, model = got
        except CompileError as e:
            return "refused: " + " ".join(str(e).split())[:300]
        except Exception as e:  # noqa: BLE001 (a fuzzer reports)
            where = traceback.extract_tb(e.__traceback__)[-1]
            return (f"FAIL: step {k}: {type(e).__name__}: {' '.join(str(e).split())[:300]} "
                    f"({where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
        skip |= degenerate(want[1], dtype)
        msg = (compare(f"step {k} loss and gradient", got, want, dtype)
               or compare(f"step {k} model", model, eager_model, dtype, skip)
               or compare(f"step {k} state", state, eager_state, dtype, skip))
        if not msg and extra.get("tied") and _ties(model) != _ties(eager_model):
            msg = f"step {k}: the tied weights {_ties(eager_model)} became {_ties(model)}"
        if msg:
            return "FAIL: " + msg
    return "ok"


def _ties(model) -> list:
    """The paths of the arrays found at an earlier path too (tied)."""
    seen: dict = {}
    return [p for p, a in fl.tree.leaves_with_paths(model)
            if hasattr(a, "shape") and seen.setdefault(id(a), p) != p]


# --- a compiled model (its forward), trained eagerly between calls ------------------------------

def run_forward_case(seed, backend="numpy"):
    """``fl.compile(model)`` against ``model(x)`` in test mode, with eager training steps and
    the case's events between calls: the compiled forward must see the weights, running
    statistics and settings as they are at each call."""
    case = draw_case(seed)
    model = case["model"]
    fl.testmode(model)
    state = fl.setup(case["rule"], model)
    eager_model, eager_state = copy.deepcopy((model, state))
    predict = fl.compile(model, backend=backend, background=False)
    step = make_step(case["loss"])
    dtype = case["dtype"]
    for k, (x, y) in enumerate(case["batches"]):
        event = case["events"].get(k)
        if event in ("trainmode", "automode"):  # (random masks outside a gradient)
            event = "testmode"
        if event is not None:
            c = float(case["choices"][k])
            apply_event(event, c, model, state)
            apply_event(event, c, eager_model, eager_state)
        try:
            want = eager_model(x)
        except Exception as e:  # noqa: BLE001 - an eager failure: nothing to compare
            return f"skip: eager raised {type(e).__name__}: {str(e)[:120]}"
        try:
            got = predict(x)
        except CompileError as e:
            return "refused: " + " ".join(str(e).split())[:300]
        except Exception as e:  # noqa: BLE001 (a fuzzer reports)
            return f"FAIL: call {k}: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
        msg = compare(f"call {k} output", got, want, dtype) or compare(
            f"call {k} model", model, eager_model, dtype)
        if msg:
            return "FAIL: " + msg
        step(model, state, x, y)  # the same eager step on both copies
        step(eager_model, eager_state, x, y)
    return "ok"


# --- fl.train(..., compile=...) against eager fl.train ----------------------------------------

class Events(fl.Callback):
    """The case's events, at the start of an epoch (``{epoch index: event}``)."""

    def __init__(self, events, choices):
        self.events, self.choices = events, choices

    def on_epoch_begin(self, run):
        k = run.epoch - 1
        if k in self.events and self.events[k] not in ("partial", "dtype"):
            apply_event(self.events[k], float(self.choices[k]), run.model, run.state)


_SCHEDULES = (lambda: fl.StepDecay(0.02, 0.5, 2), lambda: fl.ExpDecay(0.03, 0.7),
              lambda: fl.CosineAnneal(0.02, period=5, warmup=2))


def run_train_case(seed, backend="numpy", directory=None):
    """``fl.train`` with ``compile=backend`` and eager, from copies of one case: two runs of
    a few epochs each (the second resumed from a checkpoint the first saved, with a fresh
    optimiser state, as a new process would), with the case's events between epochs, a
    learning-rate schedule and early stopping. The histories, models and states must agree."""
    import tempfile

    case = draw_case(seed)
    r = np.random.default_rng(seed + 1)
    schedule = _SCHEDULES[r.integers(len(_SCHEDULES))]()
    every = ("step", "epoch")[r.integers(2)]
    patience = int(r.integers(1, 3))
    loss_name = case["loss"]

    def loss(m, x, y):
        return loss_value(loss_name, m, x, y)

    data = case["batches"]
    epochs = len(data) - 1
    results = []
    directory = directory or tempfile.mkdtemp()
    for compiled in (backend, False):
        model = copy.deepcopy(case["model"])
        rule = copy.deepcopy(case["rule"])
        state = fl.setup(rule, model)
        path = f"{directory}/ckpt-{'c' if compiled else 'e'}.st"
        callbacks = [fl.LRSchedule(schedule, every=every), Events(case["events"],
                                                                  case["choices"]),
                     fl.EarlyStopping(patience=patience), fl.SaveCheckpoint(path)]
        try:
            h1 = fl.train(loss, model, data, state, epochs=epochs, callbacks=callbacks,
                          progress=False, compile=compiled)
            state2 = fl.setup(rule, model)  # (a new process: the rule as first set up)
            info = fl.load_checkpoint(path, model, state2)
            h1b = fl.History.from_dict(info.extra["history"])
            h2 = fl.train(loss, model, data[::-1], state2, epochs=2, progress=False,
                          history=h1b, compile=compiled,
                          callbacks=[fl.LRSchedule(schedule, every=every)])
        except CompileError as e:
            return "refused: " + " ".join(str(e).split())[:300]
        except Exception as e:  # noqa: BLE001 (a fuzzer reports)
            if not compiled:
                return f"skip: eager raised {type(e).__name__}: {str(e)[:120]}"
            where = traceback.extract_tb(e.__traceback__)[-1]
            return (f"FAIL: {type(e).__name__}: {' '.join(str(e).split())[:300]} "
                    f"({where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
        results.append((h1.losses, h2.losses, model, state2))
    (l1, l2, m, s), (e1, e2, em, es) = results
    dtype = case["dtype"]
    msg = (compare("first run's losses", np.array(l1), np.array(e1), dtype)
           or compare("resumed run's losses", np.array(l2), np.array(e2), dtype)
           or compare("model", m, em, dtype) or compare("state", s, es, dtype))
    return "FAIL: " + msg if msg else "ok"


def main(argv):
    n = int(argv[0]) if argv and argv[0].isdigit() else 200
    run = run_train_case if "--train" in argv else run_forward_case if "--forward" in argv \
        else (lambda seed, b: run_case(seed, b, True)) if "--background" in argv \
        else (lambda seed, b: run_case(seed, b, device=True)) if "--device" in argv \
        else (lambda seed, b: run_case(seed, b, seams=True)) if "--seams" in argv else run_case
    backends = [a for a in argv if not a.isdigit() and not a.startswith("--")] or ["numpy"]
    counts: dict = {}
    for backend in backends:
        for seed in range(n):
            result = run(seed, backend)
            head = result.split(":")[0]
            counts[(backend, head)] = counts.get((backend, head), 0) + 1
            if head not in ("ok", "skip"):
                print(f"[{backend}] seed {seed}: {result}\n    {describe(draw_case(seed))}",
                      flush=True)
    for (backend, head), c in sorted(counts.items()):
        print(f"{backend}: {head} {c}")


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    main(sys.argv[1:])
