"""Candidate ops: construction, shapes, layer lists, the zero op and user registration."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

from coexplore.common import ConfigError
from coexplore.common import UnknownNameError
from accelerators.extract import layers_from_module
from search_spaces import OPS, build_op, get_op, is_skip_op, list_ops, op_layers, register_op
from search_spaces import ops as ops_module
from search_spaces.ops import MBConv

NON_SKIP = [n for n in list_ops() if not is_skip_op(n)]


def test_builtin_names():
    names = set(list_ops())
    for k in (3, 5, 7):
        for e in (1, 3, 6):
            assert f"mb{k}_e{e}" in names
    assert {"zero", "conv3x3", "conv1x1"} <= names


@pytest.mark.parametrize("name", NON_SKIP)
@pytest.mark.parametrize("C_in,C_out,stride", [(8, 8, 1), (8, 12, 2)])
def test_op_shapes_and_layers(name, C_in, C_out, stride):
    torch.manual_seed(0)
    op = build_op(name, C_in, C_out, stride)
    x = torch.randn(2, C_in, 9, 9)
    y = op(x)
    out = (9 - 1) // stride + 1
    assert y.shape == (2, C_out, out, out)
    # Analytic layer list == what forward hooks see on the real module.
    assert Counter(op_layers(name, C_in, C_out, stride, (9, 9), N=2)) == Counter(layers_from_module(op, x.shape))


def test_one_tracer():
    # op_layers traces user ops with accelerators.extract.layers_from_module, the one tracer
    assert not hasattr(ops_module, "conv_out") and not hasattr(ops_module, "trace_layers")


def test_mbconv_structure():
    op = build_op("mb5_e6", 16, 16, 1)
    assert isinstance(op, MBConv) and op.residual
    assert not build_op("mb5_e6", 16, 24, 1).residual
    assert not build_op("mb5_e6", 16, 16, 2).residual
    assert build_op("mb3_e1", 16, 16, 1).expand is None
    layers = op_layers("mb5_e6", 16, 24, 2, 8, N=3, prefix="s1.b0")
    assert [(l.kind, l.K, l.C, l.R, l.P, l.stride, l.groups) for l in layers] == [
        ("conv", 96, 16, 1, 8, 1, 1), ("depthwise", 96, 96, 5, 4, 2, 96), ("conv", 24, 96, 1, 4, 1, 1)]
    assert all(l.N == 3 for l in layers)
    assert [l.name for l in layers] == ["s1.b0.expand", "s1.b0.depthwise", "s1.b0.project"]


def test_zero_op_identity_and_refusal():
    assert is_skip_op("zero")
    op = build_op("zero", 8, 8, 1)
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(op(x), x)
    assert op_layers("zero", 8, 8, 1, 5) == []
    with pytest.raises(ConfigError, match="C_in == C_out and stride 1"):
        build_op("zero", 8, 16, 1)
    with pytest.raises(ConfigError, match="stride"):
        op_layers("zero", 8, 8, 2, 5)


def test_unknown_op_lists_known():
    with pytest.raises(UnknownNameError) as exc:
        get_op("mb9_e9")
    msg = str(exc.value)
    assert "mb3_e3" in msg and "zero" in msg and "conv3x3" in msg


@pytest.fixture
def user_op():
    """A user op registered in the global registry for the test's duration."""
    name = "test_sep3"

    @register_op(name)
    def sep3(C_in, C_out, stride):
        return nn.Sequential(nn.Conv2d(C_in, C_in, 3, stride, 1, groups=C_in, bias=False), nn.BatchNorm2d(C_in),
                             nn.Conv2d(C_in, C_out, 1, bias=False), nn.BatchNorm2d(C_out))

    yield name
    OPS._entries.pop(name, None)


def test_user_op_layers_by_hooks(user_op):
    assert user_op in list_ops()
    layers = op_layers(user_op, 8, 16, 2, (10, 10), N=4, prefix="blk")
    assert [(l.kind, l.N, l.K, l.C, l.R, l.P, l.Q, l.stride, l.groups) for l in layers] == [
        ("depthwise", 4, 8, 8, 3, 5, 5, 2, 8), ("conv", 4, 16, 8, 1, 5, 5, 1, 1)]
    assert [l.name for l in layers] == ["blk.0", "blk.2"]
    assert [l.name for l in op_layers(user_op, 8, 16, 2, (10, 10))] == ["0", "2"]


@pytest.fixture
def user_ops_varied():
    """User ops exercising the tracer: grouped conv, a linear head on pooled features, an op that is one Conv2d."""
    names = ["test_grouped", "test_se", "test_bare"]

    class SE(nn.Module):
        def __init__(self, C_in, C_out, stride):
            super().__init__()
            self.conv = nn.Conv2d(C_in, C_out, 3, stride, 1, groups=2, bias=False)
            self.fc = nn.Linear(C_out, C_out)

        def forward(self, x):
            y = self.conv(x)
            return y * torch.sigmoid(self.fc(y.mean((2, 3))))[:, :, None, None]

    register_op(names[0])(lambda C_in, C_out, stride: nn.Conv2d(C_in, C_out, 3, stride, 1, groups=4))
    register_op(names[1])(SE)
    register_op(names[2])(lambda C_in, C_out, stride: nn.Conv2d(C_in, C_out, 1, stride))
    yield names
    for n in names:
        OPS._entries.pop(n, None)


def test_user_ops_traced_with_the_requested_batch(user_ops_varied):
    grouped, se, bare = user_ops_varied
    g = op_layers(grouped, 8, 16, 2, (9, 9), N=3)
    assert [(l.kind, l.N, l.K, l.C, l.R, l.S, l.P, l.Q, l.stride, l.groups) for l in g] == [
        ("conv", 3, 16, 8, 3, 3, 5, 5, 2, 4)]
    s = op_layers(se, 8, 8, 1, (6, 6), N=5, prefix="b")
    assert [(l.kind, l.N, l.K, l.C, l.P, l.groups, l.name) for l in s] == [
        ("conv", 5, 8, 8, 6, 2, "b.conv"), ("linear", 5, 8, 8, 1, 1, "b.fc")]
    b = op_layers(bare, 8, 8, 1, (4, 4), N=2, prefix="b")
    assert [(l.kind, l.N, l.name) for l in b] == [("conv", 2, "b")]  # the root module has no name of its own
    dw = op_layers(grouped, 4, 4, 1, (4, 4))
    assert dw[0].kind == "depthwise" and dw[0].groups == 4


def test_register_warns_on_overwrite(user_op):
    with pytest.warns(UserWarning, match="registered again"):
        register_op(user_op)(lambda C_in, C_out, stride: nn.Identity())
