"""Grouping-plan fuzzer: random sequences of what a training loop may do between updates,
run twice on one seed: with the grouping of small arrays kept between steps
(``foreach._Plan``, as ``update`` does) and with the arrays grouped anew at every step (as
before the plan was kept). After every step the model's arrays and the state's must be the
same bit for bit, and a step that raises must raise the same error in both runs.

Arrays are float16, float32, float64, now and then complex. What changes between steps:
arrays replaced (the same shape, another dtype or shape, Fortran order), reshaped or written
in place, tied to another one, made a view of another; state arrays and step counts written
in place, a Leaf's state replaced by a copy or by another array's, a whole Leaf by a fresh
one, the state deep-copied, pickled or rebuilt by ``fl.fmap``; ``fl.adjust`` of one Leaf or
all, ``freeze`` and ``thaw``; a checkpoint saved and loaded into the same model and state,
``fl.loadmodel`` of an earlier snapshot; parts appended and removed; ``foreach.SMALL``
changed; gradients None, transposed, of another dtype, a 0-d array's a number; a second
model sharing the state, stepped alternately; steps by ``fl.train`` (its gradient through
``fl.mse``) beside ``fl.update``. Rules: fluxml's elementwise ones and a user's rules with
tuple and namedtuple states (a counter, a None field).

``python -m tests.optimise.fuzz_plan N FIRST``: cases FIRST .. FIRST + N - 1 (each a seed),
each failure printed with its seed. ``python -m tests.optimise.fuzz_plan N FIRST digests``
prints one digest per seed instead (of the run that keeps the plan where there is one), to
compare with another checkout's (``PYTHONPATH=<old>/src``), without the changes after which
a state no longer fits (``digests misfits``: with them; an error may come earlier).
``test_fuzz_plan.py`` runs a few."""

from __future__ import annotations

import collections
import copy
import dataclasses
import hashlib
import os
import pickle
import sys
import tempfile
import warnings

import numpy as np

import fluxml as fl
from fluxml.optimise import foreach
from fluxml.optimise.base import Rule

UserState = collections.namedtuple("UserState", "v none t")


@dataclasses.dataclass
class TupleMomentum(Rule):
    """A user's rule with a plain tuple state holding a step count (its step uses it)."""

    eta: float = 0.05
    rho: float = 0.9
    elementwise = True

    def init(self, x):
        return (np.zeros_like(x), np.zeros((), np.int64))

    def apply(self, state, x, dx, out=None):
        v, t = state
        v *= self.rho
        v += dx
        t = t + 1
        return (v, t), (self.eta / (1.0 + 0.5 / float(t))) * v


@dataclasses.dataclass
class NamedSign(Rule):
    """A user's rule with a namedtuple state (a None field) and no ``out`` argument."""

    eta: float = 0.01
    elementwise = True

    def init(self, x):
        return UserState(np.zeros_like(x), None, np.zeros((), np.int64))

    def apply(self, state, x, dx):
        v = state.v
        v += np.sign(dx) - 0.1 * v
        t = state.t + 1
        return UserState(v, None, t), self.eta * v / float(t) + 0.001 * x


RULES = [
    lambda: fl.Adam(0.05), lambda: fl.AdamW(0.05), lambda: fl.Momentum(0.05),
    lambda: fl.Nesterov(0.05), lambda: fl.RMSProp(0.01), lambda: fl.Rprop(0.01),
    lambda: fl.AdaGrad(0.05), lambda: fl.AdaDelta(), lambda: fl.Lion(0.01),
    lambda: fl.RAdam(0.05), lambda: fl.NAdam(0.05), lambda: fl.AdaMax(0.05),
    lambda: fl.AMSGrad(0.05), lambda: fl.OAdam(0.05), lambda: fl.AdaBelief(0.05),
    lambda: fl.Descent(0.05), lambda: fl.OptimiserChain(fl.WeightDecay(0.01), fl.Adam(0.05)),
    TupleMomentum, NamedSign,
]
DTYPES = (np.float32, np.float64, np.float16)
VIEWS = True  # (a view of another array: update refuses it)
SHAPES = ((), (1,), (3,), (2, 3), (3, 2), (4, 4), (2, 1, 3), (70, 60))


class Case:
    """One random run: a model (a dict of arrays and a list of Dense layers), its state (a
    dict of sub-states, some sharing a rule object), and the random choices, drawn from the
    seed alone (never from the numbers computed, so that both runs draw the same)."""

    def __init__(self, seed, regroup, misfits=True):
        self.misfits = misfits  # (changes after which the state no longer fits)
        self.snapshot = None  # (fl.state of the model, for loadmodel)
        self.rng = np.random.default_rng(seed)
        self.regroup = regroup
        self.log: list = []
        rng = self.rng
        self.rules = [RULES[i]() for i in rng.integers(len(RULES), size=3)]
        self.model = {}
        for i in range(int(rng.integers(3, 8))):
            self.model[f"p{i}"] = self.array(rng)
        n = int(rng.integers(2, 5))
        dtype = DTYPES[int(rng.integers(2))]
        fl.seed(int(rng.integers(1 << 30)))
        self.model["net"] = [fl.Dense(n, 3, np.tanh, dtype=dtype), fl.Dense(3, 2, dtype=dtype)]
        if rng.random() < 0.3:  # a tied array
            self.model["tied"] = self.model["p0"]
        self.state = {}
        keys = list(self.model)
        while keys:
            take = keys[:int(rng.integers(1, 4))]
            if "tied" in keys and "p0" in take and "tied" not in take:
                take.append("tied")
            keys = [k for k in keys if k not in take]
            rule = self.rules[int(rng.integers(len(self.rules)))]
            self.state.update(fl.setup(rule, {k: self.model[k] for k in take}))
        self.models = [self.model]
        if rng.random() < 0.2:  # a second model stepped with the same state, alternately
            self.models.append(copy.deepcopy(self.model))

    def array(self, rng, shape=None, dtype=None):
        shape = SHAPES[int(rng.integers(len(SHAPES)))] if shape is None else shape
        if dtype is None:  # (a complex one now and then: stepped as its real pairs)
            dtype = DTYPES[int(rng.integers(3))] if rng.random() < 0.9 else \
                (np.complex64, np.complex128)[int(rng.integers(2))]
        if np.dtype(dtype).kind == "c":
            return np.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape), dtype)
        return rng.standard_normal(shape).astype(dtype)

    def keys(self):
        return [k for k in self.model if k.startswith("p") and self.model[k] is not None]

    def leaves(self):
        return fl.optimise.interface._leaves(self.state)

    def change(self, step):
        rng, model = self.rng, self.model
        what = ["replace", "dtype", "fortran", "write_x", "write_state", "count", "adjust",
                "adjust_one", "freeze", "thaw", "copy_state", "new_leaf", "deepcopy", "pickle",
                "fmap", "checkpoint", "append", "remove", "small", "tie", "view", "layer",
                "rule", "none", "loadmodel", "shape", "misfit"][
                    int(rng.integers(27 if self.misfits else 25))]
        keys = self.keys()
        k = keys[int(rng.integers(len(keys)))] if keys else None
        leaves = self.leaves()
        leaf = leaves[int(rng.integers(len(leaves)))] if leaves else None
        r = rng.random()
        self.log.append(f"{step}:{what}:{k}")
        if what == "replace" and k:
            self.replace(k, model[k].copy())
        elif what == "dtype" and k:
            self.replace(k, model[k].astype(DTYPES[int(rng.integers(3))]))
        elif what == "fortran" and k and model[k].ndim > 1:
            self.replace(k, np.asfortranarray(model[k]))
        elif what == "write_x" and k:
            model[k][...] = self.array(rng, np.shape(model[k]), model[k].dtype)
        elif what == "write_state" and leaf is not None:
            for s in fl.leaves(leaf.state):
                if isinstance(s, np.ndarray) and s.dtype.kind == "f" and r < 0.7:
                    s[...] = np.abs(rng.standard_normal(s.shape))
        elif what == "count" and leaf is not None:
            for s in fl.leaves(leaf.state):
                if isinstance(s, np.ndarray) and s.dtype.kind == "i":
                    s[...] = int(rng.integers(0, 3))
        elif what == "adjust":
            try:
                fl.adjust(self.state, float(rng.uniform(0.001, 0.1)))
            except ValueError:
                pass
        elif what == "adjust_one" and leaf is not None:
            try:
                fl.adjust(leaf, float(rng.uniform(0.001, 0.1)))
            except ValueError:
                pass
        elif what == "freeze" and leaf is not None:
            fl.freeze(leaf)
        elif what == "thaw":
            fl.thaw(self.state)
        elif what == "copy_state" and leaf is not None:
            leaf.state = fl.fmap(np.copy, leaf.state)
        elif what == "new_leaf" and k and k in self.state:
            rule = self.rules[int(rng.integers(len(self.rules)))]
            self.state[k] = fl.setup(rule, {k: model[k]})[k]
        elif what == "deepcopy":
            self.state = copy.deepcopy(self.state)
        elif what == "pickle":
            self.state = pickle.loads(pickle.dumps(self.state))
        elif what == "fmap":
            self.state = fl.fmap(np.copy, self.state)
        elif what == "checkpoint":
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "c.st")
                try:
                    fl.save_checkpoint(path, model, self.state, step=step)
                    fl.load_checkpoint(path, model, self.state)
                except Exception as err:  # noqa: BLE001 - the same in both runs
                    self.log.append(f"checkpoint: {type(err).__name__}")
        elif what == "append":
            name = f"p{len(model) + step}"
            model[name] = self.array(rng)
            rule = self.rules[int(rng.integers(len(self.rules)))]
            self.state.update(fl.setup(rule, {name: model[name]}))
        elif what == "remove" and k and len(keys) > 1:
            del model[k]
            self.state.pop(k, None)
        elif what == "small":
            foreach.SMALL = (0, 1, 4, 7, 64, 4096)[int(rng.integers(6))]
        elif what == "tie" and k:
            same = [j for j in keys if j != k and model[j].shape == model[k].shape]
            if same:
                model[same[0]] = model[k]
        elif what == "view" and k and VIEWS:
            same = [j for j in keys if j != k and model[j].shape == model[k].shape
                    and model[j].dtype == model[k].dtype]
            if same:
                model[same[0]] = model[k][...]
        elif what == "layer" and len(self.models) == 1:
            net, sub = model["net"], self.state.get("net")
            if r < 0.5 and sub is not None:
                layer = fl.Dense(2, 2, dtype=net[-1].weight.dtype)
                net.append(layer)
                sub.append(fl.setup(self.rules[0], layer))
            elif len(net) > 2 and sub is not None:
                net.pop()
                sub.pop()
        elif what == "rule" and leaf is not None:
            leaf.rule = copy.copy(leaf.rule)  # an equal rule, another object
        elif what == "loadmodel":  # the model's arrays loaded from a snapshot, in place
            if self.snapshot is not None:
                try:
                    fl.loadmodel(model, self.snapshot)
                except Exception as err:  # noqa: BLE001 - the same in both runs
                    self.log.append(f"loadmodel: {type(err).__name__}")
            self.snapshot = copy.deepcopy(fl.state(model))
        elif what == "shape" and k and model[k].size > 1 and r < 0.3:  # (a misfit state)
            if r < 0.15 and model[k].flags.c_contiguous:
                model[k].shape = (model[k].size,)  # in place
            else:
                self.replace(k, self.array(rng, dtype=model[k].dtype))
        elif what == "misfit" and k and isinstance(self.state.get(k), fl.Leaf) and r < 0.3:
            other = fl.setup(self.state[k].rule, {"o": self.array(rng)})  # another's state
            if other is not None:
                self.state[k].state = other["o"].state
        elif what == "none" and k and k in self.state:
            model[k] = None
            self.state[k] = None

    def replace(self, k, new):
        """``model[k] = new``, and at every key that held the same array (a tied one)."""
        old = self.model[k]
        for j, v in self.model.items():
            if v is old:
                self.model[j] = new

    def grads(self, model):
        rng = self.rng
        g = {}
        for k, v in model.items():
            if k == "net":
                g[k] = [None if rng.random() < 0.1 else
                        fl.fmap(lambda a: rng.standard_normal(a.shape).astype(a.dtype), layer)
                        for layer in v]
                continue
            if v is None:
                g[k] = None
                continue
            r = rng.random()
            d = self.array(rng, v.shape, v.dtype)
            if r < 0.1:
                d = None
            elif r < 0.3 and d.ndim == 2:
                d = np.ascontiguousarray(d.T).T  # a transposed view, as x @ W.T gives
            elif r < 0.35:
                d = d.astype(DTYPES[int(rng.integers(3))])
            elif r < 0.5 and d.ndim == 0:  # a NumPy scalar or a Python float
                d = d[()] if r < 0.45 or d.dtype.kind == "c" else float(d)
            g[k] = d
        return g

    def run(self, steps):
        """The digest of the model and state after each step (or the error that ended it)."""
        out = []
        for step in range(steps):
            for _ in range(int(self.rng.integers(0, 3))):
                self.change(step)
            model = self.models[step % len(self.models)]
            if len(self.models) > 1:
                model.update({k: v for k, v in self.model.items() if k not in model})
                for k in [k for k in model if k not in self.model]:
                    del model[k]
                for k in model:  # (the structure follows the first model's)
                    if self.model[k] is None:
                        model[k] = None
            try:
                if self.rng.random() < 0.2:
                    x = self.rng.standard_normal((5, model["net"][0].weight.shape[1]))
                    x = x.astype(model["net"][0].weight.dtype)
                    y = self.rng.standard_normal((5, 2)).astype(x.dtype)
                    fl.train(lambda m, x, y: fl.mse(m["net"][1](m["net"][0](x)), y), model,
                             [(x, y)], self.state, progress=False)
                else:
                    fl.update(self.state, model, self.grads(model))
            except Exception as err:  # noqa: BLE001 - compared between the runs
                out.append(f"{type(err).__name__}: {err}"[:200])
                break
            out.append(digest((self.models, self.state)))
        return out


def digest(tree) -> str:
    h = hashlib.sha1()
    for a in fl.leaves(tree):
        a = np.asarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _run(seed, regroup, steps, misfits=True):
    saved_small, saved_of = foreach.SMALL, getattr(foreach, "_Plan", None)
    if regroup and saved_of is not None:
        plan = foreach._Plan
        of = plan.of
        plan.of = staticmethod(lambda items: plan(items))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case = Case(seed, regroup, misfits)
            return case.run(steps), case.log
    finally:
        foreach.SMALL = saved_small
        if regroup and saved_of is not None:
            foreach._Plan.of = staticmethod(of)


def run_case(seed, steps=12) -> list:
    """The failures of one seed: the first step where keeping the plan and grouping anew
    disagree (with the changes made up to it)."""
    kept, log = _run(seed, False, steps)
    anew, _ = _run(seed, True, steps)
    for i, (a, b) in enumerate(zip(kept, anew)):
        if a != b:
            return [f"step {i}: kept {a} / anew {b}; changes {log}"]
    if len(kept) != len(anew):
        return [f"{len(kept)} steps kept, {len(anew)} anew; changes {log}"]
    return []


def main(argv) -> int:
    if len(argv) > 2 and argv[2] == "digests":
        n, first = int(argv[0]), int(argv[1])
        for seed in range(first, first + n):
            steps, _ = _run(seed, False, 12, misfits=len(argv) > 3)
            print(seed, len(steps), digest_text(steps))
        return 0
    from tests.io.fuzz_cli import run_seeds

    return run_seeds(run_case, argv, 100)


def digest_text(steps) -> str:
    return hashlib.sha1("|".join(steps).encode()).hexdigest()[:16]


if __name__ == "__main__":
    sys.exit(bool(main(sys.argv[1:])))
