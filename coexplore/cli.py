"""The ``coexplore`` command line.  The only module that parses arguments or sets up logging.

Conventions, the same for every command:

* global options -- ``--quiet``, ``--verbose``, ``--format table|json|csv``, ``--cache-dir``,
  ``--plugin FILE`` -- go before or after the subcommand;
* a user mistake is one line on stderr naming the field and the allowed values, no
  traceback, exit code 2 (:class:`~coexplore.runfolder.ExitCode` lists every code);
* terminal tables fit 100 columns; wide data goes to ``--format csv`` / ``json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .common import ConfigError, UnknownNameError
from .runfolder import ExitCode

logger = logging.getLogger("coexplore")

FORMATS = ("table", "json", "csv")
TABLE_WIDTH = 100


class UserError(Exception):
    """A mistake in the command line or its inputs: printed without a traceback."""


# ---------------------------------------------------------------------------------------
# argument types (each failure is one line naming the allowed values)
# ---------------------------------------------------------------------------------------

def int_at_least(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {v}")
        return v
    parse.__name__ = f"integer >= {lo}"
    return parse


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return v


def seed_int(text: str) -> int:
    from .config import MAX_SEED
    v = int_at_least(0)(text)
    if v > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {MAX_SEED}], got {v}")
    return v


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (exit 2), like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(int(ExitCode.USER_ERROR), f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# ---------------------------------------------------------------------------------------
# output helpers
# ---------------------------------------------------------------------------------------

def _json_default(o: Any) -> Any:
    from .common import to_jsonable
    out = to_jsonable(o)
    if out is o:
        raise TypeError(f"cannot serialise {type(o).__name__}")
    return out


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=_json_default))


def _fmt_cell(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}"
    return str(v)


def format_table(rows: List[Dict[str, Any]], width: int = TABLE_WIDTH) -> str:
    """A plain-text table of ``rows`` that fits ``width`` columns; columns that do not fit are
    left out with a note saying how to see them."""
    if not rows:
        return "(no rows)"
    cols: List[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    cells = [[_fmt_cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    keep, used = [], 0
    for i, w in enumerate(widths):
        if used + w + (2 if keep else 0) > width and keep:
            break
        keep.append(i)
        used += w + (2 if len(keep) > 1 else 0)
    numeric = [all(isinstance(r.get(cols[i]), (int, float)) and not isinstance(r.get(cols[i]), bool)
                   for r in rows if cols[i] in r) for i in range(len(cols))]

    def line(values: List[str]) -> str:
        return "  ".join(v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i])
                         for i, v in zip(keep, values)).rstrip()

    out = [line([cols[i] for i in keep])]
    out += [line([row[i] for i in keep]) for row in cells]
    if len(keep) < len(cols):
        out.append(f"({len(cols) - len(keep)} more column(s): {', '.join(cols[i] for i in range(len(cols)) if i not in keep)}"
                   f"; use --format csv or json)")
    return "\n".join(out)


def _emit(rows: List[Dict[str, Any]], totals: Optional[Dict[str, Any]], fmt: str, title: str = "") -> None:
    if fmt == "json":
        _print_json({"rows": rows, "totals": totals} if totals is not None else {"rows": rows})
        return
    if fmt == "csv":
        import pandas as pd
        sys.stdout.write(pd.DataFrame(rows).to_csv(index=False))
        return
    if title:
        print(title)
    print(format_table(rows))
    if totals:
        print()
        w = max(len(k) for k in totals)
        for k, v in totals.items():
            print(f"{k:>{w}}: {_fmt_cell(v) if not isinstance(v, float) else f'{v:.6g}'}")


# ---------------------------------------------------------------------------------------
# coexplore cost
# ---------------------------------------------------------------------------------------

def cmd_cost(args: argparse.Namespace) -> int:
    from accelerators import get_accelerator, get_cost_source, get_workload

    layers = get_workload(args.workload, batch=args.batch)
    if args.space is not None and args.accelerator is not None:
        raise UserError("give either --accelerator or --space, not both")
    if args.top is not None and args.space is None:
        raise UserError("--top ranks the designs of a hardware space; it needs --space")
    if args.explain is not None and args.cost_model != "analytical":
        raise UserError(f"--explain shows the analytical model's mapping; it cannot be combined with "
                        f"--cost-model {args.cost_model}")
    options: Dict[str, Any] = {"mapping_objective": args.mapping_objective, "tech": args.tech}
    if args.cost_model != "analytical":  # external backends: where to cache, whether to show progress
        options.update(cache_dir=args.cache_dir, progress=not args.quiet)
        if args.workers is not None:
            options["workers"] = args.workers
        if args.executor is not None:
            options["executor"] = args.executor
    elif args.workers is not None or args.executor is not None:
        raise UserError(f"--{'workers' if args.workers is not None else 'executor'} sets how an external cost model "
                        "runs (e.g. --cost-model zigzag); the analytical model runs in this process")
    model = get_cost_source(args.cost_model, **options)
    if args.space is not None:
        return _cost_space(args, layers, model)
    acc = get_accelerator(args.accelerator or "eyeriss")
    if args.explain is not None:
        ex = model.explain(_pick_layer(layers, args.explain), acc)
        if args.format == "json":
            _print_json(ex.to_dict())
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
              "utilization": macs / (float(costs.cycles[0].sum()) * acc.num_pes),
              "cost_model": model.describe()["name"], "cost_model_fingerprint": model.fingerprint()}
    _emit(rows, totals, args.format, title=f"{args.workload} on {acc.name or acc.short()} ({acc.short()}), "
                                          f"priced by {model.name}")
    return 0


def _pick_layer(layers, key: str):
    for l in layers:
        if l.name == key:
            return l
    names = ", ".join(l.name for l in layers[:12] if l.name)
    try:
        i = int(key)
    except ValueError:
        i = None
    if i is None or not 0 <= i < len(layers):
        raise UserError(f"--explain {key!r}: no such layer; give an index 0..{len(layers) - 1} or a name "
                        f"({names}, ...)")
    return layers[i]


def _cost_space(args: argparse.Namespace, layers, model) -> int:
    import numpy as np

    from accelerators import get_hardware_space

    from .common import get_metric

    space = get_hardware_space(args.space)
    accs = space.enumerate()
    costs = model.evaluate(layers, accs)
    metric = get_metric(args.objective)
    score = costs.metric(args.objective)
    order = np.argsort(score if metric.minimize else -score, kind="stable")[: args.top or 10]
    rows = []
    for rank, j in enumerate(order, 1):
        a = accs[j]
        row: Dict[str, Any] = {"rank": rank}
        if args.format == "table":
            row.update({k: getattr(a, k) for k in space.labels})
        else:  # every accelerator parameter, fixed ones too
            row.update({k: v for k, v in a.to_dict().items() if k != "name"})
        row.update({"latency_ms": float(costs.latency_total_s[j] * 1e3), "energy_mJ": float(costs.energy_total_j[j] * 1e3),
                    "area_mm2": float(costs.area_mm2[j]), "edap": float(costs.edap[j])})
        if args.objective not in ("latency", "energy", "area", "edap"):
            row[args.objective] = float(score[j])
        rows.append(row)
    totals = {"workload": args.workload, "space": space.name, "designs": space.size, "objective": args.objective,
              "cost_model": model.name, "cost_model_fingerprint": model.fingerprint()}
    if args.format == "table":
        totals["fixed"] = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in space.fixed.items())
    _emit(rows, totals, args.format,
          title=f"best {len(rows)} of {space.size:,} designs for {args.workload} by {args.objective}")
    return 0


# ---------------------------------------------------------------------------------------
# coexplore evaluator build / report
# ---------------------------------------------------------------------------------------

def cmd_evaluator_build(args: argparse.Namespace) -> int:
    from accelerators import get_hardware_space
    from search_spaces import get_search_space

    from .constraints import ConstraintSet, check_feasible
    from .evaluator_train import TrainConfig, build_evaluator, report_to_markdown
    from .objectives import Objective
    from .pricing import CostTable

    space = get_search_space(args.space)
    hw = get_hardware_space(args.hardware)
    objective = Objective.parse(args.objective)
    constraints = ConstraintSet.parse(args.constraint)
    out = Path(args.out)
    if out.suffix != ".pt":
        raise UserError(f"--out {out}: the evaluator checkpoint must end in .pt")
    table = CostTable(space, hw)
    if len(constraints):
        check_feasible(constraints, table)  # an unreachable bound fails here, with the reachable minimum
    cfg = TrainConfig(width=args.width, blocks=args.blocks, max_epochs_generator=args.epochs_generator,
                      max_epochs_estimator=args.epochs_estimator, seed=args.seed)
    res = build_evaluator(space, hw, objective, out=out, num_arch=args.num_arch, pairs_per_arch=args.pairs_per_arch,
                          cfg=cfg, cache_dir=args.cache_dir, progress=not args.quiet, report_arch=args.report_arch,
                          constraints=constraints, table=table)
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
    if args.format == "json":
        _print_json(report)
    else:
        print(report_to_markdown(report))
    return 0


def _write_report(out: Path, report: Dict[str, Any], md: str, fmt: str) -> None:
    from .common import atomic_write_text, write_json

    write_json(out.with_suffix(".report.json"), json.loads(json.dumps(report, default=_json_default)))
    atomic_write_text(out.with_suffix(".report.md"), md)
    if fmt == "json":
        _print_json(report)
    else:
        print(md)
        print(f"saved {out} (+ .report.json, .report.md)")


# ---------------------------------------------------------------------------------------
# coexplore search
# ---------------------------------------------------------------------------------------

def cmd_search(args: argparse.Namespace) -> int:
    from .config import load_config
    from .runfolder import CONFIG_FILE
    from .search import run_search

    config = args.config
    out = Path(args.out) if args.out else None
    if config is None and args.resume and out is not None and (out / CONFIG_FILE).is_file():
        config = out / CONFIG_FILE  # --resume with only --out reuses the run's saved config
    cfg = load_config(config, list(args.overrides))
    if args.quiet:
        cfg = cfg.replace(progress=False)
    out = out if out is not None else Path("runs") / cfg.name
    result = run_search(cfg, out, resume=args.resume, cache_dir=args.cache_dir)
    _print_result(result, out, args.format)
    return int(result.exit_code)


def _array(acc: Dict[str, Any]) -> str:
    from accelerators import Accelerator
    return Accelerator.from_dict(acc).array_text()


def _print_result(result, out, fmt: str) -> None:
    if fmt in ("json", "csv"):
        _print_json(result.to_dict())
        return
    print(f"run folder: {out}")
    if result.status == "diverged":
        print(f"DIVERGED: {result.message}", file=sys.stderr)
        return
    m = result.metrics
    acc = result.accelerator
    print("architecture: " + ", ".join(f"{k}={v}" for k, v in result.architecture.items()))
    if "pe_x" in acc:
        scheme = acc.get("precision", "fixed")
        print(f"accelerator:  {_array(acc)}, {acc['dataflow'].upper()}, RF {acc['rf_bytes']} B, "
              f"GLB {acc['glb_bytes'] // 1024} KB" + ("" if scheme == "fixed" else f", {scheme} MACs"))
    else:  # a measured device (coexplore.lut): this machine
        print(f"device:       {acc.get('name', acc)}")
    chance = " (CHANCE LEVEL)" if result.chance_level else ""

    def q(key: str, scale: float = 1.0) -> str:  # energy and area are unknown (null) for a measured device
        return "n/a" if m.get(key) is None else f"{m[key] * scale:.4g}"

    print(f"accuracy {100 * m['accuracy']:.2f}%{chance} ({result.accuracy_source}), latency "
          f"{m['latency_s'] * 1e3:.4g} ms ({m['fps']:.1f} fps), energy {q('energy_j', 1e3)} mJ, area "
          f"{q('area_mm2')} mm2, EDAP {q('edap')}  [checked by the {result.checked_by} model]")
    for c in result.constraints:
        rule = "g = metric - bound" if c.get("op", "<=") == "<=" else "g = bound - metric"
        print(f"  {'OK  ' if c['satisfied'] else 'FAIL'} {c['spec']}: value {c['value']:.4g}, {rule} = {c['g']:+.4g}")
    if not result.all_constraints_met:
        print("WARNING: the design does NOT meet every constraint (status: constraints-violated)", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# coexplore pareto / plot / retrain / export
# ---------------------------------------------------------------------------------------

def cmd_pareto(args: argparse.Namespace) -> int:
    from .constraints import Constraint
    from .pareto import write_pareto

    lines: Dict[str, List[float]] = {}
    for text in args.constraint:
        c = Constraint.parse(text)
        lines.setdefault(c.metric, []).append(c.bound)
    out = Path(args.out) if args.out else Path(args.runs[0])
    res = write_pareto(args.runs, out, x=args.x, y=args.y, constraints=lines or None)
    if args.format == "json":
        _print_json(res)
        return 0
    front = [{k: r.get(k) for k in ("method", "seed", f"{args.x}_ms" if args.x == "latency" else args.x,
                                     f"{args.y}_pct" if args.y in ("error", "accuracy") else args.y,
                                     "all_constraints_met", "run") if k in r} for r in res["front"]]
    if args.format == "csv":
        _emit(res["front"], None, "csv")
        return 0
    n = res["n_runs"]
    _emit(front, {"runs": n, "on the front": len(res["front"]), "hypervolume": res["hypervolume"],
                  "left out (no finite metric)": len(res.get("dropped", [])), "csv": str(res["paths"]["csv"]),
                  "plot": str(res["paths"]["png"])}, "table",
          title=f"Pareto front: {args.y} vs {args.x} ({n} run{'s' if n != 1 else ''})")
    return 0


def _run_parts(run: Path):
    """The result, the config and the resolved search space of a finished run folder."""
    from .config import load_config
    from .runfolder import CONFIG_FILE, read_result

    result = read_result(run)
    if result.status == "diverged":
        raise UserError(f"{run}: the run diverged ({result.message}); it has no design")
    cfg = load_config(run / CONFIG_FILE)
    return result, cfg, cfg.resolve_search_space()


def cmd_plot(args: argparse.Namespace) -> int:
    from accelerators import Accelerator

    from .plots import plot_accelerator, plot_trajectories

    run = Path(args.run)
    from .callbacks import accelerator_title

    result, _, space = _run_parts(run)
    paths = plot_trajectories(run)
    if "pe_x" in result.accelerator:  # not for a measured device (coexplore.lut): it has no PE array
        acc = Accelerator.from_dict(result.accelerator)
        paths += plot_accelerator(acc, space.layers(result.architecture), run / "plots" / "accelerator.png",
                                  formats=("png", "svg"), title=accelerator_title(result, acc))
    if args.format == "json":
        _print_json([str(p) for p in paths])
    elif not args.quiet:
        for p in paths:
            print(p)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from search_spaces.tasks import get_task
    from search_spaces.train import resolve_device

    from .finalize import chance_level, retrain
    from .runfolder import write_result
    from .search import load_data

    run = Path(args.run)
    result, cfg, space = _run_parts(run)
    device = resolve_device(args.device)
    d = cfg.data
    data = load_data(d, cfg.seed, cache_dir=args.cache_dir, progress=not args.quiet, space=space, task=get_task(space))
    epochs = args.epochs or max(1, cfg.retrain_epochs)
    rt = retrain(space, result.architecture, data, epochs, args.lr or cfg.retrain_lr, device, cfg.seed,
                 progress=not args.quiet, float_reference=bool(getattr(space, "has_bits", False)),
                 memory_format=cfg.memory_format, amp=cfg.amp)
    acc = rt["test_accuracy"]
    task = get_task(space)
    result = result.with_(retrains=[*result.retrains, rt], accuracy_source="retrained-test (coexplore retrain)",
                          metrics={**result.metrics, "accuracy": acc, "error": 1.0 - acc,
                                   **({task.metric: acc} if task.metric != "accuracy" else {})},
                          chance_level=chance_level(acc, task.chance(space.num_classes), rt["test_samples"]))
    write_result(run, result)
    if args.format == "json":
        _print_json(rt)
    else:
        print(f"{run}: test accuracy {100 * acc:.2f}% after {epochs} epochs from scratch "
              f"({rt['parameters']:,} parameters, {rt['seconds']:.1f} s); added to result.json")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from accelerators import Accelerator, get_accelerator, get_workload

    from .export import export_timeloop, export_zigzag

    if args.run:
        run = Path(args.run)
        result, _, space = _run_parts(run)
        if "pe_x" not in result.accelerator:  # a measured device (coexplore.lut)
            raise UserError(f"{run}: the run was priced on a measured device ({result.checked_by}); it has no "
                            f"accelerator to export")
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
    if args.format == "json":
        _print_json([str(p) for p in written])
    else:
        print(f"wrote {len(written)} files under {out}")
    return 0


# ---------------------------------------------------------------------------------------
# coexplore sweep / demo
# ---------------------------------------------------------------------------------------

def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import Sweep, exit_code, run_sweep, summarize, summary_rows

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
    elif args.format == "csv":
        sys.stdout.write(df.to_csv(index=False))
    else:
        title = f"sweep {sweep.name}: {len(df)} point{'s' if len(df) != 1 else ''}" + (" (dry run)" if args.dry_run else "")
        _emit(summary_rows(df, dry_run=args.dry_run), None, "table", title=title)
    return int(ExitCode.OK) if args.dry_run else exit_code(df)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(args.out, jobs=args.jobs, quick=args.quick, cache_dir=args.cache_dir, progress=not args.quiet)
    if args.format == "json":
        _print_json({k: v for k, v in summary.items() if k in ("csv", "pareto_png", "hdx_met", "rows")})
    else:
        print(summary["table"])
        print(f"\nPareto plot: {summary['pareto_png']}\nresults:     {summary['csv']}")
    return int(ExitCode.OK) if summary["hdx_met"] else int(ExitCode.CONSTRAINTS_VIOLATED)


def cmd_interplay(args: argparse.Namespace) -> int:
    from accelerators import get_hardware_space
    from search_spaces import get_search_space

    from .constraints import ConstraintSet, check_feasible
    from .interplay import interplay
    from .objectives import Objective
    from .pricing import CostTable

    table = CostTable(get_search_space(args.space), get_hardware_space(args.hardware))
    constraints = ConstraintSet.parse(args.constraint)
    if len(constraints):
        check_feasible(constraints, table)
    rep = interplay(table, Objective.parse(args.objective), constraints, n=args.num_arch, seed=args.seed)
    if args.format == "json":
        _print_json(rep)
        return 0
    rows = [{"measure": "architectures sampled", "value": rep["architectures"]},
            {"measure": "distinct best accelerators", "value": rep["distinct_best_accelerators"]},
            {"measure": "share of the most common best (%)", "value": rep["top_share_pct"]},
            {"measure": "best single accelerator", "value": rep["best_single_accelerator"]["accelerator"]},
            {"measure": "  its regret: median / p95 / max (%)",
             "value": f"{rep['best_single_accelerator']['median_pct']:.2f} / "
                      f"{rep['best_single_accelerator']['p95_pct']:.2f} / {rep['best_single_accelerator']['max_pct']:.2f}"},
            {"measure": f"  architectures it serves within {rep['tolerance_pct']:.0f}% (%)",
             "value": rep["best_single_accelerator"]["within_tolerance_pct"]}]
    if rep["constraints"]:
        rows.insert(1, {"measure": "architectures that can meet the constraints (%)",
                        "value": rep["feasible_architectures_pct"]})
    _emit(rows, None, args.format if args.format != "table" else "table",
          title=f"interplay of {rep['search_space']} x {rep['hardware_space']} by {rep['objective']}"
                + (f" under {'; '.join(rep['constraints'])}" if rep["constraints"] else ""))
    print(rep["verdict"])
    return 0


# ---------------------------------------------------------------------------------------
# coexplore list / config / cache
# ---------------------------------------------------------------------------------------

def _catalogue() -> Dict[str, List[Dict[str, Any]]]:
    """Every registered thing with a size and a one-line description."""
    from accelerators import ACCELERATORS, HARDWARE_SPACES, WORKLOADS, get_workload
    from search_spaces import SEARCH_SPACES, list_ops

    from .methods import METHODS

    def first_line(obj: Any) -> str:
        doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
        return doc[0] if doc else ""

    out: Dict[str, List[Dict[str, Any]]] = {}
    rows = []
    for name, fn in WORKLOADS.items():
        layers = get_workload(name)
        rows.append({"name": name, "layers": len(layers), "MACs": sum(l.macs for l in layers),
                     "description": first_line(fn)})
    out["workloads"] = rows
    rows = []
    for name, fn in ACCELERATORS.items():
        a = fn()
        rows.append({"name": name, "PEs": a.num_pes, "dataflow": a.dataflow, "description": first_line(fn)})
    out["accelerators"] = rows
    from accelerators.dataflows import DATAFLOWS
    from accelerators.precision import PRECISIONS
    out["dataflows"] = [{"name": n, "description": DATAFLOWS.get(n).long_name} for n in DATAFLOWS.names()]
    out["precision-schemes"] = [{"name": n, "description": PRECISIONS.get(n).long_name} for n in PRECISIONS.names()]
    out["spaces"] = [{"name": n, "designs": fn().size, "description": first_line(fn)} for n, fn in HARDWARE_SPACES.items()]
    out["search-spaces"] = [{"name": n, "blocks": len(fn().blocks), "architectures": fn().all_samples_count,
                             "description": first_line(fn)} for n, fn in SEARCH_SPACES.items()]
    from search_spaces.detection import DETECTION_SPACES
    out["detection-spaces"] = [{"name": n, "blocks": len(fn().blocks), "architectures": fn().all_samples_count,
                                "description": first_line(fn)} for n, fn in DETECTION_SPACES.items()]
    out["methods"] = [{"name": n, "description": cls.description} for n, cls in METHODS.items()]
    from accelerators import COST_SOURCES
    out["cost-sources"] = [{"name": n, "description": first_line(cls).replace("``", "")}
                           for n, cls in COST_SOURCES.items()]
    out["ops"] = [{"name": n} for n in list_ops()]
    return out


def cmd_list(args: argparse.Namespace) -> int:
    cat = _catalogue()
    kinds = [args.what] if args.what else list(cat)
    if args.format == "json":
        _print_json({k: cat[k] for k in kinds})
        return 0
    for k in kinds:
        rows = cat[k]
        if args.format == "csv":
            _emit(rows, None, "csv")
            continue
        print(f"{k}:")
        if k == "ops":
            print("  " + ", ".join(r["name"] for r in rows))
        else:
            print("\n".join("  " + line for line in format_table(rows, TABLE_WIDTH - 2).splitlines()))
        print()
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from .config import config_reference, reference_markdown

    if not args.defaults:
        raise UserError("nothing to show: pass --defaults for the reference of every config key")
    ref = config_reference()
    if args.format == "json":
        _print_json(ref)
    elif args.format == "csv":
        _emit(ref, None, "csv")
    elif args.yaml:
        from .config import RunConfig
        import yaml
        print(yaml.safe_dump(RunConfig().to_dict(), sort_keys=False), end="")
    else:
        print(reference_markdown(ref), end="")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from .cache import cache_clear, cache_info

    if args.action == "info":
        info = cache_info(args.cache_dir)
        if args.format == "json":
            _print_json(info)
        else:
            print(f"cache: {info['path']} ({info['exists'] and 'exists' or 'not created yet'})")
            _emit(info["parts"], {"total MB": round(info["total_bytes"] / 1e6, 2)}, "table" if args.format == "table" else args.format)
        return 0
    removed = cache_clear(args.cache_dir, part=args.part)
    if args.format == "json":
        _print_json(removed)
    elif not args.quiet:
        print(f"removed {removed['files']} file(s), {removed['bytes'] / 1e6:.1f} MB from {removed['path']}")
    return 0


# ---------------------------------------------------------------------------------------
# parser and entry point
# ---------------------------------------------------------------------------------------

def _global_options(p: argparse.ArgumentParser, top: bool) -> None:
    """Options every command takes, before or after the subcommand (SUPPRESS keeps a value
    given before the subcommand from being reset by the subcommand's defaults)."""
    d = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    g = p.add_argument_group("global options")
    g.add_argument("--quiet", "-q", action="store_true", default=d(False), help="only warnings and errors on stderr")
    g.add_argument("--verbose", "-v", action="store_true", default=d(False), help="debug logging")
    g.add_argument("--format", "-f", choices=FORMATS, default=d("table"), help="output: table (default), json or csv")
    g.add_argument("--cache-dir", default=d(None), metavar="DIR",
                   help="cache of decoded data, evaluator data and evaluators (default: $COEXPLORE_CACHE or "
                        "~/.cache/coexplore)")
    g.add_argument("--plugin", action="append", default=d([]), metavar="FILE",
                   help="a Python file of your own ops, spaces, accelerators or methods, imported first (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    from accelerators.cost_model import MAPPING_OBJECTIVES

    from .objectives import PRODUCTS

    p = _Parser(prog="coexplore", description="Co-explore neural networks and their accelerators (DANCE, HDX).",
                epilog="exit codes: " + ", ".join(f"{int(c)} {c.name.lower().replace('_', ' ')}" for c in ExitCode))
    _global_options(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, **kw) -> argparse.ArgumentParser:
        c = sub.add_parser(name, **kw)
        _global_options(c, top=False)
        return c

    from accelerators import list_cost_sources, list_technologies

    c = command("cost", help="price a network on an accelerator or on a whole hardware space",
                description="Price a workload with the analytical model (or another cost source, --cost-model). "
                            "With --accelerator: a per-layer table and totals. With --space: every design of the "
                            "space, the best --top first.")
    c.add_argument("--cost-model", default="analytical", metavar="NAME",
                   help=f"the cost source, one of {', '.join(list_cost_sources())} (default: analytical); zigzag needs "
                        f"the extra (pip install \"coexplore[zigzag]\") and takes seconds per layer and "
                        "design (results are cached)")
    c.add_argument("--tech", default="default", choices=list_technologies(),
                   help="technology constants: default (65 nm, Eyeriss-anchored) or zigzag (ZigZag's per-access "
                        "energies)")
    c.add_argument("--workers", "-j", type=int_at_least(1), default=None,
                   help="processes of an external cost model (default: all cores); with --executor ray: its tasks "
                        "in flight (default: the cluster's CPUs)")
    c.add_argument("--executor", default=None, choices=("local", "ray"),
                   help="where an external cost model's missing pairs run: local processes (default) or one Ray "
                        "task each (the ray extra; $RAY_ADDRESS names a cluster, else a local Ray)")
    c.add_argument("--workload", "-w", required=True,
                   help="built-in network name (see `coexplore list workloads`) or a workload YAML file")
    c.add_argument("--accelerator", "-a", default=None, help="built-in accelerator name or YAML file (default: eyeriss)")
    c.add_argument("--space", "-s", default=None, help="price on every design of a hardware space (name or YAML)")
    c.add_argument("--objective", default="edap", choices=tuple(PRODUCTS),
                   help="network-level metric that ranks designs with --space (default: edap)")
    c.add_argument("--mapping-objective", default="edp", choices=MAPPING_OBJECTIVES,
                   help="what the per-layer mapping search minimises (default: edp)")
    c.add_argument("--top", type=int_at_least(1), default=None, help="how many designs to show with --space (default: 10)")
    c.add_argument("--batch", type=int_at_least(1), default=1, help="batch size N (default: 1)")
    c.add_argument("--explain", metavar="LAYER", default=None,
                   help="show the mapping, access counts and energy breakdown of one layer (index or name)")
    c.set_defaults(func=cmd_cost)

    ev = command("evaluator", help="build or re-score a DANCE evaluator (neural cost surrogate)")
    evs = ev.add_subparsers(dest="evaluator_command", metavar="ACTION", parser_class=_Parser)
    b = evs.add_parser("build", help="generate labelled data with the analytical model, train, report",
                       description="Generate (architecture, best accelerator, costs) data with the analytical model, "
                                   "train the hardware-generation and cost-estimation networks, and report their "
                                   "accuracy against the analytical model on fresh architectures. The full default "
                                   "build (50k architectures) takes 25-30 minutes on two cores.")
    _global_options(b, top=False)
    b.add_argument("--space", default="proxyless-cifar10", help="search space name or YAML (default: proxyless-cifar10)")
    b.add_argument("--hardware", default="default", help="hardware space name or YAML (default: default)")
    b.add_argument("--objective", default="edap", help="edap (default), edp, latency, energy or area")
    b.add_argument("--out", required=True, help="checkpoint path, ending in .pt")
    b.add_argument("--constraint", action="append", default=[],
                   help="label the best accelerator among those meeting this constraint (for HDX runs), "
                        "e.g. 'fps >= 60'; repeatable")
    b.add_argument("--num-arch", type=int_at_least(10), default=50_000, help="sampled architectures (DANCE: 50k)")
    b.add_argument("--pairs-per-arch", type=int_at_least(1), default=36,
                   help="(architecture, accelerator) pairs per architecture")
    b.add_argument("--epochs-generator", type=int_at_least(1), default=40)
    b.add_argument("--epochs-estimator", type=int_at_least(1), default=12)
    b.add_argument("--width", type=int_at_least(1), default=128)
    b.add_argument("--blocks", type=int_at_least(0), default=2)
    b.add_argument("--report-arch", type=int_at_least(1), default=5000, help="fresh architectures for the report")
    b.add_argument("--seed", type=seed_int, default=0)
    b.set_defaults(func=cmd_evaluator_build)
    r = evs.add_parser("report", help="re-score a saved evaluator against fresh analytical samples")
    _global_options(r, top=False)
    r.add_argument("path", help="evaluator checkpoint (.pt)")
    r.add_argument("--space", default=None, help="search space (default: the one recorded in the checkpoint)")
    r.add_argument("--num-arch", type=int_at_least(1), default=5000)
    r.add_argument("--seed", type=seed_int, default=12345)
    r.set_defaults(func=cmd_evaluator_report)
    ev.set_defaults(func=lambda a: _usage(ev))

    se = command("search", help="run a co-exploration search into a run folder",
                 description="Search a network and its accelerator together (DANCE loss, HDX constraints). "
                             "YAML config, then key=value overrides (dotted keys for sections, e.g. hdx.growth=2 "
                             "data.limit=500); the resolved config is saved in the run folder. Every key: "
                             "`coexplore config --defaults`.")
    se.add_argument("--config", "-c", default=None, help="YAML run config (see experiments/configs/)")
    se.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    se.add_argument("--out", "-o", default=None, help="run folder (default: runs/<name>)")
    se.add_argument("--resume", action="store_true",
                    help="continue the run in --out from its last checkpoint (with only --out: its saved config)")
    se.set_defaults(func=cmd_search)

    sw = command("sweep", help="run a grid of searches (lambda, targets, objectives, seeds) in parallel",
                 description="Run every point of a sweep spec (YAML: name, base, set, grid) as a search in its own "
                             "run folder, several at a time; rerunning resumes an interrupted sweep.")
    sw.add_argument("spec", help="sweep YAML (see experiments/sweeps/)")
    sw.add_argument("--out", "-o", required=True, help="sweep folder (one run folder per point)")
    sw.add_argument("--jobs", "-j", type=int_at_least(1), default=2, help="points at once (default: 2)")
    sw.add_argument("--backend", choices=("local", "ray"), default="local",
                    help="local processes (default) or a Ray cluster (pip install 'coexplore[ray]')")
    sw.add_argument("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    sw.add_argument("--threads", type=int_at_least(1), default=None, help="CPU threads per point (default: cores / jobs)")
    sw.add_argument("--dry-run", action="store_true", help="show what would run")
    sw.add_argument("--no-resume", action="store_true", help="refuse a sweep folder that already holds runs")
    sw.set_defaults(func=cmd_sweep)

    pa = command("pareto", help="Pareto front of finished runs: CSV, PNG/SVG plot, hypervolume",
                 description="Collect result.json of run folders (or parents of run folders) and write the front of "
                             "--y against --x, with constraint lines.")
    pa.add_argument("runs", nargs="+", metavar="RUN_DIR")
    pa.add_argument("--x", default="latency", help="latency (default), energy, edap, edp, area, fps")
    pa.add_argument("--y", default="error", help="error (default) or accuracy")
    pa.add_argument("--constraint", action="append", default=[], help="draw a constraint line, e.g. 'latency <= 0.1ms'")
    pa.add_argument("--out", default=None, help="output folder (default: the first RUN_DIR)")
    pa.set_defaults(func=cmd_pareto)

    pl = command("plot", help="(re)draw a run's trajectory and accelerator plots")
    pl.add_argument("run", metavar="RUN_DIR")
    pl.set_defaults(func=cmd_plot)

    rt = command("retrain", help="train a run's network from scratch and report its test accuracy")
    rt.add_argument("run", metavar="RUN_DIR")
    rt.add_argument("--epochs", type=int_at_least(1), default=None, help="default: the run's retrain_epochs (at least 1)")
    rt.add_argument("--lr", type=positive_float, default=None)
    rt.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (default: cuda when available)")
    rt.set_defaults(func=cmd_retrain)

    ex = command("export", help="export an accelerator and workload to Timeloop / ZigZag YAML")
    ex.add_argument("run", nargs="?", metavar="RUN_DIR", help="a finished run folder")
    ex.add_argument("--accelerator", "-a", default=None, help="instead of a run: accelerator name or YAML")
    ex.add_argument("--workload", "-w", default=None, help="instead of a run: workload name or YAML")
    ex.add_argument("--to", choices=("timeloop", "zigzag", "both"), default="both")
    ex.add_argument("--out", "-o", default=None, help="output folder (default: RUN_DIR/export)")
    ex.set_defaults(func=cmd_export)

    de = command("demo", help="a small constrained co-exploration with baselines, a result table and a Pareto plot "
                              "(minutes on a CPU)")
    de.add_argument("--out", "-o", default="runs/demo", help="output folder (default: runs/demo)")
    de.add_argument("--jobs", "-j", type=int_at_least(1), default=2, help="runs in parallel (default: 2)")
    de.add_argument("--quick", action="store_true", help="an even smaller budget (for tests)")
    de.set_defaults(func=cmd_demo)

    ip = command("interplay", help="how much the best accelerator depends on the architecture in your spaces",
                 description="Sample architectures, find each one's best accelerator (under the objective and "
                             "constraints) and report how many distinct winners there are and the regret of using "
                             "one accelerator for all: the number that says whether co-exploration matters.")
    ip.add_argument("--space", default="proxyless-cifar10", help="search space name or YAML")
    ip.add_argument("--hardware", default="default", help="hardware space name or YAML")
    ip.add_argument("--objective", default="edap", help="edap (default), edp, latency, energy or area")
    ip.add_argument("--constraint", action="append", default=[], help="e.g. 'latency <= 0.5ms'; repeatable")
    ip.add_argument("--num-arch", type=int_at_least(1), default=5000, help="architectures sampled (default 5000)")
    ip.add_argument("--seed", type=seed_int, default=0)
    ip.set_defaults(func=cmd_interplay)

    ls = command("list", help="list built-in workloads, accelerators, dataflows, precision schemes, spaces (detection "
                                    "spaces too), methods, cost sources and ops, with sizes")
    ls.add_argument("what", nargs="?", choices=("workloads", "accelerators", "dataflows", "precision-schemes", "spaces",
                                                   "search-spaces", "detection-spaces", "methods", "cost-sources", "ops"))
    ls.set_defaults(func=cmd_list)

    cf = command("config", help="the reference of every run-config key: type, default, unit, meaning")
    cf.add_argument("--defaults", action="store_true", help="show every key with its default")
    cf.add_argument("--yaml", action="store_true", help="print the defaults as a YAML run config")
    cf.set_defaults(func=cmd_config)

    ca = command("cache", help="where the cache is, what fills it, and clearing it")
    ca.add_argument("action", choices=("info", "clear"))
    ca.add_argument("--part", choices=("data", "evaluator-data", "evaluators", "all"), default="all",
                    help="with clear: what to remove (default: all)")
    ca.set_defaults(func=cmd_cache)

    for hook in _command_hooks():
        hook(sub, command)
    return p


def _command_hooks():
    """Commands contributed by other modules: ``hook(subparsers, command)`` adds its parsers."""
    from .validate import add_parser as validate_parser

    def datafree(sub, command):
        from .datafree.cli import add_parsers
        add_parsers(sub, command, lambda parser: _global_options(parser, top=False))

    return [validate_parser, datafree]


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return int(ExitCode.USER_ERROR)


def _load_plugins(paths: Sequence[str]) -> None:
    import importlib.util
    for i, path in enumerate(paths):
        p = Path(path)
        if p.suffix != ".py" or not p.is_file():
            raise UserError(f"--plugin {path}: expected an existing .py file")
        spec = importlib.util.spec_from_file_location(f"coexplore_plugin_{i}_{p.stem}", p)
        if spec is None or spec.loader is None:
            raise UserError(f"--plugin {path}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's own code: report it in one line
            raise UserError(f"--plugin {path}: importing it failed: {type(exc).__name__}: {exc}") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # key=value overrides on both sides of an option (`search -c C a=1 --out D b=2`): all of them count
        if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, already printed)
        return int(exc.code or 0)
    for k, v in {"quiet": False, "verbose": False, "format": "table", "cache_dir": None, "plugin": []}.items():
        if not hasattr(args, k):
            setattr(args, k, v)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return int(ExitCode.USER_ERROR)
    try:
        _load_plugins(args.plugin)
        return int(args.func(args) or 0)
    except (UserError, ConfigError, UnknownNameError) as exc:
        msg = " ".join(str(exc).split())  # one line, whatever the message held
        print(f"coexplore {args.command}: error: {msg}", file=sys.stderr)
        return int(ExitCode.USER_ERROR)
    except OSError as exc:  # a file that could not be read or written, named by the OS
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"coexplore {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return int(ExitCode.USER_ERROR)
    except KeyboardInterrupt:
        print(f"coexplore {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
