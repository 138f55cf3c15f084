"""The short run of the whole-model fuzzer (``tests/compiler/fuzz_models.py``): random models,
losses and optimisers, a compiled training step against the eager one over a few steps with
changes between them (learning rates, freezing, train/test mode, activations, settings,
replaced layers, a partial or other-precision batch); ``fl.train(..., compile=True)`` against
eager ``fl.train`` with callbacks and a resumed checkpoint; a compiled model's forward while it
is trained. The long runs: ``python -m tests.compiler.fuzz_models 300 [xla] [--train]``."""

import copy

import numpy as np
import pytest

import fluxml as fl
from tests.compiler import fuzz_models as fm

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(autouse=True)
def _precision_warnings_kept(monkeypatch):
    """The layers' precision warning comes once per layer type and pair of dtypes: what these
    cases set off (a batch of the other precision) must not use up another test's."""
    from fluxml.layers import precision

    monkeypatch.setattr(precision, "_warned", set(precision._warned))


@pytest.mark.parametrize("seed", range(8))
def test_compiled_training_step_equals_eager(seed):
    assert fm.run_case(seed) == "ok", fm.describe(fm.draw_case(seed))


@pytest.mark.parametrize("seed", range(2))
def test_compiled_train_loop_equals_eager(seed, tmp_path):
    assert fm.run_train_case(seed, directory=str(tmp_path)) == "ok", \
        fm.describe(fm.draw_case(seed))


@pytest.mark.parametrize("seed", range(3))
def test_compiled_model_sees_its_training(seed):
    assert fm.run_forward_case(seed) == "ok", fm.describe(fm.draw_case(seed))


def test_one_compiled_step_for_two_models():
    """One compiled step alternating between the models of two cases (each its own trace),
    and two models of one structure (one trace), with a cache of one trace and of many."""
    for cache_size in (1, 32):
        cases = [fm.draw_case(s) for s in (0, 3)]
        twin = copy.deepcopy(cases[0])
        twin["model"] = fl.fmap(lambda a: a * 1.5 if getattr(a, "dtype", None) == np.float64
                                else a, twin["model"])
        cases.append(twin)
        runs = []
        for case in cases:
            state = fl.setup(case["rule"], case["model"])
            runs.append((case, case["model"], state) + copy.deepcopy((case["model"], state)))
        steps = [fm.make_step(case["loss"]) for case in cases]
        compiled = fl.compile(lambda m, s, x, y, k: steps[k](m, s, x, y), cache_size=cache_size)
        for i in range(3):
            for k, (case, model, state, eager_model, eager_state) in enumerate(runs):
                x, y = case["batches"][i]
                got = compiled(model, state, x, y, k)
                want = steps[k](eager_model, eager_state, x, y)
                dtype = case["dtype"]
                assert fm.compare("loss", got, want, dtype) is None
                assert fm.compare("model", model, eager_model, dtype) is None
                assert fm.compare("state", state, eager_state, dtype) is None


@pytest.mark.parametrize("seed", [11, 13, 18, 26])
def test_compiled_step_with_a_tied_weight_returned_state_or_checkpoint_equals_eager(seed):
    # (the seeds: a tied weight with the step returning the state and model (11, 18), the loss
    # under fl.checkpoint (13, 26); the long run: fuzz_models 300 --seams)
    assert fm.run_case(seed, seams=True) == "ok", fm.describe(fm.draw_case(seed))
