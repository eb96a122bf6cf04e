"""Declarative network search spaces: a macro-architecture with searchable layers.

The macro-architecture is the one of ProxylessNAS (Cai et al., ICLR 2019,
arXiv 1812.00332), which DANCE (Choi et al., DAC 2021, arXiv 2009.06237) and HDX (Hong et
al., DAC 2022, arXiv 2301.09312) search on: a stem convolution, stages of layers (each
stage has an output width, the stride of its first layer and a number of layers), a 1x1
head convolution, global average pooling and a linear classifier.  A stage's layers are
either fixed (``Stage.op``) or searched over candidate ops (:mod:`search_spaces.ops`).

Vocabulary follows NNI's ``nni.mutable``: every searched layer is a *choice block* with a
``label`` (``"s{stage}.b{layer}"``, stage index counted over all stages, fixed ones
included) and its ``candidates``; a sample is a plain ``dict[label, op_name]``.

Encoding order (shared by :meth:`SearchSpace.encode`, :meth:`SearchSpace.decode`,
:meth:`~search_spaces.supernet.Supernet.arch_encoding` and
:func:`~search_spaces.pricing.candidate_layer_table`): blocks in :attr:`SearchSpace.blocks`
order (stage by stage, layer by layer), and within a block the candidates in their
declared order; the vector has ``sum(len(b.candidates) for b in blocks)`` entries.

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
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from coexplore.common import ConfigError, PathLike, check_keys, read_yaml, write_yaml
from coexplore.common import Registry, UnknownNameError
from accelerators.workload import Layer, conv, conv_output_size, linear

from . import ops as _ops

logger = logging.getLogger(__name__)

Sample = Dict[str, str]


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

    def __post_init__(self) -> None:
        for f in ("candidates", "first_candidates"):
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

    @property
    def keeps_shape(self) -> bool:
        """True where a skip op is allowed (same channels, stride 1)."""
        return self.C_in == self.C_out and self.stride == 1


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
    """

    stem: Stem  # first convolution
    stages: Tuple[Stage, ...]  # stages in execution order
    head: Head = Head()  # head conv, pooling and classifier
    candidates: Tuple[str, ...] = ()  # default candidate ops of searched layers (encoding order)
    resolution: int = 32  # input height = width, pixels
    input_channels: int = 3  # channels of the input image
    num_classes: int = 10  # outputs of the classifier
    name: str = "custom"  # label for logs and tables; not part of the fingerprint

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
                kw["op"] = _op_names([st.op], f"{w}.op")[0]
            for f in ("candidates", "first_candidates"):
                if getattr(st, f) is not None:
                    kw[f] = _op_names(getattr(st, f), f"{w}.{f}")
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
                blk = Block(f"s{si}.b{li}", tuple(cands), searched, si, li, c, st.channels, stride,
                            (hw, hw), (out_hw, out_hw))
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

    @property
    def labels(self) -> List[str]:
        """Labels of the choice blocks, in encoding order."""
        return [b.label for b in self.blocks]

    @property
    def num_candidates(self) -> List[int]:
        """Number of candidates of each choice block, in encoding order."""
        return [len(b.candidates) for b in self.blocks]

    @property
    def encoding_size(self) -> int:
        """Length of :meth:`encode`'s vector: ``sum(num_candidates)``."""
        return int(sum(self.num_candidates))

    @cached_property
    def offsets(self) -> Tuple[int, ...]:
        """Start of each block's slice in the encoding (``len(blocks) + 1`` entries, last = size)."""
        return tuple(int(v) for v in np.concatenate([[0], np.cumsum(self.num_candidates)]))

    @property
    def all_samples_count(self) -> int:
        """Number of distinct architectures (product of the candidate counts)."""
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
    def check_sample(self, sample: Mapping[str, str]) -> Sample:
        """Validate a ``{label: op}`` sample; returns it with lower-case op names, in block order."""
        if not isinstance(sample, Mapping):
            raise ConfigError(f"sample: expected a mapping label -> op, got {type(sample).__name__}")
        missing = [l for l in self.labels if l not in sample]
        extra = [l for l in sample if l not in self._by_label or not self._by_label[l].searched]
        if missing or extra:
            raise ConfigError(f"sample for search space {self.name!r}: missing labels {missing}, unknown labels "
                              f"{extra}; expected labels: {self.labels}")
        out: Sample = {}
        for b in self.blocks:
            v = sample[b.label]
            op = v.lower() if isinstance(v, str) else v
            if op not in b.candidates:
                raise ConfigError(f"sample: {b.label}={v!r} is not a candidate; allowed ops: {list(b.candidates)}")
            out[b.label] = op
        return out

    def sample(self, rng: Union[int, np.random.Generator, None] = None) -> Sample:
        """One architecture drawn uniformly, reproducible from ``rng`` (a seed or a Generator)."""
        rng = np.random.default_rng(rng)
        return {b.label: b.candidates[int(rng.integers(len(b.candidates)))] for b in self.blocks}

    def sample_all(self, op: str) -> Sample:
        """The architecture using ``op`` in every block (e.g. ``"mb3_e6"``); it must be offered everywhere."""
        return self.check_sample({b.label: op for b in self.blocks})

    def encode(self, sample: Mapping[str, str]) -> np.ndarray:
        """Flat one-hot encoding, shape ``[encoding_size]``, float32, in the module's encoding order."""
        sample = self.check_sample(sample)
        vec = np.zeros(self.encoding_size, dtype=np.float32)
        for b, off in zip(self.blocks, self.offsets):
            vec[off + b.candidates.index(sample[b.label])] = 1.0
        return vec

    def decode(self, vec: Any) -> Sample:
        """Argmax per block of a (possibly soft) encoding of shape ``[encoding_size]``."""
        if hasattr(vec, "detach"):
            vec = vec.detach().cpu().numpy()
        vec = np.asarray(vec, dtype=np.float64).reshape(-1)
        if vec.size != self.encoding_size:
            raise ConfigError(f"encoding for search space {self.name!r}: expected length {self.encoding_size} "
                              f"(= sum of {self.num_candidates}), got {vec.size}")
        return {b.label: b.candidates[int(np.argmax(vec[lo:hi]))]
                for b, lo, hi in zip(self.blocks, self.offsets[:-1], self.offsets[1:])}

    # ---- layers for pricing -----------------------------------------------------------
    def stem_layers(self, N: int = 1) -> List[Layer]:
        return [conv(self.input_channels, self.stem.channels, self.stem.kernel, self.stem_hw,
                     stride=self.stem.stride, N=N, name="stem")]

    def head_layers(self, N: int = 1) -> List[Layer]:
        out = []
        c = self.final_channels
        if self.head.channels:
            out.append(conv(c, self.head.channels, 1, self.final_hw, N=N, name="head"))
            c = self.head.channels
        out.append(linear(c, self.num_classes, N=N, name="classifier"))
        return out

    def _block_layers(self, b: Block, op: str, N: int) -> List[Layer]:
        return _ops.op_layers(op, b.C_in, b.C_out, b.stride, b.in_hw, N=N, prefix=b.label)

    def layers(self, sample: Mapping[str, str], N: int = 1) -> List[Layer]:
        """The priced layers of one architecture, in execution order.

        Stem, fixed layers, the chosen op of every block (skip ops contribute nothing), head
        conv and classifier.

        Args:
            sample: ``{label: op}`` for every choice block.
            N: batch size carried by every layer.
        """
        sample = self.check_sample(sample)
        out = self.stem_layers(N)
        for b in self.all_blocks:
            out += self._block_layers(b, sample[b.label] if b.searched else b.candidates[0], N)
        return out + self.head_layers(N)

    def fixed_layers(self, N: int = 1) -> List[Layer]:
        """The layers every architecture runs: stem, fixed stages, head conv and classifier."""
        out = self.stem_layers(N)
        for b in self.all_blocks:
            if not b.searched:
                out += self._block_layers(b, b.candidates[0], N)
        return out + self.head_layers(N)

    def candidate_layers(self, label: str, op: str, N: int = 1) -> List[Layer]:
        """The layers op ``op`` adds in choice block ``label`` (empty for skip ops).

        ``layers(s) == fixed_layers() + sum(candidate_layers(b, s[b]) for b in labels)`` as
        multisets, so an additive cost under the architecture distribution ``p`` is exactly
        ``cost(fixed) + sum_b sum_c p[b, c] * cost(b, c)``.
        """
        b = self.block(label)
        if not b.searched:
            raise ConfigError(f"block {label!r} is fixed; choice blocks: {self.labels}")
        name = op.lower() if isinstance(op, str) else op
        if name not in b.candidates:
            raise ConfigError(f"block {label}: op {op!r} is not a candidate; allowed ops: {list(b.candidates)}")
        return self._block_layers(b, name, N)

    # ---- I/O ----------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """A plain, YAML-ready mapping; :meth:`from_dict` inverts it."""
        stages = []
        for st in self.stages:
            d: Dict[str, Any] = {"channels": st.channels, "stride": st.stride, "layers": st.layers}
            for f in ("op", "candidates", "first_candidates"):
                v = getattr(st, f)
                if v is not None:
                    d[f] = list(v) if isinstance(v, tuple) else v
            stages.append(d)
        return {"name": self.name, "resolution": self.resolution, "input_channels": self.input_channels,
                "num_classes": self.num_classes,
                "stem": {"channels": self.stem.channels, "kernel": self.stem.kernel, "stride": self.stem.stride},
                "candidates": list(self.candidates), "stages": stages,
                "head": {"channels": self.head.channels, "dropout": float(self.head.dropout)}}

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
        if "candidates" in kw and isinstance(kw["candidates"], list):
            kw["candidates"] = tuple(kw["candidates"])
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


def get_search_space(name_or_path: Union[str, PathLike]) -> SearchSpace:
    """A built-in space by name, or a space loaded from a ``.yaml`` / ``.yml`` file."""
    return SEARCH_SPACES.build(name_or_path, SearchSpace.from_yaml)


def list_search_spaces() -> List[str]:
    """Names of the built-in spaces."""
    return SEARCH_SPACES.names()
