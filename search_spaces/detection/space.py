"""A search space of one-stage, anchor-free detectors in the YOLOX style.

The macro-architecture is YOLOX's (Ge et al., "YOLOX: Exceeding YOLO Series in 2021",
arXiv 2107.08430): a stem (``focus`` space-to-depth + conv, or a stride-2 conv), backbone
stages that each halve the resolution, a neck on the last three stages (strides 8, 16, 32)
and a decoupled head.  The searched parts are those the lightweight-detector studies vary:

* per backbone stage, the op of its stride-2 ``down`` layer and of each of its ``layers``
  body positions (:mod:`~search_spaces.detection.ops`: regular 3x3, depthwise-separable,
  MBConv with kernel / expansion choices, ghost, shuffle, CSP with 1-3 bottlenecks, SPP,
  ``skip`` -- a skipped position is how depth is searched, as in ProxylessNAS);
* the neck (:mod:`~search_spaces.detection.necks`: ``pan``, ``pan_dw``, ``fpn``, ``lite``);
* ``width`` and ``depth`` multipliers scale every channel count (``int(c * width)``, as
  YOLOX) and every stage's number of body positions (``max(1, round(layers * depth))``) and
  the neck's CSP depth.

**Additivity, honestly.**  Every choice is a choice block with a ``label`` and candidates,
and a sample is a plain ``dict[label, op]`` -- the vocabulary of
:class:`search_spaces.space.SearchSpace`, with the same methods, so the analytical model,
the :class:`~coexplore.pricing.CostTable`, the DANCE evaluator and HDX take this space
unchanged.  A priced layer list must then be a sum over blocks:
``layers(s) == fixed_layers() + sum_b candidate_layers(b, s[b])`` exactly (as multisets).
Two choices would break that and are therefore *not* block choices:

* the **neck**'s output widths change the head's per-level input convs, so every neck
  candidate carries those convs (YOLOX's ``stems``) -- the neck block holds all the layers
  its choice changes, and the rest of the head is fixed;
* the **width multiplier** changes the layers of every block at once, so it is a parameter
  of the space (one space per width, as YOLOX's nano/tiny/s are one family), not a block
  choice; a search over widths is a sweep over spaces, each priced exactly.

The body positions of a stage keep its width, so their ops never change another block.

Labels: ``s{i}.down``, ``s{i}.spp`` (fixed), ``s{i}.b{j}``, ``neck``.  Encoding order:
blocks in execution order (stage by stage: down, body positions), the neck last; within a
block the candidates in declared order.

Built-ins (:data:`DETECTION_SPACES`): ``yolox-tiny-search`` (COCO, 416x416, YOLOX-tiny's
width 0.375 / depth 0.33, with YOLOX-tiny itself as its ``reference`` architecture) and
``det-mnist`` (the embedded demo: 96x96 grey canvases of MNIST digits, 10 classes).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from accelerators.workload import Layer, conv
from coexplore.common import ConfigError, PathLike, Registry, UnknownNameError, check_keys, read_yaml, write_yaml

from . import ops as _ops
from ..space import Choice
from .heads import head_layers
from .necks import NECKS, neck_layers

Sample = Dict[str, str]
STEM_KINDS = ("focus", "conv")
#: The key that marks a detection space in a mapping or YAML file (``kind: detection``).
KIND = "detection"


@dataclass(frozen=True)
class DetStem:
    """The stem: ``focus`` (space-to-depth + ``kernel`` conv) or ``conv`` (``kernel`` conv, stride 2)."""

    channels: int  # output channels before the width multiplier
    kind: str = "focus"  # one of STEM_KINDS
    kernel: int = 3  # square kernel, pixels (odd)


@dataclass(frozen=True)
class DetStage:
    """A backbone stage: a stride-2 ``down`` layer, an optional SPP, then ``layers`` body positions."""

    channels: int  # output channels before the width multiplier
    layers: int  # body positions before the depth multiplier
    down: Optional[Union[str, Tuple[str, ...]]] = None  # op of the stride-2 layer (fixed) or candidates; None: the space's
    candidates: Optional[Tuple[str, ...]] = None  # body candidates; None: the space's
    first_candidates: Optional[Tuple[str, ...]] = None  # candidates of body position 0; None: as candidates
    op: Optional[str] = None  # fixed op of every body position (no search)
    spp: bool = False  # a fixed SPP bottleneck after the down layer (YOLOX's dark5)


@dataclass(frozen=True)
class DetNeck:
    """The neck choice: candidates from :data:`~search_spaces.detection.necks.NECKS` (one name: fixed)."""

    candidates: Union[str, Tuple[str, ...]] = ("pan", "pan_dw", "fpn", "lite")  # neck names; a string is fixed
    depth: int = 3  # bottlenecks of the neck's CSP layers before the depth multiplier


@dataclass(frozen=True)
class DetHead:
    """YOLOX's decoupled head (fixed)."""

    channels: int = 256  # branch width before the width multiplier
    convs: int = 2  # 3x3 convs per branch
    dw: bool = False  # depthwise-separable branch convs


@dataclass(frozen=True)
class DetBlock:
    """One layer position of the detector, searched (a choice block) or fixed."""

    label: str  # "s{i}.down", "s{i}.spp", "s{i}.b{j}" or "neck"
    candidates: Tuple[str, ...]  # op (or neck) names in encoding order; one name when fixed
    searched: bool  # a choice block
    kind: str  # "down", "spp", "body" or "neck"
    stage: int  # stage index (-1 for the neck)
    index: int  # body position (-1 for down, spp and neck)
    C_in: int  # input channels (the neck: that of its last input)
    C_out: int  # output channels (the neck: head_channels at every level)
    stride: int  # spatial stride (1 for the neck)
    in_hw: Tuple[int, int]  # input (H, W), pixels (the neck: that of its last input)
    out_hw: Tuple[int, int]  # output (H, W), pixels

    @property
    def keeps_shape(self) -> bool:
        return self.C_in == self.C_out and self.stride == 1


def _int(value: Any, where: str, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ConfigError(f"{where} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _mult(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < float(value) <= 4) \
            or not math.isfinite(float(value)):
        raise ConfigError(f"{where} must be a number in (0, 4], got {value!r}")
    return float(value)


def _names(value: Any, where: str, registry: Registry, allow_str: bool = False) -> Union[str, Tuple[str, ...]]:
    if isinstance(value, str):
        if not allow_str:
            raise ConfigError(f"{where} must be a list of names, got the string {value!r}")
        try:
            registry.get(value)
        except UnknownNameError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return value.lower()
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where} must be a non-empty list of names, got {value!r}")
    out = []
    for v in value:
        if not isinstance(v, str):
            raise ConfigError(f"{where}: names are strings, got {v!r}")
        try:
            registry.get(v)
        except UnknownNameError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        out.append(v.lower())
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ConfigError(f"{where} repeats {dup}")
    return tuple(out)


@dataclass(frozen=True)
class DetectionSpace:
    """A YOLOX-style detector search space (see the module docstring).

    Construct directly, with :meth:`from_dict` or from YAML with :meth:`from_yaml`; values are
    validated on construction and errors name the field.  Example YAML::

        kind: detection
        name: my-detector
        resolution: 320
        input_channels: 3
        num_classes: 80
        width: 0.25
        depth: 0.33
        stem: {channels: 64, kind: focus}
        down: [conv3, dw3]
        candidates: [csp1, mb3_e3, ghost, skip]
        stages:
          - {channels: 128, layers: 3, first_candidates: [csp1, mb3_e3, ghost]}
          - {channels: 256, layers: 9, first_candidates: [csp1, mb3_e3, ghost]}
          - {channels: 512, layers: 9, first_candidates: [csp1, mb3_e3, ghost]}
          - {channels: 1024, layers: 3, spp: true, first_candidates: [csp1_ns, mb3_e3]}
        neck: {candidates: [pan, fpn, lite], depth: 3}
        head: {channels: 256, convs: 2}
    """

    stem: DetStem  # the stem
    stages: Tuple[DetStage, ...]  # backbone stages, each halving the resolution (>= 3; the neck takes the last 3)
    neck: DetNeck = DetNeck()  # the neck choice
    head: DetHead = DetHead()  # the decoupled head
    down: Union[str, Tuple[str, ...]] = "conv3"  # default op / candidates of the stages' down layers
    candidates: Tuple[str, ...] = ()  # default body candidates
    width: float = 1.0  # width multiplier: channels = int(c * width)
    depth: float = 1.0  # depth multiplier: positions = max(1, round(layers * depth)), also the neck's CSP depth
    act: str = "silu"  # activation of every BaseConv, one of ops.ACTIVATIONS
    resolution: int = 416  # input height = width, pixels; a multiple of the last stage's stride
    input_channels: int = 3  # image channels
    num_classes: int = 80  # object classes
    name: str = "custom-detection"  # label for logs; not part of the fingerprint
    reference: Optional[Mapping[str, str]] = None  # a named reference architecture; not part of the fingerprint

    #: The task this space is trained and scored for (:mod:`search_spaces.tasks`).
    task = "detection"

    # ---- validation -------------------------------------------------------------------
    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"detection space: name must be a non-empty string, got {self.name!r}")
        w = f"detection space {self.name!r}"
        for f in ("resolution", "input_channels", "num_classes"):
            object.__setattr__(self, f, _int(getattr(self, f), f"{w}: {f}"))
        object.__setattr__(self, "width", _mult(self.width, f"{w}: width"))
        object.__setattr__(self, "depth", _mult(self.depth, f"{w}: depth"))
        if self.act not in _ops.ACTIVATIONS:
            raise ConfigError(f"{w}: act {self.act!r} is unknown; allowed values: {sorted(_ops.ACTIVATIONS)}")
        if not isinstance(self.stem, DetStem):
            raise ConfigError(f"{w}: stem must be a DetStem, got {type(self.stem).__name__}")
        if self.stem.kind not in STEM_KINDS:
            raise ConfigError(f"{w}: stem.kind {self.stem.kind!r} is unknown; allowed values: {list(STEM_KINDS)}")
        k = _int(self.stem.kernel, f"{w}: stem.kernel")
        if k % 2 == 0:
            raise ConfigError(f"{w}: stem.kernel must be odd, got {k}")
        object.__setattr__(self, "stem", DetStem(_int(self.stem.channels, f"{w}: stem.channels"), self.stem.kind, k))
        object.__setattr__(self, "down", _names(self.down, f"{w}: down", _ops.DETECTION_OPS, allow_str=True))
        if isinstance(self.candidates, (list, tuple)) and not self.candidates:
            object.__setattr__(self, "candidates", ())
        else:
            object.__setattr__(self, "candidates", _names(self.candidates, f"{w}: candidates", _ops.DETECTION_OPS))
        if isinstance(self.stages, (str, bytes, Mapping)) or not isinstance(self.stages, (list, tuple)):
            raise ConfigError(f"{w}: stages must be a list of at least 3 stages")
        if len(self.stages) < 3:
            raise ConfigError(f"{w}: stages must list at least 3 stages (the neck takes the last three), "
                              f"got {len(self.stages)}")
        stages = []
        for i, st in enumerate(self.stages):
            ws = f"{w}: stages[{i}]"
            if not isinstance(st, DetStage):
                raise ConfigError(f"{ws} must be a DetStage, got {type(st).__name__}")
            kw: Dict[str, Any] = {"channels": _int(st.channels, f"{ws}.channels"),
                                  "layers": _int(st.layers, f"{ws}.layers")}
            if st.down is not None:
                kw["down"] = _names(st.down, f"{ws}.down", _ops.DETECTION_OPS, allow_str=True)
            if st.op is not None:
                if st.candidates is not None or st.first_candidates is not None:
                    raise ConfigError(f"{ws}: a fixed stage (op={st.op!r}) takes no candidates or first_candidates")
                kw["op"] = _names(st.op, f"{ws}.op", _ops.DETECTION_OPS, allow_str=True)
            for f in ("candidates", "first_candidates"):
                if getattr(st, f) is not None:
                    kw[f] = _names(getattr(st, f), f"{ws}.{f}", _ops.DETECTION_OPS)
            if not isinstance(st.spp, bool):
                raise ConfigError(f"{ws}.spp must be true or false, got {st.spp!r}")
            kw["spp"] = st.spp
            if st.op is None and kw.get("candidates") is None and not self.candidates:
                raise ConfigError(f"{ws} is searched but has no candidates: set stages[{i}].candidates, the "
                                  f"space's candidates, or a fixed op")
            stages.append(DetStage(**kw))
        object.__setattr__(self, "stages", tuple(stages))
        if not isinstance(self.neck, DetNeck):
            raise ConfigError(f"{w}: neck must be a DetNeck, got {type(self.neck).__name__}")
        object.__setattr__(self, "neck", DetNeck(_names(self.neck.candidates, f"{w}: neck.candidates", NECKS,
                                                        allow_str=True), _int(self.neck.depth, f"{w}: neck.depth")))
        if not isinstance(self.head, DetHead):
            raise ConfigError(f"{w}: head must be a DetHead, got {type(self.head).__name__}")
        if not isinstance(self.head.dw, bool):
            raise ConfigError(f"{w}: head.dw must be true or false, got {self.head.dw!r}")
        object.__setattr__(self, "head", DetHead(_int(self.head.channels, f"{w}: head.channels"),
                                                 _int(self.head.convs, f"{w}: head.convs", lo=0), self.head.dw))
        last = self.level_strides[-1]
        if self.resolution % last:
            raise ConfigError(f"{w}: resolution must be a multiple of {last} (the stride of the last stage), "
                              f"got {self.resolution}")
        for f, v in (("stem.channels", self.stem.channels), ("head.channels", self.head.channels),
                     *((f"stages[{i}].channels", st.channels) for i, st in enumerate(self.stages))):
            if self.scaled(v) < 1:
                raise ConfigError(f"{w}: {f} = {v} x width {self.width:g} leaves no channel")
        if self.scaled(self.stages[-3].channels) % 2 or self.scaled(self.stages[-2].channels) % 2 or \
                self.head_channels % 2:
            raise ConfigError(f"{w}: the neck's CSP layers split channels in two, so the last three stages' "
                              f"and the head's scaled channels must be even")
        self.__dict__["all_blocks"] = self._build_blocks()
        if self.reference is not None:
            if not isinstance(self.reference, Mapping):
                raise ConfigError(f"{w}: reference must be a mapping label -> op, got {type(self.reference).__name__}")
            try:
                ref = self.check_sample(self.reference)
            except ConfigError as exc:
                raise ConfigError(f"{w}: reference: {exc}") from None
            object.__setattr__(self, "reference", ref)

    # ---- derived geometry -----------------------------------------------------------------
    def scaled(self, channels: int) -> int:
        """``int(channels * width)``, YOLOX's scaling."""
        return int(channels * self.width)

    def positions(self, stage: DetStage) -> int:
        """Body positions of a stage after the depth multiplier."""
        return max(1, int(round(stage.layers * self.depth)))

    @property
    def stem_channels(self) -> int:
        return self.scaled(self.stem.channels)

    @property
    def stem_hw(self) -> Tuple[int, int]:
        h = _ops.out_size(self.resolution, 2)
        return (h, h)

    @property
    def stage_channels(self) -> Tuple[int, ...]:
        return tuple(self.scaled(st.channels) for st in self.stages)

    @property
    def level_channels(self) -> Tuple[int, int, int]:
        """Channels of the three maps the neck takes (the last three stages)."""
        c = self.stage_channels
        return (c[-3], c[-2], c[-1])

    @property
    def level_strides(self) -> Tuple[int, int, int]:
        """Strides of the three detection levels, pixels."""
        n = len(self.stages)
        return tuple(2 ** (i + 2) for i in range(n - 3, n))  # type: ignore[return-value]

    @property
    def level_hws(self) -> Tuple[Tuple[int, int], ...]:
        n = len(self.stages)
        out = []
        h = self.stem_hw[0]
        for i in range(n):
            h = _ops.out_size(h, 2)
            if i >= n - 3:
                out.append((h, h))
        return tuple(out)

    @property
    def head_channels(self) -> int:
        return self.scaled(self.head.channels)

    @property
    def neck_depth(self) -> int:
        return max(1, int(round(self.neck.depth * self.depth)))

    @property
    def num_anchors(self) -> int:
        """Anchor points (grid cells) over the three levels."""
        return int(sum(h * w for h, w in self.level_hws))

    def _build_blocks(self) -> Tuple[DetBlock, ...]:
        out: List[DetBlock] = []
        c, hw = self.stem_channels, self.stem_hw
        for si, st in enumerate(self.stages):
            co = self.scaled(st.channels)
            down = st.down if st.down is not None else self.down
            src = f"stages[{si}].down" if st.down is not None else "down"
            ohw = (_ops.out_size(hw[0], 2), _ops.out_size(hw[1], 2))
            searched = not isinstance(down, str)
            cands = tuple(down) if searched else (down,)
            out.append(self._checked(DetBlock(f"s{si}.down", cands, searched, "down", si, -1, c, co, 2, hw, ohw), src))
            c, hw = co, ohw
            if st.spp:
                out.append(self._checked(DetBlock(f"s{si}.spp", ("spp",), False, "spp", si, -1, c, c, 1, hw, hw),
                                         f"stages[{si}].spp"))
            for j in range(self.positions(st)):
                if st.op is not None:
                    cands, src, searched = (st.op,), f"stages[{si}].op", False
                elif j == 0 and st.first_candidates is not None:
                    cands, src, searched = st.first_candidates, f"stages[{si}].first_candidates", True
                elif st.candidates is not None:
                    cands, src, searched = st.candidates, f"stages[{si}].candidates", True
                else:
                    cands, src, searched = self.candidates, "candidates", True
                out.append(self._checked(DetBlock(f"s{si}.b{j}", tuple(cands), searched, "body", si, j, c, c, 1,
                                                  hw, hw), src))
        neck = self.neck.candidates
        searched = not isinstance(neck, str)
        out.append(DetBlock("neck", tuple(neck) if searched else (neck,), searched, "neck", -1, -1,
                            self.level_channels[-1], self.head_channels, 1, self.level_hws[-1], self.level_hws[-1]))
        return tuple(out)

    def _checked(self, b: DetBlock, src: str) -> DetBlock:
        for op in b.candidates:
            why = _ops.op_problem(op, b.C_in, b.C_out, b.stride)
            if why:
                raise ConfigError(f"detection space {self.name!r}: {src}: block {b.label} "
                                  f"({b.C_in} -> {b.C_out} channels, stride {b.stride}): {why}")
        return b

    # ---- structure (the SearchSpace protocol) ---------------------------------------------
    @cached_property
    def all_blocks(self) -> Tuple[DetBlock, ...]:
        """Every layer position after the stem, fixed and searched, in execution order."""
        return self._build_blocks()

    @cached_property
    def blocks(self) -> Tuple[DetBlock, ...]:
        """The choice blocks, in encoding order."""
        return tuple(b for b in self.all_blocks if b.searched)

    @cached_property
    def _by_label(self) -> Dict[str, DetBlock]:
        return {b.label: b for b in self.all_blocks}

    @cached_property
    def choices(self) -> Tuple[Choice, ...]:
        """Every labelled choice, in encoding order: one per block (its op; no bit widths)."""
        return tuple(Choice(b.label, tuple(b.candidates), b.label, "op") for b in self.blocks)

    has_bits = False  # a detection space offers no bit-width choices

    @property
    def labels(self) -> List[str]:
        return [b.label for b in self.blocks]

    @property
    def num_candidates(self) -> List[int]:
        return [len(b.candidates) for b in self.blocks]

    @property
    def encoding_size(self) -> int:
        return int(sum(self.num_candidates))

    @cached_property
    def offsets(self) -> Tuple[int, ...]:
        """Start of each block's slice in the encoding (``len(blocks) + 1`` entries)."""
        return tuple(int(v) for v in np.concatenate([[0], np.cumsum(self.num_candidates)]))

    @property
    def all_samples_count(self) -> int:
        n = 1
        for k in self.num_candidates:
            n *= k
        return n

    def block(self, label: str) -> DetBlock:
        try:
            return self._by_label[label]
        except KeyError:
            raise ConfigError(f"detection space {self.name!r}: unknown block label {label!r}; "
                              f"choice blocks: {self.labels}") from None

    # ---- samples ----------------------------------------------------------------------
    def check_sample(self, sample: Mapping[str, str]) -> Sample:
        """Validate a ``{label: op}`` sample; returns it with lower-case names, in block order."""
        if not isinstance(sample, Mapping):
            raise ConfigError(f"sample: expected a mapping label -> op, got {type(sample).__name__}")
        missing = [l for l in self.labels if l not in sample]
        extra = [l for l in sample if l not in self._by_label or not self._by_label[l].searched]
        if missing or extra:
            raise ConfigError(f"sample for detection space {self.name!r}: missing labels {missing}, unknown labels "
                              f"{extra}; expected labels: {self.labels}")
        out: Sample = {}
        for b in self.blocks:
            v = sample[b.label]
            op = v.lower() if isinstance(v, str) else v
            if op not in b.candidates:
                raise ConfigError(f"sample: {b.label}={v!r} is not a candidate; allowed: {list(b.candidates)}")
            out[b.label] = op
        return out

    def sample(self, rng: Union[int, np.random.Generator, None] = None) -> Sample:
        """One architecture drawn uniformly, reproducible from ``rng`` (a seed or a Generator)."""
        rng = np.random.default_rng(rng)
        return {b.label: b.candidates[int(rng.integers(len(b.candidates)))] for b in self.blocks}

    def reference_sample(self) -> Sample:
        """The space's reference architecture (e.g. YOLOX-tiny in ``yolox-tiny-search``)."""
        if self.reference is None:
            raise ConfigError(f"detection space {self.name!r} has no reference architecture; give it a 'reference'")
        return dict(self.reference)

    def encode(self, sample: Mapping[str, str]) -> np.ndarray:
        """Flat one-hot encoding, ``[encoding_size]`` float32."""
        sample = self.check_sample(sample)
        vec = np.zeros(self.encoding_size, dtype=np.float32)
        for b, off in zip(self.blocks, self.offsets):
            vec[off + b.candidates.index(sample[b.label])] = 1.0
        return vec

    def decode(self, vec: Any) -> Sample:
        """Argmax per block of a (possibly soft) ``[encoding_size]`` encoding."""
        if hasattr(vec, "detach"):
            vec = vec.detach().cpu().numpy()
        vec = np.asarray(vec, dtype=np.float64).reshape(-1)
        if vec.size != self.encoding_size:
            raise ConfigError(f"encoding for detection space {self.name!r}: expected length {self.encoding_size} "
                              f"(= sum of {self.num_candidates}), got {vec.size}")
        return {b.label: b.candidates[int(np.argmax(vec[lo:hi]))]
                for b, lo, hi in zip(self.blocks, self.offsets[:-1], self.offsets[1:])}

    # ---- layers for pricing -------------------------------------------------------------
    def stem_layers(self, N: int = 1) -> List[Layer]:
        if self.stem.kind == "focus":
            return [conv(4 * self.input_channels, self.stem_channels, self.stem.kernel, self.stem_hw, N=N,
                         name="stem.conv")]
        return [conv(self.input_channels, self.stem_channels, self.stem.kernel, self.stem_hw, stride=2, N=N,
                     name="stem.conv")]

    def head_layers(self, N: int = 1) -> List[Layer]:
        return head_layers(self.head_channels, self.num_classes, self.level_hws, self.head.convs, self.head.dw, N)

    def _block_layers(self, b: DetBlock, op: str, N: int) -> List[Layer]:
        if b.kind == "neck":
            return neck_layers(op, self.level_channels, self.level_hws, self.neck_depth, self.head_channels, N)
        return _ops.det_op_layers(op, b.C_in, b.C_out, b.stride, b.in_hw, N=N, prefix=b.label)

    def layers(self, sample: Mapping[str, str], N: int = 1) -> List[Layer]:
        """The priced layers of one architecture, in execution order: stem, backbone blocks,
        the neck with the head's stems, the head."""
        sample = self.check_sample(sample)
        out = self.stem_layers(N)
        for b in self.all_blocks:
            out += self._block_layers(b, sample[b.label] if b.searched else b.candidates[0], N)
        return out + self.head_layers(N)

    def fixed_layers(self, N: int = 1) -> List[Layer]:
        """The layers every architecture runs: stem, fixed blocks, head."""
        out = self.stem_layers(N)
        for b in self.all_blocks:
            if not b.searched:
                out += self._block_layers(b, b.candidates[0], N)
        return out + self.head_layers(N)

    def candidate_layers(self, label: str, op: str, N: int = 1) -> List[Layer]:
        """The layers candidate ``op`` adds in choice block ``label`` (empty for ``skip``).

        ``layers(s) == fixed_layers() + sum(candidate_layers(b, s[b]) for b in labels)`` as
        multisets, exactly (see the module docstring).
        """
        b = self.block(label)
        if not b.searched:
            raise ConfigError(f"block {label!r} is fixed; choice blocks: {self.labels}")
        name = op.lower() if isinstance(op, str) else op
        if name not in b.candidates:
            raise ConfigError(f"block {label}: {op!r} is not a candidate; allowed: {list(b.candidates)}")
        return self._block_layers(b, name, N)

    # ---- networks ----------------------------------------------------------------------------
    @property
    def supernet_class(self):
        """The supernet the search builds for this space (:class:`DetectionSupernet`)."""
        from .supernet import DetectionSupernet
        return DetectionSupernet

    # ---- I/O ----------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """A plain, YAML-ready mapping with ``kind: detection``; :meth:`from_dict` inverts it."""
        def names(v):
            return v if isinstance(v, str) else list(v)

        stages = []
        for st in self.stages:
            d: Dict[str, Any] = {"channels": st.channels, "layers": st.layers}
            for f in ("down", "candidates", "first_candidates", "op"):
                v = getattr(st, f)
                if v is not None:
                    d[f] = names(v)
            if st.spp:
                d["spp"] = True
            stages.append(d)
        out = {"kind": KIND, "name": self.name, "resolution": self.resolution,
               "input_channels": self.input_channels, "num_classes": self.num_classes, "width": self.width,
               "depth": self.depth, "act": self.act,
               "stem": {"channels": self.stem.channels, "kind": self.stem.kind, "kernel": self.stem.kernel},
               "down": names(self.down), "candidates": list(self.candidates), "stages": stages,
               "neck": {"candidates": names(self.neck.candidates), "depth": self.neck.depth},
               "head": {"channels": self.head.channels, "convs": self.head.convs, "dw": self.head.dw}}
        if self.reference is not None:
            out["reference"] = dict(self.reference)
        return out

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "detection space") -> "DetectionSpace":
        """Build from a mapping (``kind: detection`` optional); unknown keys fail with the allowed list."""
        top = {f.name for f in fields(DetectionSpace)} | {"kind"}
        check_keys(d, top, where, required=("stem", "stages"))
        if d.get("kind", KIND) != KIND:
            raise ConfigError(f"{where}: kind must be {KIND!r}, got {d.get('kind')!r}")
        check_keys(d["stem"], {f.name for f in fields(DetStem)}, f"{where}: stem", required=("channels",))
        raw = d["stages"]
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{where}: stages must be a non-empty list of stage mappings")
        stages = []
        for i, s in enumerate(raw):
            check_keys(s, {f.name for f in fields(DetStage)}, f"{where}: stages[{i}]", required=("channels", "layers"))
            s = dict(s)
            for f in ("down", "candidates", "first_candidates"):
                if isinstance(s.get(f), list):
                    s[f] = tuple(s[f])
            stages.append(DetStage(**s))
        kw = {k: v for k, v in d.items() if k not in ("kind", "stem", "stages", "neck", "head")}
        for f in ("down", "candidates"):
            if isinstance(kw.get(f), list):
                kw[f] = tuple(kw[f])
        if "neck" in d:
            check_keys(d["neck"], {f.name for f in fields(DetNeck)}, f"{where}: neck")
            n = dict(d["neck"])
            if isinstance(n.get("candidates"), list):
                n["candidates"] = tuple(n["candidates"])
            kw["neck"] = DetNeck(**n)
        if "head" in d:
            check_keys(d["head"], {f.name for f in fields(DetHead)}, f"{where}: head")
            kw["head"] = DetHead(**d["head"])
        if kw.get("name") is None:
            kw.pop("name", None)
        return DetectionSpace(stem=DetStem(**d["stem"]), stages=tuple(stages), **kw)

    @staticmethod
    def from_yaml(path: PathLike) -> "DetectionSpace":
        """Load a YAML file (see the class docstring); errors name the file and the field."""
        data = read_yaml(path)
        if isinstance(data, Mapping) and "name" not in data:
            data = {**data, "name": Path(path).stem}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: a detection space is a YAML mapping, got {type(data).__name__}")
        try:
            return DetectionSpace.from_dict(data, where=str(path))
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None

    def to_yaml(self, path: PathLike) -> None:
        write_yaml(path, self.to_dict())

    def fingerprint(self) -> str:
        """A stable 16-hex-digit hash of the structure (name and reference left out)."""
        d = self.to_dict()
        d.pop("name")
        d.pop("reference", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"DetectionSpace({self.name!r}, {self.resolution}x{self.resolution}x{self.input_channels}, "
                f"{self.num_classes} classes, width {self.width:g}, depth {self.depth:g}, "
                f"{len(self.blocks)} choice blocks, {self.all_samples_count:.3g} architectures)")


# ---- built-in spaces ------------------------------------------------------------------------

DETECTION_SPACES: Registry = Registry("detection space")

#: Ops of the stride-2 layers of the built-ins.
DOWN_OPS = ("conv3", "dw3", "mb3_e3", "ghost", "shuffle")
#: Body ops of the built-ins (``skip`` apart).
BODY_OPS = ("csp1", "csp2", "csp3", "csp1_dw", "mb3_e3", "mb3_e6", "mb5_e3", "mb5_e6", "dw3", "dw5", "ghost",
            "shuffle", "conv3")
#: Body ops of the last stage, after YOLOX's SPP (its CSP runs without shortcut).
LAST_OPS = ("csp1_ns", "csp1", "mb3_e3", "mb5_e3", "dw3", "ghost", "shuffle")


def _yolox_stages() -> Tuple[DetStage, ...]:
    return (DetStage(128, 3, first_candidates=BODY_OPS),
            DetStage(256, 9, first_candidates=BODY_OPS),
            DetStage(512, 9, first_candidates=BODY_OPS),
            DetStage(1024, 3, spp=True, candidates=LAST_OPS + ("skip",), first_candidates=LAST_OPS))


def _yolox_reference(depth: float) -> Dict[str, str]:
    """YOLOX-tiny's choices: 3x3 stride-2 convs, one CSP layer per stage (n = 1, 3, 3, 1
    bottlenecks at depth 0.33; the last one without shortcut, after SPP), PAFPN."""
    ref = {}
    for si, (n, layers) in enumerate(((1, 3), (3, 9), (3, 9), (1, 3))):
        ref[f"s{si}.down"] = "conv3"
        for j in range(max(1, int(round(layers * depth)))):
            ref[f"s{si}.b{j}"] = ("csp1_ns" if si == 3 else f"csp{n}") if j == 0 else "skip"
    ref["neck"] = "pan"
    return ref


@DETECTION_SPACES.register("yolox-tiny-search")
def yolox_tiny_search() -> DetectionSpace:
    """YOLOX-tiny's macro-architecture on COCO (416x416, 80 classes, width 0.375, depth 0.33).

    Focus stem to 24 channels; stages of 48 / 96 / 192 / 384 channels with 1 / 3 / 3 / 1 body
    positions (the last after a fixed SPP); down candidates conv3, dw3, mb3_e3, ghost, shuffle;
    body candidates the CSP, MBConv, depthwise-separable, ghost, shuffle and 3x3 ops (plus
    ``skip`` after position 0); necks pan, pan_dw, fpn, lite; head width 96.  Its
    ``reference`` is YOLOX-tiny itself (Ge et al., 2021: 5.06 M parameters, 6.45 GFLOPs).
    """
    return DetectionSpace(
        name="yolox-tiny-search", resolution=416, input_channels=3, num_classes=80, width=0.375, depth=0.33,
        act="silu", stem=DetStem(64, "focus", 3), down=DOWN_OPS, candidates=BODY_OPS + ("skip",),
        stages=_yolox_stages(), neck=DetNeck(("pan", "pan_dw", "fpn", "lite"), 3), head=DetHead(256, 2),
        reference=_yolox_reference(0.33))


#: The small demo space's candidates: fewer per block, so that a CPU-sized supernet warm-up trains each of them.
DEMO_DOWN = ("conv3", "dw3", "mb3_e3")
DEMO_BODY = ("csp1", "csp3", "mb3_e3", "mb5_e3", "ghost", "dw3")
DEMO_LAST = ("csp1_ns", "mb3_e3", "ghost", "dw3")


@DETECTION_SPACES.register("det-mnist")
def det_mnist() -> DetectionSpace:
    """The small space of the embedded demo: YOLOX-tiny's macro-architecture at width 0.125 on
    96x96 grey canvases of MNIST digits (10 classes; :func:`search_spaces.detection.data.mnist_detection`).

    Focus stem to 8 channels; stages of 16 / 32 / 64 / 128 channels with 1 / 3 / 3 / 1 body
    positions (levels 12x12, 6x6, 3x3); down candidates conv3, dw3, mb3_e3; body candidates
    csp1, csp3, mb3_e3, mb5_e3, ghost, dw3 (plus ``skip`` after position 0); the last stage,
    after SPP, csp1_ns, mb3_e3, ghost, dw3; necks pan, fpn, lite; head width 32.  About
    5e8 architectures.  Its ``reference`` is the YOLOX-tiny-like point at this scale.
    """
    return DetectionSpace(
        name="det-mnist", resolution=96, input_channels=1, num_classes=10, width=0.125, depth=0.33, act="silu",
        stem=DetStem(64, "focus", 3), down=DEMO_DOWN, candidates=DEMO_BODY + ("skip",),
        stages=(DetStage(128, 3, first_candidates=DEMO_BODY), DetStage(256, 9, first_candidates=DEMO_BODY),
                DetStage(512, 9, first_candidates=DEMO_BODY),
                DetStage(1024, 3, spp=True, candidates=DEMO_LAST + ("skip",), first_candidates=DEMO_LAST)),
        neck=DetNeck(("pan", "fpn", "lite"), 3), head=DetHead(256, 2), reference=_yolox_reference(0.33))


def get_detection_space(name_or_path: Union[str, PathLike]) -> DetectionSpace:
    """A built-in detection space by name, or one loaded from a ``.yaml`` / ``.yml`` file."""
    return DETECTION_SPACES.build(name_or_path, DetectionSpace.from_yaml)


def list_detection_spaces() -> List[str]:
    return DETECTION_SPACES.names()


def resolve_detection_space(value: Any) -> Optional[DetectionSpace]:
    """The detection space ``value`` names or holds, or None when it is not one.

    A :class:`DetectionSpace`; a mapping with ``kind: detection``; a built-in name of
    :data:`DETECTION_SPACES`; a YAML file whose top level has ``kind: detection``.  Anything
    else (a classification space, its name or file) gives None, so a config resolver can ask
    this first and fall back to :func:`search_spaces.space.get_search_space`.
    """
    if isinstance(value, DetectionSpace):
        return value
    if isinstance(value, Mapping):
        return DetectionSpace.from_dict(value, where="config: search_space") if value.get("kind") == KIND else None
    if isinstance(value, (str, Path)):
        s = str(value)
        if s.endswith((".yaml", ".yml")):
            p = Path(s)
            if p.is_file():
                data = read_yaml(p)
                if isinstance(data, Mapping) and data.get("kind") == KIND:
                    return DetectionSpace.from_yaml(p)
            return None
        if s in DETECTION_SPACES:
            return DETECTION_SPACES.build(s, DetectionSpace.from_yaml)
    return None
