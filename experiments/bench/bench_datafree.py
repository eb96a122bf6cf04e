"""Benchmark: one data-free quantisation iteration (one generator step + one student step) on CPU.

Prints the median wall time over repeats, per method, for an untrained teacher of the given
architecture (the cost does not depend on the weights): ResNet-20 on 3x32x32 (CIFAR-10) or the
BN-CNN on 1x28x28 (MNIST), W4A4, with and without AIT.

Usage:  python experiments/bench/bench_datafree.py [--arch resnet20] [--batch-size 64] [--repeats 7]
        [--threads 1] [--generator-channels 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet20", choices=("resnet20", "bn-cnn"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--generator-channels", type=int, default=128)
    ap.add_argument("--methods", nargs="+", default=["gdfq", "qimera", "clusterq", "lrq", "zeroq"])
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    from coexplore.datafree import QuantizeConfig, Teacher, TeacherSpec
    from coexplore.datafree.run import _Run, build_method

    shape = (3, 32, 32) if args.arch == "resnet20" else (1, 28, 28)
    spec = TeacherSpec(args.arch, 10, shape, tuple(str(i) for i in range(10)), (0.5,) * shape[0], (0.25,) * shape[0])
    teacher = Teacher(spec, spec.build(torch.Generator().manual_seed(0)).eval())
    print(f"{args.arch} teacher, batch {args.batch_size}, W4A4, {args.threads} thread(s), generator width "
          f"{args.generator_channels}; median of {args.repeats} iterations (after one warm-up)")
    for method in args.methods:
        for ait in (False, True):
            cfg = QuantizeConfig(teacher="-", method=method, wbits=4, abits=4, ait=ait, batch_size=args.batch_size,
                                 iterations=args.repeats + 1, progress=False, log_every=10 ** 6,
                                 method_cfg={"generator_channels": args.generator_channels, "zeroq_pool": 64,
                                             "zeroq_steps": 1})
            m = build_method(cfg, teacher)
            m.prepare(torch.Generator().manual_seed(0))
            with tempfile.TemporaryDirectory() as tmp:
                run = _Run(cfg, teacher, m, Path(tmp))
                run.calibrate()
                run.student_step(0)
                times = []
                for i in range(1, args.repeats + 1):
                    t0 = time.perf_counter()
                    run.student_step(i)
                    times.append(time.perf_counter() - t0)
            print(f"  {method:9s} {'+AIT' if ait else '    '}  {1e3 * statistics.median(times):8.1f} ms / iteration")


if __name__ == "__main__":
    main()
