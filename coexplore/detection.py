"""Search-side glue for detection: a run's data, a design's size, and the lightweight-detector study.

* :func:`load_run_data` -- the data a run config names: a task that brings its own datasets
  (the detection task's :meth:`~search_spaces.detection.task.Detection.load_data`) loads
  them, any other goes through :func:`search_spaces.data.get_data` exactly as before;
* :func:`model_stats` -- parameters, multiply-accumulates and GFLOPs of one architecture
  (GFLOPs = 2 x MACs / 1e9 over the priced conv / linear layers, the convention of YOLOX's
  model zoo);
* :func:`run_study` -- the table of the lightweight-detector studies (parameters, GFLOPs,
  CPU latency, mAP) for a space's reference architecture and for designs HDX finds under
  CPU-latency constraints measured on this machine.  ``experiments/detection_study.py`` is
  its launcher.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence

logger = logging.getLogger(__name__)


def load_run_data(space, task, data, seed: int, cache_dir=None):
    """The data bundle of a run (:func:`coexplore.search.load_data`): ``task.load_data(space,
    data, seed, cache_dir)`` when the task has one, else the config's data section."""
    from .search import load_data
    return load_data(data, seed, cache_dir=cache_dir, space=space, task=task)


def model_stats(space, sample: Mapping[str, str]) -> Dict[str, float]:
    """``{"parameters", "macs", "gflops"}`` of one architecture (parameters of the built network,
    BN and biases included; built on the ``meta`` device, so nothing is allocated)."""
    import torch

    from .lut import build_network

    with torch.device("meta"):
        net = build_network(space, sample)
    macs = sum(l.macs for l in space.layers(sample))
    return {"parameters": int(sum(p.numel() for p in net.parameters())), "macs": int(macs),
            "gflops": 2.0 * macs / 1e9}


def _row(name: str, space, sample, table, check: Mapping[str, Any], map_: float, map50: float,
         how: str) -> Dict[str, Any]:
    st = model_stats(space, sample)
    return {"design": name, "parameters": st["parameters"], "gflops": st["gflops"],
            "latency_table_ms": 1e3 * float(table.metrics(space.encode(sample))[0][0, 0]),
            "latency_blocks_now_ms": 1e3 * check["fresh_s"], "latency_measured_ms": 1e3 * check["measured_s"],
            "latency_measured_spread_ms": 1e3 * check["measured_spread_s"], "map": map_, "map50": map50, "how": how,
            "architecture": dict(sample)}


def run_study(out: Path, space, source, bounds: Sequence[float], epochs: int, warmup_epochs: int,
              search_epochs: int, batch_size: int = 32, lr: float = 0.05, seed: int = 0, cache_dir=None,
              lam: float = 0.01, hw_encoding: str = "argmax", check_rounds: int = 9,
              progress: bool = False) -> Dict[str, Any]:
    """The lightweight-detector study on ``space`` and the embedded detection set.

    1. measures (or loads the cached) per-block latency table of ``space`` with ``source``;
    2. trains the space's reference architecture from scratch for ``epochs`` epochs and scores
       it on the held-out test split;
    3. for each ``bound`` (a fraction of the reference's table latency) runs ``hdx-lut`` with
       ``latency <= bound`` (``warmup_epochs`` weight-only epochs, then ``search_epochs``), which
       selects on the validation split and retrains the found design from scratch for
       ``epochs`` epochs with the same recipe, scored on the test split;
    4. measures every design's whole-network latency (as the table's blocks are measured, in
       ``check_rounds`` interleaved rounds, beside the blocks it uses) and checks the table's
       additivity on them.

    Writes ``out/study.json`` and ``out/study.md``; returns the record.  A study run again
    into the same ``out`` reuses what is finished (the reference's training, recorded in
    ``out/reference.json`` with its settings, and the searches, resumed by their run folders).

    Raises:
        ConfigError: a bound below the fastest design of the space (checked before any training).
    """
    import torch

    from search_spaces.detection.task import Detection

    from .common import ConfigError
    from .config import DataConfig, RunConfig
    from .lut import additivity_check, make_cost_table
    from .objectives import Objective
    from .search import run_search

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = make_cost_table(space, None, source, Objective("latency"), None, cache_dir=cache_dir, progress=progress)
    task = Detection()
    data_cfg = DataConfig(name="mnist-det", batch_size=batch_size, val_fraction=0.2, augment=True)
    data = task.load_data(space, data_cfg, seed=seed, cache_dir=cache_dir)
    ref = space.reference_sample()
    ref_lat = float(table.metrics(space.encode(ref))[0][0, 0])
    least = table.least("latency")[0]
    low = [f for f in bounds if f * ref_lat < least]
    if low:
        raise ConfigError(f"bounds {low} of the reference's {1e3 * ref_lat:.4g} ms are below the fastest design of "
                          f"{space.name!r} ({1e3 * least:.4g} ms = {least / ref_lat:.3f} of the reference)")
    settings = {"space": space.fingerprint(), "data": data.fingerprint(), "epochs": epochs, "lr": lr, "seed": seed,
                "reference": ref}
    ref_file = out / "reference.json"
    rt = None
    if ref_file.is_file():
        saved = json.loads(ref_file.read_text())
        if saved.get("settings") == settings:
            rt = saved["retrain"]
            logger.info("reusing the reference's training in %s", ref_file)
    if rt is None:
        rt = task.retrain(space, ref, data, epochs, lr, "cpu", seed, progress=progress)
        ref_file.write_text(json.dumps({"settings": settings, "retrain": rt}, indent=1) + "\n")
    designs = [("reference (YOLOX-tiny-like)", ref, rt, "trained from scratch")]
    runs = []
    for frac in bounds:
        bound_ms = 1e3 * ref_lat * frac
        cfg = RunConfig(name=f"hdx-lut-{int(round(100 * frac))}", method="hdx-lut", seed=seed, search_space=space,
                        cost_model=source.name, objective="latency", constraints=[f"latency <= {bound_ms:.4f}ms"],
                        lam=lam, hw_encoding=hw_encoding, search_epochs=search_epochs, warmup_epochs=warmup_epochs,
                        retrain_epochs=epochs,
                        retrain_lr=lr, w_lr=lr, device="cpu", progress=False, data=data_cfg)
        res = run_search(cfg, out / cfg.name, resume=(out / cfg.name).is_dir(), cache_dir=cache_dir)
        runs.append({"bound_fraction": frac, "bound_ms": bound_ms, "run": str(out / cfg.name), "status": res.status,
                     "repairs": list(res.repairs),
                     "search_map_val": res.search_accuracy, "constraints": res.constraints,
                     "seconds": res.seconds})
        fixes = "; repaired by the verifier: " + ", ".join(f"{m['block']} {m['from']}->{m['to']}" for m in res.repairs) \
            if res.repairs else ""
        designs.append((f"HDX, latency <= {bound_ms:.3g} ms ({int(round(100 * frac))}% of the reference)",
                        res.architecture, res.retrain,
                        f"hdx-lut search ({res.status}{fixes}; validation mAP with inherited weights "
                        f"{res.search_accuracy:.3f}), then trained from scratch"))
    samples = [d[1] for d in designs]
    t_check = time.perf_counter()
    add = additivity_check(space, table, samples, rounds=check_rounds)
    budget = {"table_s": table.latency_table.seconds, "reference_training_s": float(rt["seconds"]),
              "search_and_training_s": [float(r["seconds"]) for r in runs],
              "final_check_s": time.perf_counter() - t_check}
    budget["total_s"] = budget["table_s"] + budget["reference_training_s"] + sum(budget["search_and_training_s"]) + \
        budget["final_check_s"]
    rows = [_row(name, space, s, table, a, r["test_map"], r["test_map50"], how)
            for (name, s, r, how), a in zip(designs, add["rows"])]
    record = {"space": space.name, "space_fingerprint": space.fingerprint(), "cost_source": source.describe(),
              "table_seconds": table.latency_table.seconds, "table_created": table.latency_table.created,
              "epochs": epochs, "warmup_epochs": warmup_epochs, "search_epochs": search_epochs,
              "check_rounds": check_rounds,
              "batch_size": batch_size, "lr": lr, "seed": seed, "lambda": lam, "hw_encoding": hw_encoding,
              "rows": rows, "runs": runs, "least_latency_ms": 1e3 * least, "reference_latency_ms": 1e3 * ref_lat,
              "additivity": {k: v for k, v in add.items() if k != "rows"},
              "data": {"name": data.name, "train": data.train.num_samples, "val": data.val.num_samples,
                       "test": data.test.num_samples, "resolution": space.resolution},
              "torch_threads": torch.get_num_threads(), "budget": budget,
              "seconds_this_invocation": time.perf_counter() - t0}
    (out / "study.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    (out / "study.md").write_text(study_markdown(record))
    return record


def study_markdown(rec: Mapping[str, Any]) -> str:
    """The study's table as Markdown (see :func:`run_study`)."""
    cs = rec["cost_source"]
    m = cs["machine"]
    lines = [
        f"# Lightweight detectors on the embedded detection set ({rec['space']})", "",
        f"Latency: measured on this machine -- {m['cpu_model']}, {m['logical_cpus']} logical CPUs, "
        f"{cs['threads']} thread, batch 1, BatchNorm folded, {cs['runtime']} "
        f"(onnxruntime {m.get('onnxruntime')}, torch {m['torch']}); median of {cs['rounds']} interleaved rounds of "
        f"{cs['min_run_time']} s each.  *table* = the sum of the per-block lookup table the search uses (measured "
        f"{rec['table_created']}); *blocks now* = the same blocks measured again at the end, in the same "
        f"{rec['check_rounds']} interleaved rounds as *whole network*, the network measured in one piece "
        f"(± the spread, max - min, of its {rec['check_rounds']} rounds).", "",
        f"Data: {rec['data']['train']} train / {rec['data']['val']} val / {rec['data']['test']} test canvases of "
        f"{rec['data']['resolution']}x{rec['data']['resolution']} px with 1-4 MNIST digits each (mnist-det); mAP is "
        f"COCO AP@[.5:.95] (pycocotools) on the **test** split, after training from scratch for {rec['epochs']} "
        f"epochs (batch {rec['batch_size']}, SGD lr {rec['lr']}, cosine); searches selected on the validation split "
        f"only ({rec['warmup_epochs']} warm-up + {rec['search_epochs']} search epochs, hdx-lut, lambda {rec['lambda']}, "
        f"hw_encoding {rec['hw_encoding']}).  The fastest design of the space takes {rec['least_latency_ms']:.3f} ms "
        f"(table), the reference {rec['reference_latency_ms']:.3f} ms.", "",
        "| design | params | GFLOPs | CPU latency (ms): table | blocks now | whole network | mAP | mAP@.5 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rec["rows"]:
        lines.append(f"| {r['design']} | {r['parameters'] / 1e6:.3f} M | {r['gflops']:.4f} | "
                     f"{r['latency_table_ms']:.3f} | {r['latency_blocks_now_ms']:.3f} | "
                     f"{r['latency_measured_ms']:.3f} ± {r['latency_measured_spread_ms']:.3f} | {r['map']:.3f} | "
                     f"{r['map50']:.3f} |")
    a = rec["additivity"]
    lines += ["", "Additivity, (sum of blocks - whole network) / whole network, on these designs: "
              f"the stored table (measured {rec['table_created']}): mean |error| {100 * a['mean_abs_rel_error']:.1f}%, "
              f"max {100 * a['max_abs_rel_error']:.1f}%, mean {100 * a['mean_rel_error']:+.1f}%; the same blocks measured "
              f"again in the same interleaved rounds as the whole networks: mean |error| "
              f"{100 * a['mean_abs_rel_error_fresh']:.1f}%, max {100 * a['max_abs_rel_error_fresh']:.1f}%, mean "
              f"{100 * a['mean_rel_error_fresh']:+.1f}%.  The difference between the two is the drift of this shared "
              f"machine's load between the table's measurement and now.", "",
              "Architectures:", ""]
    for r in rec["rows"]:
        arch = ", ".join(f"{k}={v}" for k, v in r["architecture"].items())
        lines.append(f"* {r['design']} ({r['how']}): {arch}")
    b = rec["budget"]
    runs = ", ".join(f"{x / 60:.1f}" for x in b["search_and_training_s"])
    lines += ["", f"Budget (wall time on this shared 2-core CPU, {rec['torch_threads']} torch thread for training): "
              f"{b['total_s'] / 60:.1f} min in all -- the latency table {b['table_s']:.0f} s, the reference's training "
              f"{b['reference_training_s'] / 60:.1f} min, each search with its design's training {runs} min, the final "
              f"latency check {b['final_check_s']:.0f} s; seed {rec['seed']}.  Command: "
              f"`nice -n 10 python experiments/detection_study.py`.", ""]
    return "\n".join(lines)
