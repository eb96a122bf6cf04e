"""DANCE's three objectives on real CIFAR-10 (EDAP-, latency- and energy-oriented) against the
hardware-blind NAS -> HW flow, reduced to what a 2-core CPU runs in an hour.

DANCE (Choi et al., DAC 2021, Table 2) searches the network with the hardware cost of its best
accelerator in the loss (CE + lambda * cost) once per objective, and compares each design with a
network searched for accuracy alone whose accelerator is then chosen for the same objective.  The
configurations are the paper-sized ``experiments/configs/dance-cifar10-{edap,latency,energy}.yaml``
(``proxyless-cifar10`` on DANCE's ``default`` hardware space, lambda = 1) with the reduced budget of
``experiments/cifar10_reduced.py`` (``REDUCED``: a 5,000-image subset of each split, 2 + 3 epochs of
20 steps, 3 retraining epochs) and the exact cost table as the differentiable hardware cost
(``surrogate: exact``; DANCE's own evaluator network is a GPU-hours build on the full space, see
``experiments/run_dance_cifar10.sh``).  The NAS -> HW design is searched once (a FLOPs penalty,
no hardware in the loss, ``nas-hw``, lambda = 0.5) and its architecture is given, per objective,
the accelerator of the space that minimises that objective.

    python experiments/dance_cifar10_reduced.py --data ../shared/data/cifar10-jpg.tar.gz --out runs/dance-cifar10-reduced

It writes ``experiments/results/dance-cifar10-reduced.{md,csv,png}``; an interrupted run resumes when
the same command is run again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "bench"))
sys.path.insert(0, str(ROOT / "experiments"))
import cifar10_reduced as reduced  # noqa: E402 - the reduced budget
import hdx_suite as suite  # noqa: E402 - the job runner

CONFIGS = ROOT / "experiments" / "configs"
OBJECTIVES = ("edap", "latency", "energy")
#: the metric column each objective ranks by
COST_COLUMN = {"edap": "edap", "latency": "latency_s", "energy": "energy_j"}


def jobs(out: Path, seeds, extra):
    js = []
    for s in seeds:
        common = ["repair=false", f"seed={s}", "constraints=[]"]
        js.append(suite.Job(f"nas-hw/s{s}", out / "nas-hw" / f"s{s}",
                            [*common, "method=nas-hw", "lam=0.5", f"name=nas-hw-s{s}", *extra],
                            config=CONFIGS / "dance-cifar10-edap.yaml"))
        for obj in OBJECTIVES:
            js.append(suite.Job(f"dance-{obj}/s{s}", out / f"dance-{obj}" / f"s{s}",
                                [*common, f"name=dance-{obj}-s{s}", *extra],
                                config=CONFIGS / f"dance-cifar10-{obj}.yaml"))
    return js


def collect(out: Path, seeds, extra) -> pd.DataFrame:
    from coexplore.config import load_config
    from coexplore.constraints import ConstraintSet
    from coexplore.objectives import Objective
    from coexplore.pricing import CostTable
    from coexplore.runfolder import read_result
    from coexplore.verify import Verifier

    cfg = load_config(CONFIGS / "dance-cifar10-edap.yaml", extra)
    table = CostTable(cfg.resolve_search_space(), cfg.resolve_hardware_space())
    # every design priced the same way: its architecture on the accelerator of the space that
    # minimises the row's objective (DANCE's own final step does the same)
    check = {obj: Verifier(table, Objective.parse(obj), ConstraintSet()) for obj in OBJECTIVES}
    rows = []
    for s in seeds:
        nas = out / "nas-hw" / f"s{s}"
        nas_r = read_result(nas) if (nas / "result.json").is_file() else None
        for obj in OBJECTIVES:
            for variant, run in ((f"DANCE ({obj})", out / f"dance-{obj}" / f"s{s}"), ("NAS -> HW", nas)):
                row = {"objective": obj, "variant": variant, "seed": s, "status": "missing"}
                r = nas_r if variant == "NAS -> HW" else (read_result(run) if (run / "result.json").is_file() else None)
                if r is not None and r.status != "diverged":
                    v = check[obj].check(r.architecture)
                    m, a = v["metrics"], v["accelerator"].to_dict()
                    row.update(status=r.status, accuracy=(r.retrain or {}).get("test_accuracy", r.metrics.get("accuracy")),
                               latency_s=m["latency_s"], energy_j=m["energy_j"], area_mm2=m["area_mm2"], edap=m["edap"],
                               accelerator=reduced._acc(a), zero_blocks=sum(op == "zero" for op in r.architecture.values()),
                               seconds=suite.run_seconds(run, r), test_samples=(r.retrain or {}).get("test_samples"))
                elif r is not None:
                    row.update(status="diverged")
                rows.append(row)
    cols = ["objective", "variant", "seed", "status", "accuracy", "latency_s", "energy_j", "area_mm2", "edap",
            "accelerator", "zero_blocks", "seconds", "test_samples"]
    return pd.DataFrame(rows).reindex(columns=cols)  # every column even where no run has finished


def report(df: pd.DataFrame, args, extra_text: str) -> str:
    done = df[df["status"].isin(["ok", "constraints-violated"])]
    n_test = int(done["test_samples"].dropna().median()) if done["test_samples"].notna().any() else 0
    secs = done.drop_duplicates(subset=["variant", "seed"])["seconds"].astype(float).sum()
    lines = ["# DANCE's three objectives on CIFAR-10 against NAS -> HW, reduced budget (CPU)", "",
             f"Command: `python experiments/dance_cifar10_reduced.py --data DATA --out {args.out}"
             + (f" --seeds {args.seeds}" if args.seeds != 1 else "") + (f" --set {' '.join(args.set)}" if args.set else "")
             + f"`; the runs' search epochs and retrainings add up to {secs / 60:.0f} min on the shared 2-core "
             "machine, one thread each.", "",
             f"Configs `experiments/configs/dance-cifar10-{{edap,latency,energy}}.yaml` (lambda = 1, `default` hardware "
             f"space) with, for every run: `{extra_text}`; {args.seeds} seed(s). Accuracy: retrained from scratch, on a "
             f"{n_test:,}-image stratified subset of the CIFAR-10 test split. Every design is priced on the accelerator "
             "of the space that minimises the row's objective; `vs NAS -> HW` is DANCE's value over NAS -> HW's on that "
             "objective (below 1: DANCE's design is cheaper).", "",
             "| objective | variant | seed | retrained accuracy (%) | latency (ms) | energy (mJ) | EDAP | vs NAS -> HW | "
             "accelerator | zero blocks |", "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        if r["status"] in ("missing", "diverged"):
            lines.append(f"| {r['objective']} | {r['variant']} | {r['seed']} | ({'not run' if r['status'] == 'missing' else 'diverged'}) |"
                         + " |" * 6)
            continue
        ratio = "-"
        if r["variant"] != "NAS -> HW":
            base = done[(done["objective"] == r["objective"]) & (done["variant"] == "NAS -> HW") & (done["seed"] == r["seed"])]
            if not base.empty:
                ratio = f"{float(r[COST_COLUMN[r['objective']]]) / float(base.iloc[0][COST_COLUMN[r['objective']]]):.2f}x"
        lines.append(f"| {r['objective']} | {r['variant']} | {r['seed']} | {100 * float(r['accuracy']):.1f} | "
                     f"{1e3 * float(r['latency_s']):.3f} | {1e3 * float(r['energy_j']):.3f} | {float(r['edap']):.3g} | "
                     f"{ratio} | {r['accelerator']} | {int(r['zero_blocks'])} |")
    return "\n".join(lines) + "\n"


def plot(df: pd.DataFrame, path: Path) -> None:
    """One panel per objective: each design's cost on that objective against its accuracy."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from coexplore.pareto import save_figure

    fig = Figure(figsize=(9.0, 3.2))
    axes = fig.subplots(1, len(OBJECTIVES), sharey=True)
    unit = {"edap": ("EDAP (J s mm^2)", 1.0), "latency": ("latency (ms)", 1e3), "energy": ("energy (mJ)", 1e3)}
    done = df[df["status"].isin(["ok", "constraints-violated"])]
    for ax, obj in zip(axes, OBJECTIVES):
        r = done[done["objective"] == obj]
        for variant, marker, color in ((f"DANCE ({obj})", "o", "tab:blue"), ("NAS -> HW", "s", "tab:gray")):
            v = r[r["variant"] == variant]
            ax.scatter(v[COST_COLUMN[obj]].astype(float) * unit[obj][1], 100 * v["accuracy"].astype(float), marker=marker,
                       color=color, label=variant, s=30)
        ax.set_xlabel(unit[obj][0])
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.set_title(f"{obj}-oriented", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("retrained test accuracy (%)")
    if done["accuracy"].notna().any():  # differences of a few points drawn at their size, not magnified
        acc = 100 * done["accuracy"].astype(float)
        axes[0].set_ylim(max(0.0, acc.min() - 10), min(100.0, acc.max() + 10))
    fig.suptitle("CIFAR-10, reduced budget: DANCE per objective against NAS -> HW", fontsize=9)
    fig.tight_layout()
    save_figure(fig, [path])


def main(argv=None) -> int:
    args = reduced.parser(__doc__, "runs/dance-cifar10-reduced").parse_args(argv)
    if suite.data_missing(args.data, "dance_cifar10_reduced"):
        return 2
    budget = [*reduced.REDUCED, *args.set]
    extra = [f"data.path={Path(args.data).resolve()}", *budget]
    seeds = list(range(args.seeds))
    out = Path(args.out).resolve()  # the jobs run from the repository root
    out.mkdir(parents=True, exist_ok=True)
    log = suite.minutes_log()

    js = jobs(out, seeds, extra)
    if not args.report_only:
        log(f"{len(js)} jobs ({sum(j.done() for j in js)} already done), {args.jobs} at a time")
        suite.execute(js, args.jobs, log)
    df = collect(out, seeds, extra)
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    df.to_csv(res / "dance-cifar10-reduced.csv", index=False)
    plot(df, res / "dance-cifar10-reduced.png")
    (res / "dance-cifar10-reduced.md").write_text(report(df, args, " ".join(budget)) + "\n![designs](dance-cifar10-reduced.png)\n")
    print(f"wrote {res / 'dance-cifar10-reduced.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
