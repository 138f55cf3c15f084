"""fluxml.distributed in one process (rank 0 of 1): what needs no second rank."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.compiler.trace import CompileError

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
    averager = fl.distributed.GradientAverager()
    assert averager.share(8) == 1.0
    # gradients that come multiplied by a share: divided by it (one rank: the whole batch)
    loss, out, n = averager.average(0.25, {"w": np.full(3, 0.5, np.float32), "k": 2}, 8, 0.5)
    assert (loss, out["k"], n) == (0.25, 2, 8) and out["w"].dtype == np.float32
    np.testing.assert_array_equal(out["w"], np.ones(3, np.float32))


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


@pytest.mark.parametrize("bad", [0, -1.0, "10", float("nan"), float("inf"), True])
def test_init_refuses_a_bad_timeout(bad):
    """(inf failed with an OverflowError in time arithmetic, True passed as 1 second)"""
    with pytest.raises(ValueError, match=r"init: timeout \(seconds, or None\) must be a "
                                         r"finite number > 0"):
        fl.distributed.init(timeout=bad)


def test_settings_that_are_not_bools_or_ranks_are_refused():
    """init(gpu='no'), GradientAverager(in_place='no') and DataParallel(overlap='no') were
    taken as True; broadcast(root=5) in one process returned, where several ranks failed in
    MPI naming no argument."""
    with pytest.raises(TypeError, match=r"^init: gpu must be True or False; got 'no'"):
        fl.distributed.init(gpu="no")
    with pytest.raises(TypeError, match=r"^GradientAverager: in_place must be True or False"):
        fl.distributed.GradientAverager(in_place="no")
    with pytest.raises(TypeError, match=r"^DataParallel: overlap must be True or False"):
        fl.distributed.DataParallel(fl.Dense(2, 1), None, [], overlap="no")
    for root in (5, -1, "a", 0.0):
        with pytest.raises(ValueError, match=r"^broadcast: root must be a rank, an int in "
                                             r"0 \.\. 0; got "):
            fl.distributed.broadcast(fl.Dense(2, 1), root=root)
        with pytest.raises(ValueError, match=r"^broadcast_object: root must be a rank"):
            fl.distributed.broadcast_object(1, root=root)


@pytest.mark.parametrize("share", [float("inf"), "a"])
def test_share_must_be_a_finite_positive_number(share):
    """share=inf gave gradients of 0, silently; 'a' a comparison's TypeError."""
    grads = {"w": np.ones(2)}
    with pytest.raises(ValueError, match=r"^GradientAverager.average: share must be the "
                                         r"positive factor"):
        fl.distributed.GradientAverager().average(1.0, grads, 2, share)
    np.testing.assert_array_equal(grads["w"], np.ones(2))


@pytest.mark.parametrize("loss", ["abc", None, np.ones(3)])
def test_loss_must_be_a_number(loss):
    """float('abc'), float(None), float(array) failed, naming nothing."""
    with pytest.raises(TypeError, match=r"^GradientAverager.average: loss must be this "
                                        r"rank's mean loss, a number; got "):
        fl.distributed.GradientAverager().average(loss, {"w": np.ones(2)}, 2)
    averager = fl.distributed.GradientAverager()
    with pytest.raises(ValueError, match=r"^GradientAverager.share: count must be"):
        averager.share(-1)  # (it returned 1.0 in one process)


def test_bucket_size_must_be_a_positive_int():
    with pytest.raises(ValueError, match="bucket_bytes must be a positive int; got 0"):
        fl.distributed.GradientAverager(bucket_bytes=0)
    with pytest.raises(ValueError, match="direct_bytes must be a positive int; got 1.5"):
        fl.distributed.GradientAverager(direct_bytes=1.5)


def test_the_loader_says_it_is_sharded():
    loader = fl.DataLoader(np.arange(10), batchsize=2, shard=(1, 2))
    assert repr(loader) == ("DataLoader(ndarray, batchsize=2, shuffle=False, partial=True, "
                            "shard=(1, 2)): 3 batches of 10 observations")


def _bn_pair(affine=True, track_stats=True):
    plain = fl.f64(fl.BatchNorm(3, np.tanh, affine=affine, track_stats=track_stats))
    if affine:
        plain.weight[:] = [0.5, 1.5, -2.0]
        plain.bias[:] = [0.1, -0.2, 0.3]
    return plain, fl.distributed.sync_batchnorm(fl.fmap(np.copy, plain))


@pytest.mark.parametrize("affine, track_stats", [(True, True), (False, False)])
def test_sync_batchnorm_in_one_process_is_batchnorm(affine, track_stats):
    x = np.random.default_rng(0).normal(1.0, 2.0, size=(6, 3, 2, 2))
    plain, sync = _bn_pair(affine, track_stats)
    assert type(sync) is fl.distributed.SyncBatchNorm and repr(sync).startswith("SyncBatchNorm(3")
    results = []
    for layer in (plain, sync):
        value, grads = fl.withgradient(lambda m, x: np.sum(np.cos(m(x))), layer, x)
        stats = (layer.running_mean.copy(), layer.running_var.copy()) if track_stats else ()
        params = (grads[0].weight, grads[0].bias) if affine else ()
        results.append((value, grads[1], layer(x), *params, *stats))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_sync_batchnorm_compiles_in_one_process_and_is_refused_with_several(monkeypatch):
    # (it failed on float() of a traced count, naming a line of the caller's model; in one
    # process there is nothing to sum, and it compiles as BatchNorm)
    sync = fl.distributed.sync_batchnorm(fl.f64(fl.BatchNorm(3, np.tanh)))
    model = fl.Chain(fl.f64(fl.Dense(2, 3)), sync)
    x = np.random.default_rng(2).normal(size=(4, 2))
    step = fl.compile(lambda m, x: fl.withgradient(lambda m: np.sum(m(x) ** 2), m))
    twin = fl.fmap(np.copy, model)
    got, want = step(model, x), fl.withgradient(lambda m: np.sum(m(x) ** 2), twin)
    # (atol: compiled and eager sums round differently; an entry of 2e-4 once differed by 9e-16)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got[1][0][0].weight, want[1][0][0].weight, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(sync.running_var, twin[1].running_var, rtol=1e-12, atol=1e-13)
    monkeypatch.setattr(fl.distributed.group(), "size", 2)
    step = fl.compile(lambda m, x: fl.withgradient(lambda m: np.sum(m(x) ** 2), m))
    with pytest.raises(CompileError, match=r"SyncBatchNorm\(3, tanh\): its training-mode "
                       r"statistics are summed across the ranks .* without compile"):
        step(model, x)
    monkeypatch.undo()
    test = fl.compile(lambda m, x: m(x))  # test mode: the running statistics, compiled
    np.testing.assert_allclose(test(fl.testmode(model), x), model(x), rtol=1e-12, atol=1e-13)


def test_sync_batchnorm_derivatives_match_finite_differences():
    x = np.random.default_rng(1).normal(size=(5, 3))
    _, sync = _bn_pair()
    sync.running_mean = sync.running_var = None  # nothing updated in place while checking
    fl.testing.check_grads(lambda w, b, x: fl.trainmode(_with(sync, w, b))(x),
                           sync.weight, sync.bias, x)


def _with(layer, w, b):
    new = fl.fmap(lambda a: a, layer)
    new.weight, new.bias = w, b
    return new


def test_sync_batchnorm_converts_nested_layers_and_shares_their_arrays():
    model = {"net": fl.Chain(fl.Dense(2, 3), fl.BatchNorm(3)), "more": [{"bn": fl.BatchNorm(3)}]}
    sync = fl.distributed.sync_batchnorm(model)
    layers = [sync["net"][1], sync["more"][0]["bn"]]
    assert all(type(m) is fl.distributed.SyncBatchNorm for m in layers)
    assert layers[0].running_mean is model["net"][1].running_mean
    assert layers[1].weight is model["more"][0]["bn"].weight
    assert type(model["net"][1]) is fl.BatchNorm  # the model given is left as it was


def test_sync_batchnorm_names_itself_in_its_constructors_errors():
    with pytest.raises(ValueError, match=r"^SyncBatchNorm: channels must be a positive int"):
        fl.distributed.SyncBatchNorm(0)  # (it said 'BatchNorm: channels ...')
    with pytest.raises(TypeError, match=r"^SyncBatchNorm: active must be True, False or None"):
        fl.distributed.SyncBatchNorm(2, active="yes")


@pytest.mark.parametrize("share", [None, 0.0, 1.0])
def test_one_process_with_an_empty_batch_is_a_clear_error_not_a_division_by_zero(share):
    averager = fl.distributed.GradientAverager()
    grads = {"w": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="count is 0 in a one-process job: the global batch "
                                         "is empty, so there is no mean loss"):
        averager.average(0.0, grads, 0, share)
    np.testing.assert_array_equal(grads["w"], np.zeros(3, np.float32))  # left as it was
    assert averager.average(0.5, grads, 2)[2] == 2  # and it goes on


@pytest.mark.parametrize("bad", [-1, 2.0, True, "3", None])
def test_count_must_be_a_non_negative_int(bad):
    with pytest.raises(ValueError, match=f"count must be this rank's number of observations, "
                                         f"an int >= 0; got {bad!r}"):
        fl.distributed.GradientAverager().average(0.0, {"w": np.ones(2)}, bad)
    assert fl.distributed.GradientAverager().average(0.0, {"w": np.ones(2)}, np.int64(3))[2] == 3
