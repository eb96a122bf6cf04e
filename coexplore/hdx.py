"""HDX gradient manipulation: hard constraints in a differentiable co-exploration.

Implements the gradient manipulation of HDX (Hong et al., "Enabling Hard Constraints in
Differentiable Neural Network and Accelerator Co-Exploration", DAC 2022, arXiv
2301.09312), which builds on DPM (Kim et al., "DPM: A Novel Training Method for
Physics-Informed Neural Networks in Extrapolation", AAAI 2021).

The rule.  Let ``g`` be the gradient of the search loss w.r.t. the architecture
parameters and ``a_i = grad t_i`` the gradient of the (surrogate) constrained metric
``t_i`` of every *violated* constraint ``t_i <= T_i``.  The manipulated gradient is
``g + m`` with the smallest correction

    m = sum_i alpha_i a_i,  alpha >= 0,  minimising |m|^2
    subject to (g + m) . a_i >= delta_i  for every violated i,

so that a descent step along ``g + m`` lowers every violated ``t_i`` to first order
(by at least ``lr * delta_i``).  With one constraint this is DPM's
``m = max(0, (delta - g.a) / |a|^2) a``.  With several it is a tiny QP whose KKT
conditions already put ``m`` in the cone of the ``a_i``; :func:`min_norm_correction`
solves it exactly by enumerating active sets (at most ``2^k - 1`` linear systems of
size ``<= k``).  Constraints whose ``a_i`` vanishes are skipped with a warning; if the
margins contradict each other (e.g. ``a_2 = -a_1``) no ``m`` meets them all and the
non-negative least-squares compromise ``min_{alpha >= 0} |K alpha - b|`` is used.
Nothing changes while no constraint is violated.

The margin.  ``delta_i = kappa_i * |g| * |a_i|``: the requirement reads
``(g + m) . a_i / |a_i| >= kappa_i |g|``, i.e. the manipulated gradient must descend
along ``t_i`` with at least ``kappa_i`` times the loss gradient's own size.  This is
scale-free twice over: rescaling ``t_i`` (seconds vs milliseconds, or dividing by the
bound) leaves ``m`` unchanged, and rescaling the loss scales ``m`` with ``g``, so
``kappa`` means the same for every metric and every loss weight.  (A margin relative to
``|a_i|^2`` alone would depend on the unit of ``t_i``.)  When the loss gradient
vanishes the margin falls back to ``kappa_i |a_i|^2`` (``m = kappa_i a_i``: a plain
descent step on ``t_i``).

The schedule.  ``kappa_i`` starts at ``kappa0``, is multiplied by ``growth`` (capped at
``kappa_max``) after every step on which constraint ``i`` is violated, and is multiplied
by ``decay`` (floored at ``kappa0``) after every step on which it is met, so a
persistent violation is pushed harder and harder and the push relaxes once the design is
inside the bound.  How fast it relaxes is a trade-off (``docs/hdx.md``).  With the argmax
design on a step-wise cost, a push that halves on every met step (the default ``decay =
0.5``) let the task loss pull the design back across the bound within a few steps
(``experiments/results/hdx-decay-probe.md``: the final design met the bound in 2 of 4 seeds
at 0.5, in 4 of 4 at 0.95), and the constraint suite runs at 0.95; on a smooth problem a slow
relaxation overshoots instead (the toy of ``tests/coexplore/test_hdx.py`` ends 6.5 % inside
its bound at 0.95, at the constrained optimum at 0.5).  The state is a few plain numbers (:meth:`HDXManipulator.state_dict`)
that a search checkpoints with its other state.

Use in a search step (architecture update)::

    loss.backward(retain_graph=True)        # or recompute the terms after backward()
    hdx_step(manipulator, arch_params, [latency_pred], [c.target_bound])
    optimizer.step()
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .common import ConfigError

from .constraints import Constraint

logger = logging.getLogger(__name__)

TensorOrList = Union[torch.Tensor, Sequence[torch.Tensor]]

#: Above this many simultaneously violated constraints active-set enumeration gets slow.
MAX_ENUMERATED = 12


def _flatten(x: TensorOrList) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.reshape(-1)
    return torch.cat([t.reshape(-1) for t in x]) if len(x) else torch.zeros(0)


def _flatten_like(x: Union[None, TensorOrList], like: TensorOrList, ref: torch.Tensor) -> torch.Tensor:
    """Flatten ``x`` (``None`` entries are zeros of the matching ``like`` entry) onto ``ref``."""
    if x is None:
        return torch.zeros_like(ref)
    if isinstance(x, torch.Tensor):
        out = x.reshape(-1)
    else:
        parts = like if not isinstance(like, torch.Tensor) else [like]
        if len(x) != len(parts):
            raise ValueError(f"constraint gradient has {len(x)} tensors, the loss gradient {len(parts)}")
        out = torch.cat([(torch.zeros_like(p) if t is None else t).reshape(-1) for t, p in zip(x, parts)])
    if out.numel() != ref.numel():
        raise ValueError(f"constraint gradient has {out.numel()} elements, the loss gradient {ref.numel()}")
    return out.to(ref)


def _unflatten(flat: torch.Tensor, like: TensorOrList) -> TensorOrList:
    if isinstance(like, torch.Tensor):
        return flat.reshape(like.shape)
    out, i = [], 0
    for t in like:
        out.append(flat[i:i + t.numel()].reshape(t.shape))
        i += t.numel()
    return out


def min_norm_correction(g: torch.Tensor, grads_t: torch.Tensor, delta: Union[torch.Tensor, Sequence[float]]
                        ) -> Tuple[torch.Tensor, torch.Tensor, bool]:
    """The least-norm ``m = alpha @ grads_t`` (``alpha >= 0``) with ``(g + m) . a_i >= delta_i``.

    Args:
        g: ``[P]`` loss gradient.
        grads_t: ``[k, P]`` constraint gradients (rows must be non-zero).
        delta: ``[k]`` required margins.

    Returns:
        ``m`` (``[P]``, dtype/device of ``g``), ``alpha`` (``[k]``, float64 on CPU) and
        whether every margin is met (false only for contradictory constraints, where
        the non-negative least-squares compromise is returned).
    """
    k = grads_t.shape[0]
    if k == 0:
        return torch.zeros_like(g), torch.zeros(0, dtype=torch.float64), True
    A = grads_t.to(torch.float64)
    K = (A @ A.T).cpu().numpy()  # [k, k] Gram matrix
    c = (A @ g.to(torch.float64)).cpu().numpy()  # [k] current dots g . a_i
    b = np.asarray(torch.as_tensor(delta, dtype=torch.float64).cpu(), dtype=np.float64) - c  # extra dot needed
    alpha = np.zeros(k)
    ok = True
    if np.any(b > 0):
        if k > MAX_ENUMERATED:
            raise ConfigError(f"HDX: {k} simultaneous constraints; at most {MAX_ENUMERATED} are supported")
        tol = 1e-9 * (np.abs(b).max() + np.abs(c).max() + 1e-300)
        best, best_norm = None, math.inf
        for size in range(1, k + 1):
            for S in itertools.combinations(range(k), size):
                S = list(S)
                lam = np.linalg.lstsq(K[np.ix_(S, S)], b[S], rcond=None)[0]
                if np.any(lam < -1e-12 * max(1.0, np.abs(lam).max())):
                    continue
                lam = np.clip(lam, 0.0, None)
                if np.any(K[:, S] @ lam - b < -tol):
                    continue
                norm = float(lam @ K[np.ix_(S, S)] @ lam)
                if norm < best_norm:
                    best, best_norm = (S, lam), norm
        if best is not None:
            alpha[best[0]] = best[1]
        else:
            from scipy.optimize import nnls
            alpha = nnls(K, b)[0]
            ok = False
            logger.warning("HDX: the violated constraints pull in contradictory directions; their margins cannot "
                           "all be met, using the least-squares compromise (alpha=%s)", np.round(alpha, 6).tolist())
    alpha_t = torch.as_tensor(alpha, dtype=torch.float64)
    m = (alpha_t.to(A.device) @ A).to(g.dtype)
    return m, alpha_t, ok


class HDXManipulator:
    """Minimal-norm gradient correction for violated hard constraints, with a margin schedule.

    Args:
        num_constraints: k, the number of constraints (fixed; their order is the index).
        kappa0: starting (and floor) relative margin.
        growth: factor on ``kappa_i`` after a step on which constraint i is violated (>= 1).
        decay: factor on ``kappa_i`` after a step on which it is met (in (0, 1]).
        kappa_max: cap on ``kappa_i``.
        zero_tol: a constraint gradient with norm <= this is treated as zero and skipped.

    Attributes:
        last_stats: what the last :meth:`manipulate` did (plain numbers, for logging):
            per constraint ``kappa``, ``delta``, ``alpha``, ``dot_before`` / ``dot_after``
            (``g . a_i`` and ``(g + m) . a_i``), ``skipped``; and ``grad_norm``,
            ``correction_norm``, ``margins_met``.
    """

    def __init__(self, num_constraints: int, kappa0: float = 0.1, growth: float = 1.5, decay: float = 0.5,
                 kappa_max: float = 10.0, zero_tol: float = 1e-12) -> None:
        if not (isinstance(num_constraints, int) and num_constraints >= 0):
            raise ConfigError(f"HDX: num_constraints must be an integer >= 0, got {num_constraints!r}")
        for name, v, ok in (("kappa0", kappa0, kappa0 >= 0), ("growth", growth, growth >= 1),
                            ("decay", decay, 0 < decay <= 1), ("kappa_max", kappa_max, kappa_max >= kappa0),
                            ("zero_tol", zero_tol, zero_tol >= 0)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and ok):
                raise ConfigError(f"HDX: {name}={v!r} is out of range (kappa0 >= 0, growth >= 1, 0 < decay <= 1, "
                                  f"kappa_max >= kappa0, zero_tol >= 0)")
        self.num_constraints = num_constraints
        self.kappa0, self.growth, self.decay = float(kappa0), float(growth), float(decay)
        self.kappa_max, self.zero_tol = float(kappa_max), float(zero_tol)
        self.kappa: List[float] = [self.kappa0] * num_constraints
        self.violated_steps: List[int] = [0] * num_constraints  # consecutive violated steps
        self.steps = 0
        self.last_stats: Dict[str, Any] = {}

    # ---- the rule ---------------------------------------------------------------------
    def manipulate(self, grad: TensorOrList, constraint_grads: Sequence[Union[None, TensorOrList]],
                   violated: Sequence[bool]) -> TensorOrList:
        """The manipulated gradient ``g + m`` (see the module docstring); state is not advanced.

        Args:
            grad: the loss gradient ``g``: a ``[P]`` tensor, or a list of tensors of any
                shapes (one per architecture parameter), flattened and concatenated.
            constraint_grads: k entries, the gradient of each constraint's metric ``t_i``
                in the same layout as ``grad`` (list entries may be ``None`` = zero);
                entries of constraints that are not violated may be ``None``.
            violated: k flags, whether ``t_i`` exceeds its bound now.

        Returns:
            The manipulated gradient in the layout of ``grad`` (``grad`` itself when
            nothing is violated or no correction is needed).
        """
        k = self.num_constraints
        if len(constraint_grads) != k or len(violated) != k:
            raise ValueError(f"HDX: expected {k} constraint gradients and flags, got "
                             f"{len(constraint_grads)} and {len(violated)}")
        g = _flatten(grad)
        gnorm = float(g.norm())
        stats: Dict[str, Any] = {"violated": [bool(v) for v in violated], "kappa": list(self.kappa),
                                 "delta": [0.0] * k, "alpha": [0.0] * k, "dot_before": [0.0] * k,
                                 "dot_after": [0.0] * k, "skipped": [False] * k, "grad_norm": gnorm,
                                 "correction_norm": 0.0, "margins_met": True}
        self.last_stats = stats
        rows, idx, deltas = [], [], []
        for i, (gt, v) in enumerate(zip(constraint_grads, violated)):
            if not v:
                continue
            a = _flatten_like(gt, grad, g)
            an = float(a.norm())
            if not an > self.zero_tol:
                logger.warning("HDX: constraint %d is violated but its gradient is zero (|grad t| = %.3g); "
                               "it cannot be steered this step", i, an)
                stats["skipped"][i] = True
                continue
            rows.append(a)
            idx.append(i)
            deltas.append(self.kappa[i] * (gnorm if gnorm > self.zero_tol else an) * an)
        if not rows:
            return grad
        A = torch.stack(rows)  # [k', P]
        m, alpha, ok = min_norm_correction(g, A, deltas)
        before = (A @ g).tolist()
        after = (A @ (g + m)).tolist()
        for j, i in enumerate(idx):
            stats["delta"][i], stats["alpha"][i] = float(deltas[j]), float(alpha[j])
            stats["dot_before"][i], stats["dot_after"][i] = float(before[j]), float(after[j])
        stats["correction_norm"], stats["margins_met"] = float(m.norm()), ok
        if not bool(torch.any(alpha > 0)):
            return grad
        return _unflatten(g + m, grad)

    # ---- the schedule -----------------------------------------------------------------
    def update(self, violated: Sequence[bool]) -> None:
        """Advance the margin schedule after a step: grow ``kappa_i`` where violated, relax it elsewhere."""
        if len(violated) != self.num_constraints:
            raise ValueError(f"HDX: expected {self.num_constraints} flags, got {len(violated)}")
        for i, v in enumerate(violated):
            if v:
                self.kappa[i] = min(self.kappa_max, self.kappa[i] * self.growth)
                self.violated_steps[i] += 1
            else:
                self.kappa[i] = max(self.kappa0, self.kappa[i] * self.decay)
                self.violated_steps[i] = 0
        self.steps += 1

    def state_dict(self) -> Dict[str, Any]:
        """The schedule state: plain numbers (JSON/YAML/``torch.save``-able)."""
        return {"kappa": [float(x) for x in self.kappa], "violated_steps": [int(x) for x in self.violated_steps],
                "steps": int(self.steps)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a different number of constraints fails loudly."""
        if not isinstance(state, dict) or set(state) != {"kappa", "violated_steps", "steps"}:
            raise ConfigError(f"HDX state: expected keys ['kappa', 'steps', 'violated_steps'], got "
                              f"{sorted(state) if isinstance(state, dict) else type(state).__name__}")
        if len(state["kappa"]) != self.num_constraints or len(state["violated_steps"]) != self.num_constraints:
            raise ConfigError(f"HDX state is for {len(state['kappa'])} constraints, this manipulator has "
                              f"{self.num_constraints}")
        self.kappa = [float(x) for x in state["kappa"]]
        self.violated_steps = [int(x) for x in state["violated_steps"]]
        self.steps = int(state["steps"])

    def __repr__(self) -> str:
        return (f"HDXManipulator(num_constraints={self.num_constraints}, kappa0={self.kappa0}, growth={self.growth}, "
                f"decay={self.decay}, kappa_max={self.kappa_max})")


def hdx_step(manipulator: HDXManipulator, arch_params: Union[torch.Tensor, Sequence[torch.Tensor]],
             terms: Sequence[torch.Tensor], bounds: Sequence[Union[float, Constraint]],
             violated: Optional[Sequence[bool]] = None, margin: float = 0.0) -> Dict[str, Any]:
    """Manipulate the architecture gradients in place for violated constraints.

    Call after ``loss.backward()`` (the loss gradient ``g`` is read from ``.grad``) and
    before ``optimizer.step()``.  The terms need a live autograd graph: compute them
    after ``backward()`` or call ``loss.backward(retain_graph=True)``.  Advances the
    manipulator's margin schedule.

    Args:
        manipulator: its ``num_constraints`` must equal ``len(terms)``.
        arch_params: the architecture parameters (a tensor or a list); a missing
            ``.grad`` counts as zero and is created.
        terms: k scalar tensors, the surrogate of each constrained metric (the
            constraint's :attr:`~coexplore.constraints.Constraint.target_metric`, in the
            unit of its bound) as a differentiable function of ``arch_params``.
        bounds: k upper bounds ``T_i`` (floats, or :class:`Constraint` objects whose
            ``target_bound`` is used: ``fps >= 60`` bounds latency by 1/60 s).
        violated: k flags overriding the check ``t_i > T_i`` (e.g. when the exact
            analytical cost of the derived design decides instead of the surrogate).
        margin: treat ``t_i > (1 - margin) T_i`` as violated, to aim slightly inside the
            bound (0: exactly at it).

    Returns:
        Plain numbers for logging: ``values``, ``bounds``, ``normalized_g`` (``t/T - 1``),
        ``violated`` and the manipulator's ``last_stats`` and ``kappa`` after the update.
    """
    params = [arch_params] if isinstance(arch_params, torch.Tensor) else list(arch_params)
    k = len(terms)
    if len(bounds) != k or manipulator.num_constraints != k:
        raise ValueError(f"hdx_step: {k} terms, {len(bounds)} bounds, manipulator for "
                         f"{manipulator.num_constraints} constraints")
    T = [float(b.target_bound) if isinstance(b, Constraint) else float(b) for b in bounds]
    values = [float(t.detach()) for t in terms]
    if violated is None:
        violated = [v > bound - margin * abs(bound) for v, bound in zip(values, T)]
    violated = [bool(v) for v in violated]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    cgrads: List[Optional[List[Optional[torch.Tensor]]]] = []
    for t, bound, v in zip(terms, T, violated):
        if not v or not t.requires_grad:
            cgrads.append(None)
            continue
        # Divide by the bound so that zero_tol is relative to the bound (the rule itself is scale-free).
        scaled = t / abs(bound) if bound != 0 else t
        cgrads.append(list(torch.autograd.grad(scaled, params, retain_graph=True, allow_unused=True)))
    new = manipulator.manipulate(grads, cgrads, violated)
    for p, old, n in zip(params, grads, new):
        if n is old and p.grad is not None:
            continue
        if p.grad is None:
            p.grad = n.detach().clone()
        else:
            p.grad.copy_(n)
    stats = dict(manipulator.last_stats)
    manipulator.update(violated)
    stats.update(values=values, bounds=T, violated=violated, kappa_next=list(manipulator.kappa),
                 normalized_g=[v / b - 1.0 if b else v for v, b in zip(values, T)])
    return stats


class HDXSteering:
    """HDX's step of the search loop: the manipulator applied to the surrogate's constraint terms.

    For every constraint whose surrogate value exceeds its internal target
    (:class:`~coexplore.penalty.ConstraintTargets`), the architecture gradient is corrected
    by :meth:`HDXManipulator.manipulate` so that the step also decreases that metric; then
    the margin schedule advances.

    Args:
        targets: the internal targets (steered by the calibrator).
        manipulator: the gradient manipulation with its margin schedule.
    """

    def __init__(self, targets, manipulator: HDXManipulator) -> None:
        if len(targets) != manipulator.num_constraints:
            raise ValueError(f"HDX: {len(targets)} targets but a manipulator for {manipulator.num_constraints}")
        self.targets = targets
        self.manipulator = manipulator
        self.last_violated: List[bool] = [False] * len(targets)

    def adjust(self, grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
               out: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        """The manipulated architecture gradients.

        Args:
            grads: the loss gradient, one tensor per architecture parameter.
            params: the architecture parameters (the graph of ``out`` must still be alive).
            out: the hardware cost's outputs (``latency_s``, ``energy_j``, ``area_mm2``).
        """
        terms = self.targets.terms(out)
        violated = [bool(t.detach() > target) for t, target in terms]
        t_grads: List[Optional[List[torch.Tensor]]] = []
        for (t, _), v in zip(terms, violated):
            if v and t.requires_grad:
                gt = torch.autograd.grad(t, params, retain_graph=True, allow_unused=True)
                t_grads.append([g if g is not None else torch.zeros_like(p) for g, p in zip(gt, params)])
            else:
                t_grads.append(None)
        new = self.manipulator.manipulate(list(grads), t_grads, violated)
        self.manipulator.update(violated)
        self.last_violated = violated
        return list(new)

    def state_dict(self) -> Dict[str, Any]:
        return {"manipulator": self.manipulator.state_dict(), "targets": self.targets.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if not isinstance(state, dict) or sorted(state) != ["manipulator", "targets"]:
            raise ConfigError("HDX steering state: expected keys ['manipulator', 'targets']")
        self.manipulator.load_state_dict(state["manipulator"])
        self.targets.load_state_dict(state["targets"])
