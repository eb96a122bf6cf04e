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

**Bit widths.**  A block of a mixed-precision space (:class:`~search_spaces.space.SearchSpace`
with ``wbits`` / ``abits``) has one logit vector per choice -- its op, its weight bits, its
activation bits -- drawn independently by the same path mode (``arch_encoding`` is their
concatenation, in :attr:`SearchSpace.choices` order).  Its candidate ops are built with
fake-quantised convolutions (:func:`~search_spaces.ops.build_quant_op`: LSQ weights with one
learnable step per bit width, PACT activations), and the drawn bit paths become gated
mixtures of quantised weights and inputs inside every conv of the op that runs
(:func:`search_spaces.quant.mixed_bits`, EdMIPS' composite convolution): a hard gate (value
1 for the drawn bits, 0 with gradient for the others) in ``gumbel`` and ``binary`` modes, the
softmax in ``darts``, the drawn bits alone in ``uniform``.  All bit choices share the op's
weights.  The layers outside the choice blocks run at the space's ``fixed_bits``.

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
import dataclasses
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from coexplore.common import ConfigError

from .ops import ConvBNAct, build_op, build_quant_op, is_skip_op
from .quant import BitGate, mixed_bits, quant_layers, quantize_model
from .space import BIT_KINDS, Block, SearchSpace, bits_label

#: The activation range rule of the quantised ops the supernet and :func:`build_network` build.
ACT_MODE = "pact"

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


def _fixed_quant(space: SearchSpace, module: nn.Module, first_input_bits: Optional[int] = None) -> nn.Module:
    """``module`` (stem, fixed stage, head, classifier) at the space's ``fixed_bits``, if set."""
    if space.fixed_bits is None or not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in module.modules()):
        return module  # float, or nothing to quantise (a fixed zero / skip / pooling layer)
    fb = space.fixed_bits
    return quantize_model(module, fb, fb, act_mode=ACT_MODE, first_input_bits=first_input_bits, inplace=True,
                          weight_mode="lsq", auto_calibrate=True)


def _stem(space: SearchSpace) -> nn.Module:
    # The image is an 8-bit signal already; the stem's input is quantised to 8 bits at most.
    first = min(8, space.fixed_bits) if space.fixed_bits is not None else None
    return _fixed_quant(space, ConvBNAct(space.input_channels, space.stem.channels, space.stem.kernel,
                                         space.stem.stride), first)


def _head(space: SearchSpace) -> Optional[nn.Module]:
    if not space.head.channels:
        return None
    return _fixed_quant(space, ConvBNAct(space.final_channels, space.head.channels, 1))


def _classifier(space: SearchSpace) -> nn.Module:
    return _fixed_quant(space, nn.Linear(space.head.channels or space.final_channels, space.num_classes))


def _bit_offer(space: SearchSpace, b: Block, kind: str) -> Tuple[int, ...]:
    """The bit widths block ``b``'s ops are built for: its choices, else ``fixed_bits`` (32: float)."""
    return b.bit_choices(kind) or ((space.fixed_bits,) if space.fixed_bits is not None else (32,))


def _block_op(space: SearchSpace, b: Block, op: str, sample: Optional[Mapping[str, Any]] = None,
              quantized: bool = True) -> nn.Module:
    """Op ``op`` for block ``b``: quantised when the block offers bits (at ``sample``'s, else its first)."""
    if not b.searched:
        return _fixed_quant(space, build_op(op, b.C_in, b.C_out, b.stride)) if quantized else \
            build_op(op, b.C_in, b.C_out, b.stride)
    if not quantized or not (b.wbits or b.abits or space.fixed_bits is not None):
        return build_op(op, b.C_in, b.C_out, b.stride)
    if sample is not None:
        w, a = space.block_bits(sample, b.label)
        wb, ab = ((w if w is not None else 32),), ((a if a is not None else 32),)
    else:
        wb, ab = _bit_offer(space, b, "wbits"), _bit_offer(space, b, "abits")
    return build_quant_op(op, b.C_in, b.C_out, b.stride, wb, ab, act_mode=ACT_MODE)


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


def build_network(space: SearchSpace, sample: Mapping[str, Any],
                  generator: Optional[torch.Generator] = None, quantized: bool = True) -> nn.Sequential:
    """A freshly initialised standalone network for one architecture of ``space``.

    The module maps ``[B, input_channels, resolution, resolution]`` to ``[B, num_classes]``
    logits; submodules are named ``stem``, ``s{i}_b{j}`` (skip ops dropped), ``head``,
    ``pool``, ``flatten``, ``dropout`` (if any) and ``classifier``.

    In a space with bit widths every conv and linear layer is fake-quantised at the sample's
    bits (LSQ weights, PACT activations; the layers outside the choice blocks at
    ``fixed_bits``), so training it is quantisation-aware training; ``quantized=False``
    builds the same network in float (the float reference).
    """
    sample = space.check_sample(sample)
    # the float reference builds its stem, fixed stages and head as if the space had no fixed_bits
    outer = space if quantized or space.fixed_bits is None else dataclasses.replace(space, fixed_bits=None)
    stem, head, cls = _stem(outer), _head(outer), _classifier(outer)
    blocks = []
    for b in space.all_blocks:
        op = sample[b.label] if b.searched else b.candidates[0]
        blocks.append((b.label, op, _block_op(space, b, op, sample, quantized)))
    return init_weights(_assemble(space, stem, blocks, head, cls), generator)



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

    def __init__(self, names: Sequence[str], C_in: int, C_out: int, stride: int,
                 build: Optional[Any] = None) -> None:
        super().__init__()
        self.names = tuple(names)
        make = build if build is not None else (lambda n: build_op(n, C_in, C_out, stride))
        self.candidates = nn.ModuleList([make(n) for n in self.names])
        self._qlayers = [[m for _, m in quant_layers(c)] for c in self.candidates]

    def forward(self, x: torch.Tensor, active: Sequence[int],
                weights: Optional[Sequence[torch.Tensor]] = None,
                probes: Optional[Sequence[bool]] = None,
                weight_gates: Optional[Sequence[BitGate]] = None,
                act_gates: Optional[Sequence[BitGate]] = None) -> torch.Tensor:
        """Run the ``active`` candidates on ``x`` (``[B, C_in, H, W]``).

        Args:
            x: input, ``[B, C_in, H, W]``.
            active: indices of the candidates to run.
            weights: one scalar tensor per active candidate; None (single path only) runs
                the op unscaled.
            probes: per active candidate, True to run it without autograd graph (its
                output only feeds its weight's gradient; the weight's value is then 0).
            weight_gates, act_gates: the bit mixtures of a quantised block
                (:func:`search_spaces.quant.mixed_bits`); None keeps each layer's own bits.

        Returns:
            ``[B, C_out, H', W']``: ``sum_k weights[k] * op_{active[k]}(x)``.
        """
        if weight_gates is not None or act_gates is not None:
            run = lambda i: self._run_mixed(i, x, weight_gates, act_gates)  # noqa: E731
        else:
            run = lambda i: self.candidates[i](x)  # noqa: E731
        if weights is None:
            return run(active[0])
        probes = probes if probes is not None else [False] * len(active)
        out = None
        for i, w, probe in zip(active, weights, probes):
            if probe:
                with torch.no_grad():
                    o = run(i)
            else:
                o = run(i)
            y = w * o
            out = y if out is None else out + y
        return out

    def _run_mixed(self, i: int, x: torch.Tensor, weight_gates: Optional[Sequence[BitGate]],
                   act_gates: Optional[Sequence[BitGate]]) -> torch.Tensor:
        with mixed_bits(self._qlayers[i], weight_gates, act_gates):
            return self.candidates[i](x)

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
                cells.append(MixedOp(b.candidates, b.C_in, b.C_out, b.stride,
                                     build=lambda n, b=b: _block_op(space, b, n)))
            else:
                cells.append(_block_op(space, b, b.candidates[0]))
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
        # per choice block, the bit widths of its wbits / abits choices (None: no such choice)
        self._bit_slots = [tuple(b.bit_choices(k) or None for k in BIT_KINDS) for b in space.blocks]
        self._fixed: Optional[Dict[str, Any]] = None

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
        """The architecture logits, one ``[num_candidates_c]`` vector per choice (a block's op, then
        its bit widths, :attr:`SearchSpace.choices`), in encoding order."""
        return list(self.arch_logits)

    def weight_parameters(self) -> List[nn.Parameter]:
        """Every other parameter (op, stem, head and classifier weights)."""
        arch = {id(p) for p in self.arch_logits}
        return [p for p in self.parameters() if id(p) not in arch]

    def arch_encoding(self) -> torch.Tensor:
        """Differentiable per-block softmax probabilities, concatenated.

        Returns:
            ``[sum(num_candidates)]`` tensor in :meth:`SearchSpace.encode`'s order: choices in
            ``space.choices`` order (per block its op, then wbits, then abits), candidates in
            declared order within a choice.
        """
        return torch.cat([F.softmax(a, dim=-1) for a in self.arch_logits])

    def arch_probabilities(self) -> Dict[str, Dict[str, float]]:
        """``{label: {op: probability}}`` for logs and reports."""
        with torch.no_grad():
            return {c.label: {str(n): float(p) for n, p in zip(c.candidates, F.softmax(a, dim=-1).cpu())}
                    for c, a in zip(self.space.choices, self.arch_logits)}

    def derive(self) -> Dict[str, str]:
        """The most likely architecture, ``{label: value}`` (argmax of each choice's logits)."""
        return {c.label: c.candidates[int(torch.argmax(a.detach()))]
                for c, a in zip(self.space.choices, self.arch_logits)}

    # ---- forward ----------------------------------------------------------------------
    def _plan(self, sample: Optional[Mapping[str, str]]) -> List[_Path]:
        """Per choice (a block's op, then its bit widths): which candidates run, with which weights."""
        if sample is not None or self._fixed is not None:
            s = self.space.check_sample(sample) if sample is not None else self._fixed
            return [_Path([c.candidates.index(s[c.label])]) for c in self.space.choices]
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
        slots = iter(self._bit_slots)
        x = self.stem(x)
        for searched, cell in zip(self._searched, self.cells):
            if searched:
                path = next(plan)
                gates = [_gates(offer, next(plan)) if offer is not None else None for offer in next(slots)]
                x = cell(x, path.active, path.weights, path.probes, gates[0], gates[1])
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
                module = copy.deepcopy(cell.candidates[b.candidates.index(op)])
                w, a = (sample.get(bits_label(b.label, k)) for k in BIT_KINDS)
                for _, q in quant_layers(module):
                    q.set_bits(w, a)  # the sample's bits; a block without that choice keeps its own
            else:
                op, module = b.candidates[0], copy.deepcopy(cell)
            blocks.append((b.label, op, module))
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


def _gates(offer: Sequence[int], path: _Path) -> List[BitGate]:
    """The bit mixture of one drawn bit-width path: ``(bits, gate, probe)`` per active candidate."""
    if path.weights is None:
        return [(int(offer[path.active[0]]), None, False)]  # type: ignore[list-item]
    probes = path.probes if path.probes is not None else [False] * len(path.active)
    return [(int(offer[i]), w, p) for i, w, p in zip(path.active, path.weights, probes)]


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
