"""Benchmark: how fast the analytical model prices networks on the whole hardware space.

Prints, as medians over repeats:
  * the rate of (layer, accelerator) pairs priced per second, mapping search included;
  * the time to price a whole network on every point of the default hardware space,
    side by side with pricing the same space one accelerator at a time (the loop a
    non-vectorised model would run), and against DANCE's published 112 s for an exhaustive
    hardware search of one network with Timeloop on 48 threads;
  * the CPU seconds of the whole-space pricing (time.process_time), which a loaded shared
    machine inflates less than the wall time.

Usage:  python experiments/bench/bench_cost_model.py [--repeats 7] [--space default]
"""

from __future__ import annotations

import argparse
import statistics
import time

from accelerators import get_hardware_space
from accelerators.cost_model import AnalyticalModel
from accelerators.networks import get_workload

TIMELOOP_SECONDS = 112.0  # DANCE (DAC 2021), Sec. 5: exhaustive HW search per network, 48 threads


def _median_time(fn, repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--space", default="default")
    ap.add_argument("--loop-sample", type=int, default=48,
                    help="accelerators priced one at a time for the baseline (extrapolated to the space)")
    args = ap.parse_args()

    space = get_hardware_space(args.space)
    accs = space.enumerate()
    model = AnalyticalModel()
    print(f"hardware space {space.name!r}: {space.size} designs; repeats={args.repeats} (medians)")
    print(f"{'network':<20}{'layers':>7}{'pairs':>9}{'whole space s':>15}{'pairs/s':>12}"
          f"{'1-at-a-time s':>15}{'vs loop':>9}{'vs Timeloop':>13}{'whole space CPU s':>19}")
    for name in ("resnet18", "mobilenetv2-cifar", "mobilenetv2", "resnet50"):
        layers = get_workload(name)
        pairs = len(layers) * len(accs)
        t_vec = _median_time(lambda: model.evaluate(layers, accs), args.repeats)
        # CPU seconds of this process: what the wall time would be on an idle machine (shared machines inflate it)
        t_cpu = _median_time(lambda: model.evaluate(layers, accs), args.repeats, time.process_time)
        sample = accs[:: max(1, len(accs) // args.loop_sample)]
        t_loop_sample = _median_time(lambda: [model.evaluate(layers, [a]) for a in sample], max(1, args.repeats // 3))
        t_loop = t_loop_sample * len(accs) / len(sample)
        print(f"{name:<20}{len(layers):>7}{pairs:>9}{t_vec:>15.4f}{pairs / t_vec:>12.0f}"
              f"{t_loop:>15.3f}{t_loop / t_vec:>8.0f}x{TIMELOOP_SECONDS / t_vec:>12.0f}x{t_cpu:>19.4f}")


if __name__ == "__main__":
    main()
