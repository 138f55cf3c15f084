"""A seeded fuzzer of saving and loading: random models and optimiser states, saved and loaded
into freshly built ones.

Each case builds a random model (nested and named Chains of Dense, BatchNorm with moved
running statistics, LayerNorm and recurrent layers in float16/32/64, beside a tree of dicts,
tuples, lists and plain objects holding integer arrays, numbers, None, strings and arrays tied
at two addresses) and a random optimiser state (any rule or OptimiserChain, hyperparameters
adjusted per part, bool ones too, frozen parts), trains it a few steps, then checks:

- ``fl.save``/``fl.load``/``fl.loadmodel`` into a model built again with other random numbers
  gives the same parameters (bitwise, same dtypes) and the same outputs; the optimiser state
  likewise, hyperparameters and frozen flags included;
- ``save_checkpoint``/``load_checkpoint``: training continued after the load matches the
  uninterrupted run exactly, the data loader's shuffling included (by a generator of any
  kind NumPy has);
- with ``--peers``: the files are read by the ``safetensors`` package (NumPy and PyTorch).

The suite runs a few seeds (tests/io/test_fuzz_io.py); by hand, with the peers:

    PYTHONPATH=src /work/.bench-venv/bin/python tests/io/fuzz_io.py --cases 300 --peers
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile

import numpy as np

import fluxml as fl

DTYPES = (np.float16, np.float32, np.float64)


class Plain:
    """A user's plain class: attributes, no base class."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


# --- random models ----------------------------------------------------------------------------


def _layer(rs, n_in, dtype):
    """A random layer on (N, n_in) and its output width."""
    kind = rs.choice(["dense", "dense", "batchnorm", "layernorm", "chain", "named"])
    if kind == "dense":
        out = int(rs.integers(1, 5))
        act = [fl.identity, np.tanh, fl.relu][rs.integers(3)]
        return fl.Dense(n_in, out, act, bias=bool(rs.integers(4))), out
    if kind == "batchnorm":
        return fl.BatchNorm(n_in), n_in
    if kind == "layernorm":
        return fl.LayerNorm(n_in), n_in
    layers, width = [], n_in
    for _ in range(int(rs.integers(1, 3))):
        layer, width = _layer(rs, width, dtype)
        layers.append(layer)
    if kind == "named":
        return fl.Chain(**{f"l{i}": lay for i, lay in enumerate(layers)}), width
    return fl.Chain(*layers), width


def _recurrent(rs, n_in):
    kind = [fl.RNN, fl.LSTM, fl.GRU][rs.integers(3)]
    hidden = int(rs.integers(1, 4))
    return kind(n_in, hidden), hidden


def _data_tree(rs, rv, depth, shared):
    """A random tree of arrays (some trainable, some not), numbers and static parts."""
    kind = rs.choice(["array", "array", "int", "number", "none", "str", "tied", "dict",
                      "tuple", "list", "plain"] if depth < 3 else
                     ["array", "int", "number", "tied"])
    if kind == "array":
        shape = tuple(int(d) for d in rs.integers(1, 4, size=rs.integers(0, 3)))
        x = rv.normal(size=shape).astype(DTYPES[rs.integers(3)])
        return np.asarray(x)  # (a 0-d array stays an array)
    if kind == "int":
        return rv.integers(-5, 5, size=int(rs.integers(1, 4))).astype(
            [np.int32, np.int64, np.uint8][rs.integers(3)])
    if kind == "number":
        return [int(rv.integers(9)), float(rv.normal())][rs.integers(2)]
    if kind == "none":
        return None
    if kind == "str":
        return "static"
    if kind == "tied":
        if not shared:
            shared.append(rv.normal(size=2).astype(np.float32))
        return shared[0]
    n = int(rs.integers(1, 4))
    kids = [_data_tree(rs, rv, depth + 1, shared) for _ in range(n)]
    if kind == "dict":
        return {f"k{i}": k for i, k in enumerate(kids)}
    if kind == "tuple":
        return tuple(kids)
    if kind == "list":
        return kids
    return Plain(**{f"f{i}": k for i, k in enumerate(kids)})


def build(structure_seed: int, value_seed: int):
    """The model of ``structure_seed`` with values drawn from ``value_seed``: the same seed
    gives the same structure, another value seed a model as a fresh process would build."""
    rs, rv = np.random.default_rng(structure_seed), np.random.default_rng(value_seed + 1)
    fl.seed(value_seed)
    n_in = int(rs.integers(1, 4))
    dtype = DTYPES[rs.integers(3)]
    layers, width = [], n_in
    for _ in range(int(rs.integers(1, 4))):
        layer, width = _layer(rs, width, dtype)
        layers.append(layer)
    mlp = fl.Chain(*layers)
    rnn, _ = _recurrent(rs, n_in)
    cast = {"float16": fl.f16, "float32": fl.f32, "float64": fl.f64}[np.dtype(dtype).name]
    tree = Plain(mlp=cast(mlp),
                 rnn=[fl.f32, fl.f64][rs.integers(2)](rnn) if rs.integers(3) else None,
                 data=_data_tree(rs, rv, 0, []), name="model", count=3)
    for bn in _batchnorms(tree.mlp):  # running statistics away from their initial values
        bn.running_mean[...] = rv.normal(size=bn.running_mean.shape)
        bn.running_var[...] = rv.uniform(0.5, 2, size=bn.running_var.shape)
    return tree


def _batchnorms(layer):
    if isinstance(layer, fl.BatchNorm):
        return [layer]
    if isinstance(layer, fl.Chain):
        parts = layer.layers.values() if isinstance(layer.layers, dict) else layer.layers
        return [bn for sub in parts for bn in _batchnorms(sub)]
    return []


def inputs(model, seed: int):
    rng = np.random.default_rng(seed)
    first = model.mlp
    while isinstance(first, fl.Chain):
        parts = first.layers
        first = next(iter(parts.values())) if isinstance(parts, dict) else parts[0]
    dtype = fl.leaves(first)[0].dtype
    n_in = _in_width(first)
    x = rng.normal(size=(4, n_in)).astype(dtype)
    xs = None
    if model.rnn is not None:
        rdtype = model.rnn.cell.weight_ih.dtype
        xs = rng.normal(size=(3, 2, model.rnn.cell.sizes[0])).astype(rdtype)
    return x, xs


def _in_width(layer):
    if isinstance(layer, fl.Dense):
        return layer.weight.shape[1]
    return fl.leaves(layer)[0].shape[-1]


def outputs(model, x, xs):
    """Every output of the model outside a gradient (BatchNorm reads its running
    statistics)."""
    ys = [np.asarray(model.mlp(x))]
    if xs is not None:
        ys.append(np.asarray(model.rnn(xs)))
    return ys


def loss(model, x, xs, noise):
    """A loss that reaches every trainable array (tied ones twice) in training mode."""
    total = np.sum(np.tanh(model.mlp(x)) * noise[0])
    if xs is not None:
        total = total + np.sum(model.rnn(xs) ** 2) * noise[1]
    for a in fl.leaves(model.data):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            total = total + np.sum(np.sin(a.astype(np.float64)) * noise[2])
    return total


# --- random optimiser states ------------------------------------------------------------------


SIMPLE = (fl.Descent, fl.Momentum, fl.Nesterov, fl.RMSProp, fl.Rprop, fl.AdaGrad, fl.AdaDelta,
          fl.Lion, fl.Adam, fl.AdamW, fl.RAdam, fl.NAdam, fl.AdaMax, fl.AMSGrad, fl.OAdam,
          fl.AdaBelief, fl.ClipGrad, fl.ClipNorm, fl.WeightDecay, fl.SignDecay, fl.AccumGrad)
STEPPING = tuple(r for r in SIMPLE if r not in (fl.ClipGrad, fl.ClipNorm, fl.WeightDecay,
                                                fl.SignDecay, fl.AccumGrad))


def _perturbed(v, r):
    if isinstance(v, bool):
        return bool(r.integers(2))
    if isinstance(v, int):
        return int(v + r.integers(0, 3))
    if isinstance(v, float):
        if v == 0:  # (AdamW's lambd: a weight decay that couple acts on)
            return float(r.uniform(0, 0.01))
        if v > 1:  # (above 1 stays above: Rprop's ell[1] is refused at 1 or below)
            return float(v ** r.uniform(0.8, 1.2))
        return float(v ** r.uniform(0.8, 1.2)) if 0 < v < 1 else float(v * r.uniform(0.5, 2))
    if isinstance(v, tuple):
        return tuple(_perturbed(x, r) for x in v)
    return v


def random_rule(r):
    def one(kind):
        rule = kind()
        return dataclasses.replace(rule, **{f.name: _perturbed(getattr(rule, f.name), r)
                                            for f in dataclasses.fields(rule) if f.init})

    if r.integers(3):
        return one(STEPPING[r.integers(len(STEPPING))])
    parts = [one(SIMPLE[r.integers(len(SIMPLE))]) for _ in range(int(r.integers(1, 3)))]
    return fl.OptimiserChain(*parts, one(STEPPING[r.integers(len(STEPPING))]))


def _subtrees(state):
    """Every part of a state tree (Leafs, Nodes, containers) once."""
    out, stack = [], [state]
    while stack:
        t = stack.pop()
        if t is None or t in out:
            continue
        out.append(t)
        if isinstance(t, fl.optimise.Node):
            stack.extend(getattr(t, k) for k in t._fields)
        elif isinstance(t, dict):
            stack.extend(t.values())
        elif isinstance(t, (list, tuple)):
            stack.extend(t)
    return out


def random_state(rule, model, r):
    state = fl.setup(rule, model)
    parts = _subtrees(state)
    for _ in range(int(r.integers(0, 3))):  # another learning rate for some parts
        part = parts[r.integers(len(parts))]
        names = set().union(*(leaf.rule.names() for leaf in fl.optimise.interface._leaves(part)))
        if "eta" in names:
            fl.adjust(part, eta=float(r.uniform(1e-3, 0.1)))
        flags = sorted(names & {"couple", "throw"})  # (bool hyperparameters, per part too)
        if flags:
            fl.adjust(part, **{flags[r.integers(len(flags))]: bool(r.integers(2))})
    for _ in range(int(r.integers(0, 3))):
        fl.freeze(parts[r.integers(len(parts))])
    return state


# --- comparisons ------------------------------------------------------------------------------


def same_arrays(a, b, what):
    """Two flat states (dotted names) equal bit for bit (-0.0 is not 0.0), dtypes too."""
    if a.keys() != b.keys():
        raise AssertionError(f"{what}: names differ: {sorted(a.keys() ^ b.keys())}")
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.dtype != y.dtype or x.shape != y.shape or \
                np.ascontiguousarray(x).tobytes() != np.ascontiguousarray(y).tobytes():
            raise AssertionError(f"{what}: {k}: {x.dtype}{x.shape} {x} != {y.dtype}{y.shape} {y}")


def flat(tree):
    return fl.io.modelstate.flat_state(tree)


def leaf_facts(state):
    """Each Leaf's rule and frozen flag, in order."""
    return [(leaf.rule, leaf.frozen) for leaf in fl.optimise.interface._leaves(state)]


def same_states(a, b, what):
    same_arrays(flat(a), flat(b), what)
    fa, fb = leaf_facts(a), leaf_facts(b)
    if fa != fb:
        diff = next(i for i, (p, q) in enumerate(zip(fa, fb)) if p != q)
        raise AssertionError(f"{what}: Leaf {diff}: {fa[diff]} != {fb[diff]}")


# --- one case ---------------------------------------------------------------------------------


def train(model, state, x, xs, steps, rng):
    for _ in range(steps):
        noise = rng.normal(size=3)
        grads = fl.gradient(lambda m: loss(m, x, xs, noise), model)[0]
        state, model = fl.update(state, model, grads)
    return state, model


def run_case(seed: int, folder: str, peers: bool = False) -> None:
    r = np.random.default_rng([seed, 1])
    model = build(seed, 1)
    x, xs = inputs(model, seed)
    rule = random_rule(r)
    state = random_state(rule, model, r)
    state, model = train(model, state, x, xs, int(r.integers(0, 3)), np.random.default_rng(7))

    # fl.save / fl.load into models built anew
    mpath, spath = os.path.join(folder, "m.safetensors"), os.path.join(folder, "s.safetensors")
    fl.save(mpath, model)
    fl.save(spath, state)
    fresh = fl.loadmodel(build(seed, 2), fl.load(mpath))
    same_arrays(flat(model), flat(fresh), f"seed {seed}: model after fl.load")
    for a, b in zip(outputs(model, x, xs), outputs(fresh, x, xs)):
        same_arrays({"y": a}, {"y": b}, f"seed {seed}: outputs after fl.load")
    fresh_state = fl.loadmodel(fl.setup(rule, fresh), fl.load(spath))
    same_states(state, fresh_state, f"seed {seed}: optimiser state after fl.load")

    # a checkpoint: the run continued after loading matches the uninterrupted run
    cpath = os.path.join(folder, "c.safetensors")
    kind = [np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64][seed % 4]
    loader = fl.DataLoader(np.arange(10), batchsize=3, shuffle=True,
                           rng=np.random.Generator(kind(seed)))
    fl.save_checkpoint(cpath, model, state, step=5, rngs={"data": loader.rng})
    steps = int(r.integers(1, 4))
    order = [b.tolist() for b in loader]
    state, model = train(model, state, x, xs, steps, np.random.default_rng(8))
    model2 = build(seed, 3)
    loader2 = fl.DataLoader(np.arange(10), batchsize=3, shuffle=True,
                            rng=np.random.Generator(kind(seed + 1)))
    info = fl.load_checkpoint(cpath, model2, fl.setup(rule, model2), rngs={"data": loader2.rng})
    assert info.step == 5
    assert [b.tolist() for b in loader2] == order, f"seed {seed}: the loader's order"
    state2, model2 = train(model2, info.opt_state, x, xs, steps, np.random.default_rng(8))
    same_arrays(flat(model), flat(model2), f"seed {seed}: model trained on after a checkpoint")
    same_states(state, state2, f"seed {seed}: optimiser state trained on after a checkpoint")

    if peers:
        check_peers(mpath, fl.io.modelstate.flat_state(fresh), seed)
        check_peers(cpath, None, seed)


def check_peers(path, expected, seed):
    """The file as the safetensors package reads it, with NumPy and with PyTorch."""
    from safetensors.numpy import load_file
    from safetensors.torch import load_file as torch_load

    theirs = load_file(path)
    ours = fl.io.safetensors.read(path)[0]
    same_arrays(ours, theirs, f"seed {seed}: safetensors.numpy reading {path}")
    if expected is not None:
        same_arrays(expected, theirs, f"seed {seed}: safetensors.numpy vs the model")
    for k, t in torch_load(path).items():
        same_arrays({k: ours[k]}, {k: t.numpy()}, f"seed {seed}: safetensors.torch reading "
                    f"{path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=100)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--peers", action="store_true", help="also read with safetensors/torch")
    args = p.parse_args(argv)
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.start, args.start + args.cases):
            try:
                run_case(seed, folder, args.peers)
            except Exception as err:  # noqa: BLE001 - report every failing seed
                failures += 1
                print(f"seed {seed}: {type(err).__name__}: {str(err)[:400]}")
    print(f"{args.cases - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
