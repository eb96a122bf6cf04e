"""Mixed precision (``amp``) and page-locked batches: which precision each forward pass runs in,
on CPU (bfloat16 autocast runs there too, so the paths are tested without a GPU), and pinning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from coexplore.common import ConfigError
from search_spaces import Supernet, evaluate_network, train_network
from search_spaces.data import ArrayLoader, ArraySplit
from search_spaces.train import AMP_MODES, autocast, resolve_amp, train_step

from .test_train import loader, small_space


def _conv_dtypes(net):
    """Record the output dtype of every Conv2d's forward into the returned list."""
    seen = []
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    return seen


def test_resolve_amp():
    assert AMP_MODES == ("auto", "bf16", "off")
    assert resolve_amp("auto", "cpu") == "off"  # float32 on CPU unless asked for
    assert resolve_amp("bf16", "cpu") == "bf16" and resolve_amp("off", "cpu") == "off"
    if torch.cuda.is_available():
        assert resolve_amp("auto", "cuda") == ("bf16" if torch.cuda.is_bf16_supported() else "off")
    with pytest.raises(ConfigError, match=r"amp 'fp16' is unknown; allowed values: \['auto', 'bf16', 'off'\]"):
        resolve_amp("fp16", "cpu")
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast(torch.device("cpu"), "auto"):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("amp,dtype", [("bf16", torch.bfloat16), ("off", torch.float32)])
def test_a_weight_step_runs_its_forward_in_the_asked_precision(amp, dtype):
    torch.manual_seed(0)
    net = Supernet(small_space()).freeze({"s0.b0": "mb3_e3", "s1.b0": "conv3x3"}, inherit_weights=False)
    seen = _conv_dtypes(net)
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = next(iter(loader()))
    loss, logits = train_step(net, x, y, opt, amp=amp)
    assert seen and set(seen) == {dtype}
    assert loss.dtype == torch.float32 and math.isfinite(float(loss))  # autocast keeps the loss in float32
    assert all(p.dtype == torch.float32 for p in net.parameters())  # master weights stay float32
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters()))  # and the step moved them


def test_training_and_evaluation_learn_in_bfloat16():
    torch.manual_seed(0)
    net = Supernet(small_space()).freeze({"s0.b0": "mb3_e3", "s1.b0": "conv3x3"}, inherit_weights=False)
    seen = _conv_dtypes(net)
    train_network(net, loader(), epochs=3, lr=0.1, device="cpu", seed=0, progress=False, amp="bf16")
    assert set(seen) == {torch.bfloat16}
    seen.clear()
    res = evaluate_network(net, loader(seed=1, shuffle=False), device="cpu", amp="bf16")
    assert set(seen) == {torch.bfloat16} and res["accuracy"] >= 0.9
    seen.clear()
    evaluate_network(net, loader(seed=1, shuffle=False), device="cpu")  # the default is float32
    assert set(seen) == {torch.float32}


def _split(n=40):
    rng = np.random.default_rng(0)
    return ArraySplit(images=rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8),
                      labels=rng.integers(0, 2, n).astype(np.int64))


def test_array_loader_pins_its_batches_when_asked(monkeypatch):
    from search_spaces.data import Augment
    pinned = []

    def fake_pin(self, *a, **k):  # pinning needs CUDA; record the calls instead
        pinned.append(self.dtype)
        return self
    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    aug = Augment(mean=(0.5,), std=(0.5,), pad=0, flip=False)
    list(ArrayLoader(_split(), 16, aug))
    assert pinned == []  # off by default
    batches = list(ArrayLoader(_split(), 16, aug, pin_memory=True))
    assert len(batches) == 3 and pinned == [torch.float32, torch.int64] * 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA")
def test_array_loader_batches_are_page_locked_on_cuda():
    from search_spaces.data import Augment
    x, y = next(iter(ArrayLoader(_split(), 16, Augment(mean=(0.5,), std=(0.5,), pad=0, flip=False),
                                 pin_memory=True)))
    assert x.is_pinned() and y.is_pinned()
