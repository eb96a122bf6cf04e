"""Launcher: the data-free quantisation comparison table (teacher, real-data QAT, ZeroQ, GDFQ, Qimera,
ClusterQ, LRQ, each with and without AIT) on MNIST (full) or CIFAR-10 (reduced schedule).

Every point is a run folder under ``--out`` (rerunning resumes and skips finished points); the
table is written to ``experiments/results/datafree-<dataset>.md`` (and ``.csv``).  Budgets are the
presets below; every method of a table gets the same generator and student budget.

    python experiments/datafree_table.py --dataset mnist --out runs/datafree-mnist --jobs 2
    python experiments/datafree_table.py --dataset cifar10 --data-path ../shared/data/cifar10-jpg.tar.gz \
        --teacher runs/teachers/resnet20-cifar10.pt --out runs/datafree-cifar10 --jobs 2 --seeds 0
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("real-qat", "zeroq", "gdfq", "qimera", "clusterq", "lrq")

#: Per-dataset budgets (the same for every method of a table).
PRESETS = {
    "mnist": {"teacher_arch": "bn-cnn", "data": "mnist-embedded", "teacher_epochs": 8, "teacher_lr": 0.1,
              "iterations": 80, "generator_warmup": 30, "batch_size": 32, "student_lr": 1e-3,
              "generator_channels": 32, "zeroq_pool": 128, "zeroq_steps": 60, "eval_limit": None},
    "cifar10": {"teacher_arch": "resnet20", "data": "cifar10", "teacher_epochs": 3, "teacher_lr": 0.1,
                "iterations": 80, "generator_warmup": 30, "batch_size": 32, "student_lr": 1e-3,
                "generator_channels": 64, "zeroq_pool": 128, "zeroq_steps": 60, "eval_limit": None},
}


def _point(args_tuple):
    teacher, method, ait, bits, seed, out, preset, data_path = args_tuple
    import torch
    torch.set_num_threads(1)
    from coexplore.datafree import QuantizeConfig, parse_bits, quantize
    from coexplore.datafree.result import RESULT_FILE
    if (Path(out) / RESULT_FILE).is_file():
        return out
    w, a = parse_bits(bits)
    cfg = QuantizeConfig(teacher=str(teacher), method=method, wbits=w, abits=a, ait=ait,
                         iterations=preset["iterations"], generator_warmup=preset["generator_warmup"],
                         batch_size=preset["batch_size"], student_lr=preset["student_lr"], seed=seed,
                         eval_data=preset["data"], eval_path=data_path, eval_limit=preset["eval_limit"],
                         progress=False, log_every=25,
                         method_cfg={"generator_channels": preset["generator_channels"],
                                     "zeroq_pool": preset["zeroq_pool"], "zeroq_steps": preset["zeroq_steps"]})
    quantize(cfg, out)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(PRESETS), required=True)
    p.add_argument("--data-path", default=None, help="cifar10 archive or folder")
    p.add_argument("--teacher", default=None, help="teacher file (default: trained into OUT/teacher.pt)")
    p.add_argument("--out", required=True, help="folder of the run folders")
    p.add_argument("--bits", nargs="+", default=["w4a4", "w2a4"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--ait", nargs="+", choices=("off", "on"), default=["off", "on"],
                   help="run each method without and/or with AIT (default: both)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--table", default=None, help="Markdown table (default: experiments/results/datafree-DATASET.md)")
    args = p.parse_args()

    import torch
    torch.set_num_threads(os.cpu_count() or 1)  # the teacher trains alone; each point sets one thread
    from coexplore.datafree import spec_for_data, train_teacher
    from coexplore.datafree.table import collect, markdown
    from coexplore.common import atomic_write_text
    from search_spaces import get_data

    preset = PRESETS[args.dataset]
    out = Path(args.out)
    teacher = Path(args.teacher) if args.teacher else out / "teacher.pt"
    if not teacher.is_file():
        data = get_data(preset["data"], path=args.data_path, seed=0, batch_size=128, eval_batch_size=500)
        train_teacher(spec_for_data(preset["teacher_arch"], data), data, teacher, epochs=preset["teacher_epochs"],
                      lr=preset["teacher_lr"], seed=0, progress=False)
    points = [(teacher, m, ait, b, s, out / f"{m}{'-ait' if ait else ''}" / b / f"seed{s}", preset, args.data_path)
              for s in args.seeds for b in args.bits for m in args.methods
              for ait in [a == "on" for a in args.ait]]
    table = Path(args.table) if args.table else ROOT / "experiments" / "results" / f"datafree-{args.dataset}.md"
    budget = (f"Budget per run: generator warm-up {preset['generator_warmup']} iterations, then "
              f"{preset['iterations']} iterations of one generator step + one student step, batch "
              f"{preset['batch_size']}, student SGD lr {preset['student_lr']} (cosine), generator width "
              f"{preset['generator_channels']}, ZeroQ pool {preset['zeroq_pool']} images x {preset['zeroq_steps']} "
              f"steps; teacher: {preset['teacher_arch']}, {preset['teacher_epochs']} epochs; test images: "
              f"{preset['eval_limit'] or 'the whole test split'}.")
    cmd = "python experiments/datafree_table.py " + " ".join(sys.argv[1:])
    from coexplore.datafree.table import PUBLISHED_CIFAR10_RESNET20 as pub
    published = ("Published order (CIFAR-10 ResNet-20, teacher 93.89 %, 400 x 200 iterations; Qimera NeurIPS 2021 "
                 "and AIT CVPR 2022): W4A4 " + " < ".join(f"{k} {v:.2f}" for k, v in sorted(pub["w4a4"].items(),
                                                                                          key=lambda kv: kv[1]))
                 + "; W5A5 " + " < ".join(f"{k} {v:.2f}" for k, v in sorted(pub["w5a5"].items(),
                                                                             key=lambda kv: kv[1])) + ".")

    def write_table() -> str:
        # rewritten after every finished point, so an interrupted sweep still leaves its table
        rows = collect(out)
        md = markdown(rows, args.bits, f"Data-free quantisation, {args.dataset}",
                      notes=[budget, "", published, "", f"Command: `{cmd}`", ""])
        atomic_write_text(table, md)
        import pandas as pd
        if rows:
            atomic_write_text(table.with_suffix(".csv"), pd.DataFrame(rows).drop(columns=["dir"]).to_csv(index=False))
        return md

    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for done in pool.map(_point, points):
            print("done", done, flush=True)
            write_table()
    md = write_table()
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
