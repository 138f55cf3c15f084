"""``Rollback``: what ``fl.train`` puts back when a step fails (a NaN, an error in the loss,
Ctrl-C), so that the model is as it was when the step began: the fields its forward pass
set (a user's ``self.mean = ...``, an item appended to a list), the arrays it wrote in place
(BatchNorm's running statistics, a user's count of calls in an integer array) and, compiled,
the arrays its programs write.

Eagerly, the arrays kept are those the optimiser does not step (:func:`_buffers`): user code
may write into any of them, unseen by the engine (a plain NumPy write), so each is copied
before every step. Compiled, the step writes only what its program writes: those arrays are
kept (:class:`_Written`), and every array before a batch whose program is not learnt yet;
the others, however large (a table of integers), are not copied at all.

The model's objects and arrays to keep are found once, and again only where a field moved
to another object, list or dict (code between steps, as an Evaluate's forward pass, may set
one; the objects are others then). A forward pass that sets a field to a new array each
step (``self.last = h``) only adds that array to those kept; the arrays it left are kept
too (one may still be in the model elsewhere) until they add up to as many, or as many
bytes, as were found: then all are found again. So such a layer costs a search of the model
every few dozen steps, not every step.
"""

from __future__ import annotations

import collections
import numbers
from itertools import chain
from operator import is_

import numpy as np

from fluxml.ad.writeback import contents, put_back
from fluxml.tree import flatten, leaves, nodes


class Rollback:
    """The model as each step begins (:meth:`keep`), put back where it fails
    (:meth:`put_back`); ``step``: the compiled gradient step, or None for eager steps."""

    def __init__(self, model, step=None):
        self.model = model
        self.written = None if step is None else _Written(step, model)
        self.fields: list | None = None  # the objects' contents as the last step began
        self.values: tuple = ([], [])  # their lengths, and all their keys and values (_values)
        self._find()

    def _find(self) -> None:
        objects = _objects(self.model)  # (those whose contents are dicts first: _same)
        self.objects = [o for o in objects if not _listlike(o)]
        self.dicts = len(self.objects)
        self.objects += [o for o in objects if _listlike(o)]
        # (compiled, the programs' writes are kept instead: _Written)
        self.buffers = _buffers(self.model) if self.written is None else []
        self.ids = {id(x) for x, _ in self.buffers}
        # arrays added since (fields set to new arrays): all found again past these
        self.room = max(16, len(self.buffers))
        self.room_bytes = max(1 << 20, sum(x.nbytes for x, _ in self.buffers))

    def keep(self, batch: tuple = ()) -> None:
        """Before a step on ``batch`` (its arguments after the model): copy what it may
        write."""
        fields = [contents(o) for o in self.objects]  # (a forward pass may set them)
        values = _values(fields, self.dicts)
        # the common step: every field holds the very object it held (a value that only
        # compares equal is another one), so nothing new came in: _rebound's walk skipped
        if self.fields is not None and not (values[0] == self.values[0] and
                                            all(map(is_, values[1], self.values[1]))):
            new = _rebound(fields, self.fields)
            if new is None:  # another object, list or dict in a field: others to keep
                self._find()
                fields = [contents(o) for o in self.objects]
                values = _values(fields, self.dicts)
            for x in new or ():
                if id(x) not in self.ids and _state_array(x) and self.written is None:
                    self.buffers.append((x, x.copy()))
                    self.ids.add(id(x))
                    self.room -= 1
                    self.room_bytes -= x.nbytes
            if self.room < 0 or self.room_bytes < 0:
                self._find()  # (the arrays left behind dropped)
            if self.written is not None and (new is None or new):
                self.written.forget()  # (a compiled step writes into what the fields hold)
        self.fields, self.values = fields, values
        for x, kept in self.buffers:
            kept[...] = x
        if self.written is not None:
            self.written.keep(batch)

    def put_back(self) -> None:
        """The model as the step began: the fields it set, the arrays it wrote in place."""
        for o, before in zip(self.objects, self.fields):
            put_back(o, before)
        for x, kept in self.buffers:
            x[...] = kept
        if self.written is not None:
            self.written.put_back()

    def learn(self) -> None:
        """After a step that succeeded (compiled: the arrays its program writes)."""
        if self.written is not None:
            self.written.learn()


_PLAIN = (type(None), bool, numbers.Number, str, bytes, np.generic, np.ndarray)


def _listlike(o) -> bool:
    """Whether :func:`contents` of ``o`` is a list or set (not a dict)."""
    return isinstance(o, (set, list, collections.deque)) and not isinstance(o, dict)


def _values(fields: list, dicts: int) -> tuple:
    """All the keys and values of the objects' contents ``fields`` (the first ``dicts`` are
    dicts, the others lists or sets), in order, and each content's length: flattened in C
    (``keep`` compares them with the last step's, the lengths by value, the rest by
    identity: an item moved from one list to the next, or a key renamed, changes them)."""
    dicts_ = fields[:dicts]
    return [*map(len, fields)], [*chain.from_iterable(dicts_),
                                 *chain.from_iterable(map(dict.values, dicts_)),
                                 *chain.from_iterable(fields[dicts:])]


def _rebound(now: list, before: list) -> list | None:
    """The arrays and numbers that fields of the model's objects, lists and dicts hold now
    in place of others (:func:`contents` of each, ``before`` and ``now``): ``[]`` where
    none moved; None where another kind of value moved, or an item came or went."""
    new = []
    for a, b in zip(now, before):
        if isinstance(a, dict):
            if a.keys() != b.keys():
                return None
            pairs = ((v, b[k]) for k, v in a.items())
        elif isinstance(a, list):
            if len(a) != len(b):
                return None
            pairs = zip(a, b)
        else:  # (a set)
            if a != b:
                return None
            continue
        for v, w in pairs:
            if v is not w:
                if not (isinstance(v, _PLAIN) and isinstance(w, _PLAIN)):
                    return None
                new.append(v)
    return new


def _buffers(model) -> list:
    """``[(array, copy)]`` for the model's arrays that the optimiser does not step but a
    forward pass may write in place (BatchNorm's running statistics, a user's count of calls
    in an integer array): copied before each step and put back when it fails. A read-only
    array (``table.flags.writeable = False``: a large lookup table) is not copied."""
    # (an integer or bool array the optimiser skips, wherever it is: before, one outside
    # ``nontrainable`` was never kept, and a failed step's count of calls stayed)
    trained = {id(x) for x in flatten(model, trainable=True)[0]
               if getattr(x, "dtype", None) is not None and x.dtype.kind in "fc"}
    return [(x, x.copy()) for x in leaves(model) if id(x) not in trained and _state_array(x)]


def _objects(model) -> list:
    """The model's objects, lists and dicts: their contents are put back when a step fails,
    as a forward pass may have set them (a user's ``self.mean = 0.9 * self.mean + ...``, an
    item appended to a list, which the gradient writes back)."""
    return [n.static for n in nodes(flatten(model)[1])
            if n.kind in ("object", "list", "dict") and n.static is not None]


def _state_array(x) -> bool:
    """Whether ``x`` is an array a step may write in place: a writeable NumPy (or CuPy)
    array of numbers, 0-d too (a count), integer too; not a Python or NumPy scalar."""
    flags = getattr(x, "flags", None)
    return flags is not None and getattr(x, "dtype", None) is not None and \
        x.dtype.kind in "biufc" and getattr(flags, "writeable", True)


class _Written:
    """Under ``compile``, the model's arrays the compiled step writes in place (a forward
    pass's ``self.state = ...`` compiles to a write into the array the field holds): copied
    before each step and put back when it fails, as :func:`_buffers`' are. They are learnt
    from each compiled program (one per batch shape) after its first step that succeeded;
    before a step on a batch whose program is not learnt yet (the first steps, the last
    smaller batch: its program may take another branch and write other arrays), every
    array of numbers is copied."""

    def __init__(self, step, model):
        self.step, self.model = step, model
        self.learnt: list = []  # the programs whose writes are in ``pairs``
        self.pairs: dict | None = None  # id of array -> (array, its copy)
        self.everything: list = []  # every array and its copy, for a batch not learnt
        self.batches: set = set()  # the batches' keys (_batch_key) whose programs are learnt
        self.batch = None  # the key of the step's batch

    def keep(self, batch: tuple = ()) -> None:
        self.batch = _batch_key(batch)
        if self.pairs is None or self.batch is None or self.batch not in self.batches:
            self.everything = [(x, x.copy()) for x in leaves(self.model) if _state_array(x)]
            return
        self.everything = []
        for x, kept in self.pairs.values():
            kept[...] = x

    def put_back(self) -> None:
        for x, kept in (self.everything if self.everything else
                        (self.pairs or {}).values()):
            x[...] = kept

    def forget(self) -> None:
        """The model's fields hold other arrays now: learn the programs' writes again."""
        self.learnt, self.pairs, self.everything, self.batches = [], None, [], set()

    def learn(self) -> None:
        """After a step that succeeded: the arrays its program writes, added to those of the
        programs learnt before (the model's leaves come first among the step's arguments,
        ``(model, share, *batch)``)."""
        entry = self.step.last
        if entry is None:
            return
        if self.batch is not None:  # (a step on a batch of this key runs this program)
            self.batches.add(self.batch)
        if any(e is entry for e in self.learnt):
            return
        self.learnt.append(entry)
        # (an argument's new value computed into its buffer, donated, is a write too)
        program = entry.program
        at = {entry.positions[k] for k in [k for k, _ in program.writes] + program.donated}
        self.pairs = self.pairs or {}
        self.pairs.update((id(x), (x, x.copy())) for i, x in enumerate(leaves(self.model))
                          if i in at and _state_array(x))
        self.everything = []


def _batch_key(batch: tuple) -> tuple | None:
    """What picks a step's compiled program among the batch's arguments, as the compiler's
    signature sees them: each array's type, shape and dtype, each number's or string's value
    (a NumPy scalar's too, and a zero's sign), through tuples, lists and dicts. None where an
    argument is another object (what it holds is not looked at, so its program is never
    taken as learnt and everything is copied before its steps)."""
    # lazy: only compiled steps key their batches (eager training loads no compiler)
    from fluxml.compiler.calls import value_key

    key = []
    for x in batch:
        if type(x) in (tuple, list):
            part = _batch_key(x)
        elif type(x) is dict:
            part = _batch_key(tuple(x.values()))
            part = None if part is None else (tuple(x), part)
        elif isinstance(x, (type(None), bool, numbers.Number, str, bytes)):
            part = value_key(x)  # (a NumPy scalar is keyed by value, as compile keys it)
        elif getattr(x, "dtype", None) is not None and hasattr(x, "shape"):
            part = (type(x), x.shape, x.dtype.str)
        else:
            return None
        if part is None:
            return None
        key.append((type(x), part) if type(x) in (tuple, list, dict) else part)
    return tuple(key)
