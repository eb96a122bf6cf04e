"""The verifier: the exact analytical check of a design, and its greedy repair.

A result must hold for real.  Whatever surrogate steered the search, the design is checked
exactly: the architecture is priced on every accelerator of the hardware space by the
:class:`~coexplore.pricing.CostTable` and the accelerator is chosen by the one rule of
:func:`~coexplore.constraints.constrained_argmin` (the best for the objective among those
meeting every constraint; the least violating when none does).  A design that still
violates a constraint can be repaired (:meth:`Verifier.repair`), and is otherwise reported
as violating -- never as a success.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .common import hardware_metrics
from .constraints import ConstraintSet, constrained_argmin
from .objectives import Objective
from .pricing import CostTable

logger = logging.getLogger(__name__)

Sample = Dict[str, str]


class Verifier:
    """Exact checks of architectures on a cost table, under an objective and constraints.

    Args:
        table: the analytical cost table of the search space x hardware space.
        objective: what "best accelerator" means.
        constraints: the hard constraints.
    """

    def __init__(self, table: CostTable, objective: Objective, constraints: ConstraintSet) -> None:
        self.table = table
        self.objective = objective
        self.constraints = constraints

    @property
    def space(self):
        return self.table.space

    def prices(self, sample: Mapping[str, str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``[A]`` latency (s), energy (J) and area (mm^2) of ``sample`` on every accelerator."""
        lat, en, area = self.table.metrics(self.space.encode(sample))
        return lat[0], en[0], np.asarray(area[0])

    def violation(self, sample: Mapping[str, str]) -> np.ndarray:
        """``[A]`` total normalised violation of ``sample`` on every accelerator."""
        return self.constraints.violation(*self.prices(sample))

    def check(self, sample: Mapping[str, str], accelerator_index: Optional[int] = None) -> Dict[str, Any]:
        """The exact status of one design.

        Args:
            sample: the architecture ``{label: op}``.
            accelerator_index: price it on this accelerator of the table; ``None`` chooses
                the accelerator by :func:`~coexplore.constraints.constrained_argmin`.

        Returns:
            ``accelerator_index``, ``accelerator``, ``metrics`` (the six hardware metrics by
            storage key), ``cost`` (the objective), ``constraints`` (one status row each),
            ``feasible``, ``violation`` (total normalised, 0 when feasible) and
            ``any_feasible`` (some accelerator meets every constraint for this architecture).
        """
        lat, en, area = self.prices(sample)
        score = np.asarray(self.objective(lat, en, area), dtype=np.float64)
        viol = self.constraints.violation(lat, en, area)
        idx = int(constrained_argmin(score, viol)[0]) if accelerator_index is None else int(accelerator_index)
        m = {k: float(v) for k, v in hardware_metrics(float(lat[idx]), float(en[idx]), float(area[idx])).items()}
        return {"accelerator_index": idx, "accelerator": self.table.accelerators[idx], "metrics": m,
                "cost": float(score[idx]), "constraints": self.constraints.check(m),
                "feasible": bool(viol[idx] <= 0), "violation": float(viol[idx]),
                "any_feasible": bool((viol <= 0).any())}

    def repair(self, sample: Mapping[str, str], log_probs: Mapping[str, Sequence[float]],
               max_moves: Optional[int] = None) -> Tuple[Sample, Dict[str, Any], List[Dict[str, str]]]:
        """Greedy repair: move one block at a time to another candidate until some accelerator
        meets every constraint.

        Each move is the one that removes the most violation (the least, over accelerators, of
        the total normalised violation) per unit of architecture log-probability given up --
        the search's own belief of what matters for accuracy.  It terminates: every move
        strictly lowers the violation, and the number of moves is bounded.

        Args:
            sample: the violating architecture.
            log_probs: ``{label: [log p of each candidate]}`` of the search's distribution.
            max_moves: at most this many moves (default ``10 x`` the number of blocks).

        Returns:
            ``(architecture, check, moves)``: the repaired architecture, its :meth:`check`
            and the moves made (``{"block", "from", "to"}``).
        """
        blocks = self.space.choices  # every labelled choice: ops, and bit widths where offered
        current: Sample = dict(sample)
        moves: List[Dict[str, str]] = []
        cur_v = float(self.violation(current).min())
        for _ in range(max_moves if max_moves is not None else 10 * len(blocks)):
            if cur_v <= 0:
                break
            best = None
            for b in blocks:
                lp = np.asarray(log_probs[b.label], dtype=np.float64)
                i_now = b.candidates.index(current[b.label])
                for j, op in enumerate(b.candidates):
                    if j == i_now:
                        continue
                    nv = float(self.violation({**current, b.label: op}).min())
                    gain = cur_v - nv
                    if gain <= 1e-12:
                        continue
                    lost = max(1e-6, float(lp[i_now] - lp[j]))
                    score = gain / lost
                    if best is None or score > best[0]:
                        best = (score, b.label, op, nv)
            if best is None:
                break
            _, label, op, nv = best
            moves.append({"block": label, "from": current[label], "to": op})
            current[label] = op
            cur_v = nv
        check = self.check(current)
        logger.warning("final design violated a constraint; repaired with %d block change(s): %s", len(moves),
                       ", ".join(f"{m['block']} {m['from']}->{m['to']}" for m in moves) or "none possible")
        return current, check, moves
