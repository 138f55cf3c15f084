"""Classify handwritten digits without ever decrypting them (CKKS, through TenSEAL).

A small CNN with a polynomial activation (convolution, square, mean pooling, dense) is
trained as usual on the bundled 8x8 digits. ``fl.crypto.compile`` turns it into a plan for
encrypted data; the client makes the keys and encrypts the test images; the server, which
holds only the public context, runs the plan on the ciphertexts; the client decrypts the
logits and takes the argmax. Every piece crosses between client and server as bytes.

It prints the plan, plaintext and encrypted accuracy, the largest logit error, the time per
image and the sizes of what crosses the wire.

    python examples/encrypted_digits.py [--epochs N] [--images N]

Needs TenSEAL: pip install 'fluxml[crypto]'. Exits with status 1 if an encrypted prediction
differs from the plaintext one or the accuracy falls below the target (95%).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import fluxml as fl


def build(rng):
    return fl.Chain(
        fl.Conv((3, 3), 1, 8, rng=rng),  # (N, 8, 6, 6)
        fl.square,
        fl.MeanPool((2, 2)),  # (N, 8, 3, 3)
        fl.Flatten(),
        fl.Dense(72, 10, rng=rng),
    )


def train(epochs: int, seed: int = 0):
    (x, y), (xt, yt) = fl.datasets.digits()
    rng = np.random.default_rng(seed)
    model = build(rng)
    state = fl.setup(fl.Adam(0.01), model)
    loader = fl.DataLoader((x, y), batchsize=32, shuffle=True, rng=rng)
    loss = lambda m, xb, yb: fl.logitcrossentropy(m(xb), yb)
    fl.train(loss, model, loader, state, epochs=epochs, progress=False)
    return model, (xt, yt)


def main(epochs: int = 15, images: int | None = None, seed: int = 0,
         target: float = 0.95) -> int:
    model, (xt, yt) = train(epochs, seed)
    if images is not None:
        xt, yt = xt[:images], yt[:images]
    plain_acc = float(np.mean(fl.onecold(model(xt)) == yt))

    plan = fl.crypto.compile(model, xt.shape[1:], batch=len(xt))
    print(plan)

    # client: keys stay here; the plan, the public context and the ciphertexts go out
    keys = plan.keygen()
    to_server = {"plan": plan.serialize(), "context": keys.public_context().serialize()}
    t0 = time.perf_counter()
    to_server["images"] = keys.encrypt(xt).serialize()
    t_encrypt = time.perf_counter() - t0

    # server: no secret key anywhere
    server_plan = fl.crypto.Plan.load(to_server["plan"])
    context = fl.crypto.PublicContext.load(to_server["context"])
    assert not context.context.has_secret_key()
    t0 = time.perf_counter()
    answer = server_plan.run(fl.crypto.EncryptedTensor.load(to_server["images"], context))
    t_run = time.perf_counter() - t0
    to_client = answer.serialize()

    # client: decrypt and classify
    t0 = time.perf_counter()
    logits = keys.decrypt(fl.crypto.EncryptedTensor.load(to_client, keys))
    t_decrypt = time.perf_counter() - t0
    enc_acc = float(np.mean(fl.onecold(logits) == yt))
    error = float(np.abs(logits - model(xt)).max())

    n = len(xt)
    print(f"images: {n} in one batch (one ciphertext per pixel, {n} images in its slots)")
    print(f"plaintext accuracy {plain_acc:.4f}, encrypted accuracy {enc_acc:.4f}, "
          f"largest logit error {error:.1e}")
    print(f"server {t_run:.2f} s for the batch ({1e3 * t_run / n:.1f} ms per image); "
          f"client encrypts in {t_encrypt:.2f} s, decrypts in {t_decrypt:.2f} s")
    mb = 1 / 2**20
    print(f"to the server: plan {len(to_server['plan']) * mb:.2f} MB, public context "
          f"{len(to_server['context']) * mb:.2f} MB, images {len(to_server['images']) * mb:.1f} "
          f"MB; back: logits {len(to_client) * mb:.1f} MB")
    ok = bool(np.all(fl.onecold(logits) == fl.onecold(model(xt)))) and enc_acc >= target
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--images", type=int, default=None, help="test images to classify")
    args = parser.parse_args()
    sys.exit(main(args.epochs, args.images))
