"""A seeded fuzzer of what describes a model rather than what it computes: ``fl.outputsize``,
``fl.summary``, ``fl.autosize``, the printed listing (lines, parameter counts, totals, the
train/test mode), ``fl.modules``, ``fl.trainable`` and Chain indexing, against references
written here.

Each case builds a random model (tests/layers/shape_models.py), layer by layer, from what the
current input shape can take
(every layer of ``fluxml.layers``: Dense, Scale, Bilinear, the convolutions in 1 to 3
dimensions with random stride, padding ("same" too), dilation, groups and output padding,
the pools, Upsample, PixelShuffle, Flatten, the normalisations, the dropouts, Embedding,
EmbeddingBag, the recurrent layers, MultiHeadAttention, TransformerEncoderBlock,
WeightNorm, Parallel, SkipConnection, PairwiseFusion, Maxout, plain functions, nested and
named Chains), each with its ``fl._`` form where it has one, and a random batch (1
included); sometimes the input is then made wrong. Then it checks:

- ``fl.outputsize`` is the shape of the forward pass's output (tuples of outputs too), and
  no layer with a shape rule ran; where the forward pass refuses the input, outputsize and
  summary refuse it with the same error;
- the convolutions' and pools' shapes equal the textbook formulas written here;
- ``fl.summary``: every row's output shape is the forward pass's at that place, every row's
  parameter count is the count of the fuzzer's own walk of the layer's fields (a tied array
  once, ``nontrainable`` fields apart), and the totals are the model's;
- the printed listing: each layer's ``# n parameters`` note and the closing totals (arrays,
  parameters, bytes, non-trainable) equal the walk's; after ``fl.trainmode`` /
  ``fl.testmode`` every train/test layer's line shows its mode;
- each leaf layer's line, read as Python (``=>`` as a comma), builds a layer with the same
  line and the same array shapes;
- ``fl.autosize`` of the model written with ``fl._`` builds the same array shapes;
- ``m[:k]`` then ``m[k:]`` computes ``m``; ``m[[...]]`` of every index is ``m``;
- ``fl.modules``, ``fl.trainable``, ``fl.trainables`` and ``fl.destructure``'s length
  equal the walk's.

The suite runs a few seeds (tests/layers/test_fuzz_shapes.py); by hand, many more:

    PYTHONPATH=src python -m tests.layers.fuzz_shapes --cases 3000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import re
import warnings

import numpy as np

import fluxml as fl
from tests.layers.shape_models import _input, random_model, wrong_shape

ACTS = {"tanh": np.tanh, "relu": fl.relu, "sigmoid": fl.sigmoid}


# ---------------------------------------------------------------- the independent references

def walk_arrays(model):
    """``(trainable, other)``: the distinct float arrays reachable through the objects'
    fields, those under a field a class declares ``nontrainable`` apart (an array found both
    ways is trainable)."""
    train, other = {}, {}
    seen = set()

    def visit(x, frozen):
        if isinstance(x, np.ndarray):
            if x.dtype.kind in "fc":
                (other if frozen else train)[id(x)] = x
            return
        if isinstance(x, (list, tuple)):
            for v in x:
                visit(v, frozen)
            return
        if isinstance(x, dict):
            for v in x.values():
                visit(v, frozen)
            return
        if callable(x) and not isinstance(x, fl.Module) or not hasattr(x, "__dict__"):
            return
        if (id(x), frozen) in seen:
            return
        seen.add((id(x), frozen))
        skip = getattr(type(x), "nontrainable", ())
        for k, v in vars(x).items():
            visit(v, frozen or k in skip)

    visit(model, False)
    other = {k: v for k, v in other.items() if k not in train}
    return list(train.values()), list(other.values())


def walk_modules(model):
    found, seen = [], set()

    def visit(x):
        if isinstance(x, (list, tuple)):
            for v in x:
                visit(v)
        elif isinstance(x, dict):
            for v in x.values():
                visit(v)
        elif isinstance(x, fl.Module) and id(x) not in seen:
            seen.add(id(x))
            found.append(x)
            for v in vars(x).values():
                visit(v)

    visit(model)
    return found


def conv_size(n, k, s, p, d):
    return (n + p[0] + p[1] - d * (k - 1) - 1) // s + 1


def same_pads(n, k, s, d):
    total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
    return (total // 2, total - total // 2)


def tup(v, d):
    return (v,) * d if isinstance(v, int) else tuple(v)


def pads_of(pad, d):
    if isinstance(pad, int):
        return ((pad, pad),) * d
    if all(isinstance(p, int) for p in pad) and len(pad) == d:
        return tuple((p, p) for p in pad)
    if all(isinstance(p, int) for p in pad):
        return tuple((pad[2 * i], pad[2 * i + 1]) for i in range(d))
    return tuple(tuple(p) for p in pad)


def expected_shape(layer, shape):
    """The textbook output shape of a convolution or pool (None for other layers)."""
    if len(shape) < 3:
        return None
    n, c, *sp = shape
    d = len(sp)
    if isinstance(layer, fl.ConvTranspose):
        k = layer.weight.shape[2:]
        s, dl, op = tup(layer.stride, d), tup(layer.dilation, d), tup(layer.outpad, d)
        if layer.pad == "same":
            return (n, layer.weight.shape[1] * layer.groups) + tuple(
                a * b for a, b in zip(sp, s))
        p = pads_of(layer.pad, d)
        return (n, layer.weight.shape[1] * layer.groups) + tuple(
            (a - 1) * st - lo - hi + de * (kk - 1) + 1 + o
            for a, st, (lo, hi), de, kk, o in zip(sp, s, p, dl, k, op))
    if isinstance(layer, fl.Conv):
        k = layer.weight.shape[2:]
        s, dl = tup(layer.stride, d), tup(layer.dilation, d)
        p = [same_pads(a, kk, st, de) for a, kk, st, de in zip(sp, k, s, dl)] \
            if layer.pad == "same" else pads_of(layer.pad, d)
        return (n, layer.weight.shape[0]) + tuple(
            conv_size(a, kk, st, pp, de) for a, kk, st, pp, de in zip(sp, k, s, p, dl))
    if isinstance(layer, (fl.MaxPool, fl.MeanPool)):
        k, s = layer.kernel, layer.stride
        p = [same_pads(a, kk, st, 1) for a, kk, st in zip(sp, k, s)] \
            if layer.pad == "same" else pads_of(layer.pad, d)
        return (n, c) + tuple(conv_size(a, kk, st, pp, 1) for a, kk, st, pp in zip(sp, k, s, p))
    if isinstance(layer, (fl.AdaptiveMaxPool, fl.AdaptiveMeanPool)):
        return (n, c) + layer.out_size
    if isinstance(layer, (fl.GlobalMaxPool, fl.GlobalMeanPool)):
        return (n, c) + (1,) * d
    if isinstance(layer, fl.PixelShuffle):
        return (n, c // layer.r ** d) + tuple(a * layer.r for a in sp)
    if isinstance(layer, fl.Upsample):
        if layer.size is not None:
            return (n, c) + tup(layer.size, d)
        sc = (layer.scale,) * d if isinstance(layer.scale, (int, float)) else layer.scale
        return (n, c) + tuple(int(math.floor(a * f)) for a, f in zip(sp, sc))
    return None


# ---------------------------------------------------------------- the checks

def shapes_of(y):
    if isinstance(y, tuple):
        return tuple(shapes_of(v) for v in y)
    return tuple(np.shape(y))


def outcome(f):
    try:
        return "ok", f()
    except (ValueError, IndexError, TypeError) as err:
        return "error", (type(err), str(err))


@contextlib.contextmanager
def no_layer_runs(model, ran):
    """Every Module class of ``model`` that has a shape rule records its calls in ``ran``."""
    classes = {type(m) for m in walk_modules(model) if hasattr(m, "_output_shape")}
    saved = {}
    for cls in classes:
        saved[cls] = cls.__dict__.get("__call__")
        call = cls.__call__

        def spy(self, *a, __call=call, **k):
            ran.append(type(self).__name__)
            return __call(self, *a, **k)
        cls.__call__ = spy
    try:
        yield
    finally:
        for cls, f in saved.items():
            if f is None:
                del cls.__call__
            else:
                cls.__call__ = f


def count_text(layer):
    train, other = walk_arrays(layer)
    n, m = sum(a.size for a in train), sum(a.size for a in other)
    return f"{n:,}" + (f" + {m:,}" if m else "")


def expected_rows(layer, x, indent, rows):
    """The summary rows the fuzzer expects: ``(indent, output shape, count)``; returns the
    layer's output."""
    if isinstance(layer, fl.Chain):
        rows.append((indent, "", ""))
        y = x
        for child in layer:
            y = expected_rows(child, y, indent + 2, rows)
        rows.append((indent, str(shapes_of(y)), count_text(layer)))
        return y
    y = layer(x)
    branches = None
    if isinstance(layer, fl.Parallel):
        branches = list(layer.layers.values() if isinstance(layer.layers, dict)
                        else layer.layers)
    elif isinstance(layer, fl.Maxout):
        branches = list(layer.layers)
    elif isinstance(layer, fl.SkipConnection):
        branches = [layer.layers]
    elif isinstance(layer, fl.Bidirectional):
        branches = [layer.forward, layer.backward]
    if branches is not None and isinstance(x, np.ndarray):
        rows.append((indent, "", ""))
        for b in branches:
            expected_rows(b, x, indent + 2, rows)
        rows.append((indent, str(shapes_of(y)), count_text(layer)))
        return y
    rows.append((indent, str(shapes_of(y)), count_text(layer)))
    return y


def parse_summary(text):
    lines = text.splitlines()
    head = lines[0]
    w, s = head.index("Output shape"), len(head) - len("Parameters")
    rows = []
    for line in lines[2:-2]:
        name = line[:w]
        indent = len(name) - len(name.lstrip())
        rows.append((indent, line[w:s].strip(), line[s:].strip()))
    return rows, lines[-1]


def check_summary(model, x, shape, dtype):
    rows = []
    expected_rows(model, x, 0, rows)
    buf = io.StringIO()
    fl.summary(model, shape, dtype=dtype, file=buf)
    got, total = parse_summary(buf.getvalue())
    assert got == rows, f"summary rows\n{buf.getvalue()}\nexpected {rows}"
    train, other = walk_arrays(model)
    want = (f"Total: {sum(a.size for a in train):,} trainable parameters, "
            f"{sum(a.size for a in other):,} non-trainable.")
    assert total == want, (total, want)


NOTE = re.compile(r"# ([\d,]+) parameters(?:, plus ([\d,]+) non-trainable)?")


def check_listing(model):
    """The closing totals, and each leaf line's note, against the walk."""
    text = repr(model)
    train, other = walk_arrays(model)
    nbytes = sum(a.nbytes for a in train + other)
    if fl.layers.show.show_children(model) is None:  # one line: its note, no total
        note = NOTE.search(text)
        want = (f"{sum(a.size for a in train):,}", f"{sum(a.size for a in other):,}"
                if other else None)
        assert (note.groups() if note else None) == (want if train or other else None), text
        return
    total = text[text.index("# Total:"):]
    want = f"# Total: {len(train)} {'trainable ' if other else ''}arrays, " \
           f"{sum(a.size for a in train):,} parameters,"
    if other:
        want += f"\n{' ' * 20}# plus {len(other)} non-trainable, " \
                f"{sum(a.size for a in other):,} parameters,"
    want += f" {nbytes:,} bytes."
    assert total == want, f"{text}\nexpected total {want!r}"
    for layer in leaves(model):
        line = fl.layers.show.line_of(layer)
        train, other = walk_arrays(layer)
        found = [m for m in NOTE.finditer(text) if text[:m.start()].rstrip().endswith(
            line + ",")]
        if not train and not other:
            continue
        want = (f"{sum(a.size for a in train):,}", f"{sum(a.size for a in other):,}"
                if other else None)
        assert found and all(m.groups() == want for m in found), \
            f"{line}: {[m.groups() for m in found]} != {want}\n{text}"


def leaves(model):
    """The layers of a listing shown on a line of their own."""
    children = fl.layers.show.show_children(model)
    if children is None:
        return [model] if isinstance(model, fl.Module) else []
    out = []
    for _k, c in children:
        out += leaves(c)
    return out


def check_modes(model):
    def shown(mode):
        text = repr(model)
        for m in leaves(model):
            if "active" in vars(m) and type(m) in (fl.Dropout, fl.BatchNorm, fl.InstanceNorm):
                assert f"active={mode}" in m._line(), (m._line(), mode)
                assert m._line() in text
    try:
        fl.trainmode(model)
        shown(True)
        fl.testmode(model)
        shown(False)
    finally:
        fl.trainmode(model, None)
    for m in walk_modules(model):
        assert "active=" not in m._line() or isinstance(m, fl.MultiHeadAttention)


def check_line_round_trip(model):
    ns = {**{k: getattr(fl, k) for k in fl.__all__ if not k.startswith("_")}, **ACTS,
          "identity": fl.identity}
    for layer in walk_modules(model):
        if fl.layers.show.show_children(layer) is not None or isinstance(
                layer, (fl.Chain, fl.WeightNorm, fl.Recurrence)):
            continue
        line = layer._line()
        if "(...)" in line or "<" in line:
            continue
        built = eval(line.replace(" => ", ", "), ns)  # noqa: S307 - the fuzzer's own text
        assert type(built) is type(layer) and built._line() == line, (line, built._line())
        a = [v.shape for v in fl.tree.flatten(layer)[0] if hasattr(v, "shape")]
        b = [v.shape for v in fl.tree.flatten(built)[0] if hasattr(v, "shape")]
        assert a == b, (line, a, b)


def check_slices(model, x):
    y = model(x)
    n = len(model)
    for k in range(n + 1):
        z = model[k:](model[:k](x))
        assert shapes_of(z) == shapes_of(y)
        if isinstance(y, np.ndarray):
            np.testing.assert_array_equal(z, y)
    whole = model[list(range(n))]
    assert type(whole.layers) is type(model.layers)
    if isinstance(y, np.ndarray):
        np.testing.assert_array_equal(whole(x), y)
    for k in range(-n, n):
        assert model[k] is list(model)[k]


def check_trainable(model):
    got = fl.trainable(model)
    train, _other = walk_arrays(model)
    assert {id(a) for a in got.values()} == {id(a) for a in train}
    once = fl.trainables(model)
    assert sorted(map(id, once)) == sorted(map(id, train))
    assert fl.destructure(model)[0].size == sum(a.size for a in train)
    assert [id(m) for m in fl.modules(model)] == [id(m) for m in walk_modules(model)]


def check_autosize(model, lazy, shape, dtype, rng):
    built = fl.autosize(shape, lazy, dtype=dtype)
    a = [v.shape for v in fl.tree.flatten(model)[0] if hasattr(v, "shape")]
    b = [v.shape for v in fl.tree.flatten(built)[0] if hasattr(v, "shape")]
    assert a == b, (a, b)
    assert not re.search(r"[(, ]_[,)]", repr(built)), repr(built)  # (no size left to infer)
    x = _input(shape, dtype, rng)
    assert shapes_of(built(x)) == shapes_of(model(x))


def run_case(seed):
    rng = np.random.default_rng(seed)
    model, lazy, shape, dtype = random_model(rng)
    if rng.integers(5) == 0:
        shape, lazy = wrong_shape(rng, shape), None  # (the lazy model was for the shape)
    x = _input(shape, dtype, rng)
    fwd = outcome(lambda: model(x))
    ran: list = []
    with no_layer_runs(model, ran):
        size = outcome(lambda: fl.outputsize(model, shape, dtype=dtype))
    assert not ran, f"outputsize ran {ran}\n{model}"
    if fwd[0] == "ok":
        assert size == ("ok", shapes_of(fwd[1])), (size, shapes_of(fwd[1]))
    elif fwd[1][0] is not fl.LayerError:  # a function's own error, run on a batch of one
        assert size[0] == "error" and size[1][0] is fwd[1][0], (size, fwd)
        assert size[1][1].split(": ")[:-1] == fwd[1][1].split(": ")[:-1], (size, fwd)
        return
    else:
        assert size == fwd, (size, fwd)
        assert outcome(lambda: fl.summary(model, shape, dtype=dtype, file=io.StringIO())) == fwd
        return
    y = x
    for layer in model if isinstance(model, fl.Chain) else [model]:  # the textbook shapes
        want = expected_shape(layer, y.shape) if isinstance(y, np.ndarray) else None
        y = layer(y)
        if want is not None:
            assert y.shape == want, (layer, want, y.shape)
    check_summary(model, x, shape, dtype)
    check_listing(model)
    check_modes(model)
    check_line_round_trip(model)
    if isinstance(model, fl.Chain):
        check_slices(model, x)
    check_trainable(model)
    if lazy is not None:
        check_autosize(model, lazy, shape, dtype, rng)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args()
    failures = 0
    for seed in range(args.start, args.start + args.cases):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run_case(seed)
        except Exception as err:  # noqa: BLE001 - the fuzzer reports every failing seed
            failures += 1
            print(f"seed {seed}: {type(err).__name__}: {str(err)[:300]}")
    print(f"{args.cases - failures} of {args.cases} cases clean")


if __name__ == "__main__":
    main()
