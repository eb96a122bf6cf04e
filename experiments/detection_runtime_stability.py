"""Which CPU runtime measures a latency table more stably here: eager torch or onnxruntime?

For each runtime, measures the per-block latency table of a detection space twice (each
time every block in ``--rounds`` interleaved rounds), then whole networks of a sample of
architectures, and reports

* the spread of each block over the rounds, ``(max - min) / median`` (median over blocks);
* the repeatability of the table: ``|t1 - t2| / t2`` between the two tables (median over blocks);
* the additivity error of the table, ``(table sum - measured) / measured`` on whole networks.

    nice -n 10 python experiments/detection_runtime_stability.py   # writes experiments/results/detection-runtime-stability.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="det-mnist")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--min-run-time", type=float, default=0.05)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "detection-runtime-stability.md"))
    a = p.parse_args(argv)

    import numpy as np
    import torch

    from accelerators.measured import MeasuredLatency
    from coexplore.config import resolve_search_space
    from coexplore.lut import LatencyCostTable, additivity_check, build_latency_table

    torch.set_num_threads(1)
    space = resolve_search_space(a.space)
    samples = [space.reference_sample()] + [space.sample(i) for i in range(a.samples - 1)]
    rows, record = [], {}
    for runtime in ("torch", "onnxruntime"):
        src = MeasuredLatency(runtime=runtime, threads=1, min_run_time=a.min_run_time, rounds=a.rounds)
        t1, t2 = build_latency_table(space, src), build_latency_table(space, src)
        keys = list(t1.entries)
        spread = np.median([t1.entries[k].spread_s / t1.entries[k].median_s for k in keys])
        repeat = np.median([abs(t1.entries[k].median_s - t2.entries[k].median_s) / t2.entries[k].median_s for k in keys])
        add = additivity_check(space, LatencyCostTable(space, t1, src), samples, remeasure_blocks=False)
        whole = [r["measured_s"] for r in add["rows"]]
        rows.append((runtime, spread, repeat, add["mean_abs_rel_error"], add["mean_rel_error"], add["max_abs_rel_error"],
                     1e3 * float(np.median(whole)), t1.seconds + t2.seconds))
        record[runtime] = {"spread": spread, "repeat": repeat, "additivity": {k: v for k, v in add.items() if k != "rows"},
                           "whole_ms": [1e3 * w for w in whole], "machine": src.machine}
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    m = record["torch"]["machine"]
    lines = [f"# CPU runtime for latency tables: eager torch vs onnxruntime ({space.name})", "",
             f"Machine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs, shared; 1 thread, batch 1, BN folded; "
             f"{a.rounds} interleaved rounds of {a.min_run_time} s per block; {len(samples)} whole networks "
             f"(the reference and {len(samples) - 1} random architectures).  Load average at the end: "
             f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min).", "",
             "| runtime | block spread over rounds (median) | table-to-table change (median) | additivity mean abs error | "
             "mean signed error | max abs error | whole network, median (ms) | seconds (2 tables) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r[0]} | {100 * r[1]:.1f}% | {100 * r[2]:.1f}% | {100 * r[3]:.1f}% | {100 * r[4]:+.1f}% | "
                     f"{100 * r[5]:.1f}% | {r[6]:.3f} | {r[7]:.0f} |")
    lines += ["", "Command: `nice -n 10 python experiments/detection_runtime_stability.py`", ""]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines))
    Path(a.out).with_suffix(".json").write_text(json.dumps(record, indent=1, default=float) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
