"""The methods ``dance-lut`` and ``hdx-lut``: DANCE and HDX steered by a latency lookup table.

With a measured latency table (:mod:`coexplore.lut`) the accelerator axis has one entry --
the machine -- so there is no hardware to generate and no neural evaluator to learn: the
differentiable cost is the table's expected latency under the architecture distribution
(:class:`~coexplore.lut.LUTCost`, the latency loss of ProxylessNAS and FBNet).

* ``dance-lut`` -- DANCE's loss ``task loss + lambda * latency / latency(uniform)``;
* ``hdx-lut`` -- HDX's gradient manipulation on the table's latency for ``latency`` / ``fps``
  constraints, with HDX's per-epoch calibration against the exact check.

Both also run on an analytical table of a hardware space with one accelerator.  This
module is light (it imports the table code only when a run asks for its cost), so that
registering the methods costs a config parser nothing.
"""

from __future__ import annotations

from .methods import HDX, Dance, register_method


def _cost(run):
    from .lut import LatencyCostTable, LUTCost, check_latency_only

    if isinstance(run.table, LatencyCostTable):
        check_latency_only(run.objective, run.constraints)
    return LUTCost(run.table, run.objective)


@register_method("dance-lut")
class DanceLUT(Dance):
    description = "DANCE's loss with a per-block latency lookup table (measured, or one accelerator) as the cost"
    needs_evaluator = False

    def hardware_cost(self, run):
        return _cost(run)


@register_method("hdx-lut")
class HDXLUT(HDX):
    description = "HDX's hard constraints steered by a per-block latency lookup table (measured, or one accelerator)"
    needs_evaluator = False
    evaluator_constraints = False

    def hardware_cost(self, run):
        return _cost(run)
