"""The constraint suite: does HDX meet a hard latency bound without giving up accuracy, where
soft penalties miss it or overshoot it?  (HDX, Hong et al., DAC 2022.)

On the embedded MNIST setting (``experiments/configs/hdx-suite-mnist.yaml``), for latency
targets from just above the reachable minimum to just below the latency of the design an
accuracy-only search picks, and for several seeds, every method gets the same budget:

* HDX with repair **off**, with DANCE's neural evaluator (``hdx``) and with the exact cost
  table as its differentiable cost (``hdx-exact``: no evaluator to train);
* DANCE's soft penalty at lambda in {0.1, 0.3, 1, 3};
* NAS->HW (a FLOPs penalty, then the best accelerator meeting the bound);
* random search and NSGA-II over the one-shot supernet, under the bound.

Every design is checked by the analytical model and retrained from scratch.  It writes,
per target, the share of runs that meet the bound, the mean and spread of the retrained
accuracy, the slack ``(bound - latency) / bound`` of the designs, and a plot; and a summary
of the claim: HDX meets every target, with a mean accuracy at least that of the best soft
penalty that also meets it.

What is run once and what per target.  Only HDX (and the one-shot baselines' selection) see
the bound during the search.  DANCE's soft penalty and NAS->HW search without it -- their
loss has no constraint term, and with repair off the bound enters only when the verifier
picks the best accelerator meeting it for the final architecture -- so they run once per
seed and their architecture is checked against every target (exactly what a run per target
would give, at a quarter of the cost; the retrained accuracy belongs to the architecture).
The one-shot supernet of random search and NSGA-II is trained once per seed (it never sees
the architecture or the bound) and each (algorithm, target) selects and retrains from it.

    python experiments/bench/hdx_suite.py --out runs/hdx-suite -j 2        # the full suite
    python experiments/bench/hdx_suite.py --out runs/hdx-suite --quick     # 2 targets x 1 seed

Interrupted suites resume when the same command is run again: finished runs are kept,
unfinished ones resume from their checkpoints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "experiments" / "configs" / "hdx-suite-mnist.yaml"

#: (variant name, fixed overrides, how the bound enters): "search" -- one run per target;
#: "verify" -- one run per seed without the bound, checked against each target; "oneshot" --
#: the shared one-shot supernet, selection and retraining per target.  Repair is off for all.
VARIANTS = [
    ("hdx", {"method": "hdx", "lam": 0.0, "surrogate": "evaluator"}, "search"),
    ("hdx-exact", {"method": "hdx", "lam": 0.0, "surrogate": "exact"}, "search"),
    ("dance-lam0.1", {"method": "dance", "lam": 0.1}, "verify"),
    ("dance-lam0.3", {"method": "dance", "lam": 0.3}, "verify"),
    ("dance-lam1", {"method": "dance", "lam": 1.0}, "verify"),
    ("dance-lam3", {"method": "dance", "lam": 3.0}, "verify"),
    ("nas-hw", {"method": "nas-hw", "lam": 0.5}, "verify"),
    ("random", {"method": "random", "lam": 0.0}, "oneshot"),
    ("evolution", {"method": "evolution", "lam": 0.0}, "oneshot"),
]
DEFAULT_VARIANTS = [v[0] for v in VARIANTS]


def targets(n: int):
    """``n`` latency bounds (seconds) from 1.08 x the reachable minimum to 0.9 x the latency of
    the largest architecture on its EDAP-best accelerator (what an accuracy-only search ends
    with), geometrically spaced."""
    from coexplore.config import load_config
    from coexplore.constraints import ConstraintSet
    from coexplore.pricing import CostTable
    from coexplore.verify import Verifier

    cfg = load_config(BASE)
    table = CostTable(cfg.resolve_search_space(), cfg.resolve_hardware_space())
    least, _, _ = table.least("latency")
    space = table.space
    big = {b.label: max(b.candidates, key=lambda op: float(table.cand_latency[space.offsets[i] + b.candidates.index(op)].mean()))
           for i, b in enumerate(space.blocks)}
    big_lat = Verifier(table, cfg.objective, ConstraintSet()).check(big)["metrics"]["latency_s"]
    lo, hi = 1.08 * least, 0.9 * big_lat
    return [float(v) for v in np.geomspace(lo, hi, n)], least, big_lat


def _us(seconds: float) -> str:
    return f"latency <= {seconds * 1e6:.2f}us"


def _overrides(d: Dict[str, object]) -> List[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, list):
            out.append(f"{k}=[{', '.join(str(x) for x in v)}]")
        else:
            out.append(f"{k}={v}")
    return out


@dataclass
class Job:
    """One process of the suite: a search run, or a one-shot selection from a trained supernet."""

    name: str
    out: Path
    overrides: List[str]
    kind: str = "search"  # search | oneshot
    base: Optional[Path] = None  # oneshot: the run folder of the trained supernet
    after: List[str] = field(default_factory=list)
    config: Path = BASE  # the run config the overrides apply to

    def done(self) -> bool:
        return (self.out / "result.json").is_file()

    def command(self) -> List[str]:
        if self.kind == "oneshot":
            return [sys.executable, str(Path(__file__).resolve()), "_oneshot", "--base", str(self.base),
                    "--config", str(self.config), "--out", str(self.out), *self.overrides]
        cmd = [sys.executable, "-m", "coexplore.cli", "--quiet", "search", "--config", str(self.config),
               "--out", str(self.out), *self.overrides]
        if self.out.exists():
            cmd.insert(5, "--resume")
        return cmd


def plan(out: Path, seeds: Sequence[int], bounds: Sequence[float], variants, extra: Sequence[str] = (),
         constraint_of=None, config: Path = BASE) -> List[Job]:
    """Every job of the suite, in the order they run; ``extra`` overrides go to every run;
    ``constraint_of(bound)`` is the constraint of a bound (default ``latency <= ...us``) and
    ``config`` the run config (default the MNIST suite's)."""
    constraint = constraint_of or _us
    jobs: List[Job] = []
    for s in seeds:
        for name, fixed, how in variants:
            common = {**fixed, "repair": False, "seed": s}
            if how == "search":
                for i, b in enumerate(bounds):
                    jobs.append(Job(f"{name}/t{i}-s{s}", out / name / f"t{i}-s{s}",
                                    _overrides({**common, "constraints": [constraint(b)], "name": f"{name}-t{i}-s{s}"})))
            elif how == "verify":
                jobs.append(Job(f"{name}/s{s}", out / name / f"s{s}",
                                _overrides({**common, "constraints": [], "name": f"{name}-s{s}"})))
            else:
                base = out / "oneshot-supernet" / f"s{s}"
                if not any(j.out == base for j in jobs):
                    jobs.append(Job(f"oneshot-supernet/s{s}", base,
                                    _overrides({"method": "random", "lam": 0.0, "repair": False, "seed": s,
                                                "constraints": [], "retrain_epochs": 0,
                                                "name": f"oneshot-supernet-s{s}"})))
                for i, b in enumerate(bounds):
                    jobs.append(Job(f"{name}/t{i}-s{s}", out / name / f"t{i}-s{s}",
                                    _overrides({**common, "constraints": [constraint(b)], "name": f"{name}-t{i}-s{s}"}),
                                    kind="oneshot", base=base, after=[f"oneshot-supernet/s{s}"]))
    for j in jobs:
        j.overrides += list(extra)
        j.config = Path(config)
    # the searches the claim compares (HDX, the soft penalties, NAS->HW) for every seed first,
    # then the one-shot baselines: a suite cut short still has the comparison on every seed
    return sorted(jobs, key=lambda j: (j.kind == "oneshot" or j.name.startswith("oneshot-"), seeds.index(_seed(j))))


def minutes_log():
    """``log(msg)``: print ``msg`` after the minutes since this call (a launcher's progress lines)."""
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{(time.perf_counter() - t0) / 60:5.1f} min] {msg}", flush=True)
    return log


def data_missing(data: str, prog: str) -> bool:
    """``--data`` names nothing: say so in one line (the launcher then exits 2)."""
    if Path(data).exists():
        return False
    print(f"{prog}: --data {data!r} does not exist; give the CIFAR-10 archive or folder", file=sys.stderr)
    return True


def run_seconds(run: Path, result) -> float:
    """A run's measured time: its search epochs (``metrics.csv``) plus its retraining.  Read from the
    parts rather than ``result.seconds``, which counted the retraining twice before that was fixed."""
    epochs = run / "metrics.csv"
    search = float(pd.read_csv(epochs)["seconds"].sum()) if epochs.is_file() else 0.0
    return search + float((result.retrain or {}).get("seconds", 0.0))


def _seed(job: Job) -> int:
    return int(job.out.name.rsplit("s", 1)[1])


def execute(jobs: Sequence[Job], parallel: int, log) -> Dict[str, int]:
    """Run the jobs, ``parallel`` at a time, each on one thread; returns the exit code of each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    codes: Dict[str, int] = {j.name: 0 for j in jobs if j.done()}
    pending = [j for j in jobs if not j.done()]
    running: Dict[str, tuple] = {}
    while pending or running:
        for name, (proc, job, t0) in list(running.items()):
            rc = proc.poll()
            if rc is not None:
                codes[name] = rc
                del running[name]
                log(f"{name}: exit {rc} after {time.perf_counter() - t0:.0f} s")
        ready = [j for j in pending if all(a in codes for a in j.after)]
        while ready and len(running) < parallel:
            job = ready.pop(0)
            pending.remove(job)
            if any(codes[a] not in (0, 3) for a in job.after):
                codes[job.name] = -1
                log(f"{job.name}: skipped, its supernet run failed")
                continue
            job.out.parent.mkdir(parents=True, exist_ok=True)
            with open(job.out.parent / f"{job.out.name}.log", "a") as fh:
                proc = subprocess.Popen(job.command(), stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            running[job.name] = (proc, job, time.perf_counter())
            log(f"{job.name}: started")
        time.sleep(1.0)
    return codes


def finish_oneshot(base: Path, out: Path, overrides: Sequence[str], config: Path = BASE) -> int:
    """Select and retrain a one-shot baseline from the supernet trained in ``base``.

    The run folder ``out`` gets the config of this (algorithm, bound), the supernet's trained
    state and epoch logs, and then the usual end of a run (selection under the bound, exact
    check, retraining, result).
    """
    from coexplore.checkpoint import load_checkpoint
    from coexplore.config import load_config
    from coexplore.finalize import Finalizer
    from coexplore.runfolder import CONFIG_FILE, checkpoint_path, write_result
    from coexplore.search import CoExplorer

    cfg = load_config(config, overrides)
    st = load_checkpoint(checkpoint_path(base))
    ex = CoExplorer(cfg, out)
    if ex.inputs() != {k: v for k, v in st["inputs"].items() if k != "seconds"}:
        raise SystemExit(f"{base}: the supernet was trained on other inputs than this run's")
    out.mkdir(parents=True, exist_ok=True)
    ex.trainer.load_state_dict(st["trainer"])
    ex.rows = list(st["rows"])
    ex.epoch = ex.total_epochs
    ex._seconds = float(st["inputs"].get("seconds", 0.0))
    ex._t_start = time.perf_counter()
    cfg.save(out / CONFIG_FILE)
    result = Finalizer(ex).finalize()
    write_result(out, result)
    return 0


def collect(out: Path, seeds: Sequence[int], bounds: Sequence[float], variants) -> pd.DataFrame:
    """One row per (variant, target, seed): meets the bound, retrained accuracy, latency, seconds.

    A "verify" variant's architecture (one run per seed) is checked against each target by the
    verifier the run would have used with that bound: the best accelerator for the objective
    among those that meet it (or the least violating one)."""
    from coexplore.config import load_config
    from coexplore.constraints import ConstraintSet
    from coexplore.pricing import CostTable
    from coexplore.common import read_yaml
    from coexplore.runfolder import CONFIG_FILE, read_result
    from coexplore.verify import Verifier

    cfg = load_config(BASE)
    table = CostTable(cfg.resolve_search_space(), cfg.resolve_hardware_space())
    checkers = [Verifier(table, cfg.objective, ConstraintSet.parse([_us(b)])) for b in bounds]
    rows = []
    for name, _, how in variants:
        for s in seeds:
            for i, b in enumerate(bounds):
                run = out / name / (f"s{s}" if how == "verify" else f"t{i}-s{s}")
                row = {"variant": name, "target": i, "bound_s": b, "seed": s, "run": str(run), "status": "missing"}
                if (run / "result.json").is_file():
                    r = read_result(run)
                    row["memory_format"] = (read_yaml(run / CONFIG_FILE) or {}).get("memory_format", "contiguous")
                    row.update(status=r.status, accuracy=r.metrics.get("accuracy"), seconds=r.seconds,
                               latency_s=r.metrics.get("latency_s"), met=bool(r.all_constraints_met),
                               repairs=len(r.repairs), architecture=json.dumps(r.architecture, sort_keys=True),
                               test_samples=(r.retrain or {}).get("test_samples"))
                    if how == "verify" and r.status != "diverged":
                        v = checkers[i].check(r.architecture)
                        row.update(latency_s=v["metrics"]["latency_s"], met=bool(v["feasible"]))
                rows.append(row)
    cols = ["variant", "target", "bound_s", "seed", "run", "status", "memory_format", "accuracy", "seconds",
            "latency_s", "met", "repairs", "architecture", "test_samples"]
    return pd.DataFrame(rows).reindex(columns=cols)  # every column even where no run has finished


def _run_minutes(df: pd.DataFrame) -> float:
    done = df[df["status"].isin(["ok", "constraints-violated", "diverged"])].drop_duplicates("run")
    return float(done["seconds"].astype(float).sum()) / 60 if len(done) else 0.0


def table(df: pd.DataFrame, bounds) -> str:
    lines, verdicts = [], []
    for i, b in enumerate(bounds):
        spec = _us(b)
        sub = df[df["target"] == i]
        rows = []
        for name in dict.fromkeys(sub["variant"]):
            r = sub[sub["variant"] == name]
            done = r[r["status"].isin(["ok", "constraints-violated"])]
            n = len(done)
            met = done["met"].astype(bool) if n else pd.Series([], dtype=bool)
            acc = done["accuracy"].astype(float) * 100
            slack = (b - done["latency_s"].astype(float)) / b * 100
            rows.append({"variant": name, "runs": len(r), "finished": n,
                         "meet": f"{int(met.sum())}/{n}" if n else "-",
                         "accuracy": f"{acc.mean():.2f} ± {acc.std(ddof=0):.2f}" if n else "-",
                         "accuracy_met": float(acc[met.values].mean()) if met.any() else math.nan,
                         "slack": f"{slack.mean():+.1f}% (min {slack.min():+.1f}%)" if n else "-",
                         "latency_us": f"{done['latency_s'].astype(float).mean() * 1e6:.2f}" if n else "-",
                         "search_s": f"{done['seconds'].astype(float).mean():.0f}" if n else "-",
                         "met_all": bool(n) and bool(met.all()) and n == len(r)})
        lines += ["", f"### target {spec}", "",
                  "| variant | meet the bound | retrained accuracy (%), mean ± std | slack, mean (worst) | "
                  "latency (us), mean | search + retrain (s), mean |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['variant']} | {r['meet']} | {r['accuracy']} | {r['slack']} | {r['latency_us']} | "
                  f"{r['search_s']} |" for r in rows]
        soft = [r for r in rows if r["variant"].startswith("dance") and r["met_all"]]
        best_soft = max(soft, key=lambda r: r["accuracy_met"]) if soft else None
        for h in [r for r in rows if r["variant"].startswith("hdx")]:
            ok_acc = best_soft is None or (not math.isnan(h["accuracy_met"]) and
                                           h["accuracy_met"] >= best_soft["accuracy_met"] - 1e-9)
            soft_txt = f"{best_soft['variant']} ({best_soft['accuracy_met']:.2f})" if best_soft else "none meets it"
            acc_txt = "-" if math.isnan(h["accuracy_met"]) else f"{h['accuracy_met']:.2f}"
            diff = (h["accuracy_met"] - best_soft["accuracy_met"]) if best_soft else math.nan
            diff_txt = "-" if math.isnan(diff) else f"{diff:+.2f}"
            verdicts.append(f"| {spec} | {h['variant']} | {h['meet']} | {acc_txt} | {soft_txt} | {diff_txt} | "
                            f"{'yes' if h['met_all'] and ok_acc else 'NO'} |")
    head = ["| target | variant | runs meeting it | mean accuracy of those runs (%) | best soft penalty meeting "
            "it in every run (mean accuracy) | difference (pp) | claim holds |", "|---|---|---|---|---|---|---|"]
    return "\n".join(["## The claim, per target", ""] + head + verdicts + lines) + "\n"


def plot(df: pd.DataFrame, bounds, path: Path) -> None:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from coexplore.pareto import save_figure

    fig = Figure(figsize=(4.2 * len(bounds), 4.2))
    axes = fig.subplots(1, len(bounds), squeeze=False)[0]
    names = list(dict.fromkeys(df["variant"]))
    cmap = colormaps["tab10"]
    for i, (ax, b) in enumerate(zip(axes, bounds)):
        sub = df[(df["target"] == i) & df["status"].isin(["ok", "constraints-violated"])]
        for k, name in enumerate(names):
            r = sub[sub["variant"] == name]
            if len(r):
                ax.scatter(r["latency_s"].astype(float) * 1e6, r["accuracy"].astype(float) * 100, s=24,
                           color=cmap(k % 10), marker="o" if name.startswith("hdx") else "s", label=name, alpha=0.8)
        ax.axvline(b * 1e6, color="crimson", ls="--", lw=1.0, label="the bound")
        ax.set_title(_us(b), fontsize=9)
        ax.set_xlabel("latency (us), analytical")
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("retrained test accuracy (%)")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("HDX constraint suite, embedded MNIST: every run's design (repair off); dashed: the bound",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, [path])


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["_oneshot"]:
        ap = argparse.ArgumentParser()
        ap.add_argument("--base", required=True)
        ap.add_argument("--out", required=True)
        ap.add_argument("--config", default=str(BASE))
        a, rest = ap.parse_known_args(argv[1:])
        return finish_oneshot(Path(a.base), Path(a.out), rest, Path(a.config))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/hdx-suite")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--targets", type=int, default=4)
    ap.add_argument("-j", "--jobs", type=int, default=2, help="runs at a time, one thread each")
    ap.add_argument("--quick", action="store_true", help="2 targets x 1 seed (a smoke run)")
    ap.add_argument("--variants", nargs="*", default=None, help=f"a subset of {[v[0] for v in VARIANTS]}")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="overrides for every run, e.g. search_epochs=2 (a smoke run; the table states them)")
    ap.add_argument("--report-only", action="store_true", help="write the table from the runs there, run nothing")
    ap.add_argument("--results", default=str(ROOT / "experiments" / "results"))
    args = ap.parse_args(argv)
    names = args.variants or DEFAULT_VARIANTS
    unknown = sorted(set(names) - {v[0] for v in VARIANTS})
    if unknown:
        print(f"hdx_suite: unknown variant(s) {unknown}; allowed values: {[v[0] for v in VARIANTS]}", file=sys.stderr)
        return 2
    variants = [v for v in VARIANTS if v[0] in names]
    seeds = list(range(1 if args.quick else args.seeds))
    out = Path(args.out).resolve()  # the jobs run from the repository root
    out.mkdir(parents=True, exist_ok=True)
    bounds, least, big = targets(2 if args.quick else args.targets)
    meta = {"targets_s": bounds, "reachable_min_s": least, "accuracy_only_latency_s": big, "seeds": seeds,
            "variants": names}
    (out / "suite.json").write_text(json.dumps(meta, indent=2))
    log = minutes_log()

    jobs = plan(out, seeds, bounds, variants, args.set)
    if not args.report_only:
        log(f"{len(jobs)} jobs ({sum(j.done() for j in jobs)} already done), {args.jobs} at a time")
        execute(jobs, args.jobs, log)
    df = collect(out, seeds, bounds, variants)
    df.to_csv(out / "hdx-suite.csv", index=False)
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    stem = "hdx-suite" + ("-quick" if args.quick else "")
    plot(df, bounds, res / f"{stem}.png")
    df.drop(columns=["run"]).to_csv(res / f"{stem}.csv", index=False)
    from coexplore.config import load_config
    base = load_config(BASE, args.set)
    cmd = (f"python experiments/bench/hdx_suite.py --out {args.out}" + (" --quick" if args.quick else "")
           + (f" --set {' '.join(args.set)}" if args.set else ""))
    head = [f"# HDX constraint suite (embedded MNIST, {len(seeds)} seed(s), {len(bounds)} targets, repair off)", "",
            f"Command: `{cmd}` (on the shared 2-core machine, {args.jobs} runs at a time, one thread each; the runs' "
            f"own wall times add up to {_run_minutes(df):.0f} min, a one-shot selection counting its shared supernet's "
            "training; the csv beside this file has every run).", "",
            f"Budget of every run ({BASE.relative_to(ROOT)}): {base.warmup_epochs} warm-up + {base.search_epochs} "
            f"search epochs of {base.steps_per_epoch or 'all'} steps, batch {base.data.batch_size}, "
            f"{base.path_mode} paths; one-shot baselines score {base.baseline_budget} architectures with inherited "
            f"weights; every design retrained from scratch for {base.retrain_epochs} epochs and scored on the "
            "test split. HDX: kappa0 {k0}, growth {g}, decay {d}.".format(k0=base.hdx.kappa0, g=base.hdx.growth,
                                                                          d=base.hdx.decay), "",
            f"Reachable minimum latency {least * 1e6:.2f} us; the accuracy-only design {big * 1e6:.2f} us. "
            "Slack is (bound - latency) / bound, analytical: negative means the bound is missed. DANCE and NAS->HW "
            "search without the bound (it is not in their loss) and their architecture is checked against each "
            "target with the best accelerator meeting it; see the module docstring.", ""]
    done = df[df["status"].isin(["ok", "constraints-violated"])].drop_duplicates("run")
    n_test = int(done["test_samples"].dropna().median()) if "test_samples" in done and done["test_samples"].notna().any() else 1000
    se1 = 100 * math.sqrt(0.965 * 0.035 / n_test)
    head += [f"One retrained accuracy is measured on {n_test:,} test images: its binomial standard error is about "
             f"{se1:.2f} pp at 96.5 %, and the difference of two means over {len(seeds)} seed(s) has one of about "
             f"{se1 * math.sqrt(2 / len(seeds)):.2f} pp from the test sample alone (seeds add training noise).", ""]
    if "memory_format" in done and done["memory_format"].nunique() > 1:
        counts = done.groupby("memory_format")["run"].apply(
            lambda r: (", ".join(sorted(Path(x).parent.name + "/" + Path(x).name for x in r)) if len(r) <= 12
                       else f"the other {len(r)} runs"))
        head += ["Layouts: " + "; ".join(f"{k}: {v}" for k, v in counts.items()) + ". (The runs were made while "
                 "channels-last training became the default; the layout changes speed and float rounding only.)", ""]
    (res / f"{stem}.md").write_text("\n".join(head) + "\n" + table(df, bounds) + f"\n![suite]({stem}.png)\n")
    print(f"wrote {res / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
