"""How strongly the best accelerator depends on the architecture, in a user's spaces.

Co-exploration matters only where the best hardware changes with the network.  For a
seeded sample of architectures, :func:`interplay` finds each one's best accelerator (under
the objective and the constraints, by the one rule of
:func:`~coexplore.constraints.constrained_argmin`) and reports

* how many distinct winners there are and the share of the most common one;
* the regret of using one accelerator for every architecture -- the single accelerator
  that is best on the median, and the most common winner -- as the ratio of its objective
  to each architecture's own optimum, minus one (median, 95th percentile, max);
* a verdict: when one accelerator is within ``tolerance`` of the best for (nearly) every
  architecture, the co-exploration's hardware side barely matters in this space, and
  reports should say so.

``coexplore interplay --space S --hardware H [--objective O] [--constraint C]`` prints it.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .constraints import ConstraintSet, constrained_argmin
from .objectives import Objective


def interplay(table, objective: Objective, constraints: Optional[ConstraintSet] = None, n: int = 5000,
              seed: int = 0, tolerance: float = 0.05) -> Dict[str, Any]:
    """The architecture/hardware interplay of a cost table (see the module docstring).

    Args:
        table: a :class:`~coexplore.pricing.CostTable` of the search space x hardware space.
        objective: what "best accelerator" means.
        constraints: hard constraints the accelerator must meet (optional).
        n: architectures drawn uniformly (one-hot), seeded by ``seed``.
        tolerance: the relative regret under which one accelerator "serves" an architecture.

    Returns:
        A JSON-able report (see the keys below).
    """
    from .evaluator_data import random_onehot_encodings

    constraints = constraints if constraints is not None else ConstraintSet()
    rng = np.random.default_rng(seed)
    enc = random_onehot_encodings(table.space, int(n), rng)
    lat, en, area = table.metrics(enc)
    score = np.asarray(objective(lat, en, area), dtype=np.float64)
    best, masked = constrained_argmin(score, constraints.violation(lat, en, area))
    rows = np.arange(len(best))
    feasible_any = np.isfinite(masked).any(axis=1) & (constraints.violation(lat, en, area).min(axis=1) <= 0)
    own = masked[rows, best]
    ratio = masked / own[:, None] - 1.0  # [n, A] regret of each accelerator; inf where not eligible
    winners, counts = np.unique(best, return_counts=True)
    common = int(winners[np.argmax(counts)])
    # the best single accelerator: the least median regret among those eligible for every architecture
    med = np.array([np.median(c) if np.isfinite(c).all() else np.inf for c in ratio.T])
    single = int(np.argmin(med)) if np.isfinite(med).any() else common

    def regret(a: int) -> Dict[str, float]:
        r = ratio[:, a]
        served = np.isfinite(r)
        rr = np.where(served, r, np.inf)
        return {"accelerator": table.accelerators[a].short(), "median_pct": float(np.median(rr) * 100),
                "p95_pct": float(np.percentile(rr, 95) * 100), "max_pct": float(np.max(rr) * 100),
                "within_tolerance_pct": float(np.mean(rr <= tolerance) * 100),
                "ineligible_pct": float(np.mean(~served) * 100)}

    top_share = float(counts.max() / len(best))
    one = regret(single)
    weak = one["within_tolerance_pct"] >= 99.0
    verdict = (f"one accelerator ({one['accelerator']}) is within {100 * tolerance:.0f}% of the best for "
               f"{one['within_tolerance_pct']:.1f}% of the architectures: in this space the best hardware barely "
               "depends on the architecture, so co-exploration can gain little over choosing the accelerator once"
               if weak else
               f"{len(winners)} distinct best accelerators; the best single accelerator is within "
               f"{100 * tolerance:.0f}% of the optimum for only {one['within_tolerance_pct']:.1f}% of the "
               "architectures: the best hardware depends on the architecture")
    return {"search_space": table.space.name, "hardware_space": table.hardware.name if table.hardware else "list",
            "objective": objective.key(), "constraints": constraints.to_list(), "architectures": int(len(best)),
            "seed": int(seed), "accelerators": int(table.num_accelerators),
            "feasible_architectures_pct": float(feasible_any.mean() * 100),
            "distinct_best_accelerators": int(len(winners)), "top_share_pct": top_share * 100,
            "most_common_best": regret(common), "best_single_accelerator": one,
            "hardware_barely_matters": bool(weak), "tolerance_pct": tolerance * 100, "verdict": verdict}
