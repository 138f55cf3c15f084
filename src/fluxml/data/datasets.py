"""Data sets that need no network: the bundled 8x8 digits, and readers for MNIST-style IDX
files you already have on disk.

``digits()``: the 1,797 8x8 handwritten digits of the UCI "Optical Recognition of
Handwritten Digits" data set (E. Alpaydin and C. Kaynak, 1998; the copy scikit-learn ships
as ``load_digits``), licensed CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/).
They are stored in ``fluxml/data/digits.npz`` as uint8 pixel counts 0..16 and labels,
loaded without pickle.

>>> import fluxml as fl
>>> (xtrain, ytrain), (xtest, ytest) = fl.datasets.digits()
>>> xtrain.shape, xtrain.dtype, ytest.shape
((1442, 1, 8, 8), dtype('float32'), (355,))
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

DIGITS = Path(__file__).with_name("digits.npz")


def _split_every(labels, every: int) -> np.ndarray:
    """True for every ``every``-th occurrence of each class: a stratified split with no
    random numbers, the same on every machine and NumPy version."""
    test = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        test[np.flatnonzero(labels == c)[every - 1::every]] = True
    return test


def digits(split: str | None = "both", flat: bool = False, dtype=np.float32):
    """The 8x8 handwritten digits: ``(xtrain, ytrain), (xtest, ytest)``.

    Images are ``(N, 1, 8, 8)`` (``flat=True``: ``(N, 64)``) scaled to [0, 1], labels are
    int64 digits 0..9. The split is fixed: every fifth image of each digit is a test image
    (1,442 training images, 355 test images). ``split="train"`` or ``"test"`` returns that
    pair alone, ``split=None`` all 1,797 images in their original order.

    >>> import fluxml as fl
    >>> x, y = fl.datasets.digits("test", flat=True)
    >>> x.shape, int(y[0]), float(x.max())
    ((355, 64), 5, 1.0)
    """
    if split not in ("both", "train", "test", None):
        raise ValueError(f"digits: split must be 'both', 'train', 'test' or None; got {split!r}")
    with np.load(DIGITS, allow_pickle=False) as f:
        images, labels = f["images"], f["labels"].astype(np.int64)
    x = (images.astype(dtype) / 16).reshape(len(images), -1 if flat else 1, *(() if flat
                                                                            else (8, 8)))
    if split is None:
        return x, labels
    test = _split_every(labels, 5)
    train_pair, test_pair = (x[~test], labels[~test]), (x[test], labels[test])
    return {"both": (train_pair, test_pair), "train": train_pair, "test": test_pair}[split]


# IDX: two zero bytes, a type code, the number of dimensions, the dimensions as big-endian
# uint32, then the data, big-endian (http://yann.lecun.com/exdb/mnist/).
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read one IDX file (as MNIST's ``train-images-idx3-ubyte``), gzip-compressed or not.

    >>> import numpy as np, fluxml as fl, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.idx")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
    >>> fl.datasets.read_idx(path)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # (zlib's: a damaged stream)
            raise ValueError(f"read_idx: {path} looks gzip-compressed but does not decompress "
                             f"({err}); the file may be truncated or damaged") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise ValueError(f"read_idx: {path} is not an IDX file (expected the magic bytes "
                         f"00 00 <type> <ndim> with type one of "
                         f"{[hex(t) for t in IDX_TYPES]}; got {raw[:4].hex(' ')})")
    dtype, ndim = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise ValueError(f"read_idx: {path} is truncated inside its header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    # (Python's ints: NumPy's int64 product wrapped round, so four dimensions of 65536 needed
    # 0 bytes and the reshape's own error came, and two of 2**32 - 1 a negative count)
    expected = start + dtype.itemsize * math.prod(shape)
    if len(raw) != expected:
        raise ValueError(f"read_idx: {path} holds {len(raw)} bytes but its header "
                         f"(shape {shape}, {dtype.name}) needs {expected}; the file is "
                         f"{'truncated' if len(raw) < expected else 'longer than declared'}")
    data = np.frombuffer(raw, dtype, offset=start).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                 stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"mnist: no {stem} or {stem}.gz in {folder}; download the four "
                            f"IDX files of MNIST or Fashion-MNIST into that folder")


def mnist(path, split: str = "train", dtype=np.float32):
    """``(x, y)`` from the standard MNIST (or Fashion-MNIST: the same file names) IDX files
    in the folder ``path``: images ``(N, 1, 28, 28)`` scaled to [0, 1], labels int64.
    ``split`` is ``"train"`` or ``"test"`` (the ``t10k`` files). Nothing is downloaded."""
    if split not in MNIST_FILES:
        raise ValueError(f"mnist: split must be 'train' or 'test'; got {split!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"mnist: {folder} is not a folder; pass the folder holding "
                                f"the IDX files")
    images_file, labels_file = (_find(folder, stem) for stem in MNIST_FILES[split])
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"mnist: expected images (N, rows, cols) and N labels; got images "
                         f"{images.shape} from {images_file.name} and labels {labels.shape} "
                         f"from {labels_file.name}")
    x = (images.astype(dtype) / 255)[:, None]
    return x, labels.astype(np.int64)


fashion_mnist = mnist
