"""The drawn problems' parts for ``fuzz_sensitivity.py``: right-hand sides and their
parameters, the fuzzer's own packing of states, the tolerances each solver runs at, and the
fixed-step references (textbook loops)."""

import math
import traceback
import zlib

import numpy as np

from fluxml.ode import tableaus

# --- right-hand sides: core(t, x, p) shaped like x (a vector (n,) or a matrix (n, 2)) --------


# Functions of t use math (a Python float), not NumPy: np.sin(t) is a float64 scalar, which
# would make a float32 state float64 in the user's f (not the solver's doing).

def _col(v, x):
    """A parameter vector (n,) against a state (n,) or (n, k)."""
    return v if np.ndim(x) == 1 else v[:, None]


def linear(t, x, p):
    return p["M"] @ x + _col(p["b"], x) * math.sin(t)


def mlp(t, x, p):
    return p["W2"] @ np.tanh(p["W1"] @ x + _col(p["c"], x)) - p["decay"] * x


def lotka(t, x, p):
    return x * (_col(p["r"], x) - p["A"] @ x)


def timed(t, x, p):
    return -_col(np.exp(p["q"]), x) * x + np.sin(p["w"] * t + _col(p["phase"], x))


def stiff(t, x, p):
    return -p["K"] * (x - np.cos(t + _col(p["s"], x))) + _col(p["b"], x) * x ** 2 / 4


def _params(kind, n, rng):
    g = rng.standard_normal
    if kind == "linear":
        return {"M": g((n, n)) / 2, "b": g(n)}
    if kind == "mlp":
        h = int(rng.integers(1, 4))
        return {"W1": g((h, n)), "c": g(h), "W2": g((n, h)) / 2,
                "decay": float(rng.uniform(0.1, 1.0)), "n": h}
    if kind == "lotka":
        return {"r": rng.uniform(-0.5, 1.0, n), "A": rng.uniform(0.0, 0.6, (n, n))}
    if kind == "timed":
        return {"q": g(n) / 2, "w": float(rng.uniform(0.5, 3.0)), "phase": g(n)}
    return {"K": float(rng.uniform(20.0, 200.0)), "s": g(n), "b": g(n) / 4}


CORES = {"linear": linear, "mlp": mlp, "lotka": lotka, "timed": timed, "stiff": stiff}


def make_f(core, state):
    if state != "tree":
        return core

    def second_order(t, u, p):  # x'' = core(x) - 0.3 x'
        return {"v": core(t, u["x"], p) - 0.3 * u["v"], "x": u["v"]}

    return second_order


# --- states: packed into one flat vector by the fuzzer itself (not fluxml's Packer) -----------

def pack(u, state):
    if state == "tree":
        return np.concatenate([np.ravel(u["x"]), np.ravel(u["v"])])
    return np.ravel(u)


def unpack(y, state, n):
    if state == "tree":
        return {"x": y[:n], "v": y[n:]}
    return y.reshape(n, 2) if state == "matrix" else y


def stacked(u, state):
    """sol.u (stacked along the first axis) as a (T, size) matrix."""
    if state == "tree":
        return np.concatenate([np.reshape(u["x"], (np.shape(u["x"])[0], -1)),
                               np.reshape(u["v"], (np.shape(u["v"])[0], -1))], axis=1)
    return np.reshape(u, (np.shape(u)[0], -1))


# --- solvers -----------------------------------------------------------------------------------

ADAPTIVE = {"Tsit5": 1e-9, "DP5": 1e-9, "Vern7": 1e-10, "BS3": 1e-8, "Rodas5": 1e-8,
            "Rosenbrock23": 1e-6}  # the rtol each is run at
# how close the values (relative to their size) and gradients must come at that rtol: the
# global error grows over the span from the local tolerance; Rosenbrock23 is order 2
VALUE_TOL = {"Rosenbrock23": 5e-4, "BS3": 1e-5}
FIXED = {"Euler": 1, "Midpoint": 2, "Heun": 2, "RK4": 4}


def naive_fixed(name, f, t0, y0, h, steps):
    """The fixed-step methods' textbook formulas, every state after each step."""
    out, t, y = [y0], t0, y0
    for _ in range(steps):
        hh = h
        k1 = f(t, y)
        if name == "Euler":
            y = y + hh * k1
        elif name == "Midpoint":
            y = y + hh * f(t + hh / 2, y + hh / 2 * k1)
        elif name == "Heun":
            y = y + hh / 2 * (k1 + f(t + hh, y + hh * k1))
        else:
            k2 = f(t + hh / 2, y + hh / 2 * k1)
            k3 = f(t + hh / 2, y + hh / 2 * k2)
            k4 = f(t + hh, y + hh * k3)
            y = y + hh / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        t = t + hh
        out.append(y)
    return np.array(out)


def naive_tableau(name, f, t0, y0, h, steps):
    """An adaptive method run with fixed steps (``adaptive=False``): every state after each
    step by the textbook loop over its tableau's a, b and c (fluxml's numbers, none of its
    stepping code)."""
    tab = getattr(tableaus, name.upper())
    out, t, y = [y0], t0, y0
    for _ in range(steps):
        ks = []
        for c, row in zip(tab.c, tab.a):
            ks.append(f(t + c * h, y + h * sum((a * k for a, k in zip(row, ks)), 0.0 * y)))
        y = y + h * sum(b * k for b, k in zip(tab.b, ks))
        t = t + h
        out.append(y)
    return np.array(out)


# the adaptive methods also drawn with adaptive=False and fixed steps of dt
FIXED_ADAPTIVE = ["BS3", "Tsit5", "DP5", "Vern7"]


# --- shared by the fuzzers ---------------------------------------------------------------------

def float32_off(e32, e64, gerr):
    """What is off in a float32 solve whose values have error ``e32`` (float64's at the same
    tolerances: ``e64``) and whose gradient is ``gerr`` off float64's, all relative; None when
    it is as accurate as float64's up to float32's rounding (1e-4 over the steps), the
    gradient within 50 times that (the ratio of the gradient and value tolerances)."""
    if e32 > 10 * e64 + 1e-4:
        return f"float32 values: error {e32:.2e}, float64's at the same tolerances {e64:.2e}"
    if gerr > 50 * (10 * e64 + 1e-4):
        return f"float32 gradient {gerr:.2e} off float64's (value error {e64:.2e})"
    return None


def arguments(argv, default):
    """``(n, seed, only)`` from ``N [SEED] [--case I]``."""
    args = [a for a in argv if not a.startswith("--")]
    only = int(argv[argv.index("--case") + 1]) if "--case" in argv else None
    if only is not None:
        args.remove(str(only))
    return (int(args[0]) if args else default), (int(args[1]) if len(args) > 1 else 0), only


def run_cases(argv, default, salt, draw, check, refused):
    """The fuzzers' main loop: ``N [SEED] [--case I]`` cases, case ``i`` drawn by ``draw(rng)``
    from the seed, ``salt`` and ``i`` and checked by ``check(case, rng, verbose)`` (None or
    a message); an exception of the types ``refused`` counts as refused (by its message's
    start), any other is a finding. Returns the exit status: 1 when something failed."""
    n, seed, only = arguments(argv, default)
    fails, why_refused, done = [], {}, 0
    for i in range(n) if only is None else [only]:
        rng = np.random.default_rng([seed, zlib.crc32(salt), i])
        try:
            case = draw(rng)
        except Exception as e:  # noqa: BLE001
            fails.append(f"[{i}] drawing: {e}")
            continue
        if only is not None:
            print(case.describe())
        try:
            with np.errstate(all="ignore"):
                message = check(case, rng, verbose=only is not None)
            done += 1
        except refused as e:
            why = f"{getattr(case, 'alg', '')}: {str(e)[:80]}"
            why_refused[why] = why_refused.get(why, 0) + 1
            message = None
        except Exception as e:  # noqa: BLE001 - a crash is a finding
            message = f"raised {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            if only is not None:
                traceback.print_exc()
        if message:
            fails.append(f"[{i}] {case.describe()}\n    {message}")
            print("MISMATCH", fails[-1], flush=True)
    print(f"{done} cases checked, {sum(why_refused.values())} refused, {len(fails)} failures "
          f"(seed {seed})")
    for why, count in sorted(why_refused.items(), key=lambda kv: -kv[1]):
        print(f"  refused {count:4d}  {why}")
    return 1 if fails else 0
