"""Supernet: path modes, architecture gradients, derive/freeze, parameter counts, layer cross-check."""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch

from coexplore.common import ConfigError
from search_spaces import (PATH_MODES, Head, SearchSpace, Stage, Stem, Supernet, TemperatureSchedule,
                           build_network, get_search_space, list_search_spaces)
from accelerators.extract import layers_from_module

FIELDS = ("kind", "N", "K", "C", "R", "S", "P", "Q", "stride", "groups")


def small_space(zero: bool = True) -> SearchSpace:
    return SearchSpace(name="small", resolution=8, input_channels=1, num_classes=3, stem=Stem(4, 3, 1),
                       candidates=("mb3_e3", "mb5_e3") + (("zero",) if zero else ()),
                       stages=(Stage(4, 1, 2), Stage(8, 2, 2, first_candidates=("mb3_e3", "mb5_e3"))),
                       head=Head(16))


@pytest.fixture(scope="module")
def cifar_net():
    torch.manual_seed(0)
    return Supernet(get_search_space("proxyless-cifar10"))


def _input(space, batch):
    return torch.randn(batch, space.input_channels, space.resolution, space.resolution)


@pytest.mark.parametrize("name", sorted(list_search_spaces()))
def test_forward_backward_every_builtin(name):
    torch.manual_seed(0)
    sp = get_search_space(name)
    net = Supernet(sp, mode="binary")
    batch = 1 if sp.resolution > 64 else 2
    out = net(_input(sp, batch))
    assert out.shape == (batch, sp.num_classes)
    out.logsumexp(dim=1).sum().backward()
    ops = [a for c, a in zip(sp.choices, net.arch_parameters()) if c.kind == "op"]
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in ops)
    # a bit-width choice gets no gradient from a step whose drawn ops all skip its block; some do
    bits = [a for c, a in zip(sp.choices, net.arch_parameters()) if c.kind != "op"]
    assert not bits or any(a.grad is not None and a.grad.abs().sum() > 0 for a in bits)
    assert net.stem[0].weight.grad is not None


MODES = [("gumbel", {}), ("gumbel", {"gumbel_probe": False}), ("binary", {}), ("binary", {"binary_paths": 1}),
         ("darts", {})]


@pytest.mark.parametrize("mode,kw", MODES)
@pytest.mark.parametrize("seed", [0, 1])
def test_arch_gradients_every_mode(mode, kw, seed):
    torch.manual_seed(seed)
    sp = small_space(zero=False)  # blocks s0.b0, s0.b1 | s1.b0, s1.b1; s0.b1 and s1.b1 feed a conv + BN
    net = Supernet(sp, mode=mode, tau=2.0, **kw)
    x, y = _input(sp, 4), torch.randint(0, 3, (4,))
    torch.nn.functional.cross_entropy(net(x), y).backward()
    grads = [a.grad for a in net.arch_parameters()]
    assert all(g is not None for g in grads)
    top = max(float(g.abs().max()) for g in grads)
    assert top > 0
    for g in grads:
        # Every estimator differentiates a softmax, whose gradient sums to zero over a block.
        assert abs(float(g.sum())) < 1e-4 * top
    rel = [float(g.abs().max()) / top for g in grads]
    if kw.get("gumbel_probe") is False or kw.get("binary_paths") == 1:
        # Single path: blocks followed by a residual block learn; those feeding a conv + BN
        # (train mode) are blind, as documented in search_spaces.supernet.
        assert rel[0] > 1e-2 and rel[2] > 1e-2
        assert rel[1] < 1e-3 and rel[3] < 1e-3
    else:
        assert min(rel) > 1e-4
        if mode == "binary":  # two paths per block, two logits move
            assert all(int(torch.count_nonzero(g)) == 2 for g in grads)
        else:  # darts, and gumbel (whose soft weights involve every logit)
            assert all(int(torch.count_nonzero(g)) == g.numel() for g in grads)


def test_two_path_binary_estimator_matches_proxylessnas():
    """dL/dalpha_i = sum_{j in pair} dL/dg_j * q_j * (delta_ij - q_i), q = softmax(alpha[pair])."""
    torch.manual_seed(3)
    sp = small_space()
    net = Supernet(sp, mode="binary").eval()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()
    plans, io = [], {}
    orig = net._plan
    net._plan = lambda sample: plans.append(orig(sample)) or plans[-1]
    cells = [c for c, b in zip(net.cells, sp.all_blocks) if b.searched]
    for i, cell in enumerate(cells):
        def keep(m, inp, out, i=i):
            if out.requires_grad:
                out.retain_grad()
                io[i] = (inp[0].detach(), out)
        cell.register_forward_hook(keep)
    x = _input(sp, 3)
    out = net(x)
    out.pow(2).sum().backward()
    active = {b.label: b.candidates[p.active[0]] for b, p in zip(sp.blocks, plans[0])}
    with torch.no_grad():
        assert torch.allclose(net(x, sample=active), out, atol=1e-6)  # the probe does not change the output
    for i, (b, path, a) in enumerate(zip(sp.blocks, plans[0], net.arch_parameters())):
        x_in, y = io[i]
        pair = path.active  # [active, probe]
        with torch.no_grad():  # dL/dg_k = <dL/dy, op_k(x)>
            dg = torch.stack([(y.grad * cells[i].candidates[k](x_in)).sum() for k in pair])
        q = torch.softmax(a.detach()[pair], dim=0)
        jac = torch.diag(q) - q[:, None] * q[None, :]  # dq_m / dalpha_pair[i]
        expected = torch.zeros_like(a)
        expected[pair] = jac.T @ dg
        assert torch.allclose(a.grad, expected, atol=1e-6, rtol=1e-4), (b.label, a.grad, expected)


@pytest.mark.parametrize("mode", ["uniform", "fixed"])
def test_no_arch_gradient_without_sampling(mode):
    torch.manual_seed(0)
    sp = small_space()
    net = Supernet(sp, mode="uniform" if mode == "uniform" else "darts")
    x = _input(sp, 2)
    out = net(x, sample=sp.sample(0)) if mode == "fixed" else net(x)
    out.sum().backward()
    assert all(a.grad is None for a in net.arch_parameters())


def test_ops_run_per_mode():
    sp = small_space()
    net = Supernet(sp, mode="gumbel", gumbel_probe=False)
    calls = []
    for cell in net.cells:
        for op in cell.candidates:
            op.register_forward_hook(lambda m, inp, out: calls.append(torch.is_grad_enabled()))
    expected = {("gumbel", False): [True] * len(sp.blocks), ("uniform", False): [True] * len(sp.blocks),
                ("gumbel", True): [True, False] * len(sp.blocks), ("binary", True): [True, False] * len(sp.blocks),
                ("darts", True): [True] * sum(sp.num_candidates)}
    for (mode, probe), runs in expected.items():
        calls.clear()
        net.mode, net.gumbel_probe = mode, probe
        net(_input(sp, 2))
        assert calls == runs, mode  # single path: one op with graph (+ one probe without graph)


def test_parameters_split_and_state_dict():
    sp = small_space()
    net = Supernet(sp)
    arch, weights = net.arch_parameters(), net.weight_parameters()
    ids_a, ids_w = {id(p) for p in arch}, {id(p) for p in weights}
    assert not ids_a & ids_w and ids_a | ids_w == {id(p) for p in net.parameters()}
    assert [a.shape[0] for a in arch] == sp.num_candidates
    sd = net.state_dict()
    assert all(f"arch_logits.{i}" in sd for i in range(len(sp.blocks)))
    net.to(torch.float64)
    assert all(a.dtype == torch.float64 for a in net.arch_parameters())
    # Checkpoints carry the space fingerprint and refuse another space.
    other = Supernet(sp)
    other.load_state_dict(sd)
    sd["_extra_state"] = {"space_fingerprint": "0" * 16}
    with pytest.raises(ConfigError, match="fingerprint"):
        other.load_state_dict(sd)


def test_arch_encoding_order_and_derive():
    sp = small_space()
    net = Supernet(sp)
    enc = net.arch_encoding()
    assert enc.shape == (sp.encoding_size,) and enc.requires_grad
    target = sp.sample(5)
    with torch.no_grad():
        for b, a in zip(sp.blocks, net.arch_parameters()):
            a[b.candidates.index(target[b.label])] = 3.0
    assert net.derive() == target
    assert sp.decode(net.arch_encoding()) == target
    # Same order as SearchSpace.encode: the argmax positions coincide with the one-hot.
    enc = net.arch_encoding().detach().numpy()
    one_hot = sp.encode(target)
    for lo, hi in zip(sp.offsets[:-1], sp.offsets[1:]):
        assert enc[lo:hi].argmax() == one_hot[lo:hi].argmax()
        assert enc[lo:hi].sum() == pytest.approx(1.0)
    probs = net.arch_probabilities()
    assert list(probs) == sp.labels and max(probs["s0.b0"], key=probs["s0.b0"].get) == target["s0.b0"]


def test_freeze_matches_fixed_supernet(cifar_net):
    sp = cifar_net.space
    torch.manual_seed(2)
    # Make BN statistics non-trivial first.
    cifar_net.train()
    with cifar_net.using_mode("uniform"), torch.no_grad():
        for _ in range(2):
            cifar_net(_input(sp, 4))
    cifar_net.eval()
    x = _input(sp, 2)
    for seed in range(2):
        s = sp.sample(seed)
        frozen = cifar_net.freeze(s).eval()
        with torch.no_grad():
            ref = frozen(x)
            assert torch.allclose(cifar_net(x, sample=s), ref, atol=1e-5)
            with cifar_net.fixed(s):
                assert torch.allclose(cifar_net(x), ref, atol=1e-5)
        names = dict(frozen.named_children())
        for label, op in s.items():
            assert (label.replace(".", "_") in names) == (op != "zero")
    # fixed() without a sample runs derive()'s architecture.
    with torch.no_grad(), cifar_net.fixed():
        assert torch.allclose(cifar_net(x), cifar_net.freeze().eval()(x), atol=1e-5)
    # Frozen copies do not share storage with the supernet.
    frozen = cifar_net.freeze(sp.sample(0))
    assert not {p.data_ptr() for p in frozen.parameters()} & {p.data_ptr() for p in cifar_net.parameters()}
    cifar_net.train()


def _conv_bn(c_in, c_out, k, groups=1):
    return c_out * (c_in // groups) * k * k + 2 * c_out  # bias-free conv + BN weight and bias


def _mbconv(c_in, c_out, k, e):
    h = c_in * e
    return (_conv_bn(c_in, h, 1) if e != 1 else 0) + _conv_bn(h, h, k, h) + _conv_bn(h, c_out, 1)


def test_param_count_all_mb3_e6_cifar(cifar_net):
    sp = cifar_net.space
    sample = sp.sample_all("mb3_e6")
    expected = _conv_bn(3, 32, 3) + _mbconv(32, 16, 3, 1)
    c = 16
    for width in (32, 64, 128):
        for _ in range(4):
            expected += _mbconv(c, width, 3, 6)
            c = width
    expected += _conv_bn(128, 1280, 1) + 1280 * 10 + 10
    assert expected == 1_114_890
    for net in (cifar_net.freeze(sample), build_network(sp, sample)):
        assert sum(p.numel() for p in net.parameters()) == expected


@pytest.mark.parametrize("name", sorted(list_search_spaces()))
def test_layers_of_frozen_net_match_space(name):
    torch.manual_seed(0)
    sp = get_search_space(name)
    batch = 1 if sp.resolution > 64 else 2
    for seed in range(2 if batch == 2 else 1):
        s = sp.sample(seed)
        net = build_network(sp, s)
        traced = layers_from_module(net, tuple(_input(sp, batch).shape))
        listed = sp.layers(s, N=batch)
        key = lambda l: tuple(getattr(l, f) for f in FIELDS)
        assert Counter(map(key, traced)) == Counter(map(key, listed))
        assert [key(l) for l in traced] == [key(l) for l in listed]  # same execution order too


def test_mode_and_tau_validation():
    net = Supernet(small_space())
    with pytest.raises(ConfigError, match="allowed modes"):
        net.mode = "softmax"
    with pytest.raises(ConfigError, match="tau"):
        net.tau = 0
    with net.using_mode("darts", tau=0.3):
        assert (net.mode, net.tau) == ("darts", 0.3)
    assert (net.mode, net.tau) == ("gumbel", 1.0)
    assert set(PATH_MODES) == {"gumbel", "binary", "darts", "uniform"}
    with pytest.raises(ConfigError, match="missing labels"):
        net(_input(net.space, 1), sample={"s0.b0": "zero"})


def test_temperature_schedule():
    sched = TemperatureSchedule(tau0=5.0, tau_min=0.5, epochs=11)
    assert sched(0) == pytest.approx(5.0)
    assert sched(10) == pytest.approx(0.5) and sched(50) == pytest.approx(0.5)
    assert sched(5) == pytest.approx((5.0 * 0.5) ** 0.5)
    assert all(sched(e) > sched(e + 1) for e in range(10))
    net = Supernet(small_space())
    assert sched.apply(net, 10) == pytest.approx(0.5) and net.tau == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        TemperatureSchedule(tau0=0.0)


def test_deepcopy_and_freeze_without_inheritance():
    sp = small_space()
    net = Supernet(sp)
    clone = copy.deepcopy(net)
    s = sp.sample(1)
    fresh = net.freeze(s, inherit_weights=False)
    inherited = clone.freeze(s)
    assert [n for n, _ in fresh.named_parameters()] == [n for n, _ in inherited.named_parameters()]
