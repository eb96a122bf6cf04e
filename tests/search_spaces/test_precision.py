"""Bit widths in the search space, the candidate table, the quantised ops and the supernet."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from accelerators.workload import Layer, conv, workload_from_dict
from coexplore.common import ConfigError
from search_spaces import (Head, SearchSpace, Stage, Stem, Supernet, build_network, candidate_layer_table,
                           expected_cost, get_search_space, list_search_spaces)
from search_spaces.ops import register_op
from search_spaces.quant import LSQWeightQuantizer, QuantConv2d, layer_bits, mixed_bits, quant_layers
from search_spaces.space import BIT_WIDTHS


def mp_space(**kw) -> SearchSpace:
    """Two choice blocks: (mb3_e3 | zero) x wbits {2, 8} x abits {4, 8}, then (mb3_e3 | mb5_e3) x wbits {2, 4}."""
    args = dict(name="mp", resolution=8, input_channels=1, num_classes=3, stem=Stem(4, 3, 1),
                candidates=("mb3_e3", "zero"), wbits=(2, 8), abits=(4, 8), fixed_bits=8,
                stages=(Stage(4, 1, 1), Stage(8, 2, 1, first_candidates=("mb3_e3", "mb5_e3"), wbits=(2, 4),
                                                  abits=())), head=Head(16))
    args.update(kw)
    return SearchSpace(**args)


# ---- Layer precision fields ---------------------------------------------------------------

def test_layer_precision_defaults_keep_serialisation():
    l = conv(8, 16, 3, 4, name="x")
    assert (l.weight_bits, l.act_bits, l.out_bits) == (None, None, None) and not l.has_precision
    assert set(l.to_dict()) == {"kind", "N", "K", "C", "R", "S", "P", "Q", "stride", "groups", "name"}
    q = Layer.from_dict({**l.to_dict(), "weight_bits": 4, "act_bits": 8})
    assert (q.weight_bits, q.act_bits) == (4, 8) and q.to_dict()["weight_bits"] == 4 and q != l


def test_fingerprints_of_spaces_without_bits_are_unchanged():
    # pinned before precision existed: a space without bits writes the same dict, so the same hash
    assert get_search_space("proxyless-cifar10").fingerprint() == "c480ffde528eeba9"
    assert get_search_space("tiny-mnist").fingerprint() == "099cdcf1c6366840"
    assert "wbits" not in get_search_space("tiny-mnist").to_dict()


@pytest.mark.parametrize("bad", [0, 33, 4.5, True, "8"])
def test_layer_bad_bits(bad):
    with pytest.raises(ConfigError, match=r"weight_bits must be an integer in 1\.\.32") as e:
        workload_from_dict({"layers": [{"kind": "linear", "K": 2, "C": 3, "weight_bits": bad}]})
    assert "\n" not in str(e.value)


# ---- the space -----------------------------------------------------------------------------

def test_choices_and_encoding_are_a_documented_concatenation():
    sp = mp_space()
    assert sp.labels == ["s0.b0", "s0.b0.wbits", "s0.b0.abits", "s1.b0", "s1.b0.wbits"]
    assert sp.num_candidates == [2, 2, 2, 2, 2] and sp.encoding_size == 10 and sp.all_samples_count == 32
    s = {"s0.b0": "mb3_e3", "s0.b0.wbits": 8, "s0.b0.abits": 4, "s1.b0": "mb5_e3", "s1.b0.wbits": 2}
    assert sp.encode(s).tolist() == [1, 0, 0, 1, 1, 0, 0, 1, 1, 0]
    assert sp.decode(sp.encode(s)) == s
    assert sp.check_sample({**s, "s0.b0.wbits": np.int64(8)}) == s
    assert set(sp.sample(0)) == set(sp.labels)


def test_layers_carry_the_sample_bits():
    sp = mp_space()
    s = {"s0.b0": "mb3_e3", "s0.b0.wbits": 2, "s0.b0.abits": 4, "s1.b0": "mb5_e3", "s1.b0.wbits": 4}
    bits = {l.name: (l.weight_bits, l.act_bits) for l in sp.layers(s)}
    assert bits["stem"] == bits["head"] == bits["classifier"] == (8, 8)
    assert bits["s0.b0.expand"] == bits["s0.b0.project"] == (2, 4)
    assert bits["s1.b0.depthwise"] == (4, 8)  # no abits choice in stage 1: fixed_bits
    assert all(l.weight_bits is None for l in get_search_space("tiny-mnist").layers(
        get_search_space("tiny-mnist").sample(0)))


def test_builtin_mixed_precision_spaces():
    assert {"proxyless-cifar10-mp", "tiny-mnist-mp"} <= set(list_search_spaces())
    for name, base in (("proxyless-cifar10-mp", "proxyless-cifar10"), ("tiny-mnist-mp", "tiny-mnist")):
        sp, b = get_search_space(name), get_search_space(base)
        assert [x.candidates for x in sp.blocks] == [x.candidates for x in b.blocks]
        assert all(x.wbits == x.abits == (2, 4, 8) for x in sp.blocks) and sp.fixed_bits == 8
        assert len(sp.choices) == 3 * len(b.blocks)
        assert sp.all_samples_count == b.all_samples_count * 9 ** len(b.blocks)


def test_yaml_round_trip_with_bits(tmp_path):
    sp = mp_space()
    sp.to_yaml(tmp_path / "mp.yaml")
    back = SearchSpace.from_yaml(tmp_path / "mp.yaml")
    assert back.fingerprint() == sp.fingerprint() and back.labels == sp.labels
    assert sp.fingerprint() != mp_space(wbits=(2, 4)).fingerprint()


# ---- bad input at the boundary ---------------------------------------------------------------

BASE = {"resolution": 8, "input_channels": 1, "num_classes": 3, "stem": {"channels": 4},
        "candidates": ["mb3_e3", "zero"], "stages": [{"channels": 4, "stride": 1, "layers": 1}]}


@pytest.mark.parametrize("patch, match", [
    ({"wbits": [3.5]}, r"wbits: 3\.5 is not a supported bit width; allowed: \[2, 3, 4, 5, 6, 7, 8, 16, 32\]"),
    ({"wbits": [1, 4]}, r"wbits: 1 is not a supported bit width; allowed:"),
    ({"abits": [64]}, r"abits: 64 is not a supported bit width"),
    ({"wbits": 4}, r"wbits must be a list of bit widths from \[2, "),
    ({"wbits": "4,8"}, r"wbits must be a list of bit widths"),
    ({"wbits": [4, 4]}, r"wbits repeats bit width\(s\) \[4\]"),
    ({"fixed_bits": 12}, r"fixed_bits 12 is not a supported bit width; allowed: \[2, "),
    ({"stages": [{"channels": 4, "stride": 1, "layers": 1, "wbits": [2, 9]}]},
     r"stages\[0\]\.wbits: 9 is not a supported bit width"),
    ({"stages": [{"channels": 4, "stride": 1, "layers": 1, "op": "mb3_e3", "abits": [4]}]},
     r"stages\[0\]: a fixed stage \(op='mb3_e3'\) takes no wbits or abits"),
    ({"stages": [{"channels": 4, "stride": 1, "layers": 1, "bits": [4]}]}, r"unknown field\(s\) \['bits'\]"),
])
def test_bad_bit_definitions_in_yaml(tmp_path, patch, match):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({**BASE, **patch}))
    with pytest.raises(ConfigError, match=match) as e:
        SearchSpace.from_yaml(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_bits_on_ops_that_cannot_carry_them():
    @register_op("prec_test_pool")
    def pool(C_in, C_out, stride):
        return nn.AvgPool2d(3, stride, 1)

    @register_op("prec_test_conv")
    def plain(C_in, C_out, stride):  # a user op with a conv: it can carry bits
        return nn.Conv2d(C_in, C_out, 3, stride, 1)

    ok = mp_space(candidates=("prec_test_conv", "zero"))
    assert ok.blocks[0].wbits == (2, 8)
    with pytest.raises(ConfigError, match=r"offers op\(s\) \['prec_test_pool'\], which cannot carry bit widths.*"
                                          r"ops that can: \[.*'mb3_e3'") as e:
        mp_space(candidates=("prec_test_pool", "zero"))
    assert "\n" not in str(e.value)
    mp_space(candidates=("prec_test_pool", "zero"), wbits=(), abits=())  # without bits it is fine


def test_bad_samples_name_the_label_and_the_allowed_bits():
    sp = mp_space()
    s = sp.sample(0)
    with pytest.raises(ConfigError, match=r"s0\.b0\.wbits=4 is not offered; allowed bit widths: \[2, 8\]"):
        sp.check_sample({**s, "s0.b0.wbits": 4})
    with pytest.raises(ConfigError, match=r"s0\.b0\.abits='8' is not offered"):
        sp.check_sample({**s, "s0.b0.abits": "8"})
    with pytest.raises(ConfigError, match=r"missing labels \['s1\.b0\.wbits'\]"):
        sp.check_sample({k: v for k, v in s.items() if k != "s1.b0.wbits"})
    with pytest.raises(ConfigError, match=r"wbits=3 is not offered; allowed bit widths: \[2, 8\]"):
        sp.candidate_layers("s0.b0", "mb3_e3", wbits=3, abits=4)


# ---- the candidate table: every (op, bits) combination, exactly ----------------------------

def _bit_cost(layers):
    """A precision-aware additive cost: MACs x weight bits x activation bits (BitFusion's bricks)."""
    return float(sum(l.macs * (l.weight_bits or 16) * (l.act_bits or 16) for l in layers))


def test_table_has_every_combination_with_its_bits():
    sp = mp_space()
    t = candidate_layer_table(sp)
    assert len(t) == 2 * 2 * 2 + 2 * 2 and t.block_offsets == (0, 8, 12)
    for c, layers in zip(t.choices, t.candidates):
        label = next(iter(c))
        for l in layers:
            assert l.weight_bits == c[f"{label}.wbits"]
            assert l.act_bits == c.get(f"{label}.abits", sp.fixed_bits)


def test_one_hot_encoding_prices_exactly_the_sample_layers():
    sp = mp_space()
    t = candidate_layer_table(sp)
    for values in itertools.product(*(c.candidates for c in sp.choices)):
        s = dict(zip(sp.labels, values))
        w = t.weights(sp.encode(s))
        rows = np.flatnonzero(w)
        assert w[rows].tolist() == [1.0] * len(sp.blocks)  # one combination per block
        assert t.architecture([r - lo for r, lo in zip(rows, t.block_offsets)]) == s
        picked = list(t.fixed) + [l for e in np.flatnonzero(w) for l in t.candidates[e]]
        assert Counter(picked) == Counter(sp.layers(s))  # Layer equality includes the bits
        costs = np.array([_bit_cost(c) for c in t.candidates])
        assert expected_cost(_bit_cost(t.fixed), costs, w) == pytest.approx(_bit_cost(sp.layers(s)), rel=1e-12)


def test_soft_encoding_gives_the_exact_expectation_of_the_product_distribution():
    sp = mp_space()
    t = candidate_layer_table(sp)
    rng = np.random.default_rng(0)
    probs = [rng.dirichlet(np.ones(len(c.candidates))) for c in sp.choices]
    enc = np.concatenate(probs)
    truth = 0.0
    for idx in itertools.product(*(range(len(c.candidates)) for c in sp.choices)):
        s = {c.label: c.candidates[i] for c, i in zip(sp.choices, idx)}
        truth += np.prod([p[i] for p, i in zip(probs, idx)]) * _bit_cost(sp.layers(s))
    costs = np.array([_bit_cost(c) for c in t.candidates])
    assert expected_cost(_bit_cost(t.fixed), costs, t.weights(enc)) == pytest.approx(truth, rel=1e-10)
    te = torch.tensor(enc, requires_grad=True)
    v = expected_cost(_bit_cost(t.fixed), costs, t.weights(te))
    v.backward()
    assert float(v.detach()) == pytest.approx(truth, rel=1e-6) and te.grad.abs().sum() > 0


def test_table_without_bits_is_the_encoding():
    sp = get_search_space("tiny-mnist")
    t = candidate_layer_table(sp)
    enc = sp.encode(sp.sample(1))
    assert len(t) == sp.encoding_size and t.weights(enc) is enc and not t.combines


# ---- LSQ weights and the bit mixtures --------------------------------------------------------

@pytest.mark.parametrize("bits", [2, 4, 8])
def test_lsq_weights_lie_on_a_per_channel_grid(bits):
    torch.manual_seed(0)
    w = torch.randn(6, 5, 3, 3)
    q = LSQWeightQuantizer(6, (2, 4, 8))
    y = q(w, bits)
    step = q.step(bits).detach().abs()
    codes = y / step.view(-1, 1, 1, 1)
    assert torch.allclose(codes, codes.round(), atol=1e-4)  # rounding happened
    assert codes.min() >= -(2 ** (bits - 1)) - 1e-4 and codes.max() <= 2 ** (bits - 1) - 1 + 1e-4
    assert all(len(torch.unique(y[k])) <= 2 ** bits for k in range(6))
    assert (y - w).abs().mean() > 0


def test_lsq_step_gets_a_gradient_and_weights_pass_straight_through():
    torch.manual_seed(0)
    w = torch.randn(4, 8, requires_grad=True)
    q = LSQWeightQuantizer(4, (4,))
    q(w, 4).sum().backward()
    assert q.step(4).grad is not None and q.step(4).grad.abs().sum() > 0
    inside = (w.detach().abs() < q.step(4).detach().view(-1, 1) * 7).float()
    assert torch.equal(w.grad, inside)


def test_lsq_error_shrinks_with_bits():
    torch.manual_seed(0)
    w = torch.randn(16, 32)
    q = LSQWeightQuantizer(16, (2, 4, 8))
    errs = [float((q(w, b) - w).pow(2).mean().detach()) for b in (2, 4, 8)]
    assert errs[0] > errs[1] > errs[2]


def test_hard_gates_run_exactly_the_chosen_bits_and_train_every_gate():
    torch.manual_seed(0)
    conv_ = QuantConv2d(3, 4, 3, padding=1, wbits=8, abits=8, act_mode="pact", weight_mode="lsq",
                        wbit_choices=(2, 4, 8))
    conv_.act_quant.auto_calibrate = True
    x = torch.randn(2, 3, 5, 5)
    conv_(x)  # initialises PACT's range from this first training batch
    conv_.set_bits(2, 4)
    ref = conv_(x).detach()
    soft = torch.tensor([0.2, 0.5, 0.3], requires_grad=True)
    hard = [soft[i] - soft[i].detach() + (1.0 if i == 0 else 0.0) for i in range(3)]
    with mixed_bits([conv_], [(b, g, False) for b, g in zip((2, 4, 8), hard)], [(4, torch.ones(()), False)]):
        y = conv_(x)
    assert torch.allclose(y, ref, atol=1e-6)
    y.pow(2).sum().backward()
    assert (soft.grad.abs() > 0).all()


# ---- the supernet and the built networks -------------------------------------------------------

@pytest.mark.parametrize("mode", ["gumbel", "binary", "darts"])
def test_supernet_trains_the_bit_choices(mode):
    torch.manual_seed(0)
    sp = mp_space()
    net = Supernet(sp, mode=mode, init_generator=torch.Generator().manual_seed(0))
    net.generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    got = Counter()
    for _ in range(8):
        for a in net.arch_parameters():
            a.grad = None
        torch.nn.functional.cross_entropy(net(x), y).backward()  # weight gradients accumulate
        for c, a in zip(sp.choices, net.arch_parameters()):
            if a.grad is not None and a.grad.abs().sum() > 0:
                got[c.kind] += 1
    assert got["wbits"] > 0 and got["abits"] > 0
    for bits in (2, 4):  # every op's step at every bit choice of stage 1 has learnt at some step
        steps = [m.w_quant.step(bits) for _, m in quant_layers(net.cells[1])]
        assert steps and all(s.grad is not None and s.grad.abs().sum() > 0 for s in steps)


def test_fixed_forward_equals_the_frozen_network_at_its_bits():
    torch.manual_seed(0)
    sp = mp_space()
    net = Supernet(sp, mode="gumbel", init_generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 1, 8, 8)
    net.train()
    net(x, sample=sp.sample(3))  # initialise the activation ranges
    s = {"s0.b0": "mb3_e3", "s0.b0.wbits": 2, "s0.b0.abits": 4, "s1.b0": "mb3_e3", "s1.b0.wbits": 2}
    net.eval()
    with torch.no_grad(), net.fixed(s):
        ref = net(x)
    frozen = net.freeze(s).eval()
    with torch.no_grad():
        assert torch.allclose(frozen(x), ref, atol=1e-5)
    bits = layer_bits(frozen)
    assert bits["s0_b0.expand.0"] == (2, 4) and bits["s1_b0.depthwise.0"] == (2, 8) and bits["stem.0"] == (8, 8)


def test_build_network_is_quantised_at_the_sample_bits_or_float():
    sp = mp_space()
    s = {"s0.b0": "mb3_e3", "s0.b0.wbits": 8, "s0.b0.abits": 4, "s1.b0": "mb5_e3", "s1.b0.wbits": 2}
    q = build_network(sp, s, torch.Generator().manual_seed(0))
    bits = layer_bits(q)
    assert bits["s0_b0.expand.0"] == (8, 4) and bits["s1_b0.project.0"] == (2, 8) and bits["classifier"] == (8, 8)
    f = build_network(sp, s, torch.Generator().manual_seed(0), quantized=False)
    assert not quant_layers(f)
    x = torch.randn(2, 1, 8, 8)
    assert q(x).shape == f(x).shape == (2, 3)
    plain = build_network(get_search_space("tiny-mnist"), get_search_space("tiny-mnist").sample(0))
    assert not quant_layers(plain)


def test_allowed_bits_constant_is_stated():
    assert BIT_WIDTHS == (2, 3, 4, 5, 6, 7, 8, 16, 32)


def test_quantize_model_of_a_bare_layer_returns_its_replacement():
    from search_spaces.quant import QuantLinear, quantize_model
    q = quantize_model(nn.Linear(3, 2), 4, 4)
    assert isinstance(q, QuantLinear) and q.bits == (4, 8)  # the first layer's input at 8 bits


def test_a_fixed_zero_stage_in_a_quantised_space_builds_and_runs():
    """A fixed layer with nothing to quantise (``op: zero``) stays as it is; the conv layers around
    it are at ``fixed_bits`` or their sample's bits."""
    sp = SearchSpace(name="fixed-zero", resolution=8, input_channels=1, num_classes=3, stem=Stem(4, 3, 1),
                     candidates=("mb3_e3",), stages=(Stage(4, 1, 1, op="zero"), Stage(8, 2, 1)), head=Head(0),
                     wbits=(2, 8), abits=(8,), fixed_bits=8)
    s = {"s1.b0": "mb3_e3", "s1.b0.wbits": 2, "s1.b0.abits": 8}
    net = Supernet(sp, mode="darts", init_generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 1, 8, 8)
    assert net(x).shape == (2, 3)
    q = build_network(sp, s, torch.Generator().manual_seed(0))
    assert q(x).shape == (2, 3) and layer_bits(q)["s1_b0.expand.0"] == (2, 8)
