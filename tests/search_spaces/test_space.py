"""SearchSpace: built-ins, samples, encoding, YAML, validation and layer lists."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import yaml

from accelerators.extract import layers_from_module
from coexplore.common import ConfigError
from coexplore.common import UnknownNameError
from search_spaces import (Head, SearchSpace, Stage, Stem, build_network, candidate_layer_table, expected_cost,
                           get_search_space, list_search_spaces)

MB6 = ["mb3_e3", "mb3_e6", "mb5_e3", "mb5_e6", "mb7_e3", "mb7_e6"]
EXPECTED = {  # name -> (choice blocks, candidates of a shape-keeping block, of a stage's first block)
    "proxyless-cifar10": (12, MB6 + ["zero"], MB6),
    "proxyless-imagenet": (21, MB6 + ["zero"], MB6),
    "tiny-mnist": (6, ["mb3_e3", "mb3_e6", "mb5_e3", "mb5_e6", "zero"], ["mb3_e3", "mb3_e6", "mb5_e3", "mb5_e6"]),
}


def small_space(**kw) -> SearchSpace:
    args = dict(name="small", resolution=8, input_channels=1, num_classes=3, stem=Stem(4, 3, 1),
                candidates=("mb3_e3", "zero"),
                stages=(Stage(4, 1, 2), Stage(8, 2, 2, first_candidates=("mb3_e3", "mb5_e3"))), head=Head(16))
    args.update(kw)
    return SearchSpace(**args)


def test_builtin_list():
    assert set(EXPECTED) <= set(list_search_spaces())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_blocks(name):
    sp = get_search_space(name)
    n, keep, first = EXPECTED[name]
    assert len(sp.blocks) == n
    assert sp.labels == [b.label for b in sp.blocks]
    for b in sp.blocks:
        assert list(b.candidates) == (keep if b.keeps_shape else first)
        assert b.label == f"s{b.stage}.b{b.index}"
    assert sp.encoding_size == sum(sp.num_candidates) == sp.offsets[-1]
    assert sp.all_samples_count == int(np.prod(sp.num_candidates, dtype=object))


def test_proxyless_cifar10_geometry():
    sp = get_search_space("proxyless-cifar10")
    assert (sp.resolution, sp.input_channels, sp.num_classes, sp.head.channels) == (32, 3, 10, 1280)
    fixed = [b for b in sp.all_blocks if not b.searched]
    assert [(b.label, b.candidates, b.C_in, b.C_out) for b in fixed] == [("s0.b0", ("mb3_e1",), 32, 16)]
    firsts = [b for b in sp.blocks if b.index == 0]
    assert [(b.label, b.C_in, b.C_out, b.stride, b.in_hw, b.out_hw) for b in firsts] == [
        ("s1.b0", 16, 32, 1, (32, 32), (32, 32)), ("s2.b0", 32, 64, 2, (32, 32), (16, 16)),
        ("s3.b0", 64, 128, 2, (16, 16), (8, 8))]
    assert sp.final_hw == (8, 8)


def test_proxyless_imagenet_geometry():
    sp = get_search_space("proxyless-imagenet")
    assert sp.stem_hw == (112, 112) and sp.final_hw == (7, 7) and sp.final_channels == 320
    assert [(st.channels, st.stride, st.layers) for st in sp.stages] == [
        (16, 1, 1), (24, 2, 4), (40, 2, 4), (80, 2, 4), (96, 1, 4), (192, 2, 4), (320, 1, 1)]


def test_even_stem_kernel_geometry():
    # ConvBNAct pads kernel // 2: a 4x4/2 stem at 28 px outputs 15x15, not ceil(28 / 2) = 14
    sp = small_space(resolution=28, stem=Stem(4, 4, 2))
    assert sp.stem_hw == (15, 15) and sp.stem_layers()[0].P == 15
    assert sp.all_blocks[0].in_hw == (15, 15) and sp.all_blocks[-1].out_hw == (8, 8)


SHAPE = ("kind", "N", "K", "C", "R", "S", "P", "Q", "stride", "groups")


@pytest.mark.parametrize("resolution", [27, 28])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
def test_priced_geometry_is_what_the_network_computes(kernel, stride, resolution):
    # Every priced layer's P x Q is the output size that forward hooks see on the built network.
    sp = SearchSpace(name="geom", resolution=resolution, input_channels=1, num_classes=3,
                     stem=Stem(8, kernel, stride), candidates=("mb3_e3", "mb5_e3", "zero"),
                     stages=(Stage(8, 1, 1, op="mb3_e1"), Stage(12, 2, 2, first_candidates=("mb3_e3", "mb5_e3")),
                             Stage(16, 3, 1, op="mb7_e1")), head=Head(16))
    for seed in range(2):
        sample = sp.sample(seed)
        net = build_network(sp, sample)
        traced = layers_from_module(net, (2, 1, resolution, resolution))
        priced = sp.layers(sample, N=2)
        assert [tuple(getattr(l, f) for f in SHAPE) for l in priced] == \
            [tuple(getattr(l, f) for f in SHAPE) for l in traced]
        stem = net.stem(torch.zeros(1, 1, resolution, resolution))
        assert sp.stem_hw == tuple(stem.shape[-2:])


def test_sample_reproducible_and_valid():
    sp = get_search_space("proxyless-cifar10")
    a, b = sp.sample(3), sp.sample(np.random.default_rng(3))
    assert a == b and list(a) == sp.labels
    assert sp.check_sample(a) == a
    assert len({tuple(sp.sample(s).values()) for s in range(20)}) > 1


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_encode_decode_round_trip(name):
    sp = get_search_space(name)
    rng = np.random.default_rng(0)
    for _ in range(5):
        s = sp.sample(rng)
        vec = sp.encode(s)
        assert vec.shape == (sp.encoding_size,) and vec.dtype == np.float32 and vec.sum() == len(sp.blocks)
        assert sp.decode(vec) == s
        assert sp.decode(vec * 0.8 + 0.01) == s  # soft vectors decode by argmax


def test_encoding_order_documented():
    sp = small_space()
    s = {"s0.b0": "zero", "s0.b1": "mb3_e3", "s1.b0": "mb5_e3", "s1.b1": "zero"}
    # blocks in order, candidates in declared order: (mb3_e3, zero) x2, (mb3_e3, mb5_e3), (mb3_e3, zero)
    assert sp.encode(s).tolist() == [0, 1, 1, 0, 0, 1, 0, 1]


def test_bad_samples():
    sp = small_space()
    with pytest.raises(ConfigError, match="missing labels"):
        sp.encode({"s0.b0": "zero"})
    with pytest.raises(ConfigError, match=r"allowed ops: \['mb3_e3', 'mb5_e3'\]"):
        sp.encode({"s0.b0": "zero", "s0.b1": "zero", "s1.b0": "zero", "s1.b1": "zero"})
    with pytest.raises(ConfigError, match="expected length 8"):
        sp.decode(np.zeros(7))


def test_yaml_round_trip(tmp_path):
    for name in list_search_spaces():
        sp = get_search_space(name)
        path = tmp_path / f"{name}.yaml"
        sp.to_yaml(path)
        back = get_search_space(str(path))
        assert back == sp and back.fingerprint() == sp.fingerprint()
        assert SearchSpace.from_dict(sp.to_dict()) == sp


def test_fingerprint_stable_and_sensitive():
    assert small_space().fingerprint() == small_space().fingerprint()
    assert small_space(name="other").fingerprint() == small_space().fingerprint()
    assert small_space(num_classes=4).fingerprint() != small_space().fingerprint()
    assert small_space(candidates=("zero", "mb3_e3")).fingerprint() != small_space().fingerprint()


def _write(tmp_path, data):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("mutate,pattern", [
    (lambda d: d.update(resolutoin=32), r"unknown field\(s\) \['resolutoin'\]; allowed fields: .*'resolution'"),
    (lambda d: d["stages"][1].update(chanels=8), r"stages\[1\]: unknown field\(s\) \['chanels'\]"),
    (lambda d: d["stages"][1].update(channels=0), r"stages\[1\]\.channels must be a positive integer"),
    (lambda d: d["stem"].update(stride="2"), r"stem\.stride must be a positive integer"),
    (lambda d: d.update(candidates="mb3_e3, zero"), r"candidates must be a list of op names"),
    (lambda d: d.update(candidates=["mb3_e3", "mb9_e9"]), r"candidates: unknown op 'mb9_e9'; known ops: .*mb3_e3"),
    (lambda d: d["stages"][1].pop("first_candidates"), r"stages\[1\]\.first_candidates|first_candidates"),
    (lambda d: d["stages"][1].update(first_candidates=["zero"]),
     r"stages\[1\]\.first_candidates: block s1\.b0 changes the shape \(4 -> 8 channels, stride 2\).*'zero'"),
    (lambda d: d["head"].update(dropout=1.5), r"head\.dropout"),
    (lambda d: d.pop("stem"), r"missing required field\(s\) \['stem'\]"),
    (lambda d: d["stages"][1].update(op="mb3_e3"), r"stages\[1\]: a fixed stage"),
])
def test_bad_yaml_names_field(tmp_path, mutate, pattern):
    d = small_space().to_dict()
    mutate(d)
    path = _write(tmp_path, d)
    with pytest.raises(ConfigError, match=pattern) as exc:
        SearchSpace.from_yaml(path)
    assert str(path) in str(exc.value)


def test_zero_refused_where_shape_changes():
    with pytest.raises(ConfigError, match=r"candidates: block s1\.b0 changes the shape .*skip op\(s\) \['zero'\]"):
        small_space(stages=(Stage(4, 1, 2), Stage(8, 2, 2)))
    with pytest.raises(ConfigError, match=r"stages\[0\]\.op: block s0\.b0"):
        small_space(stages=(Stage(8, 1, 1, op="zero"),))
    # A stage that keeps the shape may offer zero in its first layer.
    assert small_space().blocks[0].candidates == ("mb3_e3", "zero")


def test_malformed_and_missing_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stem: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        SearchSpace.from_yaml(bad)
    with pytest.raises(ConfigError, match="no such file"):
        get_search_space(str(tmp_path / "nope.yaml"))
    with pytest.raises(UnknownNameError, match="proxyless-cifar10"):
        get_search_space("proxyless-cifar100")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_layers_split_into_fixed_and_candidates(name):
    sp = get_search_space(name)
    for seed in range(3):
        s = sp.sample(seed)
        whole = sp.layers(s, N=2)
        parts = sp.fixed_layers(N=2) + [l for b in sp.labels for l in sp.candidate_layers(b, s[b], N=2)]
        assert Counter(whole) == Counter(parts)
        assert whole[0].name == "stem" and whole[-1].name == "classifier" and whole[-1].kind == "linear"


def test_expected_cost_matches_discrete_cost():
    sp = get_search_space("tiny-mnist")
    table = candidate_layer_table(sp)
    assert len(table) == sp.encoding_size
    assert [k for k in table.keys[:5]] == [("s0.b0", c) for c in sp.blocks[0].candidates]
    fixed = sum(l.macs for l in table.fixed)
    per = np.array([sum(l.macs for l in ls) for ls in table.candidates], dtype=np.float64)
    for seed in range(3):
        s = sp.sample(seed)
        assert expected_cost(fixed, per, sp.encode(s)) == pytest.approx(sum(l.macs for l in sp.layers(s)))
    # Under the uniform distribution, the mean over candidates.
    p = np.concatenate([np.full(n, 1.0 / n) for n in sp.num_candidates])
    manual = fixed + sum(np.mean([sum(l.macs for l in sp.candidate_layers(b.label, c)) for c in b.candidates])
                         for b in sp.blocks)
    assert expected_cost(fixed, per, p) == pytest.approx(manual)


def test_expected_cost_is_differentiable():
    sp = get_search_space("tiny-mnist")
    table = candidate_layer_table(sp, N=4)
    per = torch.tensor([float(sum(l.macs for l in ls)) for ls in table.candidates])
    probs = torch.full((sp.encoding_size,), 0.5, requires_grad=True)
    fixed = float(sum(l.macs for l in table.fixed))
    expected_cost(fixed, per, probs).backward()
    assert torch.equal(probs.grad, per)
    batch = torch.stack([torch.as_tensor(sp.encode(sp.sample(s))) for s in range(3)])
    costs = expected_cost(fixed, per, batch)
    assert costs.shape == (3,)
    assert costs[1].item() == pytest.approx(sum(l.macs for l in sp.layers(sp.sample(1), N=4)))


def test_candidate_layers_errors():
    sp = get_search_space("proxyless-cifar10")
    with pytest.raises(ConfigError, match="is fixed"):
        sp.candidate_layers("s0.b0", "mb3_e1")
    with pytest.raises(ConfigError, match="unknown block label 's9.b0'"):
        sp.candidate_layers("s9.b0", "mb3_e3")
    with pytest.raises(ConfigError, match="not a candidate"):
        sp.candidate_layers("s1.b0", "zero")
    assert sp.candidate_layers("s1.b1", "zero") == []
