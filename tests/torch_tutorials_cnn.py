"""A CNN tutorial program against PyTorch (by hand; see torch_tutorials_common.py):

- Conv + BatchNorm + MaxPool + Conv + BatchNorm + global mean pool + Dense on the bundled
  8x8 digits, one epoch of SGD with momentum and weight decay (fluxml: WeightDecay then
  Momentum; PyTorch: SGD(momentum, weight_decay)) on the DataLoader's shuffled batches,
  losses step by step, running statistics, test-mode outputs against ``eval()``;
- saved with ``fl.save``, loaded into a fresh model with ``fl.loadmodel``: equal outputs;
  the file read with the safetensors package into the PyTorch model;
- a checkpoint resume with ``fl.train``: one epoch, ``SaveCheckpoint``, a fresh model,
  optimiser and loader resumed with ``fl.load_checkpoint`` and trained two more epochs,
  equal (bit for bit) to three epochs in one run.

    PYTHONPATH=src python tests/torch_tutorials_cnn.py
"""

import os
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file  # noqa: I001
from torch import nn

import fluxml as fl
from torch_tutorials_common import check, load_torch, params, summary, torch_params


def cnn(dtype=np.float64):
    m = fl.Chain(fl.Conv((3, 3), 1, 8, pad=1), fl.BatchNorm(8, fl.relu), fl.MaxPool((2, 2)),
                 fl.Conv((3, 3), 8, 16, pad=1), fl.BatchNorm(16, fl.relu),
                 fl.GlobalMeanPool(), fl.Flatten(), fl.Dense(16, 10))
    return fl.f64(m) if dtype == np.float64 else m


def torch_cnn():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def stats(model):
    return [a for layer in model.layers if isinstance(layer, fl.BatchNorm)
            for a in (layer.running_mean, layer.running_var)]


def torch_stats(ref):
    return [a for layer in ref if isinstance(layer, nn.BatchNorm2d)
            for a in (layer.running_mean, layer.running_var)]


def digits():
    (xtrain, ytrain), (xtest, ytest) = fl.datasets.digits()
    return xtrain.astype(np.float64), ytrain, xtest.astype(np.float64), ytest


def against_torch():
    print("CNN on the digits, one epoch of SGD(0.05, momentum 0.9, weight decay 5e-4)")
    xtrain, ytrain, xtest, ytest = digits()
    assert xtrain.ndim == 4 and xtrain.shape[1] == 1, xtrain.shape
    fl.seed(9)
    model, ref = cnn(), torch_cnn()
    load_torch(ref, params(model))
    rule = fl.OptimiserChain(fl.WeightDecay(5e-4), fl.Momentum(0.05, 0.9))
    state = fl.setup(rule, model)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = fl.DataLoader((xtrain, ytrain), batchsize=64, shuffle=True, rng=0)
    losses, tlosses = [], []
    for step, (x, y) in enumerate(loader):
        loss, (g, *_) = fl.withgradient(
            lambda m, x, y: fl.logitcrossentropy(m(x), fl.onehotbatch(y, range(10))), model,
            x, y)
        fl.update(state, model, g)
        opt.zero_grad()
        tl = F.cross_entropy(ref(torch.tensor(x)), torch.tensor(y))
        tl.backward()
        opt.step()
        losses.append(loss)
        tlosses.append(tl.item())
    print(f"  ({step + 1} steps)")
    check("CNN losses, every step of the epoch", np.array(losses), np.array(tlosses))
    check("CNN parameters after the epoch", params(model), torch_params(ref))
    check("CNN BatchNorm running statistics", stats(model), torch_stats(ref))
    ref.eval()
    ours = model(xtest)  # outside a gradient: test mode by default
    check("CNN test outputs (auto test mode / eval)", ours, ref(torch.tensor(xtest)))
    check("CNN fl.testmode outputs equal the automatic ones", fl.testmode(model)(xtest), ours,
          tol=0.0)
    acc = np.mean(fl.onecold(ours) == ytest)
    print(f"  (test accuracy after one epoch {acc:.3f})")

    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "cnn.safetensors")
    fl.save(path, model)
    fl.seed(99)
    fresh = fl.loadmodel(fl.testmode(cnn()), fl.load(path))
    check("CNN saved and loaded into a fresh model: outputs", fresh(xtest), ours, tol=0.0)
    check("CNN loaded running statistics", stats(fresh), stats(model), tol=0.0)
    # the file read by PyTorch's user with the safetensors package: the arrays under
    # fluxml's tree paths, shaped as PyTorch's (static fields are stored too)
    tensors = load_file(path)
    keep = ("weight", "bias", "running_mean", "running_var")
    ours_keys = [k for k in tensors if k.rsplit(".", 1)[-1] in keep]
    order = lambda k: (int(k.split(".")[1]), keep.index(k.rsplit(".", 1)[-1]))  # noqa: E731
    ours_keys.sort(key=order)
    theirs_keys = [k for k in ref.state_dict() if "num_batches" not in k]
    theirs_keys.sort(key=lambda k: (int(k.split(".")[0]), keep.index(k.split(".", 1)[1])))
    ref2 = torch_cnn().eval()
    ref2.load_state_dict({t: torch.tensor(tensors[o]) for o, t in zip(ours_keys, theirs_keys)},
                         strict=False)
    with torch.no_grad():
        check("CNN file loaded into PyTorch via safetensors: outputs", ref2(torch.tensor(xtest)),
              ours)
    return path


def resume():
    print("checkpoint resume with fl.train: 1 epoch + resume 2 epochs == 3 epochs, Adam")
    (xtrain, ytrain), _ = fl.datasets.digits()
    xtrain, ytrain = xtrain[:400], ytrain[:400]

    def loss(m, x, y):
        return fl.logitcrossentropy(m(x), fl.onehotbatch(y, range(10)))

    def run(epochs, seed=9):
        fl.seed(seed)
        model = cnn(np.float32)
        state = fl.setup(fl.Adam(3e-3), model)
        loader = fl.DataLoader((xtrain, ytrain), batchsize=32, shuffle=True, rng=0)
        return model, state, loader

    model, state, loader = run(3)
    whole = fl.train(loss, model, loader, state, epochs=3, progress=False)

    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "ckpt-{epoch}.st")
    m1, s1, l1 = run(1)
    fl.train(loss, m1, l1, s1, epochs=1, progress=False,
             callbacks=[fl.SaveCheckpoint(path)])
    m2, s2, l2 = run(0, seed=1234)  # fresh weights, to be overwritten
    info = fl.load_checkpoint(path.format(epoch=1), m2, s2, rngs={"data": l2.rng})
    hist = fl.train(loss, m2, l2, s2, epochs=2, progress=False,
                    history=fl.History.from_dict(info.extra["history"]))
    check("resumed run: step losses", hist.losses, whole.losses, tol=0.0)
    check("resumed run: parameters", params(m2), params(model), tol=0.0)
    check("resumed run: running statistics", stats(m2), stats(model), tol=0.0)
    check("resumed run: Adam moments", [a for a in fl.leaves(s2) if isinstance(a, np.ndarray)],
          [a for a in fl.leaves(state) if isinstance(a, np.ndarray)], tol=0.0)


if __name__ == "__main__":
    against_torch()
    resume()
    summary("torch_tutorials_cnn")
