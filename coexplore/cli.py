"""The ``coexplore`` command line.  The only module that parses arguments or sets up logging."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from accelerators import (ConfigError, UnknownNameError, get_accelerator, get_hardware_space, list_accelerators,
                          list_hardware_spaces)
from accelerators.cost_model import OBJECTIVES, AnalyticalModel
from accelerators.networks import get_workload, list_workloads

logger = logging.getLogger("coexplore")

NETWORK_METRICS = ("edap", "edp", "latency", "energy", "area")


class UserError(Exception):
    """A mistake in the command line or its inputs: printed without a traceback."""


# ---------------------------------------------------------------------------------------
# output helpers
# ---------------------------------------------------------------------------------------

def _emit(rows: List[Dict[str, Any]], totals: Optional[Dict[str, Any]], fmt: str, title: str = "") -> None:
    import pandas as pd

    if fmt == "json":
        print(json.dumps({"rows": rows, "totals": totals} if totals is not None else {"rows": rows}, indent=2,
                         default=_json_default))
        return
    df = pd.DataFrame(rows)
    if fmt == "csv":
        sys.stdout.write(df.to_csv(index=False))
        return
    if title:
        print(title)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_columns", None):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if totals:
        print()
        for k, v in totals.items():
            print(f"{k:>18}: {v:.6g}" if isinstance(v, float) else f"{k:>18}: {v}")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")


# ---------------------------------------------------------------------------------------
# coexplore cost
# ---------------------------------------------------------------------------------------

def cmd_cost(args: argparse.Namespace) -> int:
    layers = get_workload(args.workload, batch=args.batch)
    model = AnalyticalModel(objective=args.mapping_objective)
    if args.space is not None and args.accelerator is not None:
        raise UserError("give either --accelerator or --space, not both")
    if args.space is not None:
        return _cost_space(args, layers, model)
    acc = get_accelerator(args.accelerator or "eyeriss")
    if args.explain is not None:
        layer = _pick_layer(layers, args.explain)
        ex = model.explain(layer, acc)
        if args.format == "json":
            print(json.dumps(ex.to_dict(), indent=2, default=_json_default))
        else:
            print(ex)
        return 0
    costs = model.evaluate(layers, [acc])
    rows = []
    for i, l in enumerate(layers):
        rows.append({"layer": l.name or f"#{i}", "kind": l.kind, "MACs": l.macs,
                     "latency_ms": float(costs.latency_s[0, i] * 1e3), "energy_mJ": float(costs.energy_j[0, i] * 1e3),
                     "utilization": float(costs.utilization[0, i]),
                     "bound": "memory" if costs.memory_bound[0, i] else "compute"})
    macs = sum(l.macs for l in layers)
    lat = float(costs.latency_total_s[0])
    totals = {"workload": args.workload, "accelerator": acc.name or acc.short(), "layers": len(layers),
              "MACs": macs, "latency_ms": lat * 1e3, "fps": 1.0 / lat, "energy_mJ": float(costs.energy_total_j[0] * 1e3),
              "area_mm2": float(costs.area_mm2[0]), "edap_J_s_mm2": float(costs.edap[0]),
              "utilization": macs / (float(costs.cycles[0].sum()) * acc.num_pes)}
    _emit(rows, totals, args.format, title=f"{args.workload} on {acc.name or acc.short()} ({acc.short()})")
    return 0


def _pick_layer(layers, key: str):
    for l in layers:
        if l.name == key:
            return l
    try:
        return layers[int(key)]
    except (ValueError, IndexError):
        names = ", ".join(l.name for l in layers[:12] if l.name)
        raise UserError(f"--explain {key!r}: no such layer; give an index 0..{len(layers) - 1} or a name ({names}, ...)")


def _cost_space(args: argparse.Namespace, layers, model: AnalyticalModel) -> int:
    space = get_hardware_space(args.space)
    accs = space.enumerate()
    costs = model.evaluate(layers, accs)
    score = costs.metric(args.objective)
    order = np.argsort(score, kind="stable")[: args.top]
    rows = []
    for rank, j in enumerate(order, 1):
        a = accs[j]
        row = {"rank": rank}
        row.update({k: getattr(a, k) for k in space.labels})
        row.update({"latency_ms": float(costs.latency_total_s[j] * 1e3), "energy_mJ": float(costs.energy_total_j[j] * 1e3),
                    "area_mm2": float(costs.area_mm2[j]), "edap": float(costs.edap[j]), args.objective + "_score": float(score[j])})
        rows.append(row)
    totals = {"workload": args.workload, "space": space.name, "designs": space.size, "objective": args.objective}
    _emit(rows, totals, args.format, title=f"best {len(rows)} of {space.size} designs for {args.workload} by {args.objective}")
    return 0


# ---------------------------------------------------------------------------------------
# coexplore list
# ---------------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    what = {"workloads": list_workloads, "accelerators": list_accelerators, "spaces": list_hardware_spaces}
    for k in ([args.what] if args.what else list(what)):
        print(f"{k}: " + ", ".join(what[k]()))
    return 0


# ---------------------------------------------------------------------------------------
# parser and entry point
# ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coexplore",
                                description="Co-explore neural networks and their accelerators (DANCE, HDX).")
    p.add_argument("--quiet", "-q", action="store_true", help="only warnings and errors on stderr")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("cost", help="price a network on an accelerator or on a whole hardware space",
                       description="Price a workload with the analytical model. With --accelerator: a per-layer "
                                   "table and totals. With --space: every design of the space, best --top first.")
    c.add_argument("--workload", "-w", required=True,
                   help="built-in network name (see `coexplore list workloads`) or a workload YAML file")
    c.add_argument("--accelerator", "-a", default=None,
                   help="built-in accelerator name or YAML file (default: eyeriss)")
    c.add_argument("--space", "-s", default=None, help="price on every design of a hardware space (name or YAML)")
    c.add_argument("--objective", default="edap", choices=NETWORK_METRICS,
                   help="network-level metric that ranks designs with --space (default: edap)")
    c.add_argument("--mapping-objective", default="edp", choices=OBJECTIVES,
                   help="what the per-layer mapping search minimises (default: edp)")
    c.add_argument("--top", type=int, default=10, help="how many designs to show with --space (default: 10)")
    c.add_argument("--batch", type=int, default=1, help="batch size N (default: 1)")
    c.add_argument("--explain", metavar="LAYER", default=None,
                   help="show the mapping, access counts and energy breakdown of one layer (index or name)")
    c.add_argument("--format", "-f", choices=("table", "json", "csv"), default="table")
    c.set_defaults(func=cmd_cost)

    ls = sub.add_parser("list", help="list built-in workloads, accelerators and hardware spaces")
    ls.add_argument("what", nargs="?", choices=("workloads", "accelerators", "spaces"))
    ls.set_defaults(func=cmd_list)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, ConfigError, UnknownNameError, FileNotFoundError) as exc:
        print(f"coexplore {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
