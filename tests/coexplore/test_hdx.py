"""HDX gradient manipulation on hand-made gradients, the margin schedule, and a toy search."""

import json
import logging

import numpy as np
import pytest
import torch

from accelerators import ConfigError
from coexplore.constraints import Constraint
from coexplore.hdx import HDXManipulator, hdx_step, min_norm_correction

DT = torch.float64


def rand(n, seed):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=DT)


# ---- one constraint ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_single_constraint_closed_form_and_margin(seed):
    a = rand(6, seed)
    g = -0.7 * a + 0.3 * rand(6, seed + 100)  # a loss gradient that *increases* t
    man = HDXManipulator(1, kappa0=0.2)
    out = man.manipulate(g, [a], [True])
    delta = 0.2 * g.norm() * a.norm()
    m_expected = torch.clamp((delta - g @ a) / (a @ a), min=0) * a
    assert torch.allclose(out - g, m_expected, atol=1e-12)
    assert float(out @ a) >= float(delta) * (1 - 1e-9)
    assert man.last_stats["delta"][0] == pytest.approx(float(delta))
    assert man.last_stats["dot_after"][0] == pytest.approx(float(delta))


def test_nothing_changes_when_met_or_when_g_already_descends():
    a, g = rand(5, 0), rand(5, 1)
    man = HDXManipulator(1)
    assert man.manipulate(g, [a], [False]) is g
    assert man.manipulate(g, [None], [False]) is g
    g_good = 2.0 * a  # g . a = 2|a|^2 >= kappa |g||a| = 0.2 |a|^2
    assert man.manipulate(g_good, [a], [True]) is g_good
    assert man.last_stats["alpha"] == [0.0]
    assert man.kappa == [0.1]  # manipulate() does not advance the schedule


def test_sgd_step_decreases_t_to_first_order():
    # t(x) = w.x + 0.5 x'Qx (a quadratic), f(x) = |x - a|^2 with a pulling t up.
    w, a = rand(4, 2), 3 * rand(4, 2)
    Q = torch.diag(torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=DT))
    x = 0.1 * rand(4, 3)
    t = lambda z: w @ z + 0.5 * z @ Q @ z  # noqa: E731
    g, gt = 2 * (x - a), w + Q @ x
    assert float(g @ gt) < 0  # plain descent on f raises t
    lr = 1e-3
    assert float(t(x - lr * g)) > float(t(x))
    out = HDXManipulator(1, kappa0=0.5).manipulate(g, [gt], [True])
    assert float(out @ gt) >= 0.5 * float(g.norm() * gt.norm()) * (1 - 1e-9)
    assert float(t(x - lr * out)) < float(t(x))


def test_scale_free_in_the_constraint_metric():
    a, g = rand(5, 4), -rand(5, 4)
    m1 = HDXManipulator(1).manipulate(g, [a], [True]) - g
    m2 = HDXManipulator(1).manipulate(g, [1e-6 * a], [True]) - g  # t in seconds instead of microseconds
    assert torch.allclose(m1, m2, rtol=1e-9, atol=1e-12)
    m3 = HDXManipulator(1).manipulate(10 * g, [a], [True]) - 10 * g  # loss scaled by 10
    assert torch.allclose(m3, 10 * m1, rtol=1e-9, atol=1e-12)


# ---- several constraints -----------------------------------------------------------------------
def _brute_force_min_norm(g, A, delta, hi, n=601):
    al = np.linspace(0, hi, n)
    a1, a2 = np.meshgrid(al, al, indexing="ij")
    M = a1[..., None] * A[0].numpy() + a2[..., None] * A[1].numpy()  # [n, n, P]
    after = (g.numpy() + M) @ A.numpy().T  # [n, n, 2]
    feas = np.all(after >= delta.numpy() - 1e-12, axis=-1)
    norms = np.where(feas, np.linalg.norm(M, axis=-1), np.inf)
    return norms.min()


@pytest.mark.parametrize("seed", range(4))
def test_two_constraints_minimal_versus_grid(seed):
    A = torch.stack([rand(3, 10 + seed), rand(3, 20 + seed)])
    g = -(A[0] + A[1]) + 0.2 * rand(3, 30 + seed)
    delta = torch.tensor([0.3, 0.5], dtype=DT) * g.norm() * A.norm(dim=1)
    m, alpha, ok = min_norm_correction(g, A, delta)
    assert ok and torch.all(alpha >= 0)
    assert torch.all(A @ (g + m) >= delta - 1e-9)
    hi = 1.5 * float(alpha.max()) + 1.0
    grid = _brute_force_min_norm(g, A, delta, hi)
    assert float(m.norm()) <= grid + 1e-9  # never worse than any grid point
    assert float(m.norm()) >= grid - 3 * hi / 600 * float(A.norm(dim=1).sum())  # and the grid gets close


@pytest.mark.parametrize("seed", range(6))
def test_rule_composes_for_several_constraints(seed):
    k = 2 + seed % 3
    A = torch.stack([rand(8, 40 + seed * 7 + i) for i in range(k)])
    g = -A.sum(0) + rand(8, 90 + seed)
    man = HDXManipulator(k, kappa0=0.3)
    out = man.manipulate(g, list(A), [True] * k)
    delta = 0.3 * g.norm() * A.norm(dim=1)
    assert torch.all(A @ out >= delta * (1 - 1e-9)), (A @ out, delta)
    assert man.last_stats["margins_met"] and all(x >= 0 for x in man.last_stats["alpha"])


def test_orthogonal_constraints_decouple():
    a1 = torch.tensor([1.0, 0, 0, 0], dtype=DT)
    a2 = torch.tensor([0, 2.0, 0, 0], dtype=DT)
    g = torch.tensor([-1.0, -1.0, 0.5, 0.0], dtype=DT)
    both = HDXManipulator(2).manipulate(g, [a1, a2], [True, True]) - g
    one = HDXManipulator(1).manipulate(g, [a1], [True]) - g
    two = HDXManipulator(1).manipulate(g, [a2], [True]) - g
    assert torch.allclose(both, one + two, atol=1e-12)


def test_obtuse_constraints_are_both_met():
    a1 = torch.tensor([1.0, 0.0], dtype=DT)
    a2 = torch.tensor([-0.6, 0.8], dtype=DT)  # 127 degrees apart: fixing one alone hurts the other
    g = torch.tensor([-0.2, -1.0], dtype=DT)
    man = HDXManipulator(2, kappa0=0.2)
    out = man.manipulate(g, [a1, a2], [True, True])
    d = 0.2 * float(g.norm())
    assert float(out @ a1) >= d * (1 - 1e-9) and float(out @ a2) >= d * (1 - 1e-9)
    single = HDXManipulator(1, kappa0=0.2).manipulate(g, [a2], [True])
    assert float(single @ a1) < d  # one correction alone would break the other margin


def test_collinear_constraints(caplog):
    a = rand(4, 5)
    g = -a
    man = HDXManipulator(2, kappa0=0.1)
    out = man.manipulate(g, [a, 3 * a], [True, True])
    assert float(out @ a) >= 0.1 * float(g.norm() * a.norm()) * (1 - 1e-9)
    assert man.last_stats["margins_met"]


def test_contradictory_constraints_compromise_with_a_warning(caplog):
    a = rand(4, 6)
    g = rand(4, 7)
    man = HDXManipulator(2)
    with caplog.at_level(logging.WARNING, logger="coexplore.hdx"):
        out = man.manipulate(g, [a, -a], [True, True])
    assert torch.all(torch.isfinite(out)) and not man.last_stats["margins_met"]
    assert "contradictory" in caplog.text


def test_zero_constraint_gradient_is_skipped(caplog):
    g, a = rand(5, 8), rand(5, 9)
    man = HDXManipulator(2)
    with caplog.at_level(logging.WARNING, logger="coexplore.hdx"):
        out = HDXManipulator(1).manipulate(g, [torch.zeros(5, dtype=DT)], [True])
    assert out is g and "gradient is zero" in caplog.text
    out = man.manipulate(-a, [torch.zeros(5, dtype=DT), a], [True, True])  # the other one still acts
    assert man.last_stats["skipped"] == [True, False]
    assert float(out @ a) >= 0.1 * float(a.norm() ** 2) * (1 - 1e-9)


def test_zero_loss_gradient_still_descends():
    a = rand(3, 11)
    out = HDXManipulator(1, kappa0=0.5).manipulate(torch.zeros(3, dtype=DT), [a], [True])
    assert torch.allclose(out, 0.5 * a)


def test_list_of_tensors_matches_flat():
    shapes = [(2, 3), (4,), (1, 1, 2)]
    g = [rand(int(np.prod(s)), 12 + i).reshape(s) for i, s in enumerate(shapes)]
    a = [rand(int(np.prod(s)), 22 + i).reshape(s) for i, s in enumerate(shapes)]
    gf, af = torch.cat([x.reshape(-1) for x in g]), torch.cat([x.reshape(-1) for x in a])
    gf = gf - 2 * af  # make sure a correction happens
    g = list(torch.split(gf, [int(np.prod(s)) for s in shapes]))
    g = [x.reshape(s) for x, s in zip(g, shapes)]
    out = HDXManipulator(1).manipulate(g, [a], [True])
    flat = HDXManipulator(1).manipulate(gf, [af], [True])
    assert isinstance(out, list) and [o.shape for o in out] == [torch.Size(s) for s in shapes]
    assert torch.allclose(torch.cat([o.reshape(-1) for o in out]), flat)
    a_none = [a[0], None, a[2]]  # an unused parameter has no gradient
    out = HDXManipulator(1).manipulate(g, [a_none], [True])
    assert torch.allclose(out[1], g[1])


def test_shape_mismatch_fails_loudly():
    man = HDXManipulator(1)
    with pytest.raises(ValueError, match="elements"):
        man.manipulate(torch.zeros(3), [torch.ones(4)], [True])
    with pytest.raises(ValueError, match="expected 1"):
        man.manipulate(torch.zeros(3), [torch.ones(3), torch.ones(3)], [True, True])


# ---- schedule and state ---------------------------------------------------------------------------
def test_delta_grows_while_violated_and_relaxes_when_met():
    man = HDXManipulator(2, kappa0=0.1, growth=2.0, decay=0.5, kappa_max=1.0)
    a, g = rand(4, 13), -rand(4, 13)
    deltas = []
    for _ in range(6):
        man.manipulate(g, [a, None], [True, False])
        deltas.append(man.last_stats["delta"][0])
        man.update([True, False])
    assert all(d2 > d1 for d1, d2 in zip(deltas[:3], deltas[1:4]))  # grows ...
    assert man.kappa[0] == pytest.approx(1.0) and deltas[-1] == pytest.approx(deltas[-2])  # ... up to the cap
    assert man.kappa[1] == pytest.approx(0.1) and man.violated_steps == [6, 0]
    man.update([False, False])
    assert man.kappa[0] == pytest.approx(0.5) and man.violated_steps == [0, 0]
    for _ in range(10):
        man.update([False, False])
    assert man.kappa == [pytest.approx(0.1)] * 2  # relaxed back to kappa0, not below


def test_state_dict_round_trip():
    man = HDXManipulator(3, growth=1.7)
    for v in ([True, False, True], [True, True, False], [True, False, False]):
        man.update(v)
    state = json.loads(json.dumps(man.state_dict()))
    other = HDXManipulator(3, growth=1.7)
    other.load_state_dict(state)
    assert other.state_dict() == man.state_dict()
    for v in ([False, True, True], [True, True, True]):
        man.update(v)
        other.update(v)
    assert other.kappa == man.kappa
    with pytest.raises(ConfigError, match="3 constraints"):
        HDXManipulator(2).load_state_dict(state)
    with pytest.raises(ConfigError, match="expected keys"):
        HDXManipulator(3).load_state_dict({"kappa": [0.1] * 3})


@pytest.mark.parametrize("kwargs", [dict(kappa0=-1), dict(growth=0.5), dict(decay=0), dict(decay=1.5),
                                    dict(kappa0=2, kappa_max=1), dict(num_constraints=-1)])
def test_bad_settings_are_rejected(kwargs):
    kwargs = {"num_constraints": 1, **kwargs}
    with pytest.raises(ConfigError):
        HDXManipulator(**kwargs)


# ---- hdx_step and a toy search -----------------------------------------------------------------------
def test_hdx_step_writes_grad_only_when_violated():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = torch.tensor([[0.5]], requires_grad=True)
    man = HDXManipulator(2)
    lat = x.sum() + y.sum()  # 3.5
    en = (x * x).sum()  # 5
    loss = -(lat + en)  # descent on the loss raises both metrics
    loss.backward(retain_graph=True)
    g0 = (x.grad.clone(), y.grad.clone())
    info = hdx_step(man, [x, y], [lat, en], [10.0, 10.0])  # both met
    assert torch.equal(x.grad, g0[0]) and torch.equal(y.grad, g0[1])
    assert info["violated"] == [False, False] and info["normalized_g"][0] == pytest.approx(-0.65)
    info = hdx_step(man, [x, y], [lat, en], [1.0, Constraint("energy", "<=", 2.0)])  # both violated
    assert info["violated"] == [True, True] and man.kappa == [pytest.approx(0.15)] * 2
    gx, gy = x.grad, y.grad
    for t in (lat, en):
        gt = torch.autograd.grad(t, [x, y], retain_graph=True, allow_unused=True)
        dot = sum(float((p * q).sum()) for p, q in zip((gx, gy), gt) if q is not None)
        assert dot > 0  # the step now lowers both
    json.dumps(info)


def test_hdx_step_fps_bound_and_missing_grad():
    x = torch.tensor([0.02], requires_grad=True)  # x.grad is None: zero loss gradient
    latency = 2 * x  # 40 ms
    man = HDXManipulator(1, kappa0=0.5)
    info = hdx_step(man, x, [latency], [Constraint.parse("fps >= 30")])
    assert info["violated"] == [True] and info["bounds"][0] == pytest.approx(1 / 30)
    assert x.grad is not None and float(x.grad) > 0  # descent lowers latency


def test_toy_search_reaches_a_feasible_point():
    """min |x - a|^2 s.t. w.x <= T, with a infeasible: plain SGD ends at a, HDX at the boundary."""
    a = torch.tensor([2.0, 1.0, -0.5, 1.5])
    w = torch.tensor([1.0, 2.0, 0.5, 1.0])
    T, steps = 1.0, 200
    x_star = a - (w @ a - T) / (w @ w) * w  # the constrained optimum

    def run(use_hdx, margin):
        x = torch.zeros(4, requires_grad=True)
        opt = torch.optim.SGD([x], lr=0.05)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
        man = HDXManipulator(1)
        ts = []
        for _ in range(steps):
            opt.zero_grad()
            t = w @ x
            ((x - a) ** 2).sum().backward(retain_graph=True)
            if use_hdx:
                hdx_step(man, [x], [t], [T], margin=margin)
            opt.step()
            sched.step()
            ts.append(float(w @ x.detach()))
        return x.detach(), ts

    x, _ = run(False, 0.0)
    assert float(w @ x) > 5.0  # plain SGD violates the bound by 5x
    x, ts = run(True, 0.02)
    assert max(ts[-20:]) <= T  # feasible at the end, every step
    assert float(w @ x) >= 0.95 * T and float((x - x_star).norm()) < 0.05  # and not needlessly far inside
    x, ts = run(True, 0.0)
    assert abs(float(w @ x) - T) < 0.01 and float((x - x_star).norm()) < 0.01


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_manipulate_on_cuda():
    g, a1, a2 = (rand(7, s).float().cuda() for s in (14, 15, 16))
    g = g - a1 - a2
    out = HDXManipulator(2).manipulate(g, [a1, a2], [True, True])
    assert out.device == g.device and out.dtype == torch.float32
    ref = HDXManipulator(2).manipulate(g.cpu(), [a1.cpu(), a2.cpu()], [True, True])
    assert torch.allclose(out.cpu(), ref, atol=1e-5)
