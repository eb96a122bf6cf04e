"""The comparison table of data-free quantisation runs (reads result.json files; torch-free)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..common import PathLike
from .result import RESULT_FILE, read_quant_result

#: Published CIFAR-10 ResNet-20 top-1 (%) (teacher 93.89): the order a reader checks first.
#: Sources: Qimera (NeurIPS 2021) Table 1 for ZeroQ, GDFQ and Qimera; AIT (CVPR 2022) for GDFQ+AIT.
PUBLISHED_CIFAR10_RESNET20 = {
    "w4a4": {"zeroq": 79.30, "gdfq": 90.25, "qimera": 91.26, "gdfq+ait": 91.23},
    "w5a5": {"gdfq": 93.38, "qimera": 93.46},
}
#: Row order of the tables.
ROW_ORDER = ("real-qat", "zeroq", "gdfq", "qimera", "clusterq", "lrq")


def collect(root: PathLike) -> List[Dict[str, object]]:
    """One row per finished run below ``root``: method, ait, bits, seed, accuracies, seconds."""
    rows = []
    for path in sorted(Path(root).rglob(RESULT_FILE)):
        r = read_quant_result(path)
        rows.append({"method": r.method, "ait": r.ait, "bits": r.bits, "seed": r.seed,
                     "accuracy": r.metrics.get("accuracy"), "teacher_accuracy": r.metrics.get("teacher_accuracy"),
                     "synthetic_agreement": r.metrics.get("synthetic_agreement"), "seconds": r.seconds,
                     "iterations": r.iterations, "warmup": r.generator_warmup, "batch_size": r.batch_size,
                     "selection": r.selection, "data_free": r.data_free, "dir": str(path.parent)})
    return rows


def _mean_std(values: Sequence[float]) -> tuple:
    n = len(values)
    m = sum(values) / n
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return m, s, n


def summarize(rows: List[Dict[str, object]], bits: Sequence[str]) -> List[Dict[str, object]]:
    """Mean, std and count of the student accuracy per (method, ait) and bit setting."""
    keys = sorted({(str(r["method"]), bool(r["ait"])) for r in rows},
                  key=lambda k: (ROW_ORDER.index(k[0]) if k[0] in ROW_ORDER else 99, k[0], k[1]))
    out = []
    for method, ait in keys:
        rec: Dict[str, object] = {"method": method + (" + AIT" if ait else ""), "key": method + ("+ait" if ait else "")}
        for b in bits:
            vals = [float(r["accuracy"]) for r in rows if r["method"] == method and r["ait"] == ait
                    and r["bits"] == b and r["accuracy"] is not None]
            rec[b] = _mean_std(vals) if vals else None
        out.append(rec)
    return out


def _fmt(cell: Optional[tuple]) -> str:
    if cell is None:
        return "--"
    m, s, n = cell
    return f"{100 * m:.2f} ± {100 * s:.2f} (n={n})" if n > 1 else f"{100 * m:.2f} (n=1)"


def markdown(rows: List[Dict[str, object]], bits: Sequence[str], title: str, notes: Sequence[str] = ()) -> str:
    """The table as Markdown: teacher accuracy, then one line per method (± AIT), one column per bits."""
    summary = summarize(rows, bits)
    teacher = sorted({round(float(r["teacher_accuracy"]), 6) for r in rows if r["teacher_accuracy"] is not None})
    lines = [f"# {title}", ""]
    lines += [f"Teacher (full precision) top-1 on the test split: "
              f"{', '.join(f'{100 * t:.2f}%' for t in teacher) or '--'}", ""]
    lines += ["Student top-1 (%) on the real test split, mean ± sample std over seeds; the final student of a "
              "fixed schedule (no selection on the test split).", ""]
    lines += ["| method | " + " | ".join(b.upper() for b in bits) + " |", "|---|" + "---|" * len(bits)]
    for rec in summary:
        lines.append(f"| {rec['method']} | " + " | ".join(_fmt(rec[b]) for b in bits) + " |")
    lines.append("")
    for b in bits:
        ranked = [(rec["key"], rec[b][0]) for rec in summary if rec[b] is not None and rec["key"] != "real-qat"
                  and rec["key"] != "real-qat+ait"]
        ranked.sort(key=lambda kv: -kv[1])
        if ranked:
            lines.append(f"Data-free order at {b.upper()} (best first): " + " > ".join(k for k, _ in ranked))
    lines.append("")
    lines += list(notes)
    return "\n".join(lines) + "\n"
