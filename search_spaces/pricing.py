"""Layer tables for pricing a whole search space, and the expected cost of a distribution.

DANCE (Choi et al., DAC 2021, arXiv 2009.06237) and ProxylessNAS (Cai et al., ICLR 2019,
arXiv 1812.00332) use an expected cost under the architecture distribution.  For an
additive cost (latency of a layer-by-layer schedule, energy, MACs) it splits exactly into
a fixed part and one term per (block, candidate)::

    E[cost] = cost(fixed_layers) + sum_b sum_c p[b, c] * cost(candidate_layers(b, c))

:func:`candidate_layer_table` lists the layers of every term in the encoding order of
:meth:`~search_spaces.space.SearchSpace.encode`, so the per-candidate costs form a vector
(or a ``[E, A]`` matrix over ``A`` accelerators) that :func:`expected_cost` contracts with
:meth:`~search_spaces.supernet.Supernet.arch_encoding`.  Non-additive costs (area, or
DANCE's learned evaluator) should instead read the encoding directly.

**Bit widths.**  In a mixed-precision space a block's cost depends on its op *and* its bits
together, so the table has one entry per (block, op, wbits, abits) combination -- each
candidate's layers carry those bits (``Layer.weight_bits`` / ``act_bits``), and a cost source
that reads them prices every combination exactly.  The encoding stays the concatenation of
one slice per choice (:attr:`SearchSpace.choices`); :meth:`CandidateTable.weights` maps it
onto the combinations by the outer product of each block's op, wbits and abits slices::

    w[b, (o, i, j)] = p_op[b, o] * p_wbits[b, i] * p_abits[b, j]

which is the one-hot of the chosen combination for a discrete architecture (exact cost) and
the probability of each combination under the supernet's independent per-choice
distribution (exact expected cost).  Without bit choices there is one entry per (block, op)
and ``weights`` is the identity, as before.  Combinations are ordered block by block, op-major,
then wbits, then abits (each in declared order).

Note: until the cost model reads the precision fields, the analytical model prices every bit
combination of an op alike (at the accelerator's word); the table is already exact in shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from accelerators.workload import Layer
from coexplore.common import ConfigError

from .space import BIT_KINDS, SearchSpace, bits_label

_Slice = Optional[Tuple[int, int]]


@dataclass(frozen=True)
class CandidateTable:
    """The layers of a space split into a fixed part and one entry per (block, op, bits) combination."""

    fixed: Tuple[Layer, ...]  # layers every architecture runs (stem, fixed stages, head, classifier)
    keys: Tuple[Tuple[str, str], ...]  # (block label, op) per entry, in combination order
    candidates: Tuple[Tuple[Layer, ...], ...]  # layers of each entry (empty for skip ops)
    # per entry, the part of a sample it stands for: {label: op, label.wbits: b, label.abits: b}
    choices: Tuple[Dict[str, Union[str, int]], ...] = ()
    block_offsets: Tuple[int, ...] = ()  # start of each block's entries (len(blocks) + 1, last = len)
    # per block, the encoding slices (lo, hi) of its op, wbits and abits choices (None: no such choice)
    slices: Tuple[Tuple[Tuple[int, int], _Slice, _Slice], ...] = ()
    encoding_size: int = 0  # width of the space's encoding

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def combines(self) -> bool:
        """True when some block has bit choices (entries are combinations, not encoding slots)."""
        return any(w is not None or a is not None for _, w, a in self.slices)

    def weights(self, enc: Any) -> Any:
        """Map architecture encodings onto the table's entries (see the module docstring).

        Args:
            enc: ``[..., encoding_size]`` one-hot or soft encoding, numpy or torch (differentiable).

        Returns:
            ``[..., len(self)]`` weights of each combination; ``enc`` itself without bit choices.
        """
        if not self.combines:
            return enc
        torch_in = isinstance(enc, torch.Tensor)
        if not torch_in:
            enc = np.asarray(enc, dtype=np.float64)
        if enc.shape[-1] != self.encoding_size:
            raise ConfigError(f"encoding width {enc.shape[-1]} != search space encoding size {self.encoding_size}")
        parts = []
        for (o, w, a) in self.slices:
            po = enc[..., o[0]:o[1]]
            pw = enc[..., w[0]:w[1]] if w is not None else None
            pa = enc[..., a[0]:a[1]] if a is not None else None
            m = po[..., :, None, None]
            if pw is not None:
                m = m * pw[..., None, :, None]
            if pa is not None:
                m = m * pa[..., None, None, :]
            parts.append(m.reshape(*m.shape[:-3], -1))
        return torch.cat(parts, dim=-1) if torch_in else np.concatenate(parts, axis=-1)

    def architecture(self, choice: Sequence[int]) -> Dict[str, Union[str, int]]:
        """The sample of one entry index per block (index within the block's entries)."""
        out: Dict[str, Union[str, int]] = {}
        for lo, i in zip(self.block_offsets[:-1], choice):
            out.update(self.choices[lo + int(i)])
        return out


def candidate_layer_table(space: SearchSpace, N: int = 1) -> CandidateTable:
    """Layers of the fixed part and of every candidate of every block, in encoding order.

    Args:
        space: the search space.
        N: batch size carried by every layer.

    Returns:
        A :class:`CandidateTable`: ``space.encoding_size`` entries without bit choices, one per
        (block, op, wbits, abits) combination with them.
    """
    keys, cands, choices, offsets, slices = [], [], [], [0], []
    pos = dict(zip(space.labels, zip(space.offsets[:-1], space.offsets[1:])))
    for b in space.blocks:
        wopts = getattr(b, "wbits", None) or (None,)  # a space without bit choices (e.g. detection) has none
        aopts = getattr(b, "abits", None) or (None,)
        for op in b.candidates:
            for w in wopts:
                for a in aopts:
                    keys.append((b.label, op))
                    bits = {k: v for k, v in (("wbits", w), ("abits", a)) if v is not None}
                    cands.append(tuple(space.candidate_layers(b.label, op, N=N, **bits)))
                    c: Dict[str, Union[str, int]] = {b.label: op}
                    for kind, v in zip(BIT_KINDS, (w, a)):
                        if v is not None:
                            c[bits_label(b.label, kind)] = v
                    choices.append(c)
        offsets.append(len(keys))
        slices.append((pos[b.label],) + tuple(pos.get(bits_label(b.label, k)) for k in BIT_KINDS))
    return CandidateTable(tuple(space.fixed_layers(N=N)), tuple(keys), tuple(cands), tuple(choices),
                          tuple(offsets), tuple(slices), space.encoding_size)


def expected_cost(fixed_cost: Any, candidate_costs: Any, probs: Any) -> Any:
    """``fixed_cost + sum_e probs[..., e] * candidate_costs[e, ...]``.

    Works on torch tensors (differentiable in ``probs``) and on numpy arrays.

    Args:
        fixed_cost: cost of the fixed layers, a scalar or ``[*A]`` (e.g. per accelerator).
        candidate_costs: ``[E, *A]`` costs of each table entry, ``E = space.encoding_size``.
        probs: ``[E]`` or ``[B, E]`` architecture encoding (one-hot or probabilities).

    Returns:
        ``[*A]`` or ``[B, *A]`` expected costs.
    """
    if isinstance(probs, torch.Tensor):
        cc = torch.as_tensor(candidate_costs, dtype=probs.dtype, device=probs.device)
        fc = torch.as_tensor(fixed_cost, dtype=probs.dtype, device=probs.device)
        return fc + torch.tensordot(probs, cc, dims=([probs.dim() - 1], [0]))
    probs = np.asarray(probs, dtype=np.float64)
    return np.asarray(fixed_cost, dtype=np.float64) + np.tensordot(
        probs, np.asarray(candidate_costs, dtype=np.float64), axes=([probs.ndim - 1], [0]))
