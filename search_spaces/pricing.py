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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np
import torch

from accelerators.workload import Layer

from .space import SearchSpace


@dataclass(frozen=True)
class CandidateTable:
    """The layers of a space split into a fixed part and one entry per (block, candidate)."""

    fixed: Tuple[Layer, ...]  # layers every architecture runs (stem, fixed stages, head, classifier)
    keys: Tuple[Tuple[str, str], ...]  # (label, op) per entry, in encoding order
    candidates: Tuple[Tuple[Layer, ...], ...]  # layers of each entry (empty for skip ops)

    def __len__(self) -> int:
        return len(self.keys)


def candidate_layer_table(space: SearchSpace, N: int = 1) -> CandidateTable:
    """Layers of the fixed part and of every candidate of every block, in encoding order.

    Args:
        space: the search space.
        N: batch size carried by every layer.

    Returns:
        A :class:`CandidateTable` with ``space.encoding_size`` entries.
    """
    keys, cands = [], []
    for b in space.blocks:
        for op in b.candidates:
            keys.append((b.label, op))
            cands.append(tuple(space.candidate_layers(b.label, op, N=N)))
    return CandidateTable(tuple(space.fixed_layers(N=N)), tuple(keys), tuple(cands))


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
