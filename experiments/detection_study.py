"""The lightweight-detector study on the embedded detection set: params, GFLOPs, CPU latency, mAP.

For the YOLOX-tiny-like reference of ``det-mnist`` and for the designs ``hdx-lut`` finds
under two CPU-latency constraints (fractions of the reference's latency), measured on this
machine (see :func:`coexplore.detection.run_study`).

    nice -n 10 python experiments/detection_study.py            # writes experiments/results/detection-study.{md,json}
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="det-mnist", help="a detection space (built-in name or YAML)")
    p.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "torch"], help="CPU runtime measured")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bounds", type=float, nargs="+", default=[0.8, 0.6],
                   help="latency bounds as fractions of the reference's table latency")
    p.add_argument("--epochs", type=int, default=16, help="training epochs of every reported design (from scratch)")
    p.add_argument("--warmup-epochs", type=int, default=6)
    p.add_argument("--search-epochs", type=int, default=4)
    p.add_argument("--lam", type=float, default=0.01, help="DANCE's lambda (the soft latency penalty beside HDX)")
    p.add_argument("--hw-encoding", default="argmax", choices=["argmax", "expected"],
                   help="what the latency cost prices: the design that will be derived, or the expectation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "runs" / "detection-study"), help="run folders")
    p.add_argument("--results", default=str(ROOT / "experiments" / "results"), help="where the table is copied")
    p.add_argument("--cache-dir", default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import torch

    from accelerators import get_cost_source
    from coexplore.config import resolve_search_space
    from coexplore.detection import run_study

    torch.set_num_threads(1)  # training shares 2 cores with others; the latency source sets its own threads
    space = resolve_search_space(a.space)
    name = "measured-cpu-onnxruntime" if a.runtime == "onnxruntime" else "measured-cpu"
    source = get_cost_source(name, threads=a.threads)
    out = Path(a.out)  # a study run again into the same folder reuses what is finished
    run_study(out, space, source, a.bounds, epochs=a.epochs, warmup_epochs=a.warmup_epochs,
              search_epochs=a.search_epochs, lam=a.lam, hw_encoding=a.hw_encoding, seed=a.seed,
              cache_dir=a.cache_dir, progress=True)
    results = Path(a.results)
    results.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "study.md", results / "detection-study.md")
    shutil.copy(out / "study.json", results / "detection-study.json")
    print((out / "study.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
