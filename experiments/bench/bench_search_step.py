"""Throughput of a co-exploration step against a plain training step, side by side.

For a search space (default ``proxyless-cifar10`` at 32x32, batch 64) it times, in one run
and alternating, medians of repeats:

* a **search step** of the supernet -- the weight step on a training batch plus the
  architecture step on a validation batch through the hardware cost (the exact cost table,
  so no evaluator build is needed; the evaluator's forward is sub-millisecond) -- in the
  configured path mode, with NCHW tensors and with ``channels_last``;
* a **plain training step** of a derived network (the architecture the supernet's argmax
  gives, standalone), the same two layouts.

It prints images per second and the ratio search / plain.  On CUDA (when present) it also
times with AMP.

    python experiments/bench/bench_search_step.py [--space proxyless-cifar10] [--mode gumbel] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def _time(fn, repeats: int, inner: int) -> float:
    for _ in range(2):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        ts.append((time.perf_counter() - t0) / inner)
    return statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="proxyless-cifar10")
    ap.add_argument("--hardware", default="default")
    ap.add_argument("--mode", default="gumbel", choices=("gumbel", "binary", "darts"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--md", default=None, help="also append the table, as markdown, to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from accelerators import get_hardware_space
    from coexplore.constraints import ConstraintSet
    from coexplore.objectives import Objective
    from coexplore.penalty import ExactTableCost, HardwarePenalty
    from coexplore.pricing import CostTable
    from search_spaces import Supernet, build_network, get_search_space
    from search_spaces.train import train_step

    space = get_search_space(args.space)
    table = CostTable(space, get_hardware_space(args.hardware))
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, space.input_channels, space.resolution, space.resolution)
    x, xv = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    y = torch.randint(0, space.num_classes, (args.batch,), generator=g)
    rows = []
    for layout in ("contiguous", "channels_last"):
        mf = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        net = Supernet(space, mode=args.mode, tau=1.0, init_generator=torch.Generator().manual_seed(0)).to(dev)
        net = net.to(memory_format=mf)
        net.generator = torch.Generator(device=dev).manual_seed(1)
        cost = ExactTableCost(table, Objective("edap"), ConstraintSet()).to(dev)
        cost.set_reference(net.arch_encoding().detach())
        pen = HardwarePenalty(cost, 1.0)
        w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9, nesterov=True)
        a_opt = torch.optim.Adam(net.arch_parameters(), lr=1e-3)
        xd, xvd, yd = x.to(dev, memory_format=mf), xv.to(dev, memory_format=mf), y.to(dev)

        def search_step():
            net.train()
            train_step(net, xd, yd, w_opt, None, 5.0, net.weight_parameters())
            loss, _ = pen(F.cross_entropy(net(xvd), yd), net.arch_encoding())
            a_opt.zero_grad(set_to_none=True)
            grads = torch.autograd.grad(loss, net.arch_parameters(), allow_unused=True)
            for p, gr in zip(net.arch_parameters(), grads):
                p.grad = gr
            a_opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        plain = build_network(space, net.derive(), torch.Generator().manual_seed(0)).to(dev).to(memory_format=mf)
        p_opt = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9, nesterov=True)

        def plain_step():
            plain.train()
            train_step(plain, xd, yd, p_opt, None, 5.0)
            if dev.type == "cuda":
                torch.cuda.synchronize()

        ts = _time(search_step, args.repeats, args.inner)
        tp = _time(plain_step, args.repeats, args.inner)
        rows.append((layout, args.batch / ts, args.batch / tp, ts / tp))
    print(f"{args.space}, {args.mode} paths, batch {args.batch}, {args.threads} thread(s), {dev.type}; "
          f"medians of {args.repeats} x {args.inner} steps")
    print(f"{'layout':14s} {'search step img/s':>18s} {'plain step img/s':>17s} {'search / plain time':>20s}")
    for layout, s, p, r in rows:
        print(f"{layout:14s} {s:18.1f} {p:17.1f} {r:20.2f}")
    print(f"channels_last speed-up: search {rows[1][1] / rows[0][1]:.2f}x, plain {rows[1][2] / rows[0][2]:.2f}x")
    if args.md:
        import sys
        lines = [f"### {args.space}, {args.mode} paths, batch {args.batch}, {args.threads} thread(s), {dev.type}", "",
                 f"`python experiments/bench/bench_search_step.py {' '.join(sys.argv[1:] if argv is None else argv)}`; "
                 f"medians of {args.repeats} x {args.inner} steps, both layouts in one process.", "",
                 "| layout | search step (img/s) | plain step of the derived network (img/s) | search / plain time |",
                 "|---|---|---|---|"]
        lines += [f"| {layout} | {s:.1f} | {p:.1f} | {r:.2f} |" for layout, s, p, r in rows]
        lines += ["", f"channels-last speed-up: search {rows[1][1] / rows[0][1]:.2f}x, plain "
                  f"{rows[1][2] / rows[0][2]:.2f}x.", "", ""]
        with open(args.md, "a") as fh:
            fh.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
