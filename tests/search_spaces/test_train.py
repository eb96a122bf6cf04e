"""Training helpers on synthetic data: warm-up, training, evaluation, seeding."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from search_spaces import (Head, SearchSpace, Stage, Stem, Supernet, evaluate_network, get_search_space,
                           resolve_device, train_network, warmup_supernet)


def small_space() -> SearchSpace:
    return SearchSpace(name="small", resolution=8, input_channels=1, num_classes=2, stem=Stem(4, 3, 1),
                       candidates=("mb3_e3", "zero"),
                       stages=(Stage(4, 1, 1), Stage(8, 2, 1, first_candidates=("mb3_e3", "conv3x3"))),
                       head=Head(16))


def data(n=256, seed=0):
    """Two classes that differ by their mean brightness: easy to learn."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.5 + (y.float() * 2 - 1).view(-1, 1, 1, 1) * 0.7
    return x, y


def loader(n=256, seed=0, batch=32, shuffle=True):
    x, y = data(n, seed)
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed))


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_train_and_evaluate_frozen_network():
    torch.manual_seed(0)
    sp = small_space()
    net = Supernet(sp).freeze({"s0.b0": "mb3_e3", "s1.b0": "conv3x3"}, inherit_weights=False)
    before = evaluate_network(net, loader(seed=1, shuffle=False), device="cpu")
    hist = train_network(net, loader(), epochs=3, lr=0.1, device="cpu", seed=0, progress=False,
                         val_loader=loader(seed=1, shuffle=False))
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    assert hist[0]["lr"] == pytest.approx(0.1) and hist[2]["lr"] < hist[1]["lr"] < 0.1
    assert {"loss", "accuracy", "samples", "val_loss", "val_accuracy", "time_s"} <= set(hist[-1])
    after = evaluate_network(net, loader(seed=1, shuffle=False), device="cpu")
    assert set(after) == {"accuracy", "loss", "samples"} and after["samples"] == 256
    assert after["accuracy"] >= 0.9 and after["loss"] < before["loss"]
    assert hist[-1]["val_accuracy"] == pytest.approx(after["accuracy"])
    assert net.training  # evaluate_network restores the mode


def test_warmup_trains_weights_only_and_is_seeded():
    torch.manual_seed(0)
    sp = small_space()
    net = Supernet(sp, mode="binary")
    twin = copy.deepcopy(net)
    logits = [a.detach().clone() for a in net.arch_parameters()]
    w0 = [p.detach().clone() for p in net.weight_parameters()]
    state = torch.get_rng_state()
    hist = warmup_supernet(net, loader(n=128), epochs=2, lr=0.05, device="cpu", seed=3, progress=False)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched
    assert len(hist) == 2 and 0.0 <= hist[-1]["accuracy"] <= 1.0
    assert all(torch.equal(a, b) for a, b in zip(net.arch_parameters(), logits))
    assert all(a.requires_grad for a in net.arch_parameters())
    assert net.mode == "binary"
    assert any(not torch.equal(p, q) for p, q in zip(net.weight_parameters(), w0))
    warmup_supernet(twin, loader(n=128), epochs=2, lr=0.05, device="cpu", seed=3, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(net.state_dict().values(), twin.state_dict().values())
               if isinstance(p, torch.Tensor))


def test_plain_iterable_loader_and_progress_bar(capsys):
    sp = small_space()
    net = Supernet(sp).freeze({"s0.b0": "zero", "s1.b0": "mb3_e3"})
    x, y = data(64)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]  # a list: no DataLoader needed
    hist = train_network(net, batches, epochs=1, lr=0.05, device="cpu", progress=True)
    assert hist[0]["samples"] == 64
    res = evaluate_network(net, iter(batches), device="cpu")
    assert res["samples"] == 64


@pytest.mark.slow
def test_tiny_mnist_epoch_is_fast():
    """The CPU demo budget: one epoch of 4,000 28x28 images well under a minute on 2 cores."""
    torch.manual_seed(0)
    sp = get_search_space("tiny-mnist")
    x, y = torch.randn(4000, 1, 28, 28), torch.randint(0, 10, (4000,))
    dl = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    net = Supernet(sp, mode="binary")
    t0 = time.perf_counter()
    warmup_supernet(net, dl, epochs=1, lr=0.05, device="cpu", progress=False)
    assert time.perf_counter() - t0 < 30
    frozen = net.freeze({b.label: "mb5_e6" for b in sp.blocks})
    t0 = time.perf_counter()
    train_network(frozen, dl, epochs=1, lr=0.05, device="cpu", progress=False)
    assert time.perf_counter() - t0 < 30


def _nhwc(w):
    _, c, h, k = w.shape
    return w.stride() == (c * h * k, 1, k * c, c)


def test_place_sets_the_layout_and_only_speed_depends_on_it():
    from coexplore.common import ConfigError
    from search_spaces.train import place

    sp = small_space()
    a = Supernet(sp, mode="darts", init_generator=torch.Generator().manual_seed(0))
    b = copy.deepcopy(a)
    assert place(b, "cpu", "channels_last") is b
    def cl(net):  # conv weights whose strides are channels_last's exactly
        return {_nhwc(m.weight) for m in net.modules() if isinstance(m, torch.nn.Conv2d)}

    assert cl(b) == {True} and cl(a) == {False}
    x, _ = data(16)
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-5)
    place(b, "cpu", "contiguous")
    assert cl(b) == {False}
    with pytest.raises(ConfigError, match="memory_format 'nhwc' is unknown; allowed values: .*channels_last"):
        place(b, "cpu", "nhwc")


def test_train_network_trains_in_the_layout_asked_for():
    sp = small_space()
    for fmt in ("channels_last", "contiguous"):
        net = Supernet(sp).freeze({"s0.b0": "mb3_e3", "s1.b0": "conv3x3"}, inherit_weights=False)
        train_network(net, loader(n=64), epochs=1, lr=0.1, device="cpu", seed=0, progress=False, memory_format=fmt)
        assert {_nhwc(m.weight) for m in net.modules() if isinstance(m, torch.nn.Conv2d)} == {fmt == "channels_last"}
