"""The constraint suite: does HDX meet a hard latency bound without giving up accuracy, where
soft penalties miss it or overshoot it?  (HDX, Hong et al., DAC 2022.)

On the embedded MNIST setting (``experiments/configs/hdx-suite-mnist.yaml``), for latency
targets from just above the reachable minimum to just below the latency of the design an
accuracy-only search picks, and for several seeds, it runs on the same budget:

* HDX with repair **off**, with DANCE's neural evaluator and with the exact cost table;
* DANCE's soft penalty at lambda in {0.1, 0.3, 1, 3};
* NAS->HW (a FLOPs penalty, then the best accelerator);
* random search and NSGA-II over the one-shot supernet.

Every design is checked by the analytical model and retrained from scratch.  It writes,
per target, the share of runs that meet the bound, the mean and spread of the retrained
accuracy, the slack ``(bound - latency) / bound`` of the designs, and a plot; and a summary
of the claim: HDX meets every target, with a mean accuracy at least that of the best soft
penalty that also meets it.

    python experiments/bench/hdx_suite.py --out runs/hdx-suite -j 2        # the full suite
    python experiments/bench/hdx_suite.py --out runs/hdx-suite --quick     # 2 targets x 1 seed

Interrupted runs resume when the same command is run again (each variant is a sweep).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "experiments" / "configs" / "hdx-suite-mnist.yaml"

#: (variant name, fixed overrides); repair is off for every variant
VARIANTS = [
    ("hdx", {"method": "hdx", "lam": 0.0, "surrogate": "evaluator"}),
    ("hdx-exact", {"method": "hdx", "lam": 0.0, "surrogate": "exact"}),
    ("dance-lam0.1", {"method": "dance", "lam": 0.1}),
    ("dance-lam0.3", {"method": "dance", "lam": 0.3}),
    ("dance-lam1", {"method": "dance", "lam": 1.0}),
    ("dance-lam3", {"method": "dance", "lam": 3.0}),
    ("nas-hw", {"method": "nas-hw", "lam": 0.5}),
    ("random", {"method": "random", "lam": 0.0}),
    ("evolution", {"method": "evolution", "lam": 0.0}),
]


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


def run(out: Path, seeds, n_targets: int, jobs: int, variants) -> pd.DataFrame:
    from coexplore.sweep import Sweep, run_sweep, summarize

    bounds, least, big = targets(n_targets)
    meta = {"targets_s": bounds, "reachable_min_s": least, "accuracy_only_latency_s": big, "seeds": list(seeds)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite.json").write_text(json.dumps(meta, indent=2))
    frames = []
    for name, fixed in variants:
        spec = {"name": name, "base": str(BASE), "set": {**fixed, "repair": False},
                "grid": {"constraints": [[_us(b)] for b in bounds], "seed": list(seeds)}}
        sweep = Sweep.from_dict(spec)
        t0 = time.perf_counter()
        run_sweep(sweep, out / name, jobs=jobs, progress=False)
        print(f"{name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
        df = summarize(out / name)
        df["variant"] = name
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def table(df: pd.DataFrame, bounds) -> str:
    lines = []
    verdicts = []
    for b in bounds:
        spec = _us(b)
        sub = df[df["constraints"].astype(str).str.contains(spec.split("<= ")[1], regex=False)]
        rows = []
        for name in dict.fromkeys(sub["variant"]):
            r = sub[sub["variant"] == name]
            done = r[r["status"].isin(["done", "violated"])]
            met = done["all_constraints_met"].astype(bool) if len(done) else pd.Series([], dtype=bool)
            acc = done["accuracy"].astype(float) * 100
            slack = (b - done["latency_s"].astype(float)) / b * 100
            secs = done["seconds"].astype(float) if "seconds" in done else pd.Series([np.nan])
            rows.append({"variant": name, "runs": len(r), "finished": len(done),
                         "meet": f"{100 * met.mean():.0f}%" if len(done) else "-",
                         "accuracy": f"{acc.mean():.2f} ± {acc.std(ddof=0):.2f}" if len(done) else "-",
                         "accuracy_met": acc[met.values].mean() if met.any() else np.nan,
                         "slack": f"{slack.mean():+.1f}%" if len(done) else "-",
                         "latency_us": f"{done['latency_s'].astype(float).mean() * 1e6:.2f}" if len(done) else "-",
                         "search_s": f"{secs.mean():.0f}", "met_all": bool(len(done)) and bool(met.all()),
                         "met_share": float(met.mean()) if len(done) else 0.0})
        lines += ["", f"### target {spec} ({b * 1e6:.2f} us)", "",
                  "| variant | runs | meet the bound | retrained accuracy (%) | slack | latency (us) | search + retrain (s) |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['variant']} | {r['finished']}/{r['runs']} | {r['meet']} | {r['accuracy']} | {r['slack']} | "
                  f"{r['latency_us']} | {r['search_s']} |" for r in rows]
        soft = [r for r in rows if r["variant"].startswith("dance") and r["met_all"]]
        best_soft = max(soft, key=lambda r: r["accuracy_met"]) if soft else None
        for hdx in [r for r in rows if r["variant"].startswith("hdx")]:
            ok_meet = hdx["met_all"]
            ok_acc = best_soft is None or (not math.isnan(hdx["accuracy_met"]) and
                                           hdx["accuracy_met"] >= best_soft["accuracy_met"] - 1e-9)
            soft_txt = (f"{best_soft['variant']} ({best_soft['accuracy_met']:.2f})" if best_soft
                        else "none meets it")
            verdicts.append(f"| {spec} | {hdx['variant']} | {hdx['meet']} | {hdx['accuracy_met']:.2f} | {soft_txt} | "
                            f"{'yes' if ok_meet and ok_acc else 'NO'} |")
    head = ["| target | variant | meets it | mean accuracy of its runs that meet it | best soft penalty meeting it "
            "in every run | claim holds |", "|---|---|---|---|---|---|"]
    return "\n".join(["## The claim, per target", ""] + head + verdicts + lines) + "\n"


def plot(df: pd.DataFrame, bounds, path: Path) -> None:
    from matplotlib.figure import Figure

    from coexplore.pareto import save_figure

    fig = Figure(figsize=(4.2 * len(bounds), 4.0))
    axes = fig.subplots(1, len(bounds), squeeze=False)[0]
    names = list(dict.fromkeys(df["variant"]))
    from matplotlib import colormaps
    cmap = colormaps["tab10"]
    for ax, b in zip(axes, bounds):
        sub = df[df["constraints"].astype(str).str.contains(_us(b).split("<= ")[1], regex=False)]
        for i, name in enumerate(names):
            r = sub[(sub["variant"] == name) & sub["status"].isin(["done", "violated"])]
            if len(r):
                ax.scatter(r["latency_s"].astype(float) * 1e6, r["accuracy"].astype(float) * 100, s=22,
                           color=cmap(i % 10), marker="o" if name.startswith("hdx") else "s", label=name, alpha=0.85)
        ax.axvline(b * 1e6, color="crimson", ls="--", lw=1.0)
        ax.set_title(f"{_us(b)}", fontsize=9)
        ax.set_xlabel("latency (us), analytical")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("retrained test accuracy (%)")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("constraint suite on embedded MNIST: every run's design (repair off); the dashed line is the bound",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, [path])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/hdx-suite")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--targets", type=int, default=4)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="2 targets x 1 seed (a smoke run)")
    ap.add_argument("--variants", nargs="*", default=None, help="a subset of the variants")
    ap.add_argument("--results", default=str(ROOT / "experiments" / "results"))
    args = ap.parse_args(argv)
    seeds = range(1 if args.quick else args.seeds)
    n_targets = 2 if args.quick else args.targets
    variants = [v for v in VARIANTS if args.variants is None or v[0] in args.variants]
    out = Path(args.out)
    t0 = time.perf_counter()
    df = run(out, seeds, n_targets, args.jobs, variants)
    bounds = json.loads((out / "suite.json").read_text())["targets_s"]
    meta = json.loads((out / "suite.json").read_text())
    df.to_csv(out / "hdx-suite.csv", index=False)
    res = Path(args.results)
    stem = "hdx-suite" + ("-quick" if args.quick else "")
    plot(df, bounds, res / f"{stem}.png")
    from coexplore.config import load_config
    base = load_config(BASE)
    head = [f"# HDX constraint suite (embedded MNIST, {len(list(seeds))} seed(s), repair off)", "",
            f"Command: `python experiments/bench/hdx_suite.py --out {args.out}{' --quick' if args.quick else ''}` "
            f"({(time.perf_counter() - t0) / 60:.0f} min of this invocation on this 2-core machine).", "",
            f"Budget of every run ({BASE.relative_to(ROOT)}): {base.warmup_epochs} warm-up + {base.search_epochs} "
            f"search epochs of {base.steps_per_epoch or 'all'} steps, batch {base.data.batch_size}, "
            f"{base.data.limit or 'all'} images per split; one-shot baselines score {base.baseline_budget} "
            f"architectures; every design retrained from scratch for {base.retrain_epochs} epochs and scored on the "
            "1,000-image test split.", "",
            f"Reachable minimum latency {meta['reachable_min_s'] * 1e6:.2f} us; the accuracy-only design "
            f"{meta['accuracy_only_latency_s'] * 1e6:.2f} us. Slack is (bound - latency) / bound, analytical.", ""]
    (res / f"{stem}.md").write_text("\n".join(head) + table(df, bounds) + f"\n![suite]({stem}.png)\n")
    print(f"wrote {res / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
