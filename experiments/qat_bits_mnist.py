"""Launcher: one fixed architecture of ``tiny-mnist-mp`` retrained with quantisation-aware training
at several uniform bit widths, against the same architecture in float, on the embedded MNIST digits.

Every row is :func:`coexplore.finalize.retrain` (the path ``coexplore retrain`` and a finished
search use): the network is built with its quantised ops at the row's bits (LSQ weights with a
learnable per-channel step, PACT activations; stem, head and classifier at 8 bits) and trained
from scratch with the same seed, schedule and data.  The table goes to
``experiments/results/qat-bits-mnist.md`` (and ``.csv``).  About 3 minutes on one CPU core:

    python experiments/qat_bits_mnist.py
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (wbits, abits) of the quantised rows; the float reference is trained with the first.
ROWS = ((8, 8), (4, 4), (2, 8), (2, 2))
#: The fixed architecture: MBConv 3x3 expansion 3 in the first layer of each stage, the second skipped.
ARCH = {"s0.b0": "mb3_e3", "s0.b1": "zero", "s1.b0": "mb3_e3", "s1.b1": "zero", "s2.b0": "mb3_e3", "s2.b1": "zero"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "qat-bits-mnist")
    args = ap.parse_args(argv)

    import torch

    from coexplore.finalize import retrain
    from search_spaces import get_data, get_search_space

    torch.set_num_threads(args.threads)
    space = get_search_space("tiny-mnist-mp")
    data = get_data("mnist-embedded", batch_size=64, seed=args.seed)
    rows = []

    def row(label, wb, ab, acc, r, seconds):
        rows.append({"bits": label, "wbits": wb, "abits": ab, "test_accuracy_pct": round(100 * acc, 2),
                     "test_samples": r["test_samples"], "weight_bits_total": r["bits"]["weight_bits_total"]
                     if wb != 32 else None, "seconds": round(seconds, 1)})
        print(rows[-1], flush=True)

    for wb, ab in ROWS:
        sample = {**space.sample_all("mb3_e3", wbits=wb, abits=ab), **ARCH}
        t0 = time.perf_counter()
        # the first row also trains the same network in float, same seed (retrain's float reference)
        r = retrain(space, sample, data, args.epochs, args.lr, "cpu", args.seed, float_reference=not rows)
        if "float_test_accuracy" in r:
            row("float (fp32)", 32, 32, r["float_test_accuracy"], r, float("nan"))
        row(f"W{wb}A{ab} (stem/head/fc W8A8)", wb, ab, r["quantized_test_accuracy"], r, time.perf_counter() - t0)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cmd = "python experiments/qat_bits_mnist.py" + ("" if argv is None else " " + " ".join(argv))
    lines = [
        "# QAT at uniform bit widths, embedded MNIST", "",
        f"Space `tiny-mnist-mp`, fixed architecture {ARCH} (expansion 3, 3x3), trained from scratch for "
        f"{args.epochs} epochs (SGD, lr {args.lr}, cosine, batch 64, seed {args.seed}) by "
        "`coexplore.finalize.retrain`; weights LSQ (learnable per-channel step), activations PACT, "
        "straight-through rounding (torch fake-quantisation ops).  Top-1 on the 1,000-image test split; one seed, "
        "so differences of a point or two are noise (the binomial standard error is 1 point at 90%, 1.4 at 70%).  The W8A8 row's seconds include training the float reference (same seed); weight storage counts every quantised layer's weights times its bits.", "",
        f"Command: `{cmd}` (1 CPU thread).", "",
        "| bits | test top-1 (%) | weight storage (bits) | seconds |", "|---|---|---|---|",
    ]
    for r in rows:
        sec = "(with W8A8)" if r["seconds"] != r["seconds"] else r["seconds"]
        lines.append(f"| {r['bits']} | {r['test_accuracy_pct']:.2f} | {r['weight_bits_total'] or '-'} | {sec} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
