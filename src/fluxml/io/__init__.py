"""Saving and loading: ``state``/``loadmodel``, ``save``/``load`` (safetensors files), and
checkpoints for resuming training.

>>> import numpy as np, fluxml as fl
>>> sorted(fl.state(fl.Dense(2, 1)))
['bias', 'weight']
"""

from fluxml.io.files import Checkpoint, load, load_checkpoint, save, save_checkpoint
from fluxml.io.modelstate import LoadError, loadmodel, state
from fluxml.io.safetensors import FileFormatError

__all__ = [
    "Checkpoint", "FileFormatError", "LoadError", "load", "load_checkpoint", "loadmodel",
    "save", "save_checkpoint", "state",
]
