"""Exact analytical pricing of whole search spaces on whole hardware spaces.

A network of a ProxylessNAS-style space is its fixed layers plus one candidate op per
choice block, and the cost model's latency and energy add up over layers.  So pricing
every candidate of every block once on every accelerator (a few hundred layers) gives
the exact latency and energy of *any* architecture on *any* accelerator as a sum, and the
exact expectation under an architecture distribution ``p`` as ``fixed + p @ table``.
This table is the ground truth that the DANCE evaluator imitates, that labels its
training data, that checks feasibility of HDX constraints, and that verifies results.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from accelerators import Accelerator, AnalyticalModel, CostSource, HardwareSpace

from .common import ConfigError
from search_spaces.pricing import candidate_layer_table

from .objectives import Objective

logger = logging.getLogger(__name__)


class CostTable:
    """Analytical latency/energy of every block candidate on every accelerator.

    Args:
        space: a :class:`search_spaces.SearchSpace`.
        hardware: a :class:`~accelerators.HardwareSpace` (its enumeration order is the
            accelerator axis) or an explicit list of accelerators.
        model: the cost source that prices the layers (default: the analytical model with
            EDP-optimal mappings); any :class:`~accelerators.CostSource` whose per-layer
            latency and energy add up over layers.
        batch: batch size the layers are priced at.

    Attributes:
        fixed_latency, fixed_energy: ``[A]`` cost of the layers every architecture runs.
        cand_latency, cand_energy: ``[D, A]`` cost each candidate adds (D = encoding size,
            in the search space's encoding order); zero for skip ops.
        area: ``[A]`` mm^2.
    """

    def __init__(self, space, hardware: Union[HardwareSpace, Sequence[Accelerator]],
                 model: Optional[CostSource] = None, batch: int = 1) -> None:
        self.space = space
        self.hardware = hardware if isinstance(hardware, HardwareSpace) else None
        self.accelerators: List[Accelerator] = (hardware.enumerate() if isinstance(hardware, HardwareSpace)
                                                else list(hardware))
        if not self.accelerators:
            raise ConfigError("cost table: no accelerators given")
        self.model = model if model is not None else AnalyticalModel()
        if not isinstance(self.model, CostSource):
            raise ConfigError(f"cost table: model must be a cost source (name, fingerprint(), evaluate(), describe()), "
                              f"got {type(self.model).__name__}")
        self.batch = batch
        cands = candidate_layer_table(space, N=batch)
        #: the per-(block, op, bits) layer table; its ``weights`` maps encodings onto the rows
        self.candidate_table = cands
        #: start of each block's rows (``len(blocks) + 1``): per block one row per op, or per
        #: (op, wbits, abits) combination in a mixed-precision space
        self.block_offsets = cands.block_offsets
        fixed = list(cands.fixed)
        segments: List[Tuple[int, int]] = []
        layers = list(fixed)
        for cl in cands.candidates:
            segments.append((len(layers), len(layers) + len(cl)))
            layers += cl
        costs = self.model.evaluate(layers, self.accelerators)
        lat, en = costs.latency_s, costs.energy_j  # [A, L]
        nf = len(fixed)
        self.fixed_latency = lat[:, :nf].sum(1)
        self.fixed_energy = en[:, :nf].sum(1)
        self.cand_latency = np.stack([lat[:, a:b].sum(1) for a, b in segments])  # [D, A]
        self.cand_energy = np.stack([en[:, a:b].sum(1) for a, b in segments])
        self.area = costs.area_mm2
        self.num_layers_priced = len(layers)

    # ---- identity ---------------------------------------------------------------------
    @property
    def num_accelerators(self) -> int:
        return len(self.accelerators)

    def key(self) -> Dict[str, str]:
        """What the numbers depend on (for caches and checkpoints): the search space, the
        hardware space (or the accelerator list), the cost source's fingerprint (its version,
        constants and options) and the batch."""
        if self.hardware is not None:
            hw = self.hardware.fingerprint()
        else:
            from accelerators.cost_source import fingerprint_of
            hw = "list-" + fingerprint_of({"accelerators": [a.to_dict() for a in self.accelerators]})
        return {"search_space": self.space.fingerprint(), "hardware_space": hw,
                "cost_source": self.model.fingerprint(), "batch": str(self.batch)}

    # ---- pricing ----------------------------------------------------------------------
    def metrics(self, enc: np.ndarray, acc_index: Optional[np.ndarray] = None
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latency (s), energy (J) and area (mm^2) of architecture encodings.

        Args:
            enc: ``[n, D]`` one-hot (exact cost) or soft (expected cost) encodings, or ``[D]``.
            acc_index: ``[n]`` accelerator indices to price each row on; ``None`` prices every
                row on every accelerator.

        Returns:
            Three arrays: ``[n, A]`` each (``[n]`` with ``acc_index``).
        """
        enc = np.atleast_2d(np.asarray(enc, dtype=np.float64))
        if enc.shape[1] != self.space.encoding_size:
            raise ConfigError(f"encoding width {enc.shape[1]} != search space encoding size {self.space.encoding_size}")
        enc = self.candidate_table.weights(enc)  # the identity without bit choices
        if acc_index is None:
            lat = self.fixed_latency[None, :] + enc @ self.cand_latency
            en = self.fixed_energy[None, :] + enc @ self.cand_energy
            return lat, en, np.broadcast_to(self.area, lat.shape)
        acc_index = np.asarray(acc_index)
        lat = self.fixed_latency[acc_index] + np.einsum("nd,dn->n", enc, self.cand_latency[:, acc_index])
        en = self.fixed_energy[acc_index] + np.einsum("nd,dn->n", enc, self.cand_energy[:, acc_index])
        return lat, en, self.area[acc_index]

    def score(self, enc: np.ndarray, objective: Objective) -> np.ndarray:
        """``[n, A]`` objective of every encoding on every accelerator."""
        return objective(*self.metrics(enc))

    def best(self, enc: np.ndarray, objective: Objective, constraints=None) -> Tuple[np.ndarray, np.ndarray]:
        """Index ``[n]`` of the best accelerator per encoding and its score ``[n]``.

        With ``constraints`` (a :class:`~coexplore.constraints.ConstraintSet`) the choice
        follows :func:`~coexplore.constraints.constrained_argmin`: the best accelerator
        meeting them, or the best of the least-violating ones.
        """
        from .constraints import constrained_argmin

        lat, en, area = self.metrics(enc)
        s = np.asarray(objective(lat, en, area), dtype=np.float64)
        if constraints is None or not len(constraints):
            idx = np.argmin(s, axis=1)
        else:
            idx, _ = constrained_argmin(s, constraints.violation(lat, en, area))
        return idx, s[np.arange(len(idx)), idx]

    def sample_costs(self, sample: Dict[str, str]) -> Dict[str, np.ndarray]:
        """``{latency_s, energy_j, area_mm2}``, each ``[A]``, of one discrete architecture."""
        lat, en, area = self.metrics(self.space.encode(sample))
        return {"latency_s": lat[0], "energy_j": en[0], "area_mm2": np.asarray(area[0])}

    def least(self, metric: str) -> Tuple[float, Dict[str, str], int]:
        """The least reachable value of a metric over the joint space, and where it is.

        Per accelerator the cheapest candidate of each block is independent of the other
        blocks (costs add), so the minimum over the joint space is exact:
        ``min_a fixed[a] + sum_b min_c cost[b, c, a]``.

        Returns:
            ``(value, architecture, accelerator index)``; for ``fps`` the value is the
            highest reachable frame rate.
        """
        if metric not in ("latency", "fps", "energy", "area"):
            raise ConfigError(f"least(): unknown metric {metric!r}; allowed: latency, fps, energy, area")
        totals, choice = self.cheapest_per_accelerator("energy" if metric == "energy" else "latency")
        if metric == "area":
            a = int(np.argmin(self.area))
            return float(self.area[a]), self.architecture(choice[:, a]), a
        a = int(np.argmin(totals))
        value = float(totals[a])
        return (1.0 / value if metric == "fps" else value), self.architecture(choice[:, a]), a

    def cheapest_per_accelerator(self, metric: str, accs: Optional[np.ndarray] = None
                                 ) -> Tuple[np.ndarray, np.ndarray]:
        """The least ``latency`` or ``energy`` of any architecture on each accelerator.

        Args:
            metric: ``latency`` or ``energy``.
            accs: ``[A']`` accelerator indices (default: all).

        Returns:
            ``[A']`` totals and ``[B, A']`` the index of the chosen candidate in each block.
        """
        cand, fixed = {"latency": (self.cand_latency, self.fixed_latency),
                       "energy": (self.cand_energy, self.fixed_energy)}[metric]
        accs = np.arange(self.num_accelerators) if accs is None else np.asarray(accs)
        total = fixed[accs].copy()
        cols = np.arange(len(accs))
        choice = []
        for lo, hi in zip(self.block_offsets[:-1], self.block_offsets[1:]):
            sub = cand[lo:hi][:, accs]
            idx = np.argmin(sub, axis=0)
            total = total + sub[idx, cols]
            choice.append(idx)
        return total, np.asarray(choice, dtype=np.int64).reshape(len(choice), len(accs))

    def architecture(self, choice: Sequence[int]) -> Dict[str, str]:
        """``{label: value}`` from one row index per block (within the block's rows)."""
        return self.candidate_table.architecture(choice)
