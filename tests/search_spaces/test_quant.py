"""Fake quantisation (search_spaces.quant): error bounds, STE gradients, ranges, bits, whole networks."""

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coexplore.common import ConfigError
from search_spaces import build_network, get_search_space
from search_spaces.quant import (ACT_MODES, INT_BITS, ActQuantizer, QuantConv2d, QuantLinear, calibrate,
                                 fake_quant_weight, layer_bits, observing, quant_layers,
                                 quantize_model, set_layer_bits, weight_codes, weight_qparams)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("bits", INT_BITS)
def test_weight_error_bound_and_levels(bits):
    w = torch.randn(16, 8, 3, 3, generator=_gen(bits))
    scale, zp = weight_qparams(w, bits)
    wq = fake_quant_weight(w, bits)
    err = (wq - w).abs().reshape(16, -1).max(dim=1).values
    assert torch.all(err <= scale / 2 + 1e-6)
    for k in range(16):
        assert wq[k].unique().numel() <= 2 ** bits
    codes = weight_codes(w, bits)
    assert codes.min() >= 0 and codes.max() <= 2 ** bits - 1
    # dequantised codes are exactly the fake-quantised weights
    deq = (codes.float() - zp.view(-1, 1, 1, 1)) * scale.view(-1, 1, 1, 1)
    assert torch.allclose(deq, wq, atol=1e-6)


def test_error_shrinks_with_bits():
    w = torch.randn(8, 64, generator=_gen())
    errs = [(fake_quant_weight(w, b) - w).pow(2).mean().item() for b in INT_BITS]
    assert all(a > b for a, b in zip(errs, errs[1:]))
    # each extra bit roughly quarters the mean squared error of a uniform grid
    assert errs[2] / errs[3] == pytest.approx(4.0, rel=0.35)


@pytest.mark.parametrize("bits", [16, 32])
def test_float_bits_pass_through(bits):
    w = torch.randn(4, 3, generator=_gen())
    assert fake_quant_weight(w, bits) is w
    q = ActQuantizer(bits)
    x = torch.randn(5, 3, generator=_gen(1))
    assert torch.equal(q(x), x)


def test_weight_ste_gradient_is_identity():
    w = torch.randn(6, 5, generator=_gen(), requires_grad=True)
    g = torch.randn(6, 5, generator=_gen(1))
    (fake_quant_weight(w, 3) * g).sum().backward()
    assert torch.allclose(w.grad, g)  # min/max range: every weight is inside, gradient passes unchanged


def test_activation_ste_zero_outside_range():
    q = ActQuantizer(4, "minmax")
    with observing(q):
        q(torch.linspace(-1, 1, 11))
    x = torch.tensor([-3.0, -0.5, 0.0, 0.7, 2.5], requires_grad=True)
    y = q(x)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    # clipped to the calibrated range, up to one step of the grid (the zero point is rounded)
    assert y[0].item() == pytest.approx(-1.0, abs=2 / 15 + 1e-6) and y[-1].item() == pytest.approx(1.0, abs=2 / 15 + 1e-6)


def test_per_channel_ranges_are_independent():
    small = torch.randn(1, 32, generator=_gen()) * 1e-3
    big = torch.randn(1, 32, generator=_gen(1)) * 10.0
    w = torch.cat([small, big])
    scale, _ = weight_qparams(w, 4)
    assert scale[1] / scale[0] > 1000
    err_small = (fake_quant_weight(w, 4)[0] - small[0]).abs().max()
    assert err_small <= scale[0] / 2 + 1e-9
    # a per-tensor grid would flatten the small channel to zero
    per_tensor = torch.fake_quantize_per_tensor_affine(w, float((w.max() - w.min()) / 15),
                                                       int(torch.round(-w.min() / ((w.max() - w.min()) / 15))), 0, 15)
    assert torch.all(per_tensor[0] == 0)
    assert fake_quant_weight(w, 4)[0].unique().numel() > 8  # per channel it keeps its own 16 levels


def test_two_bit_edge_cases():
    w = torch.stack([
        torch.zeros(6),  # all zero
        torch.full((6,), 0.3),  # constant, positive (the range widens to include 0)
        torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 1.0]),  # symmetric with values on the grid edges
        torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),  # all positive
        torch.tensor([-0.6, -0.5, -0.4, -0.3, -0.2, -0.1]),  # all negative
    ])
    scale, zp = weight_qparams(w, 2)
    assert torch.all(scale > 0) and torch.all(torch.isfinite(scale))
    assert zp.min() >= 0 and zp.max() <= 3
    wq = fake_quant_weight(w, 2)
    assert torch.all(torch.isfinite(wq))
    assert torch.equal(wq[0], torch.zeros(6))
    codes = weight_codes(w, 2)
    assert codes.min() >= 0 and codes.max() <= 3
    for k in range(5):
        assert wq[k].unique().numel() <= 4
        # 0 is exactly representable on every channel's grid
        zero_code = (torch.zeros(1) / scale[k]).round() + zp[k]
        assert ((zero_code - zp[k]) * scale[k]).item() == 0.0
    assert wq[1].unique().tolist() == pytest.approx([0.3])  # the constant channel's value is the grid's top
    assert (wq[2] - w[2]).abs().max() <= scale[2] / 2 + 1e-6


@pytest.mark.parametrize("bad", [1, 9, 12, 33, 0, -4, True, "4", 4.0, None])
def test_bad_bits_are_one_line_config_errors(bad):
    with pytest.raises(ConfigError, match=r"wbits must be one of \[2, 3, 4, 5, 6, 7, 8, 16, 32\]"):
        QuantConv2d(3, 4, 3, wbits=bad)
    with pytest.raises(ConfigError, match="abits"):
        QuantLinear(3, 4, abits=bad)


def test_bad_act_mode():
    with pytest.raises(ConfigError, match=r"act_mode must be one of \['minmax', 'lsq', 'pact'\]"):
        ActQuantizer(4, "percentile")


def test_calibration_range_is_mean_of_batch_extremes():
    q = QuantLinear(3, 2, abits=8)
    batches = [torch.tensor([[0.0, 1.0, -2.0]]), torch.tensor([[4.0, 0.5, 0.0]])]
    calibrate(q, batches)
    assert q.act_quant.lo.item() == pytest.approx(-1.0)
    assert q.act_quant.hi.item() == pytest.approx(2.5)
    with observing(q, momentum=0.5):
        q(torch.tensor([[0.0, 0.0, 10.5]]))
    assert q.act_quant.hi.item() == pytest.approx(6.5)  # EMA: 2.5 + 0.5 * (10.5 - 2.5)
    hi = q.act_quant.hi.item()
    q(torch.tensor([[100.0, 0.0, 0.0]]))  # outside `observing` the range is frozen
    assert q.act_quant.hi.item() == hi


@pytest.mark.parametrize("mode", ACT_MODES)
def test_learnable_ranges_get_gradients(mode):
    conv = nn.Conv2d(3, 4, 3, padding=1)
    q = QuantConv2d.from_float(conv, 4, 4, act_mode=mode)
    x = torch.randn(4, 3, 6, 6, generator=_gen())
    calibrate(q, [x * 0.5])  # a narrower range than the data, so some inputs are clipped
    out = q(x)
    F.mse_loss(out, conv(x)).backward()
    assert q.weight.grad is not None and torch.all(torch.isfinite(q.weight.grad))
    if mode == "lsq":
        assert q.act_quant.scale.grad is not None and q.act_quant.scale.grad.abs().sum() > 0
    if mode == "pact":
        assert q.act_quant.alpha.grad is not None and q.act_quant.alpha.grad.abs().sum() > 0


def test_lsq_step_size_learns_to_reduce_error():
    lin = nn.Linear(16, 8)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(8, 16, generator=_gen(2)) * 0.25)
    q = QuantLinear.from_float(lin, 8, 3, act_mode="lsq")
    x = torch.randn(256, 16, generator=_gen(3))
    calibrate(q, [x])
    opt = torch.optim.Adam([q.act_quant.scale, q.act_quant.zero_point], lr=1e-2)
    first = None
    for _ in range(60):
        loss = F.mse_loss(q(x), lin(x).detach())
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first  # min/max is not MSE-optimal at 3 bits; LSQ finds a better step


def test_wrappers_match_float_layers_at_float_bits():
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, groups=1)
    lin = nn.Linear(7, 2)
    x, v = torch.randn(2, 3, 9, 9, generator=_gen()), torch.randn(3, 7, generator=_gen(1))
    assert torch.allclose(QuantConv2d.from_float(conv, 32, 32)(x), conv(x))
    assert torch.allclose(QuantLinear.from_float(lin, 16, 16)(v), lin(v))


def test_depthwise_conv_quantises_per_channel():
    conv = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)
    q = QuantConv2d.from_float(conv, 2, 8)
    assert q(torch.randn(1, 6, 5, 5, generator=_gen())).shape == (1, 6, 5, 5)
    assert all(q.quantized_weight()[k].unique().numel() <= 4 for k in range(6))


def _space_net():
    space = get_search_space("tiny-mnist")
    sample = {b.label: b.candidates[0] for b in space.blocks}
    return build_network(space, sample, generator=_gen())


def test_quantize_model_wraps_every_layer_and_reports_bits():
    net = _space_net()
    n_layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in net.modules())
    q = quantize_model(net, 4, 4)
    bits = layer_bits(q)
    assert len(bits) == n_layers == len(quant_layers(q))
    first = next(iter(bits))
    assert bits[first] == (4, 8)  # the image input stays at 8 bits
    assert all(v == (4, 4) for k, v in bits.items() if k != first)
    assert not any(type(m) in (nn.Conv2d, nn.Linear) for m in q.modules())
    assert any(type(m) is nn.Conv2d for m in net.modules())  # the original is untouched (copied)
    last = list(bits)[-1]
    set_layer_bits(q, {last: (8, None)})
    assert layer_bits(q)[last] == (8, 4)
    q2 = quantize_model(net, 2, 4, first_input_bits=None, layer_bits={first: (8, 8)})
    assert layer_bits(q2)[first] == (8, 8) and layer_bits(q2)[last] == (2, 4)
    x = torch.randn(2, 1, 28, 28, generator=_gen())
    assert q(x).shape == net(x).shape == (2, 10)


def test_quantize_model_errors_name_the_field():
    net = _space_net()
    with pytest.raises(ConfigError, match="layer_bits: unknown layer"):
        quantize_model(net, 4, 4, layer_bits={"nope": (4, 4)})
    with pytest.raises(ConfigError, match="wbits must be one of"):
        quantize_model(net, 1, 4)
    with pytest.raises(ConfigError, match="set_layer_bits: unknown layer"):
        set_layer_bits(quantize_model(net, 4, 4), {"nope": (4, 4)})
    with pytest.raises(ConfigError, match="no Conv2d or Linear"):
        quantize_model(nn.Sequential(nn.ReLU()), 4, 4)


def test_state_dict_records_bits_and_loads_weights_only():
    q = quantize_model(_space_net(), 3, 5, act_mode="lsq")
    calibrate(q, [torch.randn(4, 1, 28, 28, generator=_gen())])
    buf = io.BytesIO()
    torch.save(q.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = quantize_model(_space_net(), 8, 8, act_mode="lsq")
    fresh.load_state_dict(state)
    assert layer_bits(fresh) == layer_bits(q)
    x = torch.randn(2, 1, 28, 28, generator=_gen(1))
    q.eval(), fresh.eval()
    assert torch.equal(q(x), fresh(x))


def test_deterministic():
    q = quantize_model(_space_net(), 4, 4)
    x = torch.randn(3, 1, 28, 28, generator=_gen())
    calibrate(q, [x])
    q.eval()
    assert torch.equal(q(x), q(x))


class _SmallCNN(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


@pytest.fixture(scope="module")
def mnist_model():
    from search_spaces import get_data, train_network
    from search_spaces.train import evaluate_network
    data = get_data("mnist-embedded", batch_size=64, seed=0)
    gen = torch.Generator().manual_seed(0)
    model = _SmallCNN()
    for m in model.modules():  # explicit, seeded initialisation (no global RNG)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / m.weight[0].numel()) ** 0.5)
    train_network(model, data.train, 3, 0.01, "cpu", seed=0, progress=False)
    acc = evaluate_network(model, data.test, "cpu")["accuracy"]
    assert acc > 0.9
    return model, data, acc


def test_w8a8_accuracy_close_to_float_on_trained_mnist(mnist_model):
    from search_spaces.train import evaluate_network
    model, data, acc = mnist_model
    calib = [x for i, (x, _) in enumerate(data.val) if i < 4]
    accs = {}
    for w, a in ((8, 8), (2, 2)):
        q = calibrate(quantize_model(model, w, a), calib)
        accs[(w, a)] = evaluate_network(q, data.test, "cpu")["accuracy"]
    assert accs[(8, 8)] >= acc - 0.01
    assert accs[(2, 2)] < acc - 0.05  # 2 bits without fine-tuning must cost accuracy: the quantiser is live
