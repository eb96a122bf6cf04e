"""Throughput of a co-exploration step against a plain training step, side by side.

For a search space (default ``proxyless-cifar10`` at 32x32, batch 64) it times, in one run
and alternating, medians of repeats:

* a **search step** of the supernet -- the weight step on a training batch plus the
  architecture step on a validation batch through the hardware cost (the exact cost table,
  so no evaluator build is needed; the evaluator's forward is sub-millisecond) -- in the
  configured path mode, with NCHW tensors and with ``channels_last``;
* a **plain training step** of a derived network (the architecture the supernet's argmax
  gives, standalone), the same two layouts.

Each of them also with bfloat16 autocast (``--amp off bf16``, the default on CUDA; ``amp: auto``
in a run config means bfloat16 there), and on CUDA the copy of a batch to the GPU from pageable
against page-locked memory (what a run on CUDA hands out, ``ArrayLoader(pin_memory=True)``).
It prints images per second and the ratio search / plain.

    python experiments/bench/bench_search_step.py [--space proxyless-cifar10] [--mode gumbel] [--threads 2] [--amp off bf16]
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
    ap.add_argument("--amp", nargs="+", choices=("off", "bf16"), default=None,
                    help="forward precisions to time (default: off, and bf16 too on CUDA)")
    ap.add_argument("--md", default=None, help="also append the table, as markdown, to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from accelerators import get_hardware_space
    from coexplore.constraints import ConstraintSet
    from coexplore.objectives import Objective
    from coexplore.penalty import ExactTableCost, HardwarePenalty
    from coexplore.pricing import CostTable
    from search_spaces import Supernet, build_network, get_search_space
    from search_spaces.train import autocast, train_step

    space = get_search_space(args.space)
    table = CostTable(space, get_hardware_space(args.hardware))
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amps = args.amp or (["off", "bf16"] if dev.type == "cuda" else ["off"])
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, space.input_channels, space.resolution, space.resolution)
    x, xv = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    y = torch.randint(0, space.num_classes, (args.batch,), generator=g)
    rows = []
    for layout, amp in [(lay, a) for a in amps for lay in ("contiguous", "channels_last")]:
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
            train_step(net, xd, yd, w_opt, None, 5.0, net.weight_parameters(), amp=amp)
            with autocast(dev, amp):  # as the trainer's architecture step: the network's forward only
                ce = F.cross_entropy(net(xvd), yd).float()
            loss, _ = pen(ce, net.arch_encoding())
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
            train_step(plain, xd, yd, p_opt, None, 5.0, amp=amp)
            if dev.type == "cuda":
                torch.cuda.synchronize()

        ts = _time(search_step, args.repeats, args.inner)
        tp = _time(plain_step, args.repeats, args.inner)
        rows.append((layout, amp, args.batch / ts, args.batch / tp, ts / tp))
    by = {(r[0], r[1]): r for r in rows}
    ups = [f"channels_last speed-up: search {by['channels_last', 'off'][2] / by['contiguous', 'off'][2]:.2f}x, "
           f"plain {by['channels_last', 'off'][3] / by['contiguous', 'off'][3]:.2f}x"] if "off" in amps else []
    if "off" in amps and "bf16" in amps:
        ups.append(f"bf16 autocast speed-up (channels_last): search "
                   f"{by['channels_last', 'bf16'][2] / by['channels_last', 'off'][2]:.2f}x, plain "
                   f"{by['channels_last', 'bf16'][3] / by['channels_last', 'off'][3]:.2f}x")
    if dev.type == "cuda":  # a training batch's copy to the GPU, pageable against page-locked
        xp = x.pin_memory()

        def copy(src):
            def go():
                src.to(dev, non_blocking=True)
                torch.cuda.synchronize()
            return go
        tpage, tpin = _time(copy(x), args.repeats, 20), _time(copy(xp), args.repeats, 20)
        mb = x.numel() * x.element_size() / 1e6
        ups.append(f"batch copy to the GPU: pageable {mb / tpage / 1e3:.2f} GB/s, page-locked {mb / tpin / 1e3:.2f} GB/s "
                   f"({tpage / tpin:.2f}x)")
    print(f"{args.space}, {args.mode} paths, batch {args.batch}, {args.threads} thread(s), {dev.type}; "
          f"medians of {args.repeats} x {args.inner} steps")
    print(f"{'layout':14s} {'amp':5s} {'search step img/s':>18s} {'plain step img/s':>17s} {'search / plain time':>20s}")
    for layout, amp, s, p, r in rows:
        print(f"{layout:14s} {amp:5s} {s:18.1f} {p:17.1f} {r:20.2f}")
    for u in ups:
        print(u)
    if args.md:
        import sys
        lines = [f"### {args.space}, {args.mode} paths, batch {args.batch}, {args.threads} thread(s), {dev.type}", "",
                 f"`python experiments/bench/bench_search_step.py {' '.join(sys.argv[1:] if argv is None else argv)}`; "
                 f"medians of {args.repeats} x {args.inner} steps, every row in one process.", "",
                 "| layout | amp | search step (img/s) | plain step of the derived network (img/s) | search / plain time |",
                 "|---|---|---|---|---|"]
        lines += [f"| {layout} | {amp} | {s:.1f} | {p:.1f} | {r:.2f} |" for layout, amp, s, p, r in rows]
        lines += [""] + [f"{u}." for u in ups] + ["", ""]
        with open(args.md, "a") as fh:
            fh.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
