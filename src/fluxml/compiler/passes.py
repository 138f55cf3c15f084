"""Optimisation passes over a :class:`~fluxml.compiler.ir.Program`, each a small function
``program -> program`` with its own tests. ``optimise`` runs them in order."""

from __future__ import annotations

from fluxml.compiler.ir import Program, Var


def _mutates(eqn) -> bool:
    """Does the equation write into one of its inputs (an in-place functional update)?"""
    p = eqn.params
    return bool(p) and p.get("inplace") is True


def dead_code(program: Program) -> Program:
    """Drop equations whose results nothing reads (outputs and write-backs count as reads).
    Equations that write into an input's buffer are kept: a view may read that buffer."""
    live = {v.id for v in program.outputs if type(v) is Var}
    live.update(v.id for _, v in program.writes)
    kept = []
    for eqn in reversed(program.eqns):
        if _mutates(eqn) or any(o.id in live for o in eqn.outs):
            kept.append(eqn)
            live.update(v.id for v in eqn.reads())
    kept.reverse()
    return Program(program.inputs, kept, program.outputs, program.writes)


def optimise(program: Program) -> Program:
    return dead_code(program)
