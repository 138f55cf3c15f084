"""The bundled digits, and the IDX reader on small files the test writes."""

import gzip

import numpy as np
import pytest

import fluxml as fl


def test_digits_contents_and_split():
    x, y = fl.datasets.digits(split=None)
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0 and x.max() == 1
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert np.allclose(x * 16, np.round(x * 16))  # pixel counts 0..16
    (xtr, ytr), (xte, yte) = fl.datasets.digits()
    assert len(ytr) + len(yte) == 1797 and len(yte) == 355
    # the split is a partition of the whole set, every fifth image of each digit
    train_rows = {r.tobytes() for r in xtr.reshape(len(xtr), -1)}
    assert not any(r.tobytes() in train_rows for r in xte.reshape(len(xte), -1)[:50])
    assert np.bincount(yte).min() >= 34
    xf, _ = fl.datasets.digits("train", flat=True, dtype=np.float64)
    assert xf.shape == (1442, 64) and xf.dtype == np.float64
    assert np.array_equal(xf.reshape(-1, 1, 8, 8), xtr)
    with pytest.raises(ValueError, match="split must be"):
        fl.datasets.digits("valid")


def _idx(array, code):
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    dtype = {8: ">u1", 9: ">i1", 11: ">i2", 12: ">i4", 13: ">f4", 14: ">f8"}[code]
    return bytes([0, 0, code, array.ndim]) + dims + array.astype(dtype).tobytes()


@pytest.mark.parametrize("code", [8, 9, 11, 12, 13, 14])
def test_read_idx_every_type(tmp_path, code):
    a = (np.arange(24).reshape(2, 3, 4) - (0 if code == 8 else 5)).astype(float)
    (tmp_path / "a").write_bytes(_idx(a, code))
    got = fl.datasets.read_idx(tmp_path / "a")
    assert got.shape == (2, 3, 4) and np.array_equal(got, a) and got.dtype.isnative


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_folder(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 5).astype(np.uint8)
    for name, arr, code in [("t10k-images-idx3-ubyte", images, 8),
                            ("t10k-labels-idx1-ubyte", labels, 8)]:
        raw = _idx(arr, code)
        if compress:
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (tmp_path / name).write_bytes(raw)
    x, y = fl.datasets.mnist(tmp_path, split="test")
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0] * 255, images, atol=1e-4)
    assert y.tolist() == labels.tolist() and y.dtype == np.int64
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte"):
        fl.datasets.fashion_mnist(tmp_path, split="train")


def test_idx_errors(tmp_path):
    good = _idx(np.zeros((3, 4)), 8)
    (tmp_path / "short").write_bytes(good[:-2])
    with pytest.raises(ValueError, match=r"holds 26 bytes but its header \(shape \(3, 4\), "
                                         r"uint8\) needs 24.*|truncated"):
        fl.datasets.read_idx(tmp_path / "short")
    (tmp_path / "bad").write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ValueError, match="is not an IDX file"):
        fl.datasets.read_idx(tmp_path / "bad")
    (tmp_path / "gz").write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(ValueError, match="does not decompress"):
        fl.datasets.read_idx(tmp_path / "gz")
    # a damaged deflate stream (an invalid block type) raised zlib.error, not a clear error
    (tmp_path / "gz").write_bytes(gzip.compress(good)[:10] + b"\xff" * 12)
    with pytest.raises(ValueError, match="does not decompress.*invalid block type"):
        fl.datasets.read_idx(tmp_path / "gz")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        fl.datasets.mnist(tmp_path / "nowhere")


def test_read_idx_counts_the_bytes_of_a_vast_shape_exactly(tmp_path):
    """(NumPy's int64 product wrapped round: four dimensions of 65536 needed 0 bytes, and
    the reshape's 'cannot reshape array of size 0' came; two of 2**32 - 1 needed a negative
    count, and the file was called longer than declared.)"""
    for dims, needs in [((65536,) * 4, 2**64 + 20), ((2**32 - 1,) * 2, (2**32 - 1)**2 + 12)]:
        header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
        (tmp_path / "vast").write_bytes(header)
        with pytest.raises(ValueError, match=f"read_idx: .* needs {needs}; the file is "
                                             f"truncated"):
            fl.datasets.read_idx(tmp_path / "vast")
