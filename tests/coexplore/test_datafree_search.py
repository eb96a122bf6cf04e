"""Data-free co-exploration (DANCE++): `data: {name: synthetic, teacher: ..., generator: ...}`."""

import math

import pytest
import torch

from coexplore.common import ConfigError
from coexplore.config import load_config
from coexplore.datafree.cosearch import SoftLoader, synthetic_data
from coexplore.datafree.teacher import spec_for_data, train_teacher
from coexplore.search import CoExplorer, run_search
from search_spaces import get_data


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    mnist = get_data("mnist-embedded", batch_size=64, eval_batch_size=500, seed=0, limit=1500)
    path = tmp_path_factory.mktemp("teacher") / "bn-cnn.pt"
    train_teacher(spec_for_data("bn-cnn", mnist), mnist, path, epochs=2, lr=0.1, seed=0, progress=False)
    return path


SMALL = ["search_space=tiny-mnist", "hardware_space=small", "surrogate=exact", "method=hdx", "lam=0.0",
         "hw_encoding=argmax", "constraints=[latency <= 0.1ms]", "warmup_epochs=1", "search_epochs=1",
         "steps_per_epoch=3", "retrain_epochs=1", "path_mode=darts", "progress=false", "data.limit=200"]


def _cfg(teacher_file, *extra):
    return load_config(None, SMALL + ["data.name=synthetic", f"data.teacher={teacher_file}",
                                      "data.generator_steps=5", "data.synthetic_samples=300", *extra])


def test_synthetic_bundle_is_generated_soft_labelled_and_tests_on_real_images(teacher_file, tmp_path):
    cfg = _cfg(teacher_file)
    data = synthetic_data(cfg.data, seed=0, cache_dir=tmp_path)
    real = get_data("mnist-embedded", seed=0, limit=200, cache_dir=tmp_path)
    assert isinstance(data.train, SoftLoader) and isinstance(data.val, SoftLoader)
    assert data.train.num_samples + data.val.num_samples == 300
    x, p = next(iter(data.train))
    assert x.dtype == torch.float32 and p.shape == (x.shape[0], 10)
    torch.testing.assert_close(p.sum(1), torch.ones(x.shape[0]))  # the teacher's probabilities
    # no real training image reaches the search: the pools are the generator's, not MNIST's
    assert not any(torch.equal(x[0], r) for r, _ in zip(real.train.images[:50].float(), range(50)))
    # only the test split is real: the teacher's own dataset
    assert torch.equal(data.test.images, real.test.images) and torch.equal(data.test.labels, real.test.labels)
    # the same seed gives the same pools (exact resume), another seed others
    again = synthetic_data(cfg.data, seed=0, cache_dir=tmp_path)
    assert torch.equal(again.train.images, data.train.images) and data.fingerprint() == again.fingerprint()
    other = synthetic_data(cfg.data, seed=1, cache_dir=tmp_path)
    assert not torch.equal(other.train.images, data.train.images)


def test_the_generator_is_trained_against_the_teacher(teacher_file, tmp_path):
    """Mutation guard: without its training steps the source is the untrained generator."""
    from coexplore.datafree.cosearch import train_source
    from coexplore.datafree.teacher import load_teacher

    teacher = load_teacher(teacher_file)

    def agreement(steps):  # how often the teacher classifies a sample as the label it was drawn for
        method = train_source(teacher, "gdfq", steps, 64, seed=0)
        with torch.no_grad():
            x, y = method.sample(400, torch.Generator().manual_seed(5))
            return float((teacher.model(x).argmax(1) == y).float().mean())
    # GDFQ's loss asks the teacher to classify each sample as its label (measured 0.07 -> 0.22)
    assert agreement(20) > agreement(0) + 0.08


def test_data_free_search_runs_end_to_end(teacher_file, tmp_path):
    result = run_search(_cfg(teacher_file), tmp_path / "run", cache_dir=tmp_path / "cache")
    assert result.status == "ok" and result.all_constraints_met  # 0.1 ms is loose in this space
    assert result["retrain"]["test_samples"] == 200  # the real test split
    assert result.accuracy_source == "retrained-test"
    assert result["metrics"]["accuracy"] == result["retrain"]["test_accuracy"]
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "synthetic" in saved and "teacher" in saved


def test_soft_labels_train_the_supernet(teacher_file, tmp_path):
    ex = CoExplorer(_cfg(teacher_file), tmp_path / "r", cache_dir=tmp_path / "cache")
    before = [p.detach().clone() for p in ex.supernet.weight_parameters()]
    row = ex.run_epoch()
    assert row["phase"] == "warmup" and math.isfinite(row["train_loss"])
    # the soft targets are the teacher's distributions: the loss is a cross-entropy to them, above their entropy
    assert row["train_loss"] > 0.0
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, ex.supernet.weight_parameters()))


@pytest.mark.parametrize("overrides,match", [
    (["data.name=synthetic"], "data.teacher is required"),
    (["data.name=synthetic", "data.teacher=t.pt", "data.generator=real-qat"], "data.generator must be one of"),
    (["data.name=synthetic", "data.teacher=t.pt", "data.generator=magic"], "clusterq, gdfq, lrq, qimera, zeroq"),
    (["data.teacher=t.pt"], "only used with data.name: synthetic"),
    (["data.name=synthetic", "data.teacher=t.pt", "data.generator_steps=-1"], "data.generator_steps"),
    (["data.name=synthetic", "data.teacher=t.pt", "data.synthetic_samples=1"], "data.synthetic_samples"),
])
def test_bad_data_free_configs(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)
