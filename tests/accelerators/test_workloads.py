"""Tests of the built-in workloads, the YAML workload format and extraction from PyTorch modules.

The golden numbers were computed from the layer shapes and agree with the published
figures quoted next to them.  torchvision is not a dependency, so compact re-definitions of
its models below serve as the reference for the layer-by-layer cross-check; their total
parameter counts (weights + biases + batch norm) match torchvision's published ones, which
pins the re-definitions themselves.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import Callable, List, Sequence, Tuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accelerators.extract import layers_from_module
from coexplore.common import ConfigError
from accelerators.networks import WORKLOADS, get_workload, list_workloads, summary
from coexplore.common import UnknownNameError
from accelerators.workload import Layer, load_workload, save_workload, total_macs

# name -> (exact MACs at batch 1, exact weight elements, published MACs, rel. tolerance of the rounding)
GOLDEN = {
    # Eyeriss (JSSC 2017) / Sze et al. (Proc. IEEE 2017): 724M MACs (666M conv + 58.6M FC), 61M weights.
    "alexnet": (724_406_816, 60_954_656, 724e6, 1e-3),
    # torchvision vgg16: 15.47 GFLOPS (MACs), 138,357,544 params = weights + 13,416 biases.
    "vgg16": (15_470_264_320, 138_344_128, 15.47e9, 1e-3),
    # torchvision resnet18: 1.81 GFLOPS, 11,689,512 params = weights + 1,000 fc bias + 9,600 BN.
    "resnet18": (1_814_073_344, 11_678_912, 1.81e9, 3e-3),
    # torchvision resnet50 (v1.5): 4.09 GFLOPS, 25,557,032 params = weights + 1,000 + 53,120 BN.
    "resnet50": (4_089_184_256, 25_502_912, 4.09e9, 2e-3),
    # Sandler et al. (CVPR 2018) Table 4: 300M multiply-adds, 3.4M params; torchvision 0.30 GFLOPS.
    "mobilenetv2": (300_774_272, 3_469_760, 300e6, 3e-3),
    # No published figure: computed from the table in the docstring (10 classes).
    "mobilenetv2-cifar": (87_976_448, 2_202_560, None, None),
}

# torchvision's published parameter counts (weights, biases and batch norm affine parameters).
TORCHVISION_PARAMS = {"vgg16": 138_357_544, "resnet18": 11_689_512, "resnet50": 25_557_032,
                      "mobilenetv2": 3_504_872}

COMPARED_FIELDS = ("kind", "N", "K", "C", "R", "S", "P", "Q", "stride", "groups", "name")


def fields(layers: Sequence[Layer]) -> List[Tuple]:
    return [tuple(getattr(l, f) for f in COMPARED_FIELDS) for l in layers]


# ---- compact re-definitions of the reference models (torchvision module names) ---------------

class Block(nn.Module):
    """torchvision's BasicBlock (``bottleneck=False``) or Bottleneck (v1.5, stride on the 3x3)."""

    def __init__(self, c_in: int, width: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        c_out = width * (4 if bottleneck else 1)
        if bottleneck:
            shapes = [(c_in, width, 1, 1), (width, width, 3, stride), (width, c_out, 1, 1)]
        else:
            shapes = [(c_in, width, 3, stride), (width, width, 3, 1)]
        for i, (ci, co, k, s) in enumerate(shapes, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(ci, co, k, s, k // 2, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(co))
        self.n = len(shapes)
        self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for i in range(1, self.n + 1):
            out = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out))
            out = F.relu(out) if i < self.n else out
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, blocks: Sequence[int], bottleneck: bool, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
            mods = []
            for b in range(n):
                mods.append(Block(c_in, width, 2 if i > 1 and b == 0 else 1, bottleneck))
                c_in = width * (4 if bottleneck else 1)
            setattr(self, f"layer{i}", nn.Sequential(*mods))
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def conv_bn_act(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6())


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = c_in * t
        layers = [] if t == 1 else [conv_bn_act(c_in, hidden, 1)]
        layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


MBV2_TABLE = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    def __init__(self, table=MBV2_TABLE, stem_stride: int = 2, num_classes: int = 1000) -> None:
        super().__init__()
        feats: List[nn.Module] = [conv_bn_act(3, 32, 3, stem_stride)]
        c_in = 32
        for t, c, n, s in table:
            for i in range(n):
                feats.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        feats.append(conv_bn_act(c_in, 1280, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def vgg16_module() -> nn.Module:
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    feats: List[nn.Module] = []
    c_in = 3
    for v in cfg:
        if v == "M":
            feats.append(nn.MaxPool2d(2, 2))
        else:
            feats += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
            c_in = v
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(*feats), avgpool=nn.AdaptiveAvgPool2d(7), flatten=nn.Flatten(),
        classifier=nn.Sequential(nn.Linear(512 * 49, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096),
                                 nn.ReLU(), nn.Dropout(), nn.Linear(4096, 1000))))


class GroupedAlexNet(nn.Module):
    """The two-tower AlexNet of the 2012 paper, its towers folded into ``groups=2``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, 4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.fc6, self.fc7, self.fc8 = nn.Linear(9216, 4096), nn.Linear(4096, 4096), nn.Linear(4096, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = lambda t: F.max_pool2d(t, 3, 2)  # noqa: E731
        x = pool(F.relu(self.conv1(x)))
        x = pool(F.relu(self.conv2(x)))
        x = pool(F.relu(self.conv5(F.relu(self.conv4(F.relu(self.conv3(x)))))))
        return self.fc8(F.relu(self.fc7(F.relu(self.fc6(torch.flatten(x, 1))))))


# name -> (reference model factory, input resolution, device).  The large models are traced on
# the meta device (shapes only, no compute); resnet18 and mobilenetv2 run for real on the CPU.
REFERENCES: dict[str, Tuple[Callable[[], nn.Module], int, str]] = {
    "alexnet": (GroupedAlexNet, 227, "meta"),
    "vgg16": (vgg16_module, 224, "meta"),
    "resnet18": (lambda: ResNet((2, 2, 2, 2), bottleneck=False), 224, "cpu"),
    "resnet50": (lambda: ResNet((3, 4, 6, 3), bottleneck=True), 224, "meta"),
    "mobilenetv2": (MobileNetV2, 224, "cpu"),
    "mobilenetv2-cifar": (lambda: MobileNetV2([(t, c, n, 1 if c == 24 else s) for t, c, n, s in MBV2_TABLE],
                                              stem_stride=1, num_classes=10), 32, "meta"),
}


# ---- built-in workloads -----------------------------------------------------------------------

def test_every_workload_is_pinned_and_cross_checked():
    assert set(GOLDEN) == set(list_workloads()) == set(REFERENCES)
    assert list_workloads() == sorted(list_workloads()) == WORKLOADS.names()


@pytest.mark.parametrize("name", list_workloads())
def test_workload_is_valid(name):
    layers = get_workload(name)
    assert layers and all(isinstance(l, Layer) for l in layers)
    for l in layers:
        again = Layer.from_dict(l.to_dict())  # re-runs every validation
        assert again == l and again.name == l.name
        assert l.N == 1 and l.name
    assert len({l.name for l in layers}) == len(layers), "layer names must be unique"


@pytest.mark.parametrize("name", list_workloads())
def test_workload_golden_totals(name):
    macs, weights, published, rel = GOLDEN[name]
    s = summary(get_workload(name))
    assert s["macs"] == macs == total_macs(get_workload(name))
    assert s["weights"] == weights
    assert s["layers"] == len(get_workload(name))
    assert s["macs_conv"] + s["macs_depthwise"] + s["macs_linear"] + s["macs_matmul"] == macs
    if published is not None:
        assert macs == pytest.approx(published, rel=rel)


@pytest.mark.parametrize("name", list_workloads())
def test_batch_scales_every_layer(name):
    one, four = get_workload(name), get_workload(name, batch=4)
    assert [l.N for l in four] == [4] * len(one)
    assert total_macs(four) == 4 * total_macs(one)
    assert summary(four)["weights"] == summary(one)["weights"]


def test_alexnet_matches_eyeriss_table():
    layers = {l.name: l for l in get_workload("alexnet")}
    assert (layers["conv1"].H, layers["conv1"].P, layers["conv1"].stride) == (227, 55, 4)
    assert [layers[f"conv{i}"].groups for i in range(1, 6)] == [1, 2, 1, 2, 2]
    assert all(layers[f"conv{i}"].kind == "conv" for i in range(1, 6))  # grouped, not depthwise
    # Eyeriss / Sze et al.: 666M conv MACs with 2.3M weights, 58.6M FC MACs.
    conv_macs = sum(l.macs for n, l in layers.items() if n.startswith("conv"))
    assert conv_macs == 665_784_864 == pytest.approx(666e6, rel=1e-3)
    assert sum(l.weight_elems for n, l in layers.items() if n.startswith("conv")) == pytest.approx(2.3e6, rel=0.02)


def test_resnet50_has_shortcut_convs_with_stride_on_3x3():
    layers = {l.name: l for l in get_workload("resnet50")}
    downsamples = [n for n in layers if n.endswith("downsample.0")]
    assert downsamples == [f"layer{i}.0.downsample.0" for i in range(1, 5)]
    assert (layers["layer2.0.conv1"].stride, layers["layer2.0.conv2"].stride) == (1, 2)


def test_mobilenetv2_cifar_map_sizes():
    layers = get_workload("mobilenetv2-cifar")
    dw = [l for l in layers if l.kind == "depthwise"]
    assert len(dw) == 17
    assert [l.P for l in dw] == [32, 32, 32, 16, 16, 16, 8, 8, 8, 8, 8, 8, 8, 4, 4, 4, 4]
    assert (layers[0].P, layers[0].stride, layers[-2].K, layers[-2].P) == (32, 1, 1280, 4)
    assert (layers[-1].C, layers[-1].K) == (1280, 10)


@pytest.mark.parametrize("name", list_workloads())
def test_builtin_matches_traced_reference(name):
    factory, res, device = REFERENCES[name]
    with torch.device(device):
        model = factory()
    if name in TORCHVISION_PARAMS:
        assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[name]
    traced = layers_from_module(model, (1, 3, res, res))
    assert fields(traced) == fields(get_workload(name))


def test_get_workload_unknown_name_lists_known_ones():
    with pytest.raises(UnknownNameError) as info:
        get_workload("nope")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    for known in list_workloads():
        assert known in str(info.value)
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet18'"):
        get_workload("resnet-18")


def test_get_workload_is_case_insensitive_and_checks_batch():
    assert get_workload("ResNet18") == get_workload("resnet18")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="batch"):
            get_workload("resnet18", batch=bad)


# ---- YAML format --------------------------------------------------------------------------------

def test_yaml_round_trip(tmp_path):
    layers = get_workload("mobilenetv2")
    path = tmp_path / "mbv2.yaml"
    save_workload(path, layers, name="mobilenetv2")
    loaded = load_workload(path)
    assert loaded == layers and [l.name for l in loaded] == [l.name for l in layers]
    assert get_workload(str(path)) == layers
    assert [l.N for l in get_workload(str(path), batch=3)] == [3] * len(layers)


def write(tmp_path, text: str):
    path = tmp_path / "w.yaml"
    path.write_text(text)
    return path


def test_yaml_malformed(tmp_path):
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_workload(write(tmp_path, "layers: [\n  - {kind: conv, K: 4"))


def test_yaml_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        get_workload(str(tmp_path / "absent.yaml"))


# Key errors are caught by Layer.from_dict and say where they are ("<file>: layers[0]"); value
# errors come from Layer.__post_init__, which names the field and the layer but not the file.
@pytest.mark.parametrize("layer, field, located", [
    ("{kind: conv, K: 4, C: 4, R: 3, S: 3, P: 8, Q: 8, colour: red}", "colour", True),
    ("{kind: conv, K: 4, C: 4, R: 3, S: 3, P: 8}", "Q", True),
    ("{kind: conv, C: 4, R: 3, S: 3, P: 8, Q: 8}", "K", True),
    ("{kind: conv, K: 0, C: 4, R: 3, S: 3, P: 8, Q: 8}", "field K", False),
    ("{kind: conv, K: 4, C: 4, R: 3, S: 3, P: 8, Q: 8, groups: 3}", "groups=3", False),
    ("{kind: pool, K: 4, C: 4, R: 3, S: 3, P: 8, Q: 8, name: p1}", "layer 'p1': kind 'pool'", False),
])
def test_yaml_bad_layer_names_the_field(tmp_path, layer, field, located):
    with pytest.raises(ConfigError, match=field) as info:
        load_workload(write(tmp_path, f"name: bad\nlayers:\n  - {layer}\n"))
    if located:
        assert "w.yaml: layers[0]" in str(info.value)


def test_yaml_bad_top_level(tmp_path):
    with pytest.raises(ConfigError, match="version"):
        load_workload(write(tmp_path, "version: 2\nlayers:\n  - {kind: linear, K: 4, C: 4}\n"))
    with pytest.raises(ConfigError, match="layers"):
        load_workload(write(tmp_path, "name: empty\nlayers: []\n"))


# ---- extraction from modules ----------------------------------------------------------------------

def test_extract_grouped_depthwise_and_multiplier_convs():
    model = nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1, groups=2),             # grouped
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16),  # depthwise
        nn.Conv2d(16, 32, (3, 5), groups=16),                  # depthwise with multiplier 2: a grouped conv
    )
    g, dw, mult = layers_from_module(model, (2, 8, 16, 16))
    assert (g.kind, g.groups, g.N, g.P, g.Q, g.macs) == ("conv", 2, 2, 16, 16, 2 * 16 * 4 * 9 * 256)
    assert (dw.kind, dw.groups, dw.K, dw.C, dw.stride, dw.P) == ("depthwise", 16, 16, 16, 2, 8)
    assert (mult.kind, mult.groups, mult.R, mult.S, mult.P, mult.Q) == ("conv", 16, 3, 5, 6, 4)
    assert [l.name for l in (g, dw, mult)] == ["0", "1", "2"]


def test_extract_linear_folds_leading_dims_into_n():
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64))
    up, down = layers_from_module(model, (2, 10, 64), name_prefix="mlp")
    assert (up.kind, up.N, up.C, up.K, up.name) == ("linear", 20, 64, 128, "mlp.0")
    assert (down.N, down.C, down.K, down.name) == (20, 128, 64, "mlp.2")
    (single,) = layers_from_module(nn.Linear(5, 3), (7, 5))
    assert (single.N, single.name) == (7, "")


def test_extract_keyword_input_and_unbatched_conv():
    class Keyword(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(input=x)

    assert [(l.N, l.C, l.K) for l in layers_from_module(Keyword(), (4, 6))] == [(4, 6, 2)]
    (c,) = layers_from_module(nn.Conv2d(3, 5, 3), (3, 9, 9))  # C x H x W, no batch dimension
    assert (c.N, c.K, c.P, c.Q) == (1, 5, 7, 7)


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.body(self.bn(self.stem(x))))
        return self.head(x.mean((2, 3)))


def test_extract_shared_module_appears_each_call_and_batch():
    layers = layers_from_module(Shared(), (3, 3, 12, 12))
    assert [l.name for l in layers] == ["stem", "body", "body", "head"]
    assert all(l.N == 3 for l in layers)


def test_extract_restores_modes_stats_and_hooks():
    model = Shared().train()
    model.head.eval()  # a mixed state must survive as it was
    user_hook = model.stem.register_forward_hook(lambda m, a, o: None)
    layers_from_module(model, (2, 3, 8, 8))
    assert model.training and model.stem.training and model.bn.training and not model.head.training
    assert model.bn.num_batches_tracked.item() == 0 and torch.all(model.bn.running_var == 1)
    assert list(model.stem._forward_hooks) == [user_hook.id]
    assert all(not m._forward_hooks for m in (model, model.body, model.bn, model.head))
    user_hook.remove()


def test_extract_error_cleans_up():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Conv2d(4, 4, 3, stride=(2, 1)))).train()
    with pytest.raises(ConfigError, match=r"1\.0: unequal strides"):
        layers_from_module(model, (1, 3, 16, 16))
    assert model.training and all(m.training for m in model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert torch.backends.mha.get_fastpath_enabled()


def test_extract_unequal_stride_error_names_module():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=(1, 2)))
    with pytest.raises(ConfigError, match=r"0: unequal strides"):
        layers_from_module(model, (1, 3, 16, 16))


def test_extract_names_every_skipped_kind_in_one_warning(caplog):
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vol = nn.Conv3d(4, 4, 1)
            self.vol2 = nn.Conv3d(4, 4, 1)
            self.bil = nn.Bilinear(4, 4, 4)
            self.norm = nn.LayerNorm(4)  # weights, but no matrix work: not a skipped kind
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.vol2(self.vol(x[:, :, None])).mean((2, 3, 4))
            y = self.norm(self.bil(y, y))
            return self.fc(torch.einsum("bi,bi->bi", y, y))

    with caplog.at_level(logging.WARNING, logger="accelerators.extract"):
        layers = layers_from_module(Mixed(), (1, 4, 4, 4))
    assert [l.name for l in layers] == ["fc"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "accelerators.extract"]
    assert len(warnings) == 1
    for needle in ("Conv3d (2: vol, vol2)", "Bilinear (1: bil)", "einsum (functional)"):
        assert needle in warnings[0]
    assert "LayerNorm" not in warnings[0]


def test_extract_dilated_conv_is_its_undilated_phases():
    # A dilation-d conv = undilated convs over the input's residue classes modulo d (space to batch):
    # the phases' outputs tile the output map and their MACs are the layer's, exactly.
    for (H, k, s, d, pad) in ((9, 3, 1, 2, 2), (12, 3, 1, 3, 3), (9, 3, 2, 2, 2), (10, 3, 2, 3, 3), (7, 2, 1, 4, 2)):
        conv = nn.Conv2d(4, 8, k, stride=s, dilation=d, padding=pad)
        out = conv(torch.zeros(1, 4, H, H))
        P = out.shape[-1]
        layers = layers_from_module(conv, (1, 4, H, H))
        assert sum(l.macs for l in layers) == 8 * 4 * k * k * P * P, (H, k, s, d)
        assert sum(l.N * l.P * l.Q for l in layers) == P * P
        assert all((l.R, l.S, l.kind) == (k, k, "conv") for l in layers)
        g = math.gcd(s, d)
        assert {l.stride for l in layers} == {s // g}
        assert len(layers) <= 4
    # numerically: the phase convs of a stride-1 dilated conv reproduce torch's output
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, dilation=2, padding=2, bias=False)
    x = torch.randn(1, 2, 9, 9)
    ref = conv(x)
    xp = F.pad(x, (2, 2, 2, 2))
    for a in range(2):
        for b in range(2):
            part = F.conv2d(xp[..., a::2, b::2], conv.weight)  # undilated on one residue class
            assert torch.allclose(part, ref[..., a::2, b::2], atol=1e-5)
    shapes = sorted((l.P, l.Q, l.N) for l in layers_from_module(conv, (1, 2, 9, 9)))
    assert shapes == sorted([(5, 5, 1), (5, 4, 1), (4, 5, 1), (4, 4, 1)])


def test_extract_transposed_conv_is_its_stride_one_phases():
    # DCGAN's upsampling: kernel 4, stride 2, padding 1 doubles the map; each output phase is a
    # stride-1 2x2 conv of the input, and no MAC lands on an inserted zero.
    up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
    (layer,) = layers_from_module(nn.Sequential(up), (2, 8, 5, 5))
    assert (layer.N, layer.K, layer.C, layer.R, layer.S, layer.P, layer.Q, layer.stride) == (8, 4, 8, 2, 2, 5, 5, 1)
    assert layer.macs == 2 * 4 * 8 * 4 * 4 * 5 * 5  # K C R S H_in W_in per image: what the scatter form costs
    # a model made only of a transposed conv is not empty any more
    assert layers_from_module(nn.ConvTranspose2d(3, 3, 3, stride=3), (1, 3, 4, 4))
    # an odd kernel with stride 2 has phases of different tap counts; grouped and 1-D ones work too
    layers = layers_from_module(nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
                                (1, 4, 6, 6))
    assert sorted((l.R, l.S) for l in layers) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert sum(l.P * l.Q * l.N for l in layers) == 12 * 12 and all(l.groups == 2 for l in layers)
    (one,) = layers_from_module(nn.ConvTranspose1d(4, 6, 4, stride=2, padding=1), (1, 4, 10))
    assert (one.R, one.S, one.P, one.Q, one.N) == (1, 2, 1, 10, 2)


def test_extract_conv1d():
    (l,) = layers_from_module(nn.Conv1d(4, 8, 5, stride=2, padding=2), (3, 4, 20))
    assert (l.kind, l.N, l.K, l.C, l.R, l.S, l.P, l.Q, l.stride) == ("conv", 3, 8, 4, 1, 5, 1, 10, 2)


def test_extract_attention_is_priced_with_its_matrix_products():
    mha = nn.MultiheadAttention(16, 4, batch_first=True)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.att = mha

        def forward(self, x):
            return self.att(x, x, x)[0]

    layers = layers_from_module(Block(), (2, 5, 16))
    names = [l.name for l in layers]
    assert names == ["att.q_proj", "att.k_proj", "att.v_proj", "att.qk", "att.av", "att.out_proj"]
    qk, av = layers[3], layers[4]
    assert (qk.kind, qk.groups, qk.P, qk.C // qk.groups, qk.K // qk.groups) == ("matmul", 8, 5, 4, 5)
    assert (av.groups, av.P, av.C // av.groups, av.K // av.groups) == (8, 5, 5, 4)
    assert qk.macs == av.macs == 2 * 4 * 5 * 5 * 4  # batch x heads x L x S x head dim
    # a transformer layer: attention (not hidden by PyTorch's fused fast path) and the MLP
    enc = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    names = [l.name for l in layers_from_module(enc, (2, 5, 16))]
    assert names == ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.qk", "self_attn.av",
                     "self_attn.out_proj", "linear1", "linear2"]


def test_extract_functional_matrix_products():
    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(16, 8))

        def forward(self, x):
            q = x @ self.w
            h = torch.bmm(q, q.transpose(1, 2))
            return F.scaled_dot_product_attention(q, q, q) + F.linear(q, torch.zeros(8, 8)) + h[..., :1] * 0

    layers = layers_from_module(Attention(), (3, 5, 16))
    got = [(l.name, l.kind, l.groups, l.P, l.C // l.groups, l.K // l.groups, l.N) for l in layers]
    assert got == [("matmul#1", "matmul", 3, 5, 16, 8, 1), ("matmul#2", "matmul", 3, 5, 8, 5, 1),
                   ("attention.qk#1", "matmul", 3, 5, 8, 5, 1), ("attention.av#1", "matmul", 3, 5, 5, 8, 1),
                   ("linear#1", "linear", 1, 1, 8, 8, 15)]
    # F.linear inside nn.Linear is the module's, counted once
    assert len(layers_from_module(nn.Linear(4, 4), (2, 4))) == 1


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_extract_recurrent_layers():
    lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True, bidirectional=True)
    layers = layers_from_module(lstm, (3, 4, 8))  # batch 3, 4 steps
    ih = [l for l in layers if l.name.endswith(".ih")]
    hh = [l for l in layers if ".hh[" in l.name]
    assert [(l.N, l.K, l.C) for l in ih] == [(12, 64, 8), (12, 64, 8), (12, 64, 32), (12, 64, 32)]
    assert len(hh) == 2 * 2 * 4 and all((l.N, l.K, l.C) == (3, 64, 16) for l in hh)
    # every weight x every step x every sample: the MACs of the cell's two matrix products
    per_step = sum(p.numel() for n, p in lstm.named_parameters() if n.startswith("weight"))
    assert sum(l.macs for l in layers) == per_step * 3 * 4
    gru = layers_from_module(nn.GRU(8, 16), (5, 2, 8))  # sequence first: 5 steps, batch 2
    assert (gru[0].N, gru[0].K) == (10, 48) and len(gru) == 1 + 5
    proj = layers_from_module(nn.LSTM(8, 16, proj_size=4), (5, 8))  # unbatched, with a projection
    assert [l.name for l in proj[:3]] == ["l0.ih", "l0.hh[0]", "l0.hr[0]"] and proj[1].C == 4


def test_extract_follows_device_and_dtype():
    model = Shared().double()
    assert fields(layers_from_module(model, (1, 3, 8, 8))) == fields(layers_from_module(Shared(), (1, 3, 8, 8)))
    with torch.device("meta"):
        meta = Shared()
    assert fields(layers_from_module(meta, (1, 3, 8, 8))) == fields(layers_from_module(Shared(), (1, 3, 8, 8)))
    assert layers_from_module(nn.Sequential(nn.ReLU()), (1, 3)) == []  # no parameters, no layers


def test_extract_rejects_bad_input_shape():
    for bad in ((), (1, 0, 4), (1, 3.0), 5):
        with pytest.raises(ConfigError, match="input_shape"):
            layers_from_module(Shared(), bad)


def test_extracted_workload_round_trips_through_yaml(tmp_path):
    layers = layers_from_module(Shared(), (1, 3, 8, 8))
    save_workload(tmp_path / "shared.yml", layers)
    assert get_workload(str(tmp_path / "shared.yml")) == layers


# ---- the one output-size helper ---------------------------------------------------------------

def test_conv_output_size_matches_torch():
    from accelerators.workload import conv_output_size

    for size in (1, 2, 7, 27, 28):
        for kernel in (1, 2, 3, 4, 5, 7):
            for stride in (1, 2, 3):
                for padding in (0, 1, kernel // 2):
                    for dilation in (1, 2):
                        if size + 2 * padding < dilation * (kernel - 1) + 1:
                            continue
                        conv = nn.Conv2d(1, 1, kernel, stride, padding, dilation)
                        pool = nn.MaxPool2d(kernel, stride, min(padding, kernel // 2), dilation)
                        x = torch.zeros(1, 1, size, size)
                        got = conv_output_size(size, kernel, stride, padding, dilation)
                        assert conv(x).shape[-1] == got, (size, kernel, stride, padding, dilation)
                        if padding <= kernel // 2:
                            assert pool(x).shape[-1] == got
