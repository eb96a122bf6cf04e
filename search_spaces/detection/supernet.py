"""Detectors of a :class:`~search_spaces.detection.space.DetectionSpace`: the supernet and standalone networks.

:class:`DetectionSupernet` holds every candidate of every choice block of the space, with one
vector of architecture logits per block, and picks paths exactly as
:class:`search_spaces.supernet.Supernet` does -- it *is* one (its path modes, Gumbel / binary
gates / DARTS / uniform, its ``fixed`` and ``derive``, its checkpoint guard), with the
network body replaced by the detector's: stem, backbone stages, the neck choice (every
neck candidate carries the head's stems; see :mod:`~search_spaces.detection.necks`), the
decoupled head.  ``forward(x)`` maps ``[B, C, R, R]`` images to the ``[B, A, 8 + K]`` output
of :mod:`~search_spaces.detection.heads`.

:func:`build_detector` makes a freshly initialised standalone :class:`Detector` for one
architecture; :meth:`DetectionSupernet.freeze` copies one out with the supernet's weights.
:func:`measurement_units` lists the modules a per-block latency table measures.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from coexplore.common import ConfigError

from ..supernet import MixedOp, Supernet, init_weights
from .heads import YOLOXHead
from .necks import NeckWithStems
from .ops import Focus, BaseConv, build_det_op, get_det_op
from .space import DetBlock, DetectionSpace


def _stem(space: DetectionSpace) -> nn.Module:
    if space.stem.kind == "focus":
        return Focus(space.input_channels, space.stem_channels, space.stem.kernel, space.act)
    return BaseConv(space.input_channels, space.stem_channels, space.stem.kernel, 2, act=space.act)


def _head(space: DetectionSpace) -> YOLOXHead:
    return YOLOXHead(space.head_channels, space.num_classes, space.level_strides, space.head.convs,
                     space.head.dw, space.act)


def build_block(space: DetectionSpace, b: DetBlock, op: str) -> nn.Module:
    """The module of candidate ``op`` of block ``b``: a backbone op, or a neck with the head's stems."""
    if b.kind == "neck":
        return NeckWithStems(op, space.level_channels, space.neck_depth, space.head_channels, space.act)
    return build_det_op(op, b.C_in, b.C_out, b.stride, space.act)


def _finish_init(module: nn.Module, generator: Optional[torch.Generator]) -> nn.Module:
    """He-normal convs (ProxylessNAS' init), then the head's predictors as YOLOX starts them."""
    init_weights(module, generator)
    for m in module.modules():
        if isinstance(m, YOLOXHead):
            m.init_predictors(generator)
    return module


class Detector(nn.Module):
    """A standalone detector: ``stem``, ``stages`` (one ``nn.Sequential`` each), ``neck`` (with the
    head's stems), ``head``.

    Shapes: ``[B, C, R, R]`` images to the ``[B, A, 8 + K]`` output of
    :mod:`~search_spaces.detection.heads`.
    """

    def __init__(self, stem: nn.Module, stages: Sequence[nn.Module], neck: nn.Module, head: YOLOXHead) -> None:
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.neck = neck
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        feats = []
        for st in self.stages:
            x = st(x)
            feats.append(x)
        return self.head(self.neck(feats[-3:]))


def _assemble(space: DetectionSpace, stem: nn.Module, modules: Sequence[Tuple[DetBlock, str, nn.Module]],
              head: YOLOXHead) -> Detector:
    stages: List[List[Tuple[str, nn.Module]]] = [[] for _ in space.stages]
    neck = None
    for b, op, m in modules:
        if b.kind == "neck":
            neck = m
        elif not get_det_op(op).skip:
            stages[b.stage].append((b.label.split(".", 1)[1], m))
    return Detector(stem, [nn.Sequential(OrderedDict(s)) for s in stages], neck, head)


def build_detector(space: DetectionSpace, sample: Mapping[str, str],
                   generator: Optional[torch.Generator] = None) -> Detector:
    """A freshly initialised standalone detector for one architecture of ``space``.

    Args:
        space: the detection space.
        sample: ``{label: op}`` for every choice block.
        generator: draws the initial weights (a CPU ``torch.Generator``); None: torch's global one.
    """
    sample = space.check_sample(sample)
    mods = [(b, op, build_block(space, b, op))
            for b in space.all_blocks for op in [sample[b.label] if b.searched else b.candidates[0]]]
    return _finish_init(_assemble(space, _stem(space), mods, _head(space)), generator)


class _MixedBlock(MixedOp):
    """The candidates of one backbone choice block (built from the detection op registry)."""

    def __init__(self, names: Sequence[str], modules: Sequence[nn.Module]) -> None:
        nn.Module.__init__(self)
        self.names = tuple(names)
        self.candidates = nn.ModuleList(modules)


class _MixedNeck(_MixedBlock):
    """The neck candidates; like :class:`~search_spaces.supernet.MixedOp`, on a tuple of three maps."""

    def forward(self, feats, active, weights=None, probes=None):  # noqa: D102 - as MixedOp.forward
        if weights is None:
            return self.candidates[active[0]](feats)
        probes = probes if probes is not None else [False] * len(active)
        out = None
        for i, w, probe in zip(active, weights, probes):
            if probe:
                with torch.no_grad():
                    o = self.candidates[i](feats)
            else:
                o = self.candidates[i](feats)
            y = [w * t for t in o]
            out = y if out is None else [a + b for a, b in zip(out, y)]
        return tuple(out)


class DetectionSupernet(Supernet):
    """Every architecture of a detection space in one network (see the module docstring).

    Args:
        space: the detection space.
        mode, tau, binary_paths, gumbel_probe, init_generator: as
            :class:`search_spaces.supernet.Supernet`.

    Shapes: ``forward(x)`` maps ``[B, input_channels, R, R]`` to ``[B, A, 8 + num_classes]``.
    """

    def __init__(self, space: DetectionSpace, mode: str = "gumbel", tau: float = 1.0, binary_paths: int = 2,
                 gumbel_probe: bool = True, init_generator: Optional[torch.Generator] = None) -> None:
        if not isinstance(space, DetectionSpace):
            raise ConfigError(f"detection supernet: space must be a DetectionSpace, got {type(space).__name__}")
        nn.Module.__init__(self)
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
            mods = [build_block(space, b, op) for op in b.candidates]
            if b.searched:
                cells.append((_MixedNeck if b.kind == "neck" else _MixedBlock)(b.candidates, mods))
            else:
                cells.append(mods[0])
        self.cells = nn.ModuleList(cells)
        self.head = _head(space)
        _finish_init(self, init_generator)
        self.generator: Optional[torch.Generator] = None
        self.arch_logits = nn.ParameterList([nn.Parameter(torch.zeros(n)) for n in space.num_candidates])
        self._searched = [b.searched for b in space.all_blocks]
        self._fixed = None

    def forward(self, x: torch.Tensor, sample: Optional[Mapping[str, str]] = None) -> torch.Tensor:
        """Detector output ``[B, A, 8 + K]`` for images ``x`` ``[B, C, R, R]`` (``sample``: run that architecture)."""
        plan = iter(self._plan(sample))
        x = self.stem(x)
        stage_out: List[Optional[torch.Tensor]] = [None] * len(self.space.stages)
        out = None
        for b, searched, cell in zip(self.space.all_blocks, self._searched, self.cells):
            if b.kind == "neck":
                feats = stage_out[-3:]
                if searched:
                    path = next(plan)
                    out = cell(feats, path.active, path.weights, path.probes)
                else:
                    out = cell(feats)
                continue
            if searched:
                path = next(plan)
                x = cell(x, path.active, path.weights, path.probes)
            else:
                x = cell(x)
            stage_out[b.stage] = x
        return self.head(out)

    def freeze(self, sample: Optional[Mapping[str, str]] = None, inherit_weights: bool = True,
               generator: Optional[torch.Generator] = None) -> Detector:
        """A standalone :class:`Detector` of one architecture (``sample``, or :meth:`derive`'s).

        Args:
            sample: ``{label: op}``; None uses :meth:`derive`.
            inherit_weights: deep-copy the supernet's modules (BN statistics included);
                otherwise :func:`build_detector` with ``generator``.
            generator: draws fresh initial weights (``inherit_weights=False`` only).
        """
        sample = self.space.check_sample(sample if sample is not None else self.derive())
        if not inherit_weights:
            return build_detector(self.space, sample, generator)
        mods = []
        for b, cell in zip(self.space.all_blocks, self.cells):
            if b.searched:
                op = sample[b.label]
                m = cell.candidates[b.candidates.index(op)]
            else:
                op, m = b.candidates[0], cell
            mods.append((b, op, copy.deepcopy(m)))
        return _assemble(self.space, copy.deepcopy(self.stem), mods, copy.deepcopy(self.head))


# ---- what a per-block latency table measures ------------------------------------------------------

def _zeros(*shape: int) -> torch.Tensor:
    return torch.zeros(shape)


def block_inputs(space: DetectionSpace, b: DetBlock, N: int = 1) -> Tuple[Any, ...]:
    """The positional arguments block ``b``'s module takes, as zero tensors of batch ``N``."""
    if b.kind == "neck":
        return (tuple(_zeros(N, c, h, w) for c, (h, w) in zip(space.level_channels, space.level_hws)),)
    return (_zeros(N, b.C_in, *b.in_hw),)


def measurement_units(space: DetectionSpace, N: int = 1):
    """The modules a per-block latency table measures, each with its example inputs.

    Returns:
        ``(fixed, candidates)``: ``fixed`` lists ``(name, module, args)`` for the stem, the
        fixed blocks and the head (whose sum is what every architecture runs);
        ``candidates`` maps ``(label, op)`` to ``(module, args)`` for every non-skip candidate
        of every choice block.  Fresh modules in eval mode; the measurement folds their
        BatchNorm.
    """
    fixed = [("stem", _stem(space), (_zeros(N, space.input_channels, space.resolution, space.resolution),))]
    cands = {}
    for b in space.all_blocks:
        if not b.searched:
            fixed.append((b.label, build_block(space, b, b.candidates[0]), block_inputs(space, b, N)))
            continue
        for op in b.candidates:
            if b.kind != "neck" and get_det_op(op).skip:
                continue
            cands[(b.label, op)] = (build_block(space, b, op), block_inputs(space, b, N))
    head_in = tuple(_zeros(N, space.head_channels, h, w) for h, w in space.level_hws)
    fixed.append(("head", _head(space), (head_in,)))
    for _, m, _ in fixed:
        m.eval()
    for m, _ in cands.values():
        m.eval()
    return fixed, cands
