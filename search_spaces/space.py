"""Declarative network search spaces: a macro-architecture with searchable layers.

The macro-architecture is the one of ProxylessNAS (Cai et al., ICLR 2019,
arXiv 1812.00332), which DANCE (Choi et al., DAC 2021, arXiv 2009.06237) and HDX (Hong et
al., DAC 2022, arXiv 2301.09312) search on: a stem convolution, stages of layers (each
stage has an output width, the stride of its first layer and a number of layers), a 1x1
head convolution, global average pooling and a linear classifier.  A stage's layers are
either fixed (``Stage.op``) or searched over candidate ops (:mod:`search_spaces.ops`).

Vocabulary follows NNI's ``nni.mutable``: every searched layer is a *choice block* with a
``label`` (``"s{stage}.b{layer}"``, stage index counted over all stages, fixed ones
included) and its ``candidates``; a sample is a plain ``dict[label, value]``.

A choice block holds one or more *choices* (:class:`Choice`): always its op
(``"s1.b0": "mb3_e3"``), and, where the space offers bit widths (``wbits`` / ``abits`` of the
space or of a stage), the weight and activation bit widths of its layers
(``"s1.b0.wbits": 4``, ``"s1.b0.abits": 8``), so a mixed-precision search (Auto-NBA, Fu et
al., ICML 2021; EdMIPS, Cai and Vasconcelos, CVPR 2020) is the same dictionary with more
labels.  The layers outside the choice blocks (stem, fixed stages, head, classifier) run at
``fixed_bits`` when it is set.  Allowed bit widths: :data:`BIT_WIDTHS`.

Encoding order (shared by :meth:`SearchSpace.encode`, :meth:`SearchSpace.decode`,
:meth:`~search_spaces.supernet.Supernet.arch_encoding` and every consumer of
:attr:`SearchSpace.offsets`): the concatenation of one one-hot slice per choice, in
:attr:`SearchSpace.choices` order -- blocks stage by stage, layer by layer, and within a
block its op (candidates in declared order), then its ``wbits``, then its ``abits`` (bit
widths in declared order); the vector has ``sum(len(c.candidates) for c in choices)``
entries.  Without bit choices this is exactly one slice per block, as before.  Pricing is
exact for every (op, wbits, abits) combination: :func:`~search_spaces.pricing.candidate_layer_table`
lists one entry per combination and maps an encoding onto them.

Skip ops (``zero``) can only be offered where a layer keeps the shape of its input
(``stride == 1`` and equal channels).  The first layer of a stage usually changes the
shape, so a stage lists its candidates for that layer separately in
``first_candidates``; a skip op offered where the shape changes is refused with a message
naming the field.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from coexplore.common import ConfigError, PathLike, check_keys, read_yaml, write_yaml
from coexplore.common import Registry, UnknownNameError
from accelerators.workload import Layer, conv, conv_output_size, linear

from . import ops as _ops

logger = logging.getLogger(__name__)

Sample = Dict[str, Union[str, int]]

#: Bit widths a choice block (or ``fixed_bits``) may carry: 2..8-bit integers, and 16 / 32
#: (16 is the accelerators' default word; the supernet trains those layers in float).
BIT_WIDTHS: Tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 16, 32)
#: The bit-width choices of a block, in encoding order after its op.
BIT_KINDS: Tuple[str, ...] = ("wbits", "abits")


@dataclass(frozen=True)
class Stem:
    """The first convolution (``kernel x kernel`` conv + BN + ReLU6)."""

    channels: int  # output channels
    kernel: int = 3  # square kernel size, pixels
    stride: int = 1  # spatial stride


@dataclass(frozen=True)
class Stage:
    """A run of layers with the same output width; the first one carries the stride."""

    channels: int  # output channels of every layer of the stage
    stride: int  # stride of the stage's first layer (the others use 1)
    layers: int  # number of layers (one choice block each when searched)
    op: Optional[str] = None  # fixed op of every layer; None: the layers are searched
    candidates: Optional[Tuple[str, ...]] = None  # candidate ops; None: the space's candidates
    first_candidates: Optional[Tuple[str, ...]] = None  # candidates of the first layer; None: as candidates
    wbits: Optional[Tuple[int, ...]] = None  # weight bit-width choices of its layers; None: the space's; (): none
    abits: Optional[Tuple[int, ...]] = None  # input-activation bit-width choices; None: the space's; (): none

    def __post_init__(self) -> None:
        for f in ("candidates", "first_candidates", "wbits", "abits"):
            v = getattr(self, f)
            if isinstance(v, list):
                object.__setattr__(self, f, tuple(v))


@dataclass(frozen=True)
class Head:
    """The end of the network: 1x1 conv + BN + ReLU6, global average pooling, dropout, linear."""

    channels: int = 0  # output channels of the 1x1 head conv; 0: no head conv
    dropout: float = 0.0  # dropout probability before the classifier


@dataclass(frozen=True)
class Block:
    """One layer position of the network, searched (a choice block) or fixed."""

    label: str  # "s{stage}.b{layer}"
    candidates: Tuple[str, ...]  # op names in declared (encoding) order; one name when fixed
    searched: bool  # False for the layers of a fixed stage (Stage.op)
    stage: int  # index of the stage in SearchSpace.stages
    index: int  # index of the layer inside its stage
    C_in: int  # input channels
    C_out: int  # output channels
    stride: int  # spatial stride
    in_hw: Tuple[int, int]  # input (H, W), pixels
    out_hw: Tuple[int, int]  # output (H, W), pixels
    wbits: Tuple[int, ...] = ()  # weight bit-width choices, bits; (): no weight-bit choice
    abits: Tuple[int, ...] = ()  # input-activation bit-width choices, bits; (): none

    def bit_choices(self, kind: str) -> Tuple[int, ...]:
        """``wbits`` or ``abits``."""
        return self.wbits if kind == "wbits" else self.abits

    @property
    def keeps_shape(self) -> bool:
        """True where a skip op is allowed (same channels, stride 1)."""
        return self.C_in == self.C_out and self.stride == 1


@dataclass(frozen=True)
class Choice:
    """One labelled choice of a sample: a block's op, or one of its bit widths."""

    label: str  # sample key: "s{stage}.b{layer}" for the op, + ".wbits" / ".abits" for bit widths
    candidates: Tuple[Union[str, int], ...]  # op names or bit widths, in encoding order
    block: str  # label of the block the choice belongs to
    kind: str  # "op", "wbits" or "abits"


def bits_label(block_label: str, kind: str) -> str:
    """The sample key of a block's bit-width choice: ``"s1.b0.wbits"``."""
    return f"{block_label}.{kind}"


def _bit_list(value: Any, where: str) -> Tuple[int, ...]:
    """A non-empty list of distinct bit widths of :data:`BIT_WIDTHS`."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of bit widths from {list(BIT_WIDTHS)}, got {value!r}")
    if not value:
        raise ConfigError(f"{where} must list at least one bit width from {list(BIT_WIDTHS)}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) not in BIT_WIDTHS:
            raise ConfigError(f"{where}: {v!r} is not a supported bit width; allowed: {list(BIT_WIDTHS)}")
        out.append(int(v))
    dup = sorted({b for b in out if out.count(b) > 1})
    if dup:
        raise ConfigError(f"{where} repeats bit width(s) {dup}")
    return tuple(out)


def _as_int(value: Any, where: str, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        bound = "a positive integer" if lo == 1 else f"an integer >= {lo}"
        raise ConfigError(f"{where} must be {bound}, got {value!r}")
    return int(value)


def _block_out(size: int, stride: int) -> int:
    """Output size of a block: ``ceil(size / stride)``, the contract of every op (:mod:`search_spaces.ops`).

    The registered ops are odd kernels with 'same' padding (``kernel // 2``), whose output is
    that of a 1x1 window with the same stride, whatever the kernel.
    """
    return conv_output_size(size, 1, stride, 0)


def _op_names(value: Any, where: str) -> Tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of op names, got {value!r}")
    if not value:
        raise ConfigError(f"{where} must name at least one op")
    names = []
    for v in value:
        if not isinstance(v, str):
            raise ConfigError(f"{where}: op names are strings, got {v!r}")
        try:
            _ops.get_op(v)
        except UnknownNameError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        names.append(v.lower())
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{where} repeats op(s) {dup}")
    return tuple(names)


@dataclass(frozen=True)
class SearchSpace:
    """A network search space: stem, stages of fixed or searched layers, head.

    Construct directly, with :meth:`from_dict`, or from YAML with :meth:`from_yaml`; the
    values are validated on construction and errors name the offending field.

    Example YAML::

        name: my-space
        resolution: 32
        input_channels: 3
        num_classes: 10
        stem: {channels: 16, kernel: 3, stride: 1}
        candidates: [mb3_e3, mb5_e3, zero]
        stages:
          - {channels: 24, stride: 2, layers: 2, first_candidates: [mb3_e3, mb5_e3]}
        head: {channels: 256}

    Mixed precision adds ``wbits: [2, 4, 8]`` / ``abits: [4, 8]`` (per space, or per stage;
    ``[]`` at a stage: no such choice there) and ``fixed_bits: 8`` for the layers outside the
    choice blocks; see ``docs/precision.md``.
    """

    stem: Stem  # first convolution
    stages: Tuple[Stage, ...]  # stages in execution order
    head: Head = Head()  # head conv, pooling and classifier
    candidates: Tuple[str, ...] = ()  # default candidate ops of searched layers (encoding order)
    resolution: int = 32  # input height = width, pixels
    input_channels: int = 3  # channels of the input image
    num_classes: int = 10  # outputs of the classifier
    name: str = "custom"  # label for logs and tables; not part of the fingerprint
    wbits: Tuple[int, ...] = ()  # default weight bit-width choices of searched layers; (): no bit choice
    abits: Tuple[int, ...] = ()  # default input-activation bit-width choices of searched layers; (): none
    fixed_bits: Optional[int] = None  # weight and activation bits of stem, fixed stages, head; None: float

    # ---- validation -------------------------------------------------------------------
    def __post_init__(self) -> None:
        where = f"search space {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"search space: name must be a non-empty string, got {self.name!r}")
        for f in ("resolution", "input_channels", "num_classes"):
            object.__setattr__(self, f, _as_int(getattr(self, f), f"{where}: {f}"))
        if not isinstance(self.stem, Stem):
            raise ConfigError(f"{where}: stem must be a Stem, got {type(self.stem).__name__}")
        object.__setattr__(self, "stem", Stem(*(_as_int(getattr(self.stem, f), f"{where}: stem.{f}")
                                                for f in ("channels", "kernel", "stride"))))
        if not isinstance(self.head, Head):
            raise ConfigError(f"{where}: head must be a Head, got {type(self.head).__name__}")
        d = self.head.dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d < 1.0:
            raise ConfigError(f"{where}: head.dropout must be a number in [0, 1), got {d!r}")
        object.__setattr__(self, "head", Head(_as_int(self.head.channels, f"{where}: head.channels", lo=0), float(d)))
        if isinstance(self.candidates, (str, bytes)) or not isinstance(self.candidates, (list, tuple)):
            raise ConfigError(f"{where}: candidates must be a list of op names, got {self.candidates!r}")
        if self.candidates:
            object.__setattr__(self, "candidates", _op_names(self.candidates, f"{where}: candidates"))
        else:
            object.__setattr__(self, "candidates", ())
        for f in BIT_KINDS:
            v = getattr(self, f)
            empty = v is None or (isinstance(v, (list, tuple)) and not v)
            object.__setattr__(self, f, () if empty else _bit_list(v, f"{where}: {f}"))
        fb = self.fixed_bits
        if fb is not None and (isinstance(fb, bool) or not isinstance(fb, (int, np.integer)) or int(fb) not in BIT_WIDTHS):
            raise ConfigError(f"{where}: fixed_bits {fb!r} is not a supported bit width; allowed: "
                              f"{list(BIT_WIDTHS)} or null (float)")
        object.__setattr__(self, "fixed_bits", None if fb is None else int(fb))
        if isinstance(self.stages, (str, bytes, Mapping)) or not isinstance(self.stages, (list, tuple)) \
                or not self.stages:
            raise ConfigError(f"{where}: stages must be a non-empty list of stages")
        object.__setattr__(self, "stages", tuple(self.stages))
        stages = []
        for i, st in enumerate(self.stages):
            w = f"{where}: stages[{i}]"
            if not isinstance(st, Stage):
                raise ConfigError(f"{w} must be a Stage, got {type(st).__name__}")
            geometry = [_as_int(getattr(st, f), f"{w}.{f}") for f in ("channels", "stride", "layers")]
            kw: Dict[str, Any] = {}
            if st.op is not None:
                if st.candidates is not None or st.first_candidates is not None:
                    raise ConfigError(f"{w}: a fixed stage (op={st.op!r}) takes no candidates or first_candidates")
                if st.wbits is not None or st.abits is not None:
                    raise ConfigError(f"{w}: a fixed stage (op={st.op!r}) takes no wbits or abits; its layers "
                                      f"run at the space's fixed_bits")
                kw["op"] = _op_names([st.op], f"{w}.op")[0]
            for f in ("candidates", "first_candidates"):
                if getattr(st, f) is not None:
                    kw[f] = _op_names(getattr(st, f), f"{w}.{f}")
            for f in BIT_KINDS:
                v = getattr(st, f)
                if v is not None:  # [] at a stage: no such choice there (its layers run at fixed_bits)
                    kw[f] = () if isinstance(v, (list, tuple)) and not v else _bit_list(v, f"{w}.{f}")
            if st.op is None and kw.get("candidates") is None and not self.candidates and \
                    (geometry[2] > 1 or kw.get("first_candidates") is None):
                raise ConfigError(f"{w} is searched but has no candidates: set stages[{i}].candidates "
                                  f"or the space's candidates (or give the stage a fixed op)")
            stages.append(Stage(*geometry, **kw))
        object.__setattr__(self, "stages", tuple(stages))
        # Building the blocks checks where skip ops are offered; cache them for all_blocks.
        self.__dict__["all_blocks"] = self._build_blocks()

    def _build_blocks(self) -> Tuple[Block, ...]:
        where = f"search space {self.name!r}"
        hw = self.stem_hw[0]
        c = self.stem.channels
        out: List[Block] = []
        for si, st in enumerate(self.stages):
            for li in range(st.layers):
                stride = st.stride if li == 0 else 1
                out_hw = _block_out(hw, stride)
                if st.op is not None:
                    cands, src, searched = (st.op,), f"stages[{si}].op", False
                elif li == 0 and st.first_candidates is not None:
                    cands, src, searched = st.first_candidates, f"stages[{si}].first_candidates", True
                elif st.candidates is not None:
                    cands, src, searched = st.candidates, f"stages[{si}].candidates", True
                else:
                    cands, src, searched = self.candidates, "candidates", True
                bits = {f: (() if not searched else (getattr(st, f) if getattr(st, f) is not None
                                                         else getattr(self, f))) for f in BIT_KINDS}
                blk = Block(f"s{si}.b{li}", tuple(cands), searched, si, li, c, st.channels, stride,
                            (hw, hw), (out_hw, out_hw), bits["wbits"], bits["abits"])
                if blk.wbits or blk.abits:
                    src_b = next((f"stages[{si}].{f}" for f in BIT_KINDS if getattr(st, f) is not None),
                                 "wbits/abits")
                    bad = [n for n in cands if not _ops.can_carry_bits(n, c, st.channels, stride, (hw, hw))]
                    if bad:
                        raise ConfigError(
                            f"{where}: {src_b}: block {blk.label} offers op(s) {bad}, which cannot carry bit "
                            f"widths (they run no convolution or linear layer); ops that can: "
                            f"{[n for n in _ops.list_ops() if _ops.get_op(n).quantizable]}")
                if not blk.keeps_shape:
                    skips = [n for n in cands if _ops.is_skip_op(n)]
                    if skips:
                        hint = (f"; list the first layer's candidates without it in stages[{si}].first_candidates"
                                if li == 0 and st.op is None else "")
                        raise ConfigError(
                            f"{where}: {src}: block {blk.label} changes the shape ({c} -> {st.channels} channels, "
                            f"stride {stride}), so it cannot offer the skip op(s) {skips}{hint}")
                out.append(blk)
                c, hw = st.channels, out_hw
        return tuple(out)

    # ---- structure --------------------------------------------------------------------
    @cached_property
    def all_blocks(self) -> Tuple[Block, ...]:
        """Every layer position after the stem, fixed and searched, in execution order."""
        return self._build_blocks()

    @cached_property
    def blocks(self) -> Tuple[Block, ...]:
        """The choice blocks (searched layers), in encoding order."""
        return tuple(b for b in self.all_blocks if b.searched)

    @cached_property
    def _by_label(self) -> Dict[str, Block]:
        return {b.label: b for b in self.all_blocks}

    @cached_property
    def choices(self) -> Tuple[Choice, ...]:
        """Every labelled choice, in encoding order: per block its op, then ``wbits``, then ``abits``.

        Without bit choices there is one choice per block, with the block's label and candidates.
        """
        out: List[Choice] = []
        for b in self.blocks:
            out.append(Choice(b.label, b.candidates, b.label, "op"))
            for kind in BIT_KINDS:
                if b.bit_choices(kind):
                    out.append(Choice(bits_label(b.label, kind), b.bit_choices(kind), b.label, kind))
        return tuple(out)

    @property
    def has_bits(self) -> bool:
        """True when some block offers bit widths (a mixed-precision space) or ``fixed_bits`` is set."""
        return self.fixed_bits is not None or any(b.wbits or b.abits for b in self.blocks)

    @property
    def labels(self) -> List[str]:
        """Labels of every choice (the keys of a sample), in encoding order."""
        return [c.label for c in self.choices]

    @property
    def num_candidates(self) -> List[int]:
        """Number of candidates of each choice, in encoding order."""
        return [len(c.candidates) for c in self.choices]

    @property
    def encoding_size(self) -> int:
        """Length of :meth:`encode`'s vector: ``sum(num_candidates)``."""
        return int(sum(self.num_candidates))

    @cached_property
    def offsets(self) -> Tuple[int, ...]:
        """Start of each choice's slice in the encoding (``len(choices) + 1`` entries, last = size)."""
        return tuple(int(v) for v in np.concatenate([[0], np.cumsum(self.num_candidates)]))

    @property
    def all_samples_count(self) -> int:
        """Number of distinct architectures (product of the candidate counts of every choice)."""
        n = 1
        for k in self.num_candidates:
            n *= k
        return n

    @property
    def stem_hw(self) -> Tuple[int, int]:
        """Output (H, W) of the stem: its conv pads ``kernel // 2`` (see :class:`~search_spaces.ops.ConvBNAct`),
        so an even kernel gives one pixel more than ``ceil(resolution / stride)`` where the stride divides it."""
        k = self.stem.kernel
        hw = conv_output_size(self.resolution, k, self.stem.stride, k // 2)
        return (hw, hw)

    @property
    def final_channels(self) -> int:
        """Channels entering the head (output width of the last stage)."""
        return self.stages[-1].channels

    @property
    def final_hw(self) -> Tuple[int, int]:
        """Spatial size entering the head."""
        return self.all_blocks[-1].out_hw if self.all_blocks else self.stem_hw

    def block(self, label: str) -> Block:
        """The block (searched or fixed) with ``label``."""
        try:
            return self._by_label[label]
        except KeyError:
            raise ConfigError(f"search space {self.name!r}: unknown block label {label!r}; "
                              f"choice blocks: {self.labels}") from None

    # ---- samples ----------------------------------------------------------------------
    def check_sample(self, sample: Mapping[str, Any]) -> Sample:
        """Validate a ``{label: value}`` sample; returns it with lower-case op names and ``int``
        bit widths, in encoding order."""
        if not isinstance(sample, Mapping):
            raise ConfigError(f"sample: expected a mapping label -> op, got {type(sample).__name__}")
        known = set(self.labels)
        missing = [l for l in self.labels if l not in sample]
        extra = [l for l in sample if l not in known]
        if missing or extra:
            raise ConfigError(f"sample for search space {self.name!r}: missing labels {missing}, unknown labels "
                              f"{extra}; expected labels: {self.labels}")
        out: Sample = {}
        for c in self.choices:
            v = sample[c.label]
            if c.kind == "op":
                val = v.lower() if isinstance(v, str) else v
                if val not in c.candidates:
                    raise ConfigError(f"sample: {c.label}={v!r} is not a candidate; allowed ops: {list(c.candidates)}")
            else:
                ok = not isinstance(v, bool) and isinstance(v, (int, np.integer)) and int(v) in c.candidates
                if not ok:
                    raise ConfigError(f"sample: {c.label}={v!r} is not offered; allowed bit widths: "
                                      f"{list(c.candidates)}")
                val = int(v)
            out[c.label] = val
        return out

    def sample(self, rng: Union[int, np.random.Generator, None] = None) -> Sample:
        """One architecture drawn uniformly, reproducible from ``rng`` (a seed or a Generator)."""
        rng = np.random.default_rng(rng)
        return {c.label: c.candidates[int(rng.integers(len(c.candidates)))] for c in self.choices}

    def sample_all(self, op: str, wbits: Optional[int] = None, abits: Optional[int] = None) -> Sample:
        """The architecture using ``op`` in every block (e.g. ``"mb3_e6"``); it must be offered everywhere.

        Bit-width choices take ``wbits`` / ``abits``, or (``None``) each block's widest offered width.
        """
        given = {"wbits": wbits, "abits": abits}
        out: Dict[str, Any] = {}
        for c in self.choices:
            out[c.label] = op if c.kind == "op" else (given[c.kind] if given[c.kind] is not None
                                                      else max(c.candidates))
        return self.check_sample(out)

    def block_bits(self, sample: Mapping[str, Any], label: str) -> Tuple[Optional[int], Optional[int]]:
        """``(wbits, abits)`` of block ``label`` in a checked sample: its choices, or ``fixed_bits``
        for fixed blocks and for a block without that choice (``None``: float / the accelerator's word)."""
        b = self.block(label)
        if not b.searched:
            return self.fixed_bits, self.fixed_bits
        return tuple(int(sample[bits_label(label, k)]) if b.bit_choices(k) else self.fixed_bits  # type: ignore
                     for k in BIT_KINDS)

    def encode(self, sample: Mapping[str, Any]) -> np.ndarray:
        """Flat one-hot encoding, shape ``[encoding_size]``, float32, in the module's encoding order."""
        sample = self.check_sample(sample)
        vec = np.zeros(self.encoding_size, dtype=np.float32)
        for c, off in zip(self.choices, self.offsets):
            vec[off + c.candidates.index(sample[c.label])] = 1.0
        return vec

    def decode(self, vec: Any) -> Sample:
        """Argmax per block of a (possibly soft) encoding of shape ``[encoding_size]``."""
        if hasattr(vec, "detach"):
            vec = vec.detach().cpu().numpy()
        vec = np.asarray(vec, dtype=np.float64).reshape(-1)
        if vec.size != self.encoding_size:
            raise ConfigError(f"encoding for search space {self.name!r}: expected length {self.encoding_size} "
                              f"(= sum of {self.num_candidates}), got {vec.size}")
        return {c.label: c.candidates[int(np.argmax(vec[lo:hi]))]
                for c, lo, hi in zip(self.choices, self.offsets[:-1], self.offsets[1:])}

    # ---- layers for pricing -----------------------------------------------------------
    def _with_bits(self, layers: List[Layer], wbits: Optional[int], abits: Optional[int]) -> List[Layer]:
        if wbits is None and abits is None:
            return layers
        return [replace(l, weight_bits=wbits, act_bits=abits) for l in layers]

    def stem_layers(self, N: int = 1) -> List[Layer]:
        return self._with_bits([conv(self.input_channels, self.stem.channels, self.stem.kernel, self.stem_hw,
                                     stride=self.stem.stride, N=N, name="stem")], self.fixed_bits, self.fixed_bits)

    def head_layers(self, N: int = 1) -> List[Layer]:
        out = []
        c = self.final_channels
        if self.head.channels:
            out.append(conv(c, self.head.channels, 1, self.final_hw, N=N, name="head"))
            c = self.head.channels
        out.append(linear(c, self.num_classes, N=N, name="classifier"))
        return self._with_bits(out, self.fixed_bits, self.fixed_bits)

    def _block_layers(self, b: Block, op: str, N: int, wbits: Optional[int] = None,
                      abits: Optional[int] = None) -> List[Layer]:
        if not b.searched:
            wbits, abits = self.fixed_bits, self.fixed_bits
        return self._with_bits(_ops.op_layers(op, b.C_in, b.C_out, b.stride, b.in_hw, N=N, prefix=b.label),
                               wbits, abits)

    def layers(self, sample: Mapping[str, Any], N: int = 1) -> List[Layer]:
        """The priced layers of one architecture, in execution order.

        Stem, fixed layers, the chosen op of every block (skip ops contribute nothing), head
        conv and classifier.  Each layer carries its bit widths in ``weight_bits`` / ``act_bits``
        (the block's choices, or ``fixed_bits``); ``None`` where the space sets none, which the
        cost model prices at the accelerator's word.  ``out_bits`` is left ``None``: partial sums
        and outputs are the accelerator's to size.

        Args:
            sample: ``{label: value}`` for every choice.
            N: batch size carried by every layer.
        """
        sample = self.check_sample(sample)
        out = self.stem_layers(N)
        for b in self.all_blocks:
            if b.searched:
                out += self._block_layers(b, sample[b.label], N, *self.block_bits(sample, b.label))
            else:
                out += self._block_layers(b, b.candidates[0], N)
        return out + self.head_layers(N)

    def fixed_layers(self, N: int = 1) -> List[Layer]:
        """The layers every architecture runs: stem, fixed stages, head conv and classifier."""
        out = self.stem_layers(N)
        for b in self.all_blocks:
            if not b.searched:
                out += self._block_layers(b, b.candidates[0], N)
        return out + self.head_layers(N)

    def candidate_layers(self, label: str, op: str, N: int = 1, wbits: Optional[int] = None,
                         abits: Optional[int] = None) -> List[Layer]:
        """The layers op ``op`` adds in choice block ``label`` (empty for skip ops), at the given bits.

        ``layers(s) == fixed_layers() + sum(candidate_layers(b, s[b], wbits=..., abits=...) for b in
        blocks)`` as multisets, so an additive cost under the architecture distribution ``p`` is
        exactly ``cost(fixed) + sum over (block, op, wbits, abits) of p * cost`` (see
        :mod:`search_spaces.pricing`).  A block that offers bit widths needs ``wbits`` / ``abits``
        from its offer; one that does not takes none (its layers carry ``fixed_bits``).
        """
        b = self.block(label)
        if not b.searched:
            raise ConfigError(f"block {label!r} is fixed; choice blocks: {[x.label for x in self.blocks]}")
        name = op.lower() if isinstance(op, str) else op
        if name not in b.candidates:
            raise ConfigError(f"block {label}: op {op!r} is not a candidate; allowed ops: {list(b.candidates)}")
        bits: List[Optional[int]] = []
        for kind, v in zip(BIT_KINDS, (wbits, abits)):
            offer = b.bit_choices(kind)
            if offer and v not in offer:
                raise ConfigError(f"block {label}: {kind}={v!r} is not offered; allowed bit widths: {list(offer)}")
            if not offer and v is not None:
                raise ConfigError(f"block {label}: offers no {kind} choice, got {kind}={v!r}")
            bits.append(v if offer else self.fixed_bits)
        return self._block_layers(b, name, N, bits[0], bits[1])

    # ---- I/O ----------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """A plain, YAML-ready mapping; :meth:`from_dict` inverts it."""
        stages = []
        for st in self.stages:
            d: Dict[str, Any] = {"channels": st.channels, "stride": st.stride, "layers": st.layers}
            for f in ("op", "candidates", "first_candidates", "wbits", "abits"):
                v = getattr(st, f)
                if v is not None:
                    d[f] = list(v) if isinstance(v, tuple) else v
            stages.append(d)
        out = {"name": self.name, "resolution": self.resolution, "input_channels": self.input_channels,
               "num_classes": self.num_classes,
               "stem": {"channels": self.stem.channels, "kernel": self.stem.kernel, "stride": self.stem.stride},
               "candidates": list(self.candidates), "stages": stages,
               "head": {"channels": self.head.channels, "dropout": float(self.head.dropout)}}
        # Precision keys only when set, so a space without bits keeps its file and fingerprint.
        for f in BIT_KINDS:
            if getattr(self, f):
                out[f] = list(getattr(self, f))
        if self.fixed_bits is not None:
            out["fixed_bits"] = self.fixed_bits
        return out

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "search space") -> "SearchSpace":
        """Build from a mapping; unknown keys fail with the allowed list."""
        top = {f.name for f in fields(SearchSpace)}
        check_keys(d, top, where, required=("stem", "stages"))
        stem_keys = {f.name for f in fields(Stem)}
        check_keys(d["stem"], stem_keys, f"{where}: stem", required=("channels",))
        stages_raw = d["stages"]
        if not isinstance(stages_raw, list) or not stages_raw:
            raise ConfigError(f"{where}: stages must be a non-empty list of stage mappings")
        stage_keys = {f.name for f in fields(Stage)}
        stages = []
        for i, s in enumerate(stages_raw):
            check_keys(s, stage_keys, f"{where}: stages[{i}]", required=("channels", "stride", "layers"))
            stages.append(Stage(**s))
        kw = {k: v for k, v in d.items() if k not in ("stem", "stages", "head")}
        if "head" in d:
            check_keys(d["head"], {f.name for f in fields(Head)}, f"{where}: head")
            kw["head"] = Head(**d["head"])
        for f in ("candidates",) + BIT_KINDS:
            if f in kw and isinstance(kw[f], list):
                kw[f] = tuple(kw[f])
        if kw.get("name") is None:
            kw.pop("name", None)
        return SearchSpace(stem=Stem(**d["stem"]), stages=tuple(stages), **kw)

    @staticmethod
    def from_yaml(path: PathLike) -> "SearchSpace":
        """Load a YAML file (see the class docstring); errors name the file and the field."""
        data = read_yaml(path)
        if isinstance(data, Mapping) and "name" not in data:
            data = {**data, "name": Path(path).stem}
        try:
            return SearchSpace.from_dict(data, where=str(path))
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None

    def to_yaml(self, path: PathLike) -> None:
        """Write the space as YAML (atomically)."""
        write_yaml(path, self.to_dict())

    def fingerprint(self) -> str:
        """A stable 16-hex-digit hash of the structure (the name is left out)."""
        d = self.to_dict()
        d.pop("name")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"SearchSpace({self.name!r}, {self.resolution}x{self.resolution}x{self.input_channels}, "
                f"{len(self.blocks)} choice blocks, {self.all_samples_count:.3g} architectures)")


# ---- built-in spaces --------------------------------------------------------------------

SEARCH_SPACES: Registry = Registry("search space")

_MB6 = _ops.candidate_names(zero_op=False)  # mb3_e3, mb3_e6, mb5_e3, mb5_e6, mb7_e3, mb7_e6


@SEARCH_SPACES.register("proxyless-cifar10")
def proxyless_cifar10() -> SearchSpace:
    """DANCE's CIFAR-10 backbone: the ProxylessNAS macro-architecture at 32x32.

    3x3 conv stem to 32 channels (stride 1), a fixed MBConv1 3x3 (``mb3_e1``) to 16,
    three searched stages of 4 layers at 32 / 64 / 128 channels (32x32, 16x16, 8x8 maps;
    strides 1, 2, 2), a 1x1 head conv to 1280 channels (as ProxylessNAS and MobileNetV2),
    global average pooling and a 1280 -> 10 classifier.  Candidates: MBConv kernel 3/5/7 x
    expansion 3/6, plus ``zero`` except in the first layer of each stage (which changes
    the shape).  12 choice blocks, 6^3 * 7^9 ~ 8.7e9 architectures.
    """
    return SearchSpace(
        name="proxyless-cifar10", resolution=32, input_channels=3, num_classes=10,
        stem=Stem(32, 3, 1), candidates=_MB6 + ("zero",),
        stages=(Stage(16, 1, 1, op="mb3_e1"),
                Stage(32, 1, 4, first_candidates=_MB6),
                Stage(64, 2, 4, first_candidates=_MB6),
                Stage(128, 2, 4, first_candidates=_MB6)),
        head=Head(1280))


@SEARCH_SPACES.register("proxyless-imagenet")
def proxyless_imagenet() -> SearchSpace:
    """The ProxylessNAS mobile space at 224x224 (Cai et al., ICLR 2019).

    3x3 stride-2 stem to 32 channels, fixed MBConv1 3x3 to 16, searched stages
    (channels, stride, layers) = (24, 2, 4), (40, 2, 4), (80, 2, 4), (96, 1, 4), (192, 2, 4),
    (320, 1, 1), 1x1 head conv to 1280, pooling and a 1280 -> 1000 classifier.  Same
    candidates as ``proxyless-cifar10``.  21 choice blocks.
    """
    return SearchSpace(
        name="proxyless-imagenet", resolution=224, input_channels=3, num_classes=1000,
        stem=Stem(32, 3, 2), candidates=_MB6 + ("zero",),
        stages=(Stage(16, 1, 1, op="mb3_e1"),
                Stage(24, 2, 4, first_candidates=_MB6),
                Stage(40, 2, 4, first_candidates=_MB6),
                Stage(80, 2, 4, first_candidates=_MB6),
                Stage(96, 1, 4, first_candidates=_MB6),
                Stage(192, 2, 4, first_candidates=_MB6),
                Stage(320, 1, 1, first_candidates=_MB6)),
        head=Head(1280))


_TINY = ("mb3_e3", "mb3_e6", "mb5_e3", "mb5_e6")


@SEARCH_SPACES.register("tiny-mnist")
def tiny_mnist() -> SearchSpace:
    """A small space for CPU demos on 28x28x1 digits (MNIST), 10 classes.

    3x3 stride-2 stem to 16 channels (14x14), searched stages (16, 1, 2) at 14x14,
    (24, 2, 2) at 7x7 and (32, 2, 2) at 4x4, a 1x1 head conv to 128, pooling and a
    128 -> 10 classifier.  Candidates mb3_e3, mb3_e6, mb5_e3, mb5_e6 and ``zero`` (not
    in the first layers of the last two stages).  6 choice blocks, 5^4 * 4^2 = 10,000
    architectures.
    """
    return SearchSpace(
        name="tiny-mnist", resolution=28, input_channels=1, num_classes=10,
        stem=Stem(16, 3, 2), candidates=_TINY + ("zero",),
        stages=(Stage(16, 1, 2),
                Stage(24, 2, 2, first_candidates=_TINY),
                Stage(32, 2, 2, first_candidates=_TINY)),
        head=Head(128))


#: The bit-width choices of the built-in mixed-precision spaces (Auto-NBA and EdMIPS search 2..8 bits).
MP_BITS = (2, 4, 8)


@SEARCH_SPACES.register("proxyless-cifar10-mp")
def proxyless_cifar10_mp() -> SearchSpace:
    """``proxyless-cifar10`` with per-block weight and activation bits in {2, 4, 8} (mixed precision).

    Same macro-architecture and op candidates; every choice block also chooses its weight
    bits (``s{i}.b{j}.wbits``) and input-activation bits (``s{i}.b{j}.abits``) from 2 / 4 / 8
    (Auto-NBA, Fu et al., ICML 2021, searches this kind of per-layer precision with the
    network); stem, the fixed first block, head conv and classifier run at 8 bits.  12 choice
    blocks, 36 choices, 6^3 * 7^9 * 9^12 ~ 2.5e21 architectures.
    """
    base = proxyless_cifar10()
    return SearchSpace(name="proxyless-cifar10-mp", resolution=base.resolution, input_channels=base.input_channels,
                       num_classes=base.num_classes, stem=base.stem, candidates=base.candidates, stages=base.stages,
                       head=base.head, wbits=MP_BITS, abits=MP_BITS, fixed_bits=8)


@SEARCH_SPACES.register("tiny-mnist-mp")
def tiny_mnist_mp() -> SearchSpace:
    """``tiny-mnist`` with per-block weight and activation bits in {2, 4, 8}, for CPU demos.

    Same geometry and op candidates as ``tiny-mnist``; stem, head conv and classifier at
    8 bits.  6 choice blocks, 18 choices, 5^4 * 4^2 * 9^6 ~ 5.3e9 architectures.
    """
    base = tiny_mnist()
    return SearchSpace(name="tiny-mnist-mp", resolution=base.resolution, input_channels=base.input_channels,
                       num_classes=base.num_classes, stem=base.stem, candidates=base.candidates, stages=base.stages,
                       head=base.head, wbits=MP_BITS, abits=MP_BITS, fixed_bits=8)


def get_search_space(name_or_path: Union[str, PathLike]) -> SearchSpace:
    """A built-in space by name, or a space loaded from a ``.yaml`` / ``.yml`` file."""
    return SEARCH_SPACES.build(name_or_path, SearchSpace.from_yaml)


def list_search_spaces() -> List[str]:
    """Names of the built-in spaces."""
    return SEARCH_SPACES.names()
