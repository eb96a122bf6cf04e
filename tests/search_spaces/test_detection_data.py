"""Detection data: the embedded MNIST canvases, COCO-format folders, and one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from coexplore.common import ConfigError
from search_spaces.data import load_embedded_splits
from search_spaces.detection.data import (BOX_THRESHOLD, DetectionLoader, compose_canvases, get_detection_data,
                                          load_coco, read_coco)


@pytest.fixture(scope="module")
def bundle():
    return get_detection_data("mnist-det", seed=0, batch_size=16, augment=True)


def test_embedded_canvases_have_exact_boxes():
    raw = load_embedded_splits()
    digits, labels = raw.test.images[:50, 0], raw.test.labels[:50]
    split = compose_canvases(digits, labels, 40, 96, np.random.default_rng(0))
    assert split.images.shape == (40, 1, 96, 96) and split.targets.shape == (40, 4, 5)
    for img, t in zip(split.images[:, 0], split.targets):
        mask = np.zeros_like(img, dtype=bool)
        for c, x1, y1, x2, y2 in t[t[:, 0] >= 0]:
            x1, y1, x2, y2 = int(x1), int(y1), int(x2), int(y2)
            assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96 and 0 <= c <= 9
            crop = img[y1:y2, x1:x2] >= BOX_THRESHOLD
            # tight: every edge row / column of the box holds a digit pixel
            assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
            mask[y1:y2, x1:x2] = True
        # every bright pixel belongs to some box
        assert not (img[~mask] >= BOX_THRESHOLD).any()
    assert (split.targets[..., 0] >= 0).sum(1).min() >= 1


def test_embedded_splits_are_seeded_and_disjoint(bundle):
    again = get_detection_data("mnist-det", seed=0, batch_size=16, augment=True)
    assert again.fingerprint() == bundle.fingerprint()
    other = get_detection_data("mnist-det", seed=1, batch_size=16, augment=True)
    assert other.fingerprint() != bundle.fingerprint()
    # the test split does not depend on the run's seed
    assert np.array_equal(other.test.images.numpy(), bundle.test.images.numpy())
    assert len(bundle.train) == 150 and bundle.val.num_samples == 600 and bundle.test.num_samples == 600
    assert bundle.input_shape == (1, 96, 96) and bundle.num_classes == 10


def test_loader_batches_and_fresh_training_canvases(bundle):
    bundle.train.set_epoch(0)
    x0, y0 = next(iter(bundle.train))
    assert x0.shape == (16, 1, 96, 96) and x0.dtype == torch.float32 and y0.shape[1:] == (4, 5)
    bundle.train.set_epoch(1)
    x1, _ = next(iter(bundle.train))
    assert not torch.equal(x0, x1)
    bundle.train.set_epoch(0)
    assert torch.equal(next(iter(bundle.train))[0], x0)  # an epoch is a function of (seed, epoch)


def test_flip_moves_boxes_with_pixels():
    img = np.zeros((1, 1, 8, 8), dtype=np.uint8)
    img[0, 0, 2:4, 1:3] = 255
    t = np.array([[[0, 1, 2, 3, 4]] + [[-1, 0, 0, 0, 0]]], dtype=np.float32)
    from search_spaces.detection.data import DetectionSplit
    loader = DetectionLoader(DetectionSplit(img, t), 1, (0.0,), (1.0,), flip=True, seed=0)
    for e in range(8):
        loader.set_epoch(e)
        x, y = next(iter(loader))
        c, x1, y1, x2, y2 = y[0, 0].tolist()
        on = x[0, 0] > 0.5
        assert on[int(y1):int(y2), int(x1):int(x2)].all() and on.sum() == (x2 - x1) * (y2 - y1)
        assert y[0, 1, 0] == -1  # the padding row stays padding


# ---- COCO-format folders -----------------------------------------------------------------

def _coco(tmp_path, layout="single", n=6):
    rng = np.random.default_rng(0)
    root = tmp_path / "coco"
    img_dir = root / ("images" if layout == "single" else "train2017")
    img_dir.mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        w, h = 64 + 8 * i, 48
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img_dir / f"{i}.png")
        images.append({"id": 10 + i, "file_name": f"{i}.png", "width": w, "height": h})
        anns.append({"id": i, "image_id": 10 + i, "category_id": 3 if i % 2 else 7, "bbox": [4, 5, 20, 16],
                     "iscrowd": 0})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]}
    if layout == "single":
        ann = root / "annotations.json"
    else:
        (root / "annotations").mkdir()
        ann = root / "annotations" / "instances_train2017.json"
        val = root / "val2017"
        val.mkdir()
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(val / "v.png")
        json.dump({"images": [{"id": 1, "file_name": "v.png", "width": 64, "height": 48}],
                   "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 10, 10]}],
                   "categories": data["categories"]}, open(root / "annotations" / "instances_val2017.json", "w"))
    json.dump(data, open(ann, "w"))
    return root, img_dir, ann, data


def test_coco_layouts_letterbox_and_scale_boxes(tmp_path):
    root, img_dir, ann, _ = _coco(tmp_path, "coco2017")
    trainval, test, classes = load_coco(root, 32, cache_dir=tmp_path / "cache")
    assert classes == ("cat", "dog") and len(trainval) == 6 and len(test) == 1
    # image 0 is 64x48: scale 0.5, box [4, 5, 20, 16] -> x1 y1 x2 y2 = 2, 2.5, 12, 10.5; class 'dog' = 1
    assert trainval.targets[0, 0].tolist() == [1.0, 2.0, 2.5, 12.0, 10.5]
    assert (trainval.images[0, :, 24:, :] == 114).all()  # letterbox padding below the 64x48 -> 32x24 image
    cached = load_coco(root, 32, cache_dir=tmp_path / "cache")
    assert np.array_equal(cached[0].images, trainval.images)
    b = get_detection_data("coco", path=root, resolution=32, input_channels=3, val_fraction=0.34, seed=0,
                           batch_size=2, cache_dir=tmp_path / "cache")
    assert b.input_shape == (3, 32, 32) and b.num_classes == 2 and b.test.num_samples == 1
    assert b.train.num_samples + b.val.num_samples == 6
    single_root, *_ = _coco(tmp_path / "single")
    tv, te, _ = load_coco(single_root, 32, cache_dir=tmp_path / "cache")
    assert len(tv) + len(te) == 6 and len(te) == 1


def _mutate(data, path, value):
    d = json.loads(json.dumps(data))
    node = d
    for p in path[:-1]:
        node = node[p]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return d


@pytest.mark.parametrize("path,value,match", [
    (("images", 2, "file_name"), "missing.png", r"images\[2\].file_name 'missing.png': no such file in"),
    (("annotations", 1, "image_id"), 999, r"annotations\[1\].image_id 999 is not the id of any entry of 'images'"),
    (("annotations", 3, "category_id"), 5, r"annotations\[3\].category_id 5 is unknown; category ids: \[3, 7\]"),
    (("annotations", 0, "bbox"), [4, 5, 0, 16], r"annotations\[0\].bbox \[4, 5, 0, 16\] has a non-positive width"),
    (("annotations", 0, "bbox"), [4, 5, 20, -3], r"annotations\[0\].bbox .* non-positive width or height"),
    (("annotations", 0, "bbox"), [60, 5, 20, 16], r"annotations\[0\].bbox \[60, 5, 20, 16\] lies outside image 10 \(64x48\)"),
    (("annotations", 0, "bbox"), [-5, 5, 20, 16], r"lies outside image 10"),
    (("annotations", 0, "bbox"), [4, 5, 20], r"annotations\[0\].bbox must be \[x, y, width, height\]"),
    (("images", 0, "width"), 0, r"images\[0\].width must be a positive integer"),
    (("images", 1, "id"), 10, r"images\[1\].id 10 repeats an earlier image id"),
    (("categories", 1, "id"), 3, r"categories\[1\].id 3 repeats"),
    (("categories",), [], r"field 'categories' is empty"),
    (("annotations",), KeyError, r"field 'annotations' must be a list"),
    (("annotations", 0, "iscrowd"), 2, r"annotations\[0\].iscrowd must be 0 or 1"),
])
def test_bad_coco_annotations_are_one_line_errors_naming_the_field(tmp_path, path, value, match):
    root, img_dir, ann, data = _coco(tmp_path)
    json.dump(_mutate(data, path, value), open(ann, "w"))
    with pytest.raises(ConfigError, match=match) as exc:
        read_coco(img_dir, ann)
    msg = str(exc.value)
    assert "\n" not in msg and str(ann) in msg


def test_box_within_rounding_is_accepted_and_clipped(tmp_path):
    root, img_dir, ann, data = _coco(tmp_path)
    json.dump(_mutate(data, ("annotations", 0, "bbox"), [44.5, 5, 20, 16]), open(ann, "w"))  # x2 = 64.5 on a 64 px image
    images, _, _ = read_coco(img_dir, ann)
    assert images[0].boxes[0, 2] == 64.0


def test_declared_size_must_match_the_file(tmp_path):
    root, img_dir, ann, data = _coco(tmp_path)
    json.dump(_mutate(data, ("images", 0, "width"), 65), open(ann, "w"))
    with pytest.raises(ConfigError, match=r"0.png is 64x48 but its entry of 'images' says 65x48"):
        load_coco(root, 32, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "voc"}, r"unknown detection dataset 'voc'; known detection datasets: \['mnist-det', 'coco'\]"),
    ({"name": "mnist-det", "path": "/x"}, r"mnist-det is built in and takes no path"),
    ({"name": "mnist-det", "input_channels": 3}, r"mnist-det images have 1 channel"),
    ({"name": "coco"}, r"coco needs a path"),
    ({"name": "coco", "path": "/nonexistent-coco"}, r"must be a folder"),
    ({"name": "mnist-det", "val_fraction": 1.5}, r"val_fraction must be a number in \(0, 1\)"),
    ({"name": "mnist-det", "limit": 0}, r"limit must be an integer >= 1"),
])
def test_bad_data_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        get_detection_data(**kwargs)
