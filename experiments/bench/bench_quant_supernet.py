"""Benchmark: one supernet training step with fake quantisation (bit choices) against without.

Both supernets are built in the same process from spaces with the same ops and geometry: the
float one (``tiny-mnist`` / ``proxyless-cifar10``) and its mixed-precision twin (``tiny-mnist-mp`` /
``proxyless-cifar10-mp``: every block also chooses weight and activation bits in {2, 4, 8},
LSQ weights, PACT activations, stem/head/classifier at 8 bits).  One step = forward in the
path mode, cross-entropy, backward to weights and architecture logits, one SGD step on the
weights.  The two are timed alternately, step by step, so load changes hit both alike; the
median of ``--repeats`` steps after ``--warmup`` is reported, and its ratio.

Usage:  python experiments/bench/bench_quant_supernet.py [--space tiny-mnist] [--mode gumbel]
        [--batch-size 64] [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="tiny-mnist", choices=("tiny-mnist", "proxyless-cifar10"))
    ap.add_argument("--mode", default="gumbel", choices=("gumbel", "binary", "darts", "uniform"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from search_spaces import Supernet, get_search_space

    torch.set_num_threads(args.threads)
    nets, opts, gens = {}, {}, {}
    for key, name in (("float", args.space), ("fake-quant", args.space + "-mp")):
        sp = get_search_space(name)
        net = Supernet(sp, mode=args.mode, init_generator=torch.Generator().manual_seed(0))
        net.generator = torch.Generator().manual_seed(1)
        nets[key], opts[key] = net, torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9)
    sp = nets["float"].space
    g = torch.Generator().manual_seed(2)
    x = torch.randn(args.batch_size, sp.input_channels, sp.resolution, sp.resolution, generator=g)
    y = torch.randint(0, sp.num_classes, (args.batch_size,), generator=g)

    def step(key: str) -> float:
        net, opt = nets[key], opts[key]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        for a in net.arch_parameters():
            a.grad = None
        F.cross_entropy(net(x), y).backward()
        opt.step()
        return time.perf_counter() - t0

    times = {k: [] for k in nets}
    for i in range(args.warmup + args.repeats):
        for k in nets:  # alternate, so both see the same load
            t = step(k)
            if i >= args.warmup:
                times[k].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"load average {os.getloadavg()[0]:.2f}; {args.space} vs {args.space}-mp, mode {args.mode}, "
          f"batch {args.batch_size}, {args.threads} thread(s); median of {args.repeats} steps after {args.warmup}")
    for k in nets:
        q = sorted(times[k])
        print(f"  {k:<11} {1000 * med[k]:8.1f} ms / step   (min {1000 * q[0]:.1f}, max {1000 * q[-1]:.1f})")
    print(f"  overhead    {med['fake-quant'] / med['float']:8.2f} x")


if __name__ == "__main__":
    main()
