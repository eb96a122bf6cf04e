"""HDX at 60 fps on real CIFAR-10 against the soft penalty, NAS->HW, random search and NSGA-II,
reduced to what a 2-core CPU runs in minutes.

The configuration is the paper-sized ``experiments/configs/hdx-cifar10-60fps.yaml``
(``proxyless-cifar10`` on DANCE's hardware space clocked at 25 MHz, so that 60 fps binds) with
a reduced budget for every method alike (``REDUCED`` below: a 5,000-image subset of each split,
a few short epochs, a short retraining) and the exact cost table as the differentiable hardware
cost (``surrogate: exact``: the 50,000-architecture evaluator of the full config is a GPU-hours
build).  The methods are run and scored as in the MNIST constraint suite
(``experiments/bench/hdx_suite.py``): repair off everywhere; DANCE and NAS->HW search without
the bound (it is not in their loss) and their architecture is checked at the bound with the best
accelerator meeting it; the one-shot supernet is trained once per seed.  The paper-sized tables
are the launchers ``experiments/run_hdx_cifar10.sh`` and ``experiments/run_dance_cifar10.sh``.

    python experiments/cifar10_reduced.py --data ../shared/data/cifar10-jpg.tar.gz --out runs/cifar10-reduced

It writes ``experiments/results/cifar10-reduced.{md,csv,png}``; an interrupted run resumes when
the same command is run again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "bench"))
import hdx_suite as suite  # noqa: E402 - the suite's job planner, scheduler and one-shot finisher

BASE = ROOT / "experiments" / "configs" / "hdx-cifar10-60fps.yaml"
#: the reduced budget, the same for every method
REDUCED = ["surrogate=exact", "data.limit=5000", "data.batch_size=64", "warmup_epochs=2", "search_epochs=3", "steps_per_epoch=20",
           "retrain_epochs=3", "baseline_budget=16", "population=8"]
VARIANTS = [
    ("hdx", {"method": "hdx", "lam": 0.0}, "search"),
    ("dance-lam0.1", {"method": "dance", "lam": 0.1}, "verify"),
    ("dance-lam1", {"method": "dance", "lam": 1.0}, "verify"),
    ("nas-hw", {"method": "nas-hw", "lam": 0.5}, "verify"),
    ("random", {"method": "random", "lam": 0.0}, "oneshot"),
    ("evolution", {"method": "evolution", "lam": 0.0}, "oneshot"),
]


def _fps(bound: float) -> str:
    return f"fps >= {bound:g}"


def collect(out: Path, seeds, bounds, extra) -> pd.DataFrame:
    from coexplore.config import load_config
    from coexplore.constraints import ConstraintSet
    from coexplore.pricing import CostTable
    from coexplore.runfolder import read_result
    from coexplore.verify import Verifier

    cfg = load_config(BASE, extra)
    table = CostTable(cfg.resolve_search_space(), cfg.resolve_hardware_space())
    checkers = [Verifier(table, cfg.objective, ConstraintSet.parse([_fps(b)])) for b in bounds]
    rows = []
    for name, _, how in VARIANTS:
        for s in seeds:
            for i, b in enumerate(bounds):
                run = out / name / (f"s{s}" if how == "verify" else f"t{i}-s{s}")
                row = {"variant": name, "bound_fps": b, "seed": s, "status": "missing"}
                if (run / "result.json").is_file():
                    r = read_result(run)
                    m = r.metrics
                    row.update(status=r.status, accuracy=m.get("accuracy"), fps=m.get("fps"), latency_s=m.get("latency_s"),
                               energy_j=m.get("energy_j"), edap=m.get("edap"), met=bool(r.all_constraints_met),
                               seconds=r.seconds, accelerator=_acc(r.accelerator),
                               zero_blocks=sum(op == "zero" for op in (r.architecture or {}).values()),
                               test_samples=(r.retrain or {}).get("test_samples"))
                    if how == "verify" and r.status != "diverged":
                        v = checkers[i].check(r.architecture)
                        mm = v["metrics"]
                        row.update(fps=mm["fps"], latency_s=mm["latency_s"], energy_j=mm["energy_j"], edap=mm["edap"],
                                   met=bool(v["feasible"]), accelerator=_acc(v["accelerator"].to_dict()))
                rows.append(row)
    cols = ["variant", "bound_fps", "seed", "status", "accuracy", "fps", "latency_s", "energy_j", "edap", "met",
            "seconds", "accelerator", "zero_blocks", "test_samples"]
    return pd.DataFrame(rows).reindex(columns=cols)  # every column even where no run has finished


def _acc(a) -> str:
    return f"{a['pe_y']}x{a['pe_x']} {a['dataflow'].upper()} RF{a['rf_bytes']}B" if a else "-"


def plot(df: pd.DataFrame, bounds, path: Path) -> None:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from coexplore.pareto import save_figure

    fig = Figure(figsize=(6.0, 4.4))
    ax = fig.subplots()
    cmap = colormaps["tab10"]
    done = df[df["status"].isin(["ok", "constraints-violated"])]
    for k, name in enumerate(dict.fromkeys(done["variant"])):
        r = done[done["variant"] == name]
        ax.scatter(r["fps"].astype(float), r["accuracy"].astype(float) * 100, s=30, color=cmap(k % 10),
                   marker="o" if name == "hdx" else "s", label=name)
        for _, row in r.iterrows():
            ax.annotate(name, (float(row["fps"]), float(row["accuracy"]) * 100), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
    for b in bounds:
        ax.axvline(b, color="crimson", ls="--", lw=1.0, label=_fps(b))
    ax.set_xlabel("frames per second, analytical (25 MHz edge space)")
    ax.set_ylabel("retrained test accuracy (%)")
    ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("CIFAR-10, reduced budget: every method's design (repair off)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, [path])


def parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The options every reduced CIFAR-10 launcher takes."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", required=True, help="the CIFAR-10 archive or folder (data.path)")
    ap.add_argument("--out", default=out)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides for every run")
    ap.add_argument("--report-only", action="store_true", help="write the table from the runs there, run nothing")
    ap.add_argument("--results", default=str(ROOT / "experiments" / "results"))
    return ap


def main(argv=None) -> int:
    ap = parser(__doc__, "runs/cifar10-reduced")
    ap.add_argument("--fps", type=float, nargs="+", default=[60.0], help="the bounds (fps >= ...)")
    args = ap.parse_args(argv)
    if suite.data_missing(args.data, "cifar10_reduced"):
        return 2
    extra = [f"data.path={Path(args.data).resolve()}", *REDUCED, *args.set]
    seeds = list(range(args.seeds))
    out = Path(args.out).resolve()  # the jobs run from the repository root
    out.mkdir(parents=True, exist_ok=True)
    log = suite.minutes_log()

    jobs = suite.plan(out, seeds, args.fps, VARIANTS, extra, constraint_of=_fps, config=BASE)
    if not args.report_only:
        log(f"{len(jobs)} jobs ({sum(j.done() for j in jobs)} already done), {args.jobs} at a time")
        suite.execute(jobs, args.jobs, log)
    df = collect(out, seeds, args.fps, extra)
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    df.to_csv(res / "cifar10-reduced.csv", index=False)
    plot(df, args.fps, res / "cifar10-reduced.png")
    lines = ["# HDX on CIFAR-10 against its baselines, reduced budget (CPU)", "",
             f"Command: `python experiments/cifar10_reduced.py --data DATA --out {args.out}"
             + (f" --seeds {args.seeds}" if args.seeds != 1 else "") + (f" --set {' '.join(args.set)}" if args.set else "")
             + f"`; the runs' own times add up to {df['seconds'].dropna().astype(float).sum() / 60:.0f} min on the "
             "shared 2-core machine, one thread each.", "",
             f"Config `{BASE.relative_to(ROOT)}` with, for every method: `{' '.join(REDUCED + args.set)}`; "
             f"{len(seeds)} seed(s). The test accuracy is on a {int(df['test_samples'].dropna().median()) if df['test_samples'].notna().any() else 0:,}"
             "-image stratified subset of the CIFAR-10 test split, after retraining from scratch. Repair is off "
             "everywhere; DANCE and NAS->HW are checked at the bound with the best accelerator meeting it.", "",
             "| bound | variant | seed | meets it | retrained accuracy (%) | fps | latency (ms) | energy (mJ) | EDAP | "
             "accelerator | zero blocks | search + retrain (s) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        if r["status"] == "missing":
            lines.append(f"| {_fps(r['bound_fps'])} | {r['variant']} | {r['seed']} | (not run) |" + " |" * 8)
            continue
        lines.append(f"| {_fps(r['bound_fps'])} | {r['variant']} | {r['seed']} | {'yes' if r['met'] else 'NO'} | "
                     f"{100 * float(r['accuracy']):.1f} | {float(r['fps']):.1f} | {1e3 * float(r['latency_s']):.2f} | "
                     f"{1e3 * float(r['energy_j']):.3f} | {float(r['edap']):.3g} | {r['accelerator']} | "
                     f"{int(r['zero_blocks'])} | {float(r['seconds']):.0f} |")
    lines += ["", "![designs](cifar10-reduced.png)", ""]
    (res / "cifar10-reduced.md").write_text("\n".join(lines))
    print(f"wrote {res / 'cifar10-reduced.md'}")
    print(json.dumps({"runs": int((df['status'] != 'missing').sum())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
