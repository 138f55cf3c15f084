"""Ad-hoc: one training step of an MLP 784-512-512-10 (relu, batch 128, cross-entropy on
logits, Adam, float32) written by hand in NumPy, three ways, in the same run:

- fluxml: ``fl.gradient`` of the NumPy forward pass, then ``fl.update`` with ``fl.Adam``;
- NumPy by hand: the same forward, a hand-written backward, the same ``fl.update``;
- PyTorch eager: the same weights and data, ``loss.backward()``, ``torch.optim.Adam``.

The layers arrive later (``benchmarks/train_step.py`` will replace this); this script finds
where the engine spends the time the hand-written backward does not.

    PYTHONPATH=src /work/.bench-venv/bin/python benchmarks/mlp_step_adhoc.py [--profile]
"""

from __future__ import annotations

import statistics
import sys
import timeit

import numpy as np

import fluxml as fl

SIZES = [784, 512, 512, 10]
BATCH = 128


def init(seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1 / np.sqrt(n_in)
        params.append({"weight": rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32),
                       "bias": rng.uniform(-bound, bound, n_out).astype(np.float32)})
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    return params, x, y


def forward(params, x, relu=lambda z: np.maximum(z, 0.0)):
    for i, layer in enumerate(params):
        x = x @ layer["weight"].T + layer["bias"]
        if i < len(params) - 1:
            x = relu(x)
    return x


def loss(params, x, y):
    return fl.logitcrossentropy(forward(params, x), y)


def hand_gradient(params, x, y):
    """Forward and backward written out (what the engine should cost at most)."""
    acts, h = [x], x
    for i, layer in enumerate(params):
        h = h @ layer["weight"].T + layer["bias"]
        if i < len(params) - 1:
            h = np.maximum(h, 0.0)
        acts.append(h)
    logits = acts[-1]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    g = p / len(y)
    grads = [None] * len(params)
    for i in reversed(range(len(params))):
        grads[i] = {"weight": g.T @ acts[i], "bias": g.sum(axis=0)}
        if i:
            g = (g @ params[i]["weight"]) * (acts[i] > 0)
    return grads


def time_ms(fn, number=5, repeat=9):
    fn()
    return 1e3 * statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main():
    params, x, y = init()
    grad = lambda p: fl.gradient(lambda p: loss(p, x, y), p)[0]  # not with respect to x
    g_engine = grad(params)
    g_hand = hand_gradient(params, x, y)
    for a, b in zip(fl.tree.leaves(g_engine), fl.tree.leaves(g_hand)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-6)

    p1 = init()[0]
    s1 = fl.setup(fl.Adam(1e-3), p1)
    p2 = init()[0]
    s2 = fl.setup(fl.Adam(1e-3), p2)
    rows = {
        "fluxml: fl.gradient + fl.update(Adam)":
            lambda: fl.update(s1, p1, grad(p1)),
        "  fl.gradient alone": lambda: grad(p1),
        "  forward alone (plain NumPy)": lambda: loss(p1, x, y),
        "  fl.update(Adam) alone (engine's grads)": lambda: fl.update(s1, p1, g_engine),
        "NumPy: hand backward + fl.update(Adam)":
            lambda: fl.update(s2, p2, hand_gradient(p2, x, y)),
        "  hand backward alone": lambda: hand_gradient(p2, x, y),
        "  fl.update(Adam) alone (hand grads)": lambda: fl.update(s2, p2, g_hand),
    }
    results = {name: time_ms(fn) for name, fn in rows.items()}
    try:
        import torch

        tp = init()[0]
        layers = [torch.nn.Linear(a, b) for a, b in zip(SIZES[:-1], SIZES[1:])]
        with torch.no_grad():
            for lin, layer in zip(layers, tp):
                lin.weight.copy_(torch.from_numpy(layer["weight"]))
                lin.bias.copy_(torch.from_numpy(layer["bias"]))
        model = torch.nn.Sequential(layers[0], torch.nn.ReLU(), layers[1], torch.nn.ReLU(),
                                    layers[2])
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def torch_step():
            opt.zero_grad()
            out = torch.nn.functional.cross_entropy(model(xt), yt)
            out.backward()
            opt.step()

        def torch_grad():
            model.zero_grad()
            torch.nn.functional.cross_entropy(model(xt), yt).backward()

        results["PyTorch eager: backward + Adam"] = time_ms(torch_step)
        results["  backward alone"] = time_ms(torch_grad)
        results["  Adam step alone"] = time_ms(opt.step)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    except ImportError:
        print("PyTorch not installed: no peer rows")
    layouts = ["C" if g.flags.c_contiguous else "F" if g.flags.f_contiguous else "strided"
               for g in fl.tree.leaves(g_engine)]
    print(f"layouts of the engine's gradients (w1, b1, w2, b2, w3, b3): {layouts}")
    base = results["fluxml: fl.gradient + fl.update(Adam)"]
    print(f"{'MLP 784-512-512-10, batch 128, float32':46s} {'ms':>7s} {'/ fluxml step':>14s}")
    for name, ms in results.items():
        print(f"{name:46s} {ms:7.2f} {ms / base:14.2f}")

    if "--profile" in sys.argv:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20):
            grad(p1)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
