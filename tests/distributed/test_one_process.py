"""fluxml.distributed in one process (rank 0 of 1): what needs no second rank."""

import numpy as np
import pytest

import fluxml as fl

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install "
                                     "'fluxml[distributed]')")


def test_one_process_is_rank_0_of_1_and_everything_passes_through():
    g = fl.distributed.init()
    assert (g.rank, g.size, fl.distributed.is_main()) == (0, 1, True)
    model = fl.Dense(3, 2)
    assert fl.distributed.broadcast(model) is model
    assert fl.distributed.broadcast_object({"a": 1}) == {"a": 1}
    grads = {"w": np.ones(3, np.float32)}
    loss, out, n = fl.distributed.GradientAverager().average(np.float32(0.25), grads, 8)
    assert (loss, out, n) == (0.25, grads, 8)


def test_train_distributed_in_one_process_is_plain_training():
    x = np.linspace(-1, 1, 32)[:, None]
    runs = []
    for distributed in (False, True):
        model = {"w": np.zeros((1, 1))}
        h = fl.train(lambda m, x, y: np.mean((x @ m["w"] - y) ** 2), model,
                     fl.DataLoader((x, 2 * x), batchsize=8, shard=distributed),
                     fl.setup(fl.Adam(0.1), model), epochs=3, progress=False,
                     distributed=distributed)
        runs.append((h.losses, model["w"]))
    assert runs[0][0] == runs[1][0]
    assert np.array_equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("bad", [0, -1.0, "10", float("nan")])
def test_init_refuses_a_bad_timeout(bad):
    with pytest.raises(ValueError, match="init: timeout must be a positive number"):
        fl.distributed.init(timeout=bad)


def test_bucket_size_must_be_a_positive_int():
    with pytest.raises(ValueError, match="bucket_bytes must be a positive int; got 0"):
        fl.distributed.GradientAverager(bucket_bytes=0)


def test_the_loader_says_it_is_sharded():
    loader = fl.DataLoader(np.arange(10), batchsize=2, shard=(1, 2))
    assert repr(loader) == ("DataLoader(ndarray, batchsize=2, shuffle=False, partial=True, "
                            "shard=(1, 2)): 3 batches of 10 observations")
