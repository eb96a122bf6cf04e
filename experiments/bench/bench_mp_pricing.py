"""Benchmark: pricing a whole search space on a whole hardware space, with bit-width choices
against without.

A space with bit choices has one candidate row per (block, op, weight bits, activation bits):
``proxyless-cifar10-mp`` has 9x the rows of ``proxyless-cifar10``.  This times building the
exact cost table (``coexplore.pricing.CostTable``: every candidate layer priced on every
accelerator, mapping search included) for the float space and its mixed-precision twin, side
by side in one process, as medians of wall and CPU seconds, and prints the ratio.

Usage:  python experiments/bench/bench_mp_pricing.py [--repeats 3] [--pairs SPACE:HW ...] [--md PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from accelerators import get_hardware_space
from coexplore.pricing import CostTable
from search_spaces import get_search_space

PAIRS = ["proxyless-cifar10:default", "proxyless-cifar10-mp:default",
         "tiny-mnist:precision-scalable", "tiny-mnist-mp:precision-scalable",
         "proxyless-cifar10-mp:precision-scalable"]


def _build(space, hw):
    CostTable(space, hw)  # a fresh table: nothing is cached in memory between builds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pairs", nargs="+", default=PAIRS, metavar="SPACE:HW")
    ap.add_argument("--md", default=None, help="also write the table as markdown to this path")
    args = ap.parse_args(argv)
    rows = []
    for pair in args.pairs:
        sname, hname = pair.split(":")
        space, hw = get_search_space(sname), get_hardware_space(hname)
        wall, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            _build(space, hw)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        rows.append((sname, hname, len(CostTable(space, hw).candidate_table.candidates), hw.size,
                     statistics.median(wall), statistics.median(cpu)))
    base = {(s, h): (w, c) for s, h, _, _, w, c in rows}
    lines = ["| search space | hardware space | candidate rows (block, op, bits) | designs | whole table, wall s (median) | "
             "CPU s (median) | vs the float space |", "|---|---|---|---|---|---|---|"]
    for s, h, n, d, w, c in rows:
        ref = base.get((s[:-3], h)) if s.endswith("-mp") else None
        ratio = f"{c / ref[1]:.1f}x CPU" if ref else "-"
        lines.append(f"| {s} | {h} | {n:,} | {d:,} | {w:.2f} | {c:.2f} | {ratio} |")
    text = "\n".join(lines)
    print(text)
    if args.md:
        Path(args.md).write_text("# Whole-space pricing with bit-width choices\n\n"
                                 f"Command: `python experiments/bench/bench_mp_pricing.py --repeats {args.repeats}`, "
                                 "one process, builds side by side on the shared 2-core machine.\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
