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
from accelerators.cost_model import MAPPING_OBJECTIVES, AnalyticalModel
from accelerators.networks import get_workload, list_workloads

from .runfolder import ExitCode

logger = logging.getLogger("coexplore")

from .objectives import PRODUCTS

#: what `cost --space` can rank designs by: the product objectives (each minimised)
NETWORK_METRICS = tuple(PRODUCTS)


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
    from .common import to_jsonable
    out = to_jsonable(o)
    if out is o:
        raise TypeError(f"cannot serialise {type(o).__name__}")
    return out


# ---------------------------------------------------------------------------------------
# coexplore cost
# ---------------------------------------------------------------------------------------

def cmd_cost(args: argparse.Namespace) -> int:
    layers = get_workload(args.workload, batch=args.batch)
    model = AnalyticalModel(mapping_objective=args.mapping_objective)
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
# coexplore evaluator build / report
# ---------------------------------------------------------------------------------------

def cmd_evaluator_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from search_spaces import get_search_space

    from .evaluator_train import TrainConfig, build_evaluator, report_to_markdown
    from .objectives import Objective

    space = get_search_space(args.space)
    hw = get_hardware_space(args.hardware)
    objective = Objective.parse(args.objective)
    out = Path(args.out)
    if out.suffix != ".pt":
        raise UserError(f"--out {out}: the evaluator checkpoint must end in .pt")
    cfg = TrainConfig(width=args.width, blocks=args.blocks, max_epochs_generator=args.epochs_generator,
                      max_epochs_estimator=args.epochs_estimator, seed=args.seed)
    res = build_evaluator(space, hw, objective, out=out, num_arch=args.num_arch, pairs_per_arch=args.pairs_per_arch,
                          cfg=cfg, cache_dir=args.cache_dir, progress=not args.quiet, report_arch=args.report_arch,
                          constraints=args.constraint)
    _write_report(out, res["report"], report_to_markdown(res["report"]), args.format)
    return 0


def cmd_evaluator_report(args: argparse.Namespace) -> int:
    from search_spaces import get_search_space

    from .constraints import ConstraintSet
    from .evaluator import Evaluator
    from .evaluator_train import fresh_encodings, report_to_markdown, score_evaluator
    from .objectives import Objective
    from .pricing import CostTable

    ev = Evaluator.load(args.path)
    meta = ev.meta
    space = get_search_space(args.space or meta.get("search_space_name", ""))
    table = CostTable(space, ev.hw_space)
    ev.check_provenance(table.key(), where=args.path)
    enc, soft = fresh_encodings(space, args.num_arch, seed=args.seed)
    report = score_evaluator(ev, table, enc, Objective.parse(meta.get("objective_spec", "edap")), soft=soft,
                             constraints=ConstraintSet.parse(meta.get("constraints") or []))
    report.update({"search_space": space.name, "hardware_space": ev.hw_space.name})
    md = report_to_markdown(report)
    if args.format == "json":
        print(json.dumps(report, indent=2, default=_json_default))
    else:
        print(md)
    return 0


def _write_report(out, report: Dict[str, Any], md: str, fmt: str) -> None:
    from .common import atomic_write_text, write_json

    write_json(out.with_suffix(".report.json"), json.loads(json.dumps(report, default=_json_default)))
    atomic_write_text(out.with_suffix(".report.md"), md)
    if fmt == "json":
        print(json.dumps(report, indent=2, default=_json_default))
    else:
        print(md)
        print(f"saved {out} (+ .report.json, .report.md)")


# ---------------------------------------------------------------------------------------
# coexplore search
# ---------------------------------------------------------------------------------------

def cmd_search(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .config import load_config
    from .runfolder import CONFIG_FILE
    from .search import run_search

    config = args.config
    out = Path(args.out) if args.out else None
    if config is None and args.resume and out is not None and (out / CONFIG_FILE).is_file():
        config = out / CONFIG_FILE  # --resume with only --out reuses the run's saved config
    overrides = list(args.overrides)
    cfg = load_config(config, overrides)
    if args.quiet:
        cfg = cfg.replace(progress=False)
    out = out if out is not None else Path("runs") / cfg.name
    result = run_search(cfg, out, resume=args.resume, cache_dir=args.cache_dir)
    _print_result(result, out, args.format)
    return int(result.exit_code)


def _print_result(result, out, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(result.to_dict(), indent=2, default=_json_default))
        return
    print(f"run folder: {out}")
    if result.status == "diverged":
        print(f"DIVERGED: {result.message}", file=sys.stderr)
        return
    m = result.metrics
    acc = result.accelerator
    print("architecture: " + ", ".join(f"{k}={v}" for k, v in result.architecture.items()))
    if "pe_x" in acc:
        print(f"accelerator:  {acc['pe_x']}x{acc['pe_y']} PEs, {acc['dataflow'].upper()}, RF {acc['rf_bytes']} B, "
              f"GLB {acc['glb_bytes'] // 1024} KB")
    else:  # a measured device (coexplore.lut): this machine
        print(f"device:       {acc.get('name', acc)}")
    chance = " (CHANCE LEVEL)" if result.chance_level else ""

    def q(key: str, scale: float = 1.0) -> str:  # energy and area are unknown (null) for a measured device
        return "n/a" if m.get(key) is None else f"{m[key] * scale:.4g}"

    print(f"accuracy {100 * m['accuracy']:.2f}%{chance} ({result.accuracy_source}), latency {m['latency_s'] * 1e3:.4g} ms "
          f"({m['fps']:.1f} fps), energy {q('energy_j', 1e3)} mJ, area {q('area_mm2')} mm2, "
          f"EDAP {q('edap')}  [checked by the {result.checked_by} model]")
    for c in result.constraints:
        print(f"  {'OK  ' if c['satisfied'] else 'FAIL'} {c['spec']}: value {c['value']:.4g}, g = {c['g']:+.4g}")
    if not result.all_constraints_met:
        print("WARNING: the design does NOT meet every constraint (status: constraints-violated)", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# coexplore pareto / plot / retrain / export
# ---------------------------------------------------------------------------------------

def cmd_pareto(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .constraints import Constraint
    from .pareto import write_pareto

    lines: Dict[str, List[float]] = {}
    for text in args.constraint:
        c = Constraint.parse(text)
        lines.setdefault(c.metric, []).append(c.bound)
    out = Path(args.out) if args.out else Path(args.runs[0])
    res = write_pareto(args.runs, out, x=args.x, y=args.y, constraints=lines or None)
    if args.format == "json":
        print(json.dumps(res, indent=2, default=_json_default))
        return 0
    _emit(res["front"], {"runs": res["n_runs"], "front size": len(res["front"]), "hypervolume": res["hypervolume"],
                         "reference point": str(res["reference_point"]), "csv": str(res["paths"]["csv"]),
                         "plot": str(res["paths"]["png"])}, "table", title=f"Pareto front: {args.y} vs {args.x}")
    return 0


def _run_parts(run):
    """The result and the resolved search space of a finished run folder."""
    from .config import load_config
    from .runfolder import CONFIG_FILE, read_result

    result = read_result(run)
    if result.status == "diverged":
        raise UserError(f"{run}: the run diverged ({result.message}); it has no design")
    cfg = load_config(run / CONFIG_FILE)
    return result, cfg, cfg.resolve_search_space()


def cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from accelerators import Accelerator

    from .plots import plot_accelerator, plot_trajectories

    run = Path(args.run)
    result, _, space = _run_parts(run)
    paths = plot_trajectories(run)
    paths += plot_accelerator(Accelerator.from_dict(result.accelerator), space.layers(result.architecture),
                              run / "plots" / "accelerator.png", formats=("png", "svg"))
    for p in paths:
        print(p)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from search_spaces.tasks import get_task
    from search_spaces.train import resolve_device

    from .detection import load_run_data
    from .finalize import chance_level, retrain
    from .runfolder import write_result

    run = Path(args.run)
    result, cfg, space = _run_parts(run)
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be an integer >= 1, got {args.epochs}")
    if args.lr is not None and not (args.lr > 0 and args.lr < float("inf")):
        raise UserError(f"--lr must be a finite number > 0, got {args.lr}")
    device = resolve_device(args.device)
    d = cfg.data
    data = load_run_data(space, get_task(space), d, seed=cfg.seed, cache_dir=args.cache_dir)
    epochs = args.epochs or max(1, cfg.retrain_epochs)
    rt = retrain(space, result.architecture, data, epochs, args.lr or cfg.retrain_lr, device, cfg.seed,
                 progress=not args.quiet)
    acc = rt["test_accuracy"]
    result = result.with_(retrains=[*result.retrains, rt], accuracy_source="retrained-test (coexplore retrain)",
                          metrics={**result.metrics, "accuracy": acc, "error": 1.0 - acc},
                          chance_level=chance_level(acc, get_task(space).chance(space.num_classes), rt["test_samples"]))
    write_result(run, result)
    print(json.dumps(rt, indent=2) if args.format == "json" else
          f"{run}: test accuracy {100 * acc:.2f}% after {epochs} epochs from scratch "
          f"({rt['parameters']:,} parameters, {rt['seconds']:.1f} s); added to result.json")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from accelerators import Accelerator

    from .export import export_timeloop, export_zigzag

    if args.run:
        run = Path(args.run)
        result, _, space = _run_parts(run)
        acc = Accelerator.from_dict(result.accelerator)
        layers = space.layers(result.architecture)
        out = Path(args.out) if args.out else run / "export"
    else:
        if not (args.accelerator and args.workload):
            raise UserError("give a RUN folder, or both --accelerator and --workload")
        acc = get_accelerator(args.accelerator)
        layers = get_workload(args.workload)
        if not args.out:
            raise UserError("--out is required with --accelerator/--workload")
        out = Path(args.out)
    written = []
    if args.to in ("timeloop", "both"):
        written += export_timeloop(acc, layers, out / "timeloop")
    if args.to in ("zigzag", "both"):
        written += export_zigzag(acc, layers, out / "zigzag")
    print(f"wrote {len(written)} files under {out}")
    return 0


# ---------------------------------------------------------------------------------------
# coexplore sweep
# ---------------------------------------------------------------------------------------

def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import Sweep, exit_code, run_sweep, summarize

    sweep = Sweep.load(args.spec)
    try:
        df = run_sweep(sweep, args.out, jobs=args.jobs, backend=args.backend, resume=not args.no_resume,
                       dry_run=args.dry_run, cache_dir=args.cache_dir, progress=not args.quiet,
                       threads=args.threads, ray_address=args.ray_address)
    except KeyboardInterrupt:
        print("coexplore sweep: interrupted; rerun the same command to resume", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    if not args.dry_run:
        df = summarize(args.out)
    if args.format == "json":
        print(df.to_json(orient="records", indent=2))
    else:
        _emit(df.to_dict(orient="records"), None, "table", title=f"sweep {sweep.name}: {len(df)} points")
    return 0 if args.dry_run else exit_code(df)


# ---------------------------------------------------------------------------------------
# coexplore demo
# ---------------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(args.out, jobs=args.jobs, quick=args.quick, cache_dir=args.cache_dir, progress=not args.quiet)
    print(summary["table"])
    print(f"\nPareto plot: {summary['pareto_png']}\nresults:     {summary['csv']}")
    return 0 if summary["hdx_met"] else int(ExitCode.CONSTRAINTS_VIOLATED)


# ---------------------------------------------------------------------------------------
# coexplore list
# ---------------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    from search_spaces import list_search_spaces

    what = {"workloads": list_workloads, "accelerators": list_accelerators, "spaces": list_hardware_spaces,
            "search-spaces": list_search_spaces}
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
    c.add_argument("--mapping-objective", default="edp", choices=MAPPING_OBJECTIVES,
                   help="what the per-layer mapping search minimises (default: edp)")
    c.add_argument("--top", type=int, default=10, help="how many designs to show with --space (default: 10)")
    c.add_argument("--batch", type=int, default=1, help="batch size N (default: 1)")
    c.add_argument("--explain", metavar="LAYER", default=None,
                   help="show the mapping, access counts and energy breakdown of one layer (index or name)")
    c.add_argument("--format", "-f", choices=("table", "json", "csv"), default="table")
    c.set_defaults(func=cmd_cost)

    ev = sub.add_parser("evaluator", help="build or re-score a DANCE evaluator (neural cost surrogate)")
    evs = ev.add_subparsers(dest="evaluator_command", metavar="ACTION")
    b = evs.add_parser("build", help="generate labelled data with the analytical model, train, report",
                       description="Generate (architecture, best accelerator, costs) data with the analytical model, "
                                   "train the hardware-generation and cost-estimation networks, and report their "
                                   "accuracy against the analytical model on fresh architectures.")
    b.add_argument("--space", default="proxyless-cifar10", help="search space name or YAML (default: proxyless-cifar10)")
    b.add_argument("--hardware", default="default", help="hardware space name or YAML (default: default)")
    b.add_argument("--objective", default="edap", help="edap (default), edp, latency, energy or area")
    b.add_argument("--out", required=True, help="checkpoint path, ending in .pt")
    b.add_argument("--constraint", action="append", default=[],
                   help="label the best accelerator among those meeting this constraint (for HDX runs), "
                        "e.g. 'fps >= 60'; repeatable")
    b.add_argument("--num-arch", type=int, default=50_000, help="sampled architectures (DANCE: 50k)")
    b.add_argument("--pairs-per-arch", type=int, default=36, help="(architecture, accelerator) pairs per architecture")
    b.add_argument("--epochs-generator", type=int, default=40)
    b.add_argument("--epochs-estimator", type=int, default=12)
    b.add_argument("--width", type=int, default=128)
    b.add_argument("--blocks", type=int, default=2)
    b.add_argument("--report-arch", type=int, default=5000, help="fresh architectures for the report")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--cache-dir", default=None, help="dataset cache (default: $COEXPLORE_CACHE or ~/.cache/coexplore)")
    b.add_argument("--format", "-f", choices=("table", "json"), default="table")
    b.set_defaults(func=cmd_evaluator_build)
    r = evs.add_parser("report", help="re-score a saved evaluator against fresh analytical samples")
    r.add_argument("path", help="evaluator checkpoint (.pt)")
    r.add_argument("--space", default=None, help="search space (default: the one recorded in the checkpoint)")
    r.add_argument("--num-arch", type=int, default=5000)
    r.add_argument("--seed", type=int, default=12345)
    r.add_argument("--format", "-f", choices=("table", "json"), default="table")
    r.set_defaults(func=cmd_evaluator_report)
    ev.set_defaults(func=lambda a: (ev.print_help(), 2)[1])

    se = sub.add_parser("search", help="run a co-exploration search into a run folder",
                        description="Search a network and its accelerator together (DANCE loss, HDX constraints). "
                                    "YAML config, then key=value overrides (dotted keys for sections, e.g. "
                                    "hdx.growth=2 data.limit=500); the resolved config is saved in the run folder.")
    se.add_argument("--config", "-c", default=None, help="YAML run config (see experiments/configs/)")
    se.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    se.add_argument("--out", "-o", default=None, help="run folder (default: runs/<name>)")
    se.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    se.add_argument("--cache-dir", default=None, help="cache for data and evaluators (default: $COEXPLORE_CACHE "
                                                      "or ~/.cache/coexplore)")
    se.add_argument("--format", "-f", choices=("table", "json"), default="table")
    se.set_defaults(func=cmd_search)

    sw = sub.add_parser("sweep", help="run a grid of searches (lambda, targets, objectives, seeds) in parallel",
                        description="Run every point of a sweep spec (YAML: name, base, set, grid) as a search in "
                                    "its own run folder, several at a time; rerunning resumes an interrupted sweep.")
    sw.add_argument("spec", help="sweep YAML (see experiments/sweeps/)")
    sw.add_argument("--out", "-o", required=True, help="sweep folder (one run folder per point)")
    sw.add_argument("--jobs", "-j", type=int, default=2, help="points at once (default: 2)")
    sw.add_argument("--backend", choices=("local", "ray"), default="local",
                    help="local processes (default) or a Ray cluster (pip install 'coexplore[ray]')")
    sw.add_argument("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    sw.add_argument("--threads", type=int, default=None, help="CPU threads per point (default: cores / jobs)")
    sw.add_argument("--dry-run", action="store_true", help="show what would run")
    sw.add_argument("--no-resume", action="store_true", help="refuse a sweep folder that already holds runs")
    sw.add_argument("--cache-dir", default=None)
    sw.add_argument("--format", "-f", choices=("table", "json"), default="table")
    sw.set_defaults(func=cmd_sweep)

    pa = sub.add_parser("pareto", help="Pareto front of finished runs: CSV, PNG/SVG plot, hypervolume",
                        description="Collect result.json of run folders (or parents of run folders) and write the "
                                    "front of --y against --x, with constraint lines.")
    pa.add_argument("runs", nargs="+", metavar="RUN_DIR")
    pa.add_argument("--x", default="latency", help="latency (default), energy, edap, edp, area, fps")
    pa.add_argument("--y", default="error", help="error (default) or accuracy")
    pa.add_argument("--constraint", action="append", default=[], help="draw a constraint line, e.g. 'latency <= 0.1ms'")
    pa.add_argument("--out", default=None, help="output folder (default: the first RUN_DIR)")
    pa.add_argument("--format", "-f", choices=("table", "json"), default="table")
    pa.set_defaults(func=cmd_pareto)

    pl = sub.add_parser("plot", help="(re)draw a run's trajectory and accelerator plots")
    pl.add_argument("run", metavar="RUN_DIR")
    pl.set_defaults(func=cmd_plot)

    rt = sub.add_parser("retrain", help="train a run's network from scratch and report its test accuracy")
    rt.add_argument("run", metavar="RUN_DIR")
    rt.add_argument("--epochs", type=int, default=None, help="default: the run's retrain_epochs (at least 1)")
    rt.add_argument("--lr", type=float, default=None)
    rt.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    rt.add_argument("--cache-dir", default=None)
    rt.add_argument("--format", "-f", choices=("table", "json"), default="table")
    rt.set_defaults(func=cmd_retrain)

    ex = sub.add_parser("export", help="export an accelerator and workload to Timeloop / ZigZag YAML")
    ex.add_argument("run", nargs="?", metavar="RUN_DIR", help="a finished run folder")
    ex.add_argument("--accelerator", "-a", default=None, help="instead of a run: accelerator name or YAML")
    ex.add_argument("--workload", "-w", default=None, help="instead of a run: workload name or YAML")
    ex.add_argument("--to", choices=("timeloop", "zigzag", "both"), default="both")
    ex.add_argument("--out", "-o", default=None, help="output folder (default: RUN_DIR/export)")
    ex.set_defaults(func=cmd_export)

    de = sub.add_parser("demo", help="a small constrained co-exploration with baselines, a result table and a "
                                     "Pareto plot (minutes on a CPU)")
    de.add_argument("--out", "-o", default="runs/demo", help="output folder (default: runs/demo)")
    de.add_argument("--jobs", "-j", type=int, default=2, help="runs in parallel (default: 2)")
    de.add_argument("--quick", action="store_true", help="an even smaller budget (for tests)")
    de.add_argument("--cache-dir", default=None)
    de.set_defaults(func=cmd_demo)

    ls = sub.add_parser("list", help="list built-in workloads, accelerators and hardware spaces")
    ls.add_argument("what", nargs="?", choices=("workloads", "accelerators", "spaces", "search-spaces"))
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
    except (UserError, ConfigError, UnknownNameError) as exc:
        print(f"coexplore {args.command}: error: {exc}", file=sys.stderr)
        return int(ExitCode.USER_ERROR)
    except OSError as exc:  # a file that could not be read or written, named by the OS
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"coexplore {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return int(ExitCode.USER_ERROR)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
