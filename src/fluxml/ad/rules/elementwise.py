"""Elementwise rules: arithmetic, powers, exponentials and logarithms, trigonometry.

Each entry reads as a row of a calculus table. Broadcasting is undone by the engine.
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.define import defjvp, deflinear, defvjp, same, ufunc

ADD = ufunc(np.add, keeps_inputs=False, keeps_output=False)
defvjp(ADD, lambda g, ans, x, y: g, lambda g, ans, x, y: g)
defjvp(ADD, same, same)

SUBTRACT = ufunc(np.subtract, keeps_inputs=False, keeps_output=False)
defvjp(SUBTRACT, lambda g, ans, x, y: g, lambda g, ans, x, y: -g)
defjvp(SUBTRACT, same, lambda t, ans, x, y: -t)

MULTIPLY = ufunc(np.multiply, keeps_output=False)
defvjp(MULTIPLY, lambda g, ans, x, y: g * y, lambda g, ans, x, y: g * x)
deflinear(MULTIPLY)

NEGATIVE = ufunc(np.negative, keeps_inputs=False, keeps_output=False)
defvjp(NEGATIVE, lambda g, ans, x: -g)
deflinear(NEGATIVE)

TRUE_DIVIDE = ufunc(np.true_divide)
defvjp(TRUE_DIVIDE, lambda g, ans, x, y: g / y, lambda g, ans, x, y: -g * ans / y)
defjvp(TRUE_DIVIDE, lambda t, ans, x, y: t / y, lambda t, ans, x, y: -t * ans / y)

TANH = ufunc(np.tanh, keeps_inputs=False)
defvjp(TANH, lambda g, ans, x: g * (1 - ans**2))
defjvp(TANH, lambda t, ans, x: t * (1 - ans**2))

POWER = ufunc(np.power)
defvjp(POWER,
       lambda g, ans, x, y: g * y * np.power(x, y - 1),
       lambda g, ans, x, y: g * ans * np.log(np.where(x > 0, x, 1)))
defjvp(POWER,
       lambda t, ans, x, y: t * y * np.power(x, y - 1),
       lambda t, ans, x, y: t * ans * np.log(np.where(x > 0, x, 1)))

SIN = ufunc(np.sin, keeps_output=False)
defvjp(SIN, lambda g, ans, x: g * np.cos(x))
defjvp(SIN, lambda t, ans, x: t * np.cos(x))

COS = ufunc(np.cos, keeps_output=False)
defvjp(COS, lambda g, ans, x: -g * np.sin(x))
defjvp(COS, lambda t, ans, x: -t * np.sin(x))

EXP = ufunc(np.exp, keeps_inputs=False)
defvjp(EXP, lambda g, ans, x: g * ans)
defjvp(EXP, lambda t, ans, x: t * ans)

LOG = ufunc(np.log, keeps_output=False)
defvjp(LOG, lambda g, ans, x: g / x)
defjvp(LOG, lambda t, ans, x: t / x)
