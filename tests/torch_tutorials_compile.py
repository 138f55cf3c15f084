"""The training steps of the tutorial programs (torch_tutorials_*.py) under ``fl.compile``,
against the same steps run eagerly from copies of the same model and optimiser state: the
losses of every step, the final parameters, running statistics and optimiser state.

- VAE (Adam), the noise an argument;
- GAN: two compiled steps, two optimisers, the generator's BatchNorm statistics written in
  place inside the gradient, ``stop_gradient``;
- Transformer LM with a tied embedding, ``AccumGrad(2) + ClipNorm + AdamW`` and a cosine
  schedule set by ``fl.adjust`` before each call (no new trace);
- CNN with BatchNorm, ``WeightDecay + Momentum``;
- seq2seq GRU with teacher forcing; the bidirectional LSTM tagger (gathers by length);
- MAML: the second-order meta-gradient compiled.

    PYTHONPATH=src python tests/torch_tutorials_compile.py [numpy | xla]
"""

import copy

import numpy as np

import fluxml as fl
from torch_tutorials_common import check, summary
from torch_tutorials_higher_order import meta_loss, mlp, sine_tasks
from torch_tutorials_rnn import Seq2Seq, Tagger, tagger_loss
from torch_tutorials_transformer import TinyLM, V
from torch_tutorials_transformer import batch as lm_batch
from torch_tutorials_vae_gan import VAE, discriminator, generator, vae_loss

rng = np.random.default_rng(0)


BACKEND = "numpy"


def compare(name, make, step, batches, tol=1e-12, extra=None):
    """Run ``step(*state, *batch)`` eagerly and compiled from copies of ``make()``."""
    state = make()
    twin = copy.deepcopy(state)
    compiled = fl.compile(step, backend=BACKEND, background=False)
    name = f"{name} [{BACKEND}]"
    eager_losses, compiled_losses = [], []
    for i, b in enumerate(batches):
        if extra is not None:
            extra(state, i)
            extra(twin, i)
        eager_losses.append(step(*state, *b))
        compiled_losses.append(compiled(*twin, *b))
    print(f"{name}: {len(batches)} steps, {compiled.traces} trace(s)")
    check(f"{name}: compiled losses", np.array(compiled_losses, float),
          np.array(eager_losses, float), tol)
    arrays = lambda s: [a for a in fl.leaves(s) if isinstance(a, np.ndarray)]  # noqa: E731
    check(f"{name}: compiled model and optimiser state", arrays(twin), arrays(state), tol)
    return compiled


def vae():
    def make():
        fl.seed(1)
        m = fl.f64(VAE())
        return m, fl.setup(fl.Adam(1e-2), m)

    def step(m, opt, x, eps):
        loss, (g, *_) = fl.withgradient(vae_loss, m, x, eps)
        fl.update(opt, m, g)
        return loss

    x = (rng.random((32, 8)) < 0.4).astype(np.float64)
    compare("VAE", make, step, [(x, rng.standard_normal((32, 2))) for _ in range(6)])


def gan():
    bce = fl.logitbinarycrossentropy

    def make():
        fl.seed(2)
        G, D = fl.f64(generator()), fl.f64(discriminator())
        rule = fl.Adam(2e-3, beta=(0.5, 0.999))
        return G, D, fl.setup(rule, G), fl.setup(rule, D)

    def step(G, D, optG, optD, real, z):
        ones, zeros = np.ones((real.shape[0], 1)), np.zeros((real.shape[0], 1))

        def d_loss(d):
            fake = fl.stop_gradient(G(z))
            return bce(d(real), ones) + bce(d(fake), zeros)

        lossD, (gD,) = fl.withgradient(d_loss, D)
        fl.update(optD, D, gD)
        lossG, (gG,) = fl.withgradient(lambda g: bce(D(g(z)), ones), G)
        fl.update(optG, G, gG)
        return lossD + lossG

    batches = [(np.tanh(rng.standard_normal((16, 6)) + 0.5), rng.standard_normal((16, 4)))
               for _ in range(5)]
    # (the bias before the generator's BatchNorm has zero gradient up to rounding: Adam's
    # steps of that noise differ where the rounding does, XLA's sums being another order)
    compare("GAN", make, step, batches, tol=1e-10)


def transformer():
    sched = fl.CosineAnneal(3e-3, end=0.0, period=8, warmup=3)

    def make():
        fl.seed(5)
        m = fl.testmode(fl.f64(TinyLM()))
        rule = fl.OptimiserChain(fl.AccumGrad(2), fl.ClipNorm(0.5), fl.AdamW(3e-3, lambd=0.1))
        return m, fl.setup(rule, m)

    def step(m, opt, x, y):
        loss, (g,) = fl.withgradient(lambda m: fl.logitcrossentropy(m(x), y), m)
        fl.update(opt, m, g)
        return loss

    def schedule(state, i):
        fl.adjust(state[1], eta=sched(i // 2))

    batches = []
    for _ in range(12):
        x, y = lm_batch()
        batches.append((x, np.eye(V)[y]))
    # (the key projections' biases have zero gradient up to rounding, and Adam's steps of
    # that noise leave them at 1e-12 apart: compared against the largest array entry)
    c = compare("Transformer LM", make, step, batches, tol=1e-11, extra=schedule)
    assert c.traces == 1, c.traces


def cnn():
    from torch_tutorials_cnn import cnn as make_cnn
    (x, y), _ = fl.datasets.digits()

    def make():
        fl.seed(9)
        m = make_cnn()
        return m, fl.setup(fl.OptimiserChain(fl.WeightDecay(5e-4), fl.Momentum(0.05, 0.9)), m)

    def step(m, opt, x, y):
        loss, (g,) = fl.withgradient(lambda m: fl.logitcrossentropy(m(x), y), m)
        fl.update(opt, m, g)
        return loss

    batches = [(x[i:i + 32].astype(np.float64), fl.onehotbatch(y[i:i + 32], range(10),
                                                               dtype=np.float64))
               for i in range(0, 32 * 6, 32)]
    compare("CNN", make, step, batches, tol=1e-10)  # (the biases before BatchNorm: as GAN)


def recurrent():
    def make():
        fl.seed(3)
        m = fl.f64(Seq2Seq())
        return m, fl.setup(fl.Adam(5e-3), m)

    def step(m, opt, src, tgt_in, y):
        loss, (g,) = fl.withgradient(lambda m: fl.logitcrossentropy(m(src, tgt_in), y), m)
        fl.update(opt, m, g)
        return loss

    batches = []
    for _ in range(5):
        src = rng.integers(0, 7, (12, 6))
        tgt = (src[:, ::-1] % 5) + 1
        batches.append((src, np.concatenate([np.zeros((12, 1), int), tgt[:, :-1]], 1),
                        np.eye(6)[tgt]))
    compare("seq2seq", make, step, batches)

    def make_tagger():
        fl.seed(4)
        m = fl.f64(Tagger())
        return m, fl.setup(fl.RMSProp(1e-2), m)

    def tag_step(m, opt, x, lengths, y):
        loss, (g, *_) = fl.withgradient(tagger_loss, m, x, lengths, y)
        fl.update(opt, m, g)
        return loss

    batches = []
    for _ in range(5):
        lengths = rng.integers(2, 8, 6)
        x = rng.integers(1, 9, (6, 7))
        x[np.arange(7)[None, :] >= lengths[:, None]] = 0
        batches.append((x, lengths, x % 3))
    compare("tagger", make_tagger, tag_step, batches)


def maml():
    def make():
        fl.seed(6)
        m = mlp()
        return m, fl.setup(fl.Adam(1e-3), m)

    def step(m, opt, tasks):
        loss, (g, *_) = fl.withgradient(meta_loss, m, tasks, 0.05, 1)
        fl.update(opt, m, g)
        return loss

    compare("MAML", make, step, [(sine_tasks(3, 10),) for _ in range(4)])


def pinn_wgan():
    from torch_tutorials_pinn_wgan import critic, critic_loss, gen, pinn, pinn_loss, residual_fwd

    def make():
        fl.seed(12)
        m = pinn()
        return m, fl.setup(fl.Adam(5e-3), m)

    def step(m, opt, xt, x0, b):
        loss, (g, *_) = fl.withgradient(pinn_loss, m, xt, x0, b, residual_fwd)
        fl.update(opt, m, g)
        return loss

    batches = [(np.stack([rng.uniform(-1, 1, 16), rng.uniform(0, 1, 16)], 1),
                np.stack([rng.uniform(-1, 1, 4), np.zeros(4)], 1),
                np.stack([rng.choice([-1.0, 1.0], 4), rng.uniform(0, 1, 4)], 1))
               for _ in range(4)]
    compare("PINN", make, step, batches)

    def make_gan():
        fl.seed(13)
        D, G = critic(), gen()
        rule = fl.Adam(1e-3, beta=(0.0, 0.9))
        return D, G, fl.setup(rule, D), fl.setup(rule, G)

    def gan_step(D, G, optD, optG, real, z, eps):
        value, (gD,) = fl.withgradient(
            lambda d: critic_loss(d, real, fl.stop_gradient(G(z)), eps), D)
        fl.update(optD, D, gD)
        gen_loss, (gG,) = fl.withgradient(lambda g: -np.mean(D(g(z))), G)
        fl.update(optG, G, gG)
        return value + gen_loss

    batches = [(rng.standard_normal((16, 2)), rng.standard_normal((16, 3)),
                rng.uniform(size=(16, 1))) for _ in range(4)]
    compare("WGAN-GP", make_gan, gan_step, batches)


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:
        BACKEND = sys.argv[1]  # numpy (default) or xla
    pinn_wgan()
    vae()
    gan()
    transformer()
    cnn()
    recurrent()
    maml()
    summary("torch_tutorials_compile")
