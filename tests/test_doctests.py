"""Every ``>>>`` example in fluxml's docstrings runs and prints what it shows."""

import doctest
import importlib
import importlib.util
import inspect
import io
import pkgutil

import numpy as np
import pytest

import fluxml
from fluxml.ad.core import UFUNCS

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# Examples that wait for a rule another part of the engine brings; the mark lifts itself.
WAITING = {
    "fluxml.ad.checkpoint.checkpoint": (np.matmul not in UFUNCS,
                                        "the example needs np.matmul's rule"),
}

# Modules that import without their optional dependency but whose examples use it.
OPTIONAL = {"fluxml.backend.xla_arrays": "jax", "fluxml.compiler.tiered": "jax",
            "fluxml.crypto.plan": "tenseal"}


def _module_names():
    found = pkgutil.walk_packages(fluxml.__path__, "fluxml.", onerror=lambda name: None)
    return ["fluxml"] + sorted(info.name for info in found)


def _cases():
    """One case per docstring with examples. A module whose optional dependency is absent is
    one skipped case; a module that fails to import is one failing case (not a collection
    error that would stop the whole suite)."""
    finder = doctest.DocTestFinder()
    cases = []
    for name in _module_names():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and not err.name.startswith("fluxml"):
                skip = pytest.mark.skip(reason=f"{name} needs {err.name}, not installed")
                cases.append(pytest.param(None, id=name, marks=skip))
                continue
            cases.append(pytest.param(_import_failure(name, err), id=name))
            continue
        except Exception as err:
            cases.append(pytest.param(_import_failure(name, err), id=name))
            continue
        for test in sorted(finder.find(module), key=lambda t: t.name):
            if not test.examples:
                continue
            marks = ()
            needs = next((n for prefix, n in OPTIONAL.items() if test.name.startswith(prefix)),
                         None)
            if needs is not None and importlib.util.find_spec(needs) is None:
                marks = pytest.mark.skip(reason=f"{test.name} needs {needs}, not installed")
            if test.name in WAITING:
                waiting, reason = WAITING[test.name]
                marks = pytest.mark.xfail(waiting, reason=reason, strict=True)
            cases.append(pytest.param(test, id=test.name, marks=marks))
    return cases


def _import_failure(name, err):
    return f"importing {name} failed: {type(err).__name__}: {err}"


CASES = _cases()


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.0.0",
                    reason="the examples show NumPy 2 reprs (np.float64(1.0))")
@pytest.mark.parametrize("test", CASES)
def test_docstring_example(test):
    if isinstance(test, str):
        pytest.fail(test)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    with np.printoptions(legacy=False):
        result = runner.run(test, out=report.write)
    assert result.failed == 0, report.getvalue()


def test_the_engine_has_examples():
    names = {p.id for p in CASES}
    for name in ("fluxml.ad.api.gradient", "fluxml.ad.pushforward.jvp", "fluxml.tree"):
        assert name in names


def test_every_public_name_has_an_example_of_its_own():
    """Each name fluxml exports (its __all__) carries a >>> example in its own docstring
    (an instance such as fl._ in its class's), not only in its module's."""
    missing = []
    for name in fluxml.__all__:
        obj = getattr(fluxml, name)
        if inspect.ismodule(obj):
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, np.ufunc)):
            obj = type(obj)
        doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
        if ">>>" not in (doc or ""):
            missing.append(name)
    assert not missing, f"public names without a >>> example: {sorted(missing)}"


def test_the_namespace_holds_the_public_names_and_fluxmls_own_modules():
    """What ``dir(fl)`` lists beyond ``__all__`` are fluxml's own submodules (imported as
    its parts are), never a module the package's code imports for itself (``importlib``
    was listed, and ``fl.importlib`` reached the standard library)."""
    extra = [n for n in dir(fluxml) if not n.startswith("_") and n not in fluxml.__all__]
    for name in extra:
        obj = getattr(fluxml, name)
        assert inspect.ismodule(obj) and obj.__name__ == f"fluxml.{name}", name
