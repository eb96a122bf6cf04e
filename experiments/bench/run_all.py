"""Collect coexplore's headline figures into one markdown and one CSV table.

Figures (medians where timed, side by side with their baseline in the same run):
  * cost model: time to price a network on the whole default hardware space against pricing one
    accelerator at a time; the exhaustive hardware search of one network (seconds per network)
    against DANCE's 112 s for the same search with Timeloop; seconds per (layer, accelerator)
    pair against ZigZag on the same pairs, measured in the same run;
  * evaluator: accuracy against the analytical model (a fresh small build on tiny-mnist x small,
    or the report of a saved evaluator given with --evaluator);
  * overhead: one co-exploration step (weight step + architecture step through the evaluator)
    against one plain supernet training step;
  * constraint satisfaction: share of finished runs under --runs meeting their constraints,
    per method (e.g. the demo's output folder).

Usage: python experiments/bench/run_all.py [--runs runs/demo] [--evaluator ev.pt] [--zigzag-pairs 8]
       [--areas cost zigzag evaluator overhead constraints] [--out bench-results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from accelerators import get_hardware_space
from accelerators.cost_model import AnalyticalModel
from coexplore.common import atomic_write_text
from accelerators.networks import get_workload
from bench_cost_model import _median_time as _median  # same folder: the one timing helper of the benchmarks


def cost_model_rows(repeats: int):
    """Whole-space pricing against one accelerator at a time, and the exhaustive hardware search of one
    network against DANCE's Timeloop figure for the same task (seconds per network, like with like)."""
    space = get_hardware_space("default")
    accs = space.enumerate()
    model = AnalyticalModel()
    rows = []
    for name in ("resnet18", "mobilenetv2-cifar"):
        layers = get_workload(name)
        t = _median(lambda: model.evaluate(layers, accs), repeats)
        t_search = _median(lambda: model.evaluate(layers, accs).edap.argmin(), repeats)
        sample = accs[::20]
        t1 = _median(lambda: [model.evaluate(layers, [a]) for a in sample], 1) * len(accs) / len(sample)
        rows.append({"area": "cost model", "figure": f"{name} on all {len(accs)} designs (s)", "value": t,
                     "baseline": t1, "baseline_name": "one accelerator at a time", "ratio": t1 / t})
        rows.append({"area": "cost model", "figure": f"{name}: exhaustive hardware search, one network (s)",
                     "value": t_search, "baseline": 112.0,
                     "baseline_name": "DANCE: Timeloop, 112 s per network on 48 threads", "ratio": 112.0 / t_search})
    return rows


def zigzag_rows(pairs: int, repeats: int):
    """Seconds per (layer, accelerator) pair, the analytical model against ZigZag, measured in this run."""
    import statistics

    from bench_zigzag import sample_pairs, time_pairs

    timed, amortised = time_pairs(sample_pairs(pairs, 0), repeats)
    zz = statistics.median(r["zigzag_s"] for r in timed)
    one = statistics.median(r["ours_one_pair_s"] for r in timed)
    am = statistics.median(amortised)
    return [{"area": "cost model", "figure": f"seconds per (layer, accelerator) pair, one per call ({pairs} pairs)",
             "value": one, "baseline": zz, "baseline_name": "ZigZag 3.9.1 (LOMA), same pairs", "ratio": zz / one},
            {"area": "cost model", "figure": "seconds per pair, amortised over the default space",
             "value": am, "baseline": zz, "baseline_name": "ZigZag 3.9.1 (LOMA), one pair at a time", "ratio": zz / am}]


def evaluator_rows(path):
    from coexplore.evaluator import Evaluator
    from coexplore.evaluator_train import TrainConfig, build_evaluator
    from search_spaces import get_search_space

    if path:
        r = Evaluator.load(path).report
    else:
        r = build_evaluator(get_search_space("tiny-mnist"), get_hardware_space("small"), "edap", num_arch=3000,
                            pairs_per_arch=24, cfg=TrainConfig(max_epochs_generator=30, max_epochs_estimator=6),
                            progress=False, report_arch=1000)["report"]
    rows = [{"area": "evaluator", "figure": f"HW-generation accuracy {k} (%)", "value": v,
             "baseline": r["hw_generation_majority_baseline_pct"][k], "baseline_name": "majority class"}
            for k, v in r["hw_generation_accuracy_pct"].items()]
    for k, v in r["cost_estimation_mape_pct"].items():
        rows.append({"area": "evaluator", "figure": f"cost-estimation MAPE {k} (%)", "value": v})
    for k, v in r["whole_evaluator_mape_pct"].items():
        rows.append({"area": "evaluator", "figure": f"whole-evaluator MAPE {k} (%)", "value": v})
    rows.append({"area": "evaluator", "figure": "regret median (%)", "value": r["regret_median_pct"]})
    rows.append({"area": "evaluator", "figure": "regret p95 (%)", "value": r["regret_p95_pct"]})
    if "search_step_ms" in r:
        rows.append({"area": "evaluator", "figure": "forward+backward per search step (ms, CPU)",
                     "value": r["search_step_ms"], "baseline": 0.5, "baseline_name": "DANCE: 0.5 ms on a GPU"})
    return rows


def overhead_rows(repeats: int):
    """A co-exploration step (weight + architecture step) against a plain supernet step."""
    import torch.nn.functional as F

    from coexplore.evaluator_train import TrainConfig, build_evaluator
    from coexplore.objectives import Objective
    from search_spaces import Supernet, get_search_space

    space = get_search_space("tiny-mnist")
    ev = build_evaluator(space, get_hardware_space("small"), "edap", num_arch=500, pairs_per_arch=8,
                         cfg=TrainConfig(max_epochs_generator=3, max_epochs_estimator=1), progress=False,
                         report_arch=100)["evaluator"]
    for p in ev.parameters():
        p.requires_grad_(False)
    net = Supernet(space, mode="gumbel")
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9)
    aopt = torch.optim.Adam(net.arch_parameters(), lr=1e-3)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    obj = Objective("edap")

    def plain():
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def coexplore_step():
        plain()
        out = ev(net.arch_encoding())
        loss = F.cross_entropy(net(x), y) + 0.5 * obj(out["latency_s"], out["energy_j"], out["area_mm2"]) / 1e-8
        aopt.zero_grad()
        loss.backward()
        aopt.step()

    def hw_only():
        out = ev(net.arch_encoding())
        obj(out["latency_s"], out["energy_j"], out["area_mm2"]).backward()

    for f in (plain, coexplore_step, hw_only):
        f()
    tp = _median(plain, repeats)
    tc = _median(coexplore_step, repeats)
    th = _median(hw_only, repeats * 5)
    return [{"area": "overhead", "figure": "plain supernet step, batch 64 (ms)", "value": tp * 1e3},
            {"area": "overhead", "figure": "co-exploration step: weight + architecture step (ms)", "value": tc * 1e3,
             "baseline": 2 * tp * 1e3, "baseline_name": "two plain supernet steps (bilevel without hardware cost)",
             "ratio": tc / (2 * tp)},
            {"area": "overhead", "figure": "hardware-cost part of a step: evaluator forward+backward (ms)",
             "value": th * 1e3}]


def constraint_rows(runs):
    from coexplore.pareto import load_runs
    df = load_runs(runs)
    rows = []
    for method, g in df.groupby("method"):
        if "all_constraints_met" in g:
            rows.append({"area": "constraints", "figure": f"{method}: runs meeting every constraint (%)",
                         "value": 100.0 * g["all_constraints_met"].astype(bool).mean(), "n": len(g)})
    return rows


AREAS = ("cost", "zigzag", "evaluator", "overhead", "constraints")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="*", default=[], help="run folders for the constraint-satisfaction figure")
    ap.add_argument("--evaluator", default=None, help="a saved evaluator whose report to use")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--zigzag-pairs", type=int, default=8, help="pairs timed with ZigZag (0: skip; needs the extra)")
    ap.add_argument("--areas", nargs="+", choices=AREAS, default=list(AREAS),
                    help="which figures to measure (default: all)")
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    if "cost" in args.areas:
        rows += cost_model_rows(args.repeats)
    if "zigzag" in args.areas and args.zigzag_pairs:
        rows += zigzag_rows(args.zigzag_pairs, args.repeats)
    if "evaluator" in args.areas:
        rows += evaluator_rows(args.evaluator)
    if "overhead" in args.areas:
        rows += overhead_rows(args.repeats * 4)
    if "constraints" in args.areas and args.runs:
        rows += constraint_rows(args.runs)
    import pandas as pd
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "headline.csv", df.to_csv(index=False))
    md = ["# coexplore headline figures", "", "| area | figure | value | baseline | ratio |", "|---|---|---|---|---|"]
    for r in rows:
        base = f"{r['baseline']:.4g} ({r['baseline_name']})" if r.get("baseline") is not None else ""
        ratio = f"{r['ratio']:.3g}x" if r.get("ratio") is not None else ""
        md.append(f"| {r['area']} | {r['figure']} | {r['value']:.4g} | {base} | {ratio} |")
    atomic_write_text(out / "headline.md", "\n".join(md) + "\n")
    print("\n".join(md))
    print(json.dumps({"csv": str(out / "headline.csv"), "markdown": str(out / "headline.md")}))


if __name__ == "__main__":
    main()
