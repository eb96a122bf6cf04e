"""The supernet: every candidate op of a :class:`~search_spaces.space.SearchSpace` in one module.

Each choice block holds all its candidate ops and one vector of architecture logits
``alpha`` (an ``nn.Parameter``, so it follows ``state_dict`` and ``.to(device)``).  How a
forward pass picks paths is the *path mode*:

* ``"gumbel"`` -- hard straight-through Gumbel-softmax (Jang et al., ICLR 2017; single
  path as in GDAS, Dong and Yang, CVPR 2019):
  ``soft = softmax((alpha + g) / tau)``, ``j = argmax(soft)``, and only op ``j`` runs, scaled
  by ``w_j = hard_j - soft_j.detach() + soft_j`` (value 1), so ``dL/dalpha`` flows through
  ``soft_j``.  Of the other terms of the straight-through sum, one (drawn uniformly and
  scaled by ``n - 1``) is kept by running its op without graph (``gumbel_probe=True``,
  the default; see :class:`Supernet`); ``gumbel_probe=False`` drops them all.
* ``"binary"`` -- ProxylessNAS binary gates (Cai et al., ICLR 2019, arXiv 1812.00332).
  With ``binary_paths=2`` (the default, ProxylessNAS' "two" mode) two distinct paths
  ``{a, b}`` are drawn from ``softmax(alpha)``, one of them (``a``) is made active with
  probability ``q = softmax(alpha[{a, b}])``, the active op runs as the output and the
  inactive one runs without graph only to measure its gate gradient
  ``dL/dg_b = <dL/dy, op_b(x)>``; the logits get ProxylessNAS' estimator
  ``dL/dalpha_i = sum_{j in {a, b}} dL/dg_j * q_j * (delta_ij - q_i)`` (zero outside the
  pair).  ``binary_paths=1`` is the single-path estimator over the full softmax,
  ``dL/dalpha_i = dL/dg_j * p_j * (delta_ij - p_i)``.
* ``"darts"`` -- the full softmax mixture ``sum_i p_i * op_i(x)`` (Liu et al., ICLR 2019);
  every op runs.
* ``"uniform"`` -- one path drawn uniformly, no architecture gradient (supernet warm-up,
  as in ProxylessNAS and single-path one-shot NAS).

A caveat of single-path estimators (``"gumbel"`` without probe, ``"binary"`` with one path): in
training mode, BatchNorm makes the next layer invariant to the scale of a block's output,
so a block whose output feeds a conv + BN directly (the last block of a stage followed by
a shape-changing block, or the last block before the head) gets ``dL/dalpha ~ 0`` from the
task loss -- its only gradient is ``<dL/dy, y> = 0``.  The two-path binary mode,
``"darts"`` and ``"gumbel"`` with its probe (the default) do not have this blind spot,
because they compare two or more ops.

Whatever the mode, :meth:`Supernet.fixed` (or ``forward(x, sample=...)``) runs one given
architecture, and :meth:`Supernet.freeze` copies it out as a standalone ``nn.Sequential``.
Randomness is explicit: paths are drawn from :attr:`Supernet.generator` (a
``torch.Generator``, set by the owner of the supernet; the search sets one per run and
epoch) and initial weights from the ``init_generator`` argument; when either is ``None``
torch's global generator is used.

The search spaces are those of DANCE (Choi et al., DAC 2021, arXiv 2009.06237) and HDX
(Hong et al., DAC 2022, arXiv 2301.09312); :meth:`Supernet.arch_encoding` is what their
hardware evaluator reads.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from coexplore.common import ConfigError

from .ops import ConvBNAct, build_op, is_skip_op
from .space import SearchSpace

logger = logging.getLogger(__name__)

PATH_MODES = ("gumbel", "binary", "darts", "uniform")


def init_weights(module: nn.Module, generator: Optional[torch.Generator] = None) -> nn.Module:
    """ProxylessNAS-style initialisation: He-normal (fan-out) convs, unit BN, small linear weights.

    Args:
        module: initialised in place.
        generator: draws the random weights (a CPU ``torch.Generator``); None uses torch's
            global generator.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            with torch.no_grad():
                w = torch.empty(m.weight.shape, dtype=m.weight.dtype)
                nn.init.kaiming_normal_(w, mode="fan_out", generator=generator)
                m.weight.copy_(w)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            with torch.no_grad():
                w = torch.empty(m.weight.shape, dtype=m.weight.dtype)
                nn.init.normal_(w, 0.0, 0.01, generator=generator)
                m.weight.copy_(w)
            nn.init.zeros_(m.bias)
    return module


def _stem(space: SearchSpace) -> nn.Module:
    return ConvBNAct(space.input_channels, space.stem.channels, space.stem.kernel, space.stem.stride)


def _head(space: SearchSpace) -> Optional[nn.Module]:
    return ConvBNAct(space.final_channels, space.head.channels, 1) if space.head.channels else None


def _classifier(space: SearchSpace) -> nn.Linear:
    return nn.Linear(space.head.channels or space.final_channels, space.num_classes)


def _assemble(space: SearchSpace, stem: nn.Module, blocks: Sequence[Tuple[str, str, nn.Module]],
              head: Optional[nn.Module], classifier: nn.Module) -> nn.Sequential:
    """The standalone network ``stem, blocks (skip ops dropped), head, pool, flatten, dropout, fc``."""
    mods: "OrderedDict[str, nn.Module]" = OrderedDict(stem=stem)
    for label, op, module in blocks:
        if not is_skip_op(op):
            mods[label.replace(".", "_")] = module
    if head is not None:
        mods["head"] = head
    mods["pool"] = nn.AdaptiveAvgPool2d(1)
    mods["flatten"] = nn.Flatten(1)
    if space.head.dropout > 0:
        mods["dropout"] = nn.Dropout(space.head.dropout)
    mods["classifier"] = classifier
    return nn.Sequential(mods)


def build_network(space: SearchSpace, sample: Mapping[str, str],
                  generator: Optional[torch.Generator] = None) -> nn.Sequential:
    """A freshly initialised standalone network for one architecture of ``space``.

    The module maps ``[B, input_channels, resolution, resolution]`` to ``[B, num_classes]``
    logits; submodules are named ``stem``, ``s{i}_b{j}`` (skip ops dropped), ``head``,
    ``pool``, ``flatten``, ``dropout`` (if any) and ``classifier``.
    """
    sample = space.check_sample(sample)
    blocks = []
    for b in space.all_blocks:
        op = sample[b.label] if b.searched else b.candidates[0]
        blocks.append((b.label, op, build_op(op, b.C_in, b.C_out, b.stride)))
    return init_weights(_assemble(space, _stem(space), blocks, _head(space), _classifier(space)), generator)


class _Path(NamedTuple):
    """What one choice block runs in one forward pass."""

    active: List[int]  # candidate indices to run
    weights: Optional[List[torch.Tensor]] = None  # scalar weight per index; None: one op, unweighted
    probes: Optional[List[bool]] = None  # per index: run without graph (gradient probe of a 0 gate)


class MixedOp(nn.Module):
    """The candidate ops of one choice block; the supernet decides which run.

    Args:
        names: candidate op names, in encoding order.
        C_in, C_out, stride: the block's geometry.
    """

    def __init__(self, names: Sequence[str], C_in: int, C_out: int, stride: int) -> None:
        super().__init__()
        self.names = tuple(names)
        self.candidates = nn.ModuleList([build_op(n, C_in, C_out, stride) for n in self.names])

    def forward(self, x: torch.Tensor, active: Sequence[int],
                weights: Optional[Sequence[torch.Tensor]] = None,
                probes: Optional[Sequence[bool]] = None) -> torch.Tensor:
        """Run the ``active`` candidates on ``x`` (``[B, C_in, H, W]``).

        Args:
            x: input, ``[B, C_in, H, W]``.
            active: indices of the candidates to run.
            weights: one scalar tensor per active candidate; None (single path only) runs
                the op unscaled.
            probes: per active candidate, True to run it without autograd graph (its
                output only feeds its weight's gradient; the weight's value is then 0).

        Returns:
            ``[B, C_out, H', W']``: ``sum_k weights[k] * op_{active[k]}(x)``.
        """
        if weights is None:
            return self.candidates[active[0]](x)
        probes = probes if probes is not None else [False] * len(active)
        out = None
        for i, w, probe in zip(active, weights, probes):
            if probe:
                with torch.no_grad():
                    o = self.candidates[i](x)
            else:
                o = self.candidates[i](x)
            y = w * o
            out = y if out is None else out + y
        return out

    def extra_repr(self) -> str:
        return f"names={list(self.names)}"


class Supernet(nn.Module):
    """All architectures of a search space in one network, with architecture logits.

    Args:
        space: the search space.
        mode: path mode, one of :data:`PATH_MODES` (settable later via ``.mode``).
        tau: Gumbel-softmax temperature (``"gumbel"`` mode only; settable via ``.tau``).
        binary_paths: paths drawn per block in ``"binary"`` mode: 2 (ProxylessNAS) or 1.
        gumbel_probe: in ``"gumbel"`` mode, also run one other op per block (uniformly
            drawn, without graph, weight value 0, so the output is unchanged) so that its
            straight-through term (scaled by ``n - 1``) reaches the logits; this removes the
            BatchNorm blind spot described in the module docstring at the cost of one extra
            no-grad op per block.  False gives the pure single-path estimator.

    Shapes: ``forward(x)`` maps ``[B, input_channels, H, W]`` to ``[B, num_classes]`` logits.
    """

    def __init__(self, space: SearchSpace, mode: str = "gumbel", tau: float = 1.0, binary_paths: int = 2,
                 gumbel_probe: bool = True, init_generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        if binary_paths not in (1, 2):
            raise ConfigError(f"supernet: binary_paths must be 1 or 2, got {binary_paths!r}")
        self.binary_paths = binary_paths
        self.gumbel_probe = bool(gumbel_probe)
        self.space = space
        self.mode = mode
        self.tau = tau
        self.stem = _stem(space)
        cells: List[nn.Module] = []
        for b in space.all_blocks:
            if b.searched:
                cells.append(MixedOp(b.candidates, b.C_in, b.C_out, b.stride))
            else:
                cells.append(build_op(b.candidates[0], b.C_in, b.C_out, b.stride))
        self.cells = nn.ModuleList(cells)
        self.head = _head(space)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(space.head.dropout) if space.head.dropout > 0 else None
        self.classifier = _classifier(space)
        init_weights(self, init_generator)
        #: draws the paths (``gumbel``, ``binary``, ``uniform`` modes); None: torch's global generator.
        #: Not part of the state: its owner (the search) re-seeds it explicitly.
        self.generator: Optional[torch.Generator] = None
        # Zero logits: the uniform distribution over candidates.
        self.arch_logits = nn.ParameterList([nn.Parameter(torch.zeros(n)) for n in space.num_candidates])
        self._searched = [b.searched for b in space.all_blocks]
        self._fixed: Optional[Dict[str, str]] = None

    # ---- settings ---------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """The path mode, one of :data:`PATH_MODES`."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in PATH_MODES:
            raise ConfigError(f"supernet: unknown path mode {value!r}; allowed modes: {list(PATH_MODES)}")
        self._mode = value

    @property
    def tau(self) -> float:
        """Gumbel-softmax temperature (> 0)."""
        return self._tau

    @tau.setter
    def tau(self, value: float) -> None:
        value = float(value)
        if not value > 0 or not math.isfinite(value):
            raise ConfigError(f"supernet: tau must be a positive number, got {value!r}")
        self._tau = value

    @contextlib.contextmanager
    def using_mode(self, mode: str, tau: Optional[float] = None) -> Iterator["Supernet"]:
        """Temporarily switch the path mode (and optionally ``tau``)."""
        old_mode, old_tau = self.mode, self.tau
        self.mode = mode
        if tau is not None:
            self.tau = tau
        try:
            yield self
        finally:
            self._mode, self._tau = old_mode, old_tau

    @contextlib.contextmanager
    def fixed(self, sample: Optional[Mapping[str, str]] = None) -> Iterator["Supernet"]:
        """Run one architecture (``sample``, or :meth:`derive`'s argmax when None) inside the block.

        In this context the forward pass runs exactly the modules :meth:`freeze` copies, with
        no architecture gradient.
        """
        old = self._fixed
        self._fixed = self.space.check_sample(sample if sample is not None else self.derive())
        try:
            yield self
        finally:
            self._fixed = old

    # ---- parameters -------------------------------------------------------------------
    def arch_parameters(self) -> List[nn.Parameter]:
        """The architecture logits, one ``[num_candidates_b]`` vector per choice block, in encoding order."""
        return list(self.arch_logits)

    def weight_parameters(self) -> List[nn.Parameter]:
        """Every other parameter (op, stem, head and classifier weights)."""
        arch = {id(p) for p in self.arch_logits}
        return [p for p in self.parameters() if id(p) not in arch]

    def arch_encoding(self) -> torch.Tensor:
        """Differentiable per-block softmax probabilities, concatenated.

        Returns:
            ``[sum(num_candidates)]`` tensor in :meth:`SearchSpace.encode`'s order: blocks in
            ``space.blocks`` order, candidates in declared order within a block.
        """
        return torch.cat([F.softmax(a, dim=-1) for a in self.arch_logits])

    def arch_probabilities(self) -> Dict[str, Dict[str, float]]:
        """``{label: {op: probability}}`` for logs and reports."""
        with torch.no_grad():
            return {b.label: {n: float(p) for n, p in zip(b.candidates, F.softmax(a, dim=-1).cpu())}
                    for b, a in zip(self.space.blocks, self.arch_logits)}

    def derive(self) -> Dict[str, str]:
        """The most likely architecture, ``{label: op}`` (argmax of each block's logits)."""
        return {b.label: b.candidates[int(torch.argmax(a.detach()))]
                for b, a in zip(self.space.blocks, self.arch_logits)}

    # ---- forward ----------------------------------------------------------------------
    def _plan(self, sample: Optional[Mapping[str, str]]) -> List[_Path]:
        """Per choice block: which candidates run, with which weights."""
        blocks = self.space.blocks
        if sample is not None or self._fixed is not None:
            s = self.space.check_sample(sample) if sample is not None else self._fixed
            return [_Path([b.candidates.index(s[b.label])]) for b in blocks]
        logits = list(self.arch_logits)
        if self.mode == "darts":
            return [_Path(list(range(a.numel())), list(F.softmax(a, dim=-1).unbind())) for a in logits]
        g = self.generator
        if self.mode == "uniform":
            n = torch.tensor([a.numel() for a in logits], dtype=torch.float64)
            u = torch.rand(len(logits), dtype=torch.float64, generator=g, device=g.device if g is not None else "cpu")
            idx = (u.cpu() * n).long().clamp_max(n.long() - 1)
            return [_Path([i]) for i in idx.tolist()]
        # Draw on the logits' device, then read every block's indices with one device sync.
        probs: List[torch.Tensor] = []
        draws: List[torch.Tensor] = []
        two = self.mode == "binary" and self.binary_paths == 2
        probe = self.mode == "gumbel" and self.gumbel_probe
        for a in logits:
            dev = g.device if g is not None else a.device  # a generator draws on its own device
            if self.mode == "gumbel":
                e = torch.empty(a.shape, dtype=a.dtype, device=dev).exponential_(generator=g)
                gumbel = -e.clamp_min(torch.finfo(a.dtype).tiny).log().to(a.device)
                p = F.softmax((a + gumbel) / self.tau, dim=-1)
                j = torch.argmax(p.detach()).view(1)
                if probe and a.numel() > 1:  # k uniform over the other candidates
                    r = torch.randint(0, a.numel() - 1, (1,), device=dev, generator=g).to(a.device)
                    j = torch.cat([j, r + (r >= j).long()])
                draws.append(j)
            elif two and a.numel() > 1:
                pair = torch.multinomial(F.softmax(a.detach(), dim=-1).to(dev), 2, replacement=False,
                                         generator=g).to(a.device)
                p = F.softmax(a[pair], dim=-1)  # ProxylessNAS: softmax restricted to the pair
                draws.append(torch.cat([pair, torch.multinomial(p.detach().to(dev), 1, generator=g).to(a.device)]))
            else:
                p = F.softmax(a, dim=-1)
                draws.append(torch.multinomial(p.detach().to(dev), 1, generator=g).to(a.device))
            probs.append(p)
        picks = torch.cat(draws).tolist() if draws else []
        plan, pos = [], 0
        for a, p in zip(logits, probs):
            if two and a.numel() > 1:
                pair, c = picks[pos:pos + 2], picks[pos + 2]
                pos += 3
                on, off = c, 1 - c
                # Gates of value 1 (active) and 0 (probe) whose gradients are those of q.
                plan.append(_Path([pair[on], pair[off]],
                                  [p[on] - p[on].detach() + 1.0, p[off] - p[off].detach()], [False, True]))
            elif probe and a.numel() > 1:
                j, k = picks[pos:pos + 2]
                pos += 2
                # The ST terms hard_i - soft_i.detach() + soft_i of j (value 1) and, scaled by
                # n - 1 so that the sum over the other ops is estimated without bias, of k (value 0).
                plan.append(_Path([j, k], [p[j] - p[j].detach() + 1.0, (a.numel() - 1) * (p[k] - p[k].detach())],
                                  [False, True]))
            else:
                j = picks[pos]
                pos += 1
                # hard - soft.detach() + soft, written so that the value is exactly 1.
                plan.append(_Path([j], [p[j] - p[j].detach() + 1.0]))
        return plan

    def forward(self, x: torch.Tensor, sample: Optional[Mapping[str, str]] = None) -> torch.Tensor:
        """Class logits.

        Args:
            x: images, ``[B, input_channels, H, W]``.
            sample: run this architecture (``{label: op}``) instead of the path mode.

        Returns:
            ``[B, num_classes]`` logits.
        """
        plan = iter(self._plan(sample))
        x = self.stem(x)
        for searched, cell in zip(self._searched, self.cells):
            if searched:
                path = next(plan)
                x = cell(x, path.active, path.weights, path.probes)
            else:
                x = cell(x)
        if self.head is not None:
            x = self.head(x)
        x = torch.flatten(self.pool(x), 1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.classifier(x)

    # ---- discrete networks ------------------------------------------------------------
    def freeze(self, sample: Optional[Mapping[str, str]] = None, inherit_weights: bool = True,
               generator: Optional[torch.Generator] = None) -> nn.Sequential:
        """A standalone network holding only the ops of one architecture.

        Args:
            sample: ``{label: op}``; None uses :meth:`derive`.
            inherit_weights: copy (deep) the supernet's modules, BN statistics included;
                otherwise build fresh, initialised modules.
            generator: draws the fresh initial weights (``inherit_weights=False`` only).

        Returns:
            An ``nn.Sequential`` as :func:`build_network` describes, on the supernet's
            device when weights are inherited.
        """
        sample = self.space.check_sample(sample if sample is not None else self.derive())
        if not inherit_weights:
            return build_network(self.space, sample, generator)
        blocks = []
        for b, cell in zip(self.space.all_blocks, self.cells):
            if b.searched:
                op = sample[b.label]
                module = cell.candidates[b.candidates.index(op)]
            else:
                op, module = b.candidates[0], cell
            blocks.append((b.label, op, copy.deepcopy(module)))
        head = copy.deepcopy(self.head) if self.head is not None else None
        return _assemble(self.space, copy.deepcopy(self.stem), blocks, head, copy.deepcopy(self.classifier))

    # ---- checkpoints ------------------------------------------------------------------
    def get_extra_state(self) -> Any:
        return {"space_fingerprint": self.space.fingerprint()}

    def set_extra_state(self, state: Any) -> None:
        fp = state.get("space_fingerprint") if isinstance(state, Mapping) else None
        if fp != self.space.fingerprint():
            raise ConfigError(f"supernet checkpoint was saved for search space fingerprint {fp!r}, "
                              f"but this supernet's space {self.space.name!r} has {self.space.fingerprint()!r}")

    def extra_repr(self) -> str:
        return (f"space={self.space.name!r}, mode={self.mode!r}, tau={self.tau:g}, "
                f"binary_paths={self.binary_paths}, gumbel_probe={self.gumbel_probe}")


@dataclass(frozen=True)
class TemperatureSchedule:
    """Exponential decay of the Gumbel-softmax temperature, as in FBNet and DANCE.

    ``tau(epoch) = tau0 * (tau_min / tau0) ** (epoch / (epochs - 1))``, held at ``tau_min``
    from epoch ``epochs - 1`` on.
    """

    tau0: float = 5.0  # temperature at epoch 0
    tau_min: float = 0.5  # temperature at the last epoch and after
    epochs: int = 100  # epochs over which the temperature decays

    def __post_init__(self) -> None:
        if not (self.tau0 > 0 and self.tau_min > 0):
            raise ConfigError(f"temperature schedule: tau0 and tau_min must be positive, got {self.tau0}, {self.tau_min}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"temperature schedule: epochs must be a positive integer, got {self.epochs!r}")

    def __call__(self, epoch: int) -> float:
        if self.epochs == 1:
            return float(self.tau_min)
        t = min(max(epoch, 0) / (self.epochs - 1), 1.0)
        return float(self.tau0 * (self.tau_min / self.tau0) ** t)

    def apply(self, supernet: Supernet, epoch: int) -> float:
        """Set ``supernet.tau`` for ``epoch``; returns the value."""
        supernet.tau = self(epoch)
        return supernet.tau
