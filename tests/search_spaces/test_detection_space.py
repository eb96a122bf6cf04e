"""The detection space: exact additive pricing, priced == traced layers, YOLOX-tiny's numbers, validation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from accelerators.extract import layers_from_module
from coexplore.common import ConfigError
from search_spaces.detection import (DetectionSpace, DetectionSupernet, build_det_op, build_detector,
                                     det_op_layers, get_detection_space, list_det_ops, list_detection_spaces,
                                     resolve_detection_space)
from search_spaces.detection.necks import NeckWithStems, list_necks, neck_layers
from search_spaces.detection.ops import get_det_op, op_problem
from search_spaces.pricing import candidate_layer_table


def _key(l):
    return (l.kind, l.N, l.K, l.C, l.R, l.S, l.P, l.Q, l.stride, l.groups)


@pytest.fixture(scope="module")
def mnist():
    return get_detection_space("det-mnist")


def test_builtins_listed():
    assert {"yolox-tiny-search", "det-mnist"} <= set(list_detection_spaces())


def test_yolox_tiny_reference_matches_the_published_model():
    # Ge et al. 2021, Table 3 / the YOLOX model zoo: YOLOX-Tiny 5.06 M parameters, 6.45 GFLOPs at 416x416
    # (GFLOPs there = 2 x multiply-accumulates, as counted by thop, which adds BN and bias terms).
    sp = get_detection_space("yolox-tiny-search")
    ref = sp.reference_sample()
    with torch.device("meta"):
        net = build_detector(sp, ref)
    params = sum(p.numel() for p in net.parameters())
    assert params == pytest.approx(5.06e6, rel=0.002)
    gflops = 2 * sum(l.macs for l in sp.layers(ref)) / 1e9
    assert gflops == pytest.approx(6.45, rel=0.01)
    assert sp.level_hws == ((52, 52), (26, 26), (13, 13)) and sp.num_anchors == 3549
    from search_spaces.detection.task import Detection
    assert Detection().design_stats(sp, ref) == {"parameters": params, "gflops": pytest.approx(gflops)}


@pytest.mark.parametrize("op", [o for o in list_det_ops() if not get_det_op(o).skip])
@pytest.mark.parametrize("C_in,C_out,stride", [(8, 8, 1), (8, 12, 2), (6, 10, 1)])
def test_op_layers_equal_traced(op, C_in, C_out, stride):
    if op_problem(op, C_in, C_out, stride):
        with pytest.raises(ConfigError):
            build_det_op(op, C_in, C_out, stride)
        return
    m = build_det_op(op, C_in, C_out, stride)
    x = torch.randn(2, C_in, 9, 9)
    assert m(x).shape == (2, C_out, (9 - 1) // stride + 1, (9 - 1) // stride + 1)
    traced = layers_from_module(m, (2, C_in, 9, 9))
    assert [_key(l) for l in det_op_layers(op, C_in, C_out, stride, (9, 9), N=2)] == [_key(l) for l in traced]


@pytest.mark.parametrize("neck", list_necks())
def test_neck_layers_equal_traced(neck):
    channels, hws = (16, 32, 64), ((12, 12), (6, 6), (3, 3))
    m = NeckWithStems(neck, channels, 2, 24, "silu").eval()
    feats = tuple(torch.randn(1, c, h, w) for c, (h, w) in zip(channels, hws))
    found = []
    hooks = [mod.register_forward_hook(lambda mod, i, o: found.append((mod, o.shape)))
             for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    with torch.no_grad():
        outs = m(feats)
    for h in hooks:
        h.remove()
    assert [o.shape for o in outs] == [(1, 24, h, w) for h, w in hws]
    priced = neck_layers(neck, channels, hws, 2, 24)
    assert [(l.K, l.C, l.R, l.P, l.stride, l.groups) for l in priced] == \
        [(mod.out_channels, mod.in_channels, mod.kernel_size[0], s[-2], mod.stride[0], mod.groups) for mod, s in found]


def _samples(sp, n=10):
    out = [sp.reference_sample()] + [sp.sample(i) for i in range(n)]
    for neck in sp.block("neck").candidates:  # every neck at least once
        out.append({**sp.sample(100), "neck": neck})
    return out


def test_priced_layers_equal_traced_network(mnist):
    for s in _samples(mnist):
        net = build_detector(mnist, s)
        traced = layers_from_module(net, (1, 1, 96, 96))
        assert [_key(l) for l in mnist.layers(s)] == [_key(l) for l in traced], s


def test_priced_layers_equal_traced_at_batch_and_other_width():
    sp = DetectionSpace.from_dict({**get_detection_space("det-mnist").to_dict(), "width": 0.25, "resolution": 64})
    for s in _samples(sp, 4):
        traced = layers_from_module(build_detector(sp, s), (3, 1, 64, 64))
        assert Counter(sp.layers(s, N=3)) == Counter(traced)


def test_pricing_is_exactly_additive(mnist):
    table = candidate_layer_table(mnist)  # the classification spaces' pricing code takes this space unchanged
    assert len(table) == mnist.encoding_size
    index = {k: i for i, k in enumerate(table.keys)}
    for s in _samples(mnist):
        summed = list(table.fixed) + [l for b in mnist.labels for l in table.candidates[index[(b, s[b])]]]
        assert Counter(summed) == Counter(mnist.layers(s))


def test_neck_block_carries_the_head_stems(mnist):
    s = mnist.reference_sample()
    pan = mnist.candidate_layers("neck", "pan")
    lite = mnist.candidate_layers("neck", "lite")
    assert sum(l.name.startswith("stems.") for l in pan) == 3
    # the stems' inputs follow the neck's widths: PAN emits (C3, C4, C5), lite the head width
    assert [l.C for l in pan if l.name.startswith("stems.")] == list(mnist.level_channels)
    assert [l.C for l in lite if l.name.startswith("stems.")] == [mnist.head_channels] * 3
    # so no other block's layers change with the neck
    a, b = mnist.layers({**s, "neck": "pan"}), mnist.layers({**s, "neck": "lite"})
    assert Counter(a) - Counter(pan) == Counter(b) - Counter(lite)


def test_encode_decode_and_sampling(mnist):
    s = mnist.sample(3)
    assert s == mnist.sample(3) and mnist.check_sample(s) == s
    v = mnist.encode(s)
    assert v.shape == (mnist.encoding_size,) and v.sum() == len(mnist.blocks)
    assert mnist.decode(v) == s
    assert mnist.offsets[-1] == mnist.encoding_size
    assert mnist.labels[-1] == "neck" and mnist.labels[0] == "s0.down"


def test_yaml_round_trip_and_fingerprint(tmp_path, mnist):
    p = tmp_path / "sp.yaml"
    mnist.to_yaml(p)
    back = DetectionSpace.from_yaml(p)
    assert back == mnist and back.fingerprint() == mnist.fingerprint()
    renamed = DetectionSpace.from_dict({**mnist.to_dict(), "name": "other"})
    assert renamed.fingerprint() == mnist.fingerprint()
    wider = DetectionSpace.from_dict({**mnist.to_dict(), "width": 0.25})
    assert wider.fingerprint() != mnist.fingerprint()
    assert resolve_detection_space(str(p)) == mnist
    assert resolve_detection_space(mnist.to_dict()) == mnist
    assert resolve_detection_space("det-mnist") == mnist
    assert resolve_detection_space("tiny-mnist") is None
    assert resolve_detection_space({"stem": {"channels": 8}}) is None


def _bad(mnist, **changes):
    d = mnist.to_dict()
    d.pop("reference")
    for k, v in changes.items():
        if "." in k:
            a, b = k.split(".")
            if a.startswith("stages"):
                i = int(a[len("stages"):])
                d["stages"][i] = {**d["stages"][i], b: v}
            else:
                d[a] = {**d[a], b: v}
        else:
            d[k] = v
    return d


@pytest.mark.parametrize("changes,match", [
    ({"resolution": 100}, r"resolution must be a multiple of 32"),
    ({"width": "wide"}, r"width must be a number in \(0, 4\]"),
    ({"depth": 0}, r"depth must be a number"),
    ({"act": "gelu"}, r"act 'gelu' is unknown; allowed values"),
    ({"stem.kind": "patch"}, r"stem.kind 'patch' is unknown; allowed values: \['focus', 'conv'\]"),
    ({"stem.kernel": 4}, r"stem.kernel must be odd"),
    ({"down": ["conv3", "csp1"]}, r"down: block s0.down .*op 'csp1' cannot run with stride 2"),
    ({"down": ["conv3", "skip"]}, r"op 'skip' cannot run with stride 2"),
    ({"stages0.first_candidates": ["csp1", "conv3", "csp1"]}, r"stages\[0\].first_candidates repeats \['csp1'\]"),
    ({"stages3.spp": "yes"}, r"stages\[3\].spp must be true or false"),
    ({"stages1.candidates": ["mb9_e9"]}, r"stages\[1\].candidates: unknown detection op 'mb9_e9'"),
    ({"neck.candidates": ["pan", "bifpn"]}, r"neck.candidates: unknown neck 'bifpn'"),
    ({"stages": []}, r"stages must be a non-empty list"),
    ({"head.channels": 0}, r"head.channels must be an integer >= 1"),
    ({"colour": "red"}, r"unknown"),
])
def test_bad_space_is_one_line_error_naming_the_field(mnist, changes, match):
    with pytest.raises(ConfigError, match=match) as exc:
        DetectionSpace.from_dict(_bad(mnist, **changes))
    assert "\n" not in str(exc.value)


def test_odd_channels_for_a_channel_split_op_are_refused(mnist):
    d = _bad(mnist, width=0.1875)
    d["stages"][0] = {**d["stages"][0], "channels": 96}  # int(96 * 0.1875) = 18: even, accepted
    DetectionSpace.from_dict(d)
    d["stages"][0] = {**d["stages"][0], "channels": 112}  # 21: ghost, shuffle and CSP split channels in two
    with pytest.raises(ConfigError, match=r"stages\[0\].first_candidates: block s0.b0 .*'csp1' splits its channels in two, so it needs an even "
                                         r"C_out \(got 21\)"):
        DetectionSpace.from_dict(d)


def test_bad_samples(mnist):
    s = mnist.sample(0)
    with pytest.raises(ConfigError, match="missing labels \\['neck'\\]"):
        mnist.check_sample({k: v for k, v in s.items() if k != "neck"})
    with pytest.raises(ConfigError, match="is not a candidate; allowed"):
        mnist.check_sample({**s, "neck": "bifpn"})
    with pytest.raises(ConfigError, match="reference"):
        DetectionSpace.from_dict({**mnist.to_dict(), "reference": {**s, "neck": "bifpn"}})


# ---- the supernet ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def supernet(mnist):
    return DetectionSupernet(mnist, init_generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("mode", ["gumbel", "binary", "darts"])
def test_supernet_modes_give_architecture_gradients(supernet, mode):
    supernet.generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 96, 96)
    with supernet.using_mode(mode):
        for p in supernet.arch_parameters():
            p.grad = None
        out = supernet(x)
        assert out.shape == (2, supernet.space.num_anchors, 8 + 10)
        out[..., 4].sigmoid().sum().backward()
    grads = [p.grad for p in supernet.arch_parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_freeze_runs_exactly_the_fixed_architecture(supernet, mnist):
    s = mnist.sample(5)
    x = torch.randn(2, 1, 96, 96)
    net = supernet.freeze(s)
    supernet.eval(), net.eval()
    with torch.no_grad():
        assert torch.allclose(supernet(x, sample=s), net(x), atol=1e-5)
        with supernet.fixed(s):
            assert torch.allclose(supernet(x), net(x), atol=1e-5)
    fresh = supernet.freeze(s, inherit_weights=False, generator=torch.Generator().manual_seed(0))
    assert Counter(layers_from_module(fresh, (1, 1, 96, 96))) == Counter(mnist.layers(s))


def test_supernet_checkpoint_refuses_another_space(supernet, mnist):
    other = DetectionSpace.from_dict({**mnist.to_dict(), "num_classes": 5})
    with pytest.raises(ConfigError, match="fingerprint"):
        DetectionSupernet(other).load_state_dict(supernet.state_dict(), strict=False)


def test_space_names_its_task_and_supernet(mnist):
    from search_spaces.tasks import get_task
    assert get_task(mnist).name == "detection" and get_task(mnist).metric == "map"
    assert mnist.supernet_class is DetectionSupernet
    assert np.isclose(get_task(mnist).chance(10), 0.0)
