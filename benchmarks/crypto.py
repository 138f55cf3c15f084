"""Encrypted inference: fluxml's plan beside the same network written with TenSEAL's API.

    PYTHONPATH=src python benchmarks/crypto.py [--images N] [--hand N]

The model is the one of ``examples/encrypted_digits.py`` (conv 3x3 1->8, square, mean pool
2x2, dense 72->10), trained once; each side gets the smallest 128-bit-secure CKKS
parameters its depth allows. The hand-written
version follows TenSEAL's MNIST tutorial: one image per ciphertext in im2col layout,
``conv2d_im2col`` per output channel, ``pack_vectors``, ``square``, and one ``mm`` with the
pooling folded into the dense weights by hand. fluxml's plan has two layouts: "batch" puts
one pixel per ciphertext and a batch of images in the slots (no rotations, no Galois keys);
"packed" (one image) sends the convolution's inputs im2col-style (9 ciphertexts), so the
convolution is 9 products by plain vectors, the square acts on one ciphertext and the dense
layer is one ``dot`` per logit. The tutorial's layout needs one level more (its convolution
and packing), which the parameters give it.

Printed: per-image latency (one image alone) in each layout, batch throughput (all test
images; the packed layout and the hand version one image after another), accuracy and the
largest logit error of each, and the ratio hand-written / fluxml (above 1: fluxml is faster).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

import fluxml as fl
from fluxml.crypto.params import choose

ROOT = Path(__file__).resolve().parent.parent


def _example():
    spec = importlib.util.spec_from_file_location("encrypted_digits",
                                                  ROOT / "examples" / "encrypted_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hand_written(model, params, ts):
    """The network with TenSEAL's own API, as its tutorial writes it."""
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=params.poly_modulus_degree,
                     coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes))
    ctx.global_scale = 2.0 ** params.scale_bits
    ctx.generate_galois_keys()
    conv, dense = model[0], model[4]
    kernels = [k[0].astype(np.float64).tolist() for k in conv.weight]
    biases = conv.bias.astype(np.float64).reshape(-1).tolist()
    # mean pooling folded into the dense layer by hand: (10, 72) -> (10, 8 * 36)
    w = dense.weight.astype(np.float64).reshape(10, 8, 3, 3)
    folded = np.repeat(np.repeat(w, 2, axis=2), 2, axis=3) / 4.0
    folded = folded.reshape(10, 8 * 36).T.tolist()
    bias = dense.bias.astype(np.float64).tolist()

    def classify(image):
        enc, windows = ts.im2col_encoding(ctx, image[0].astype(np.float64).tolist(), 3, 3, 1)
        channels = [enc.conv2d_im2col(k, windows) + b for k, b in zip(kernels, biases)]
        h = ts.CKKSVector.pack_vectors(channels)
        h.square_()
        out = h.mm(folded) + bias
        return np.array(out.decrypt())

    return classify


def _time(f, *args):
    t0 = time.perf_counter()
    out = f(*args)
    return out, time.perf_counter() - t0


def main(images: int | None, hand: int) -> None:
    try:
        import tenseal as ts
    except ImportError:
        sys.exit("TenSEAL is not installed: pip install 'fluxml[crypto]'")
    example = _example()
    model, (xt, yt) = example.train(epochs=15)
    if images is not None:
        xt, yt = xt[:images], yt[:images]
    plan = fl.crypto.compile(model, xt.shape[1:], batch=len(xt))
    keys = plan.keygen()
    reference = model(xt)

    def ours(x):
        return keys.decrypt(plan.run(keys.encrypt(x, layout="batch")))

    def packed(x):
        return keys.decrypt(plan.run(keys.encrypt(x, layout="packed")))

    ours(xt[:1])  # warm-up
    packed(xt[0])  # warm-up, and makes the Galois keys once
    one, t_ours_one = _time(ours, xt[:1])
    logits, t_ours_batch = _time(ours, xt)
    packed_logits, t_packed = _time(lambda: np.array([packed(x) for x in xt[:hand]]))
    t_packed_one = t_packed / hand
    public = keys.public_context().serialize()
    bare = keys.context.serialize(save_secret_key=False, save_galois_keys=False)
    # im2col convolution, pack_vectors and mm need one level more than the plan's depth
    hand_params = choose(plan.depth + 1)
    classify = hand_written(model, hand_params, ts)
    classify(xt[0])
    hand_logits, t_hand = _time(lambda: np.array([classify(x) for x in xt[:hand]]))
    t_hand_one = t_hand / hand

    n = len(xt)
    for name, p in (("fluxml plan", plan.params), ("by hand", hand_params)):
        print(f"{name}: CKKS degree {p.poly_modulus_degree}, depth {p.depth}, "
              f"scale 2^{p.scale_bits}, 128-bit security")
    best_one, best_n = min(t_ours_one, t_packed_one), min(t_ours_batch, t_packed_one * n)
    print(f"{'':34}{'fluxml batch':>14}{'fluxml packed':>15}{'TenSEAL by hand':>18}"
          f"{'ratio':>8}")
    print(f"{'one image alone (s)':34}{t_ours_one:14.3f}{t_packed_one:15.3f}"
          f"{t_hand_one:18.3f}{t_hand_one / best_one:8.2f}")
    print(f"{f'{n} images (s; packed, hand: {hand} x {n / hand:.1f})':34}"
          f"{t_ours_batch:14.2f}{t_packed_one * n:15.2f}{t_hand_one * n:18.2f}"
          f"{t_hand_one * n / best_n:8.2f}")
    print(f"{'per image in the batch (ms)':34}{1e3 * t_ours_batch / n:14.1f}"
          f"{1e3 * t_packed_one:15.1f}{1e3 * t_hand_one:18.1f}")
    print(f"ratio: by hand / the faster fluxml layout. Public context: "
          f"{len(public) / 2**20:.1f} MB with the Galois keys the packed layout needs "
          f"({len(bare) / 2**20:.1f} MB without: the batch layout's)")
    acc = float(np.mean(fl.onecold(logits) == yt))
    hand_acc = float(np.mean(fl.onecold(hand_logits) == yt[:hand]))
    plain = float(np.mean(fl.onecold(reference) == yt))
    packed_acc = float(np.mean(fl.onecold(packed_logits) == yt[:hand]))
    print(f"accuracy: plaintext {plain:.4f}; fluxml encrypted {acc:.4f} ({n} images); "
          f"packed {packed_acc:.4f} ({hand} images); by hand {hand_acc:.4f} ({hand} images)")
    print(f"largest logit error: fluxml {np.abs(logits - reference).max():.1e}, packed "
          f"{np.abs(packed_logits - reference[:hand]).max():.1e}, by hand "
          f"{np.abs(hand_logits - reference[:hand]).max():.1e}; one-image check "
          f"{np.abs(one - reference[:1]).max():.1e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--hand", type=int, default=20, help="images for the hand version")
    args = parser.parse_args()
    main(args.images, args.hand)
