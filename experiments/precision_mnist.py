"""Mixed precision in the joint space, embedded MNIST: joint (op, bits, accelerator) search against
uniform-precision networks and the sequential NAS -> mixed precision -> hardware flow, at one
latency target, several seeds.

Every variant runs HDX with the exact cost table (repair off) on the budget of
``experiments/configs/precision-mnist.yaml``, on the ``precision-scalable`` hardware space (PE
array, RF, dataflow and the precision scheme: fixed, bit-serial, Loom, bit-fused):

* ``joint``: ``tiny-mnist-mp``, every block chooses its op, weight bits and activation bits in
  {2, 4, 8}, with the accelerator (Auto-NBA's joint space);
* ``uniform-w8a8`` / ``uniform-w4a4``: the same ops with every searched layer at 8 (4) bits,
  each with its best accelerator, searched jointly under the same bound;
* ``sequential``: (1) NAS in float, hardware-blind (``nas-hw``'s search with a FLOPs penalty on
  ``tiny-mnist``, DANCE's and HDX's sequential baseline; no bound); (2) mixed precision for those ops under the bound on a
  fixed BitFusion-style array (HAQ's setting: 16x16 bit-fused PEs, 16 B RF, weight-stationary,
  the space's base GLB, bandwidths and clock); (3) the best accelerator of the whole space that
  meets the bound for the resulting network.

Stem, head conv and classifier run at 8 bits in every variant.  Every final network is priced
again in the one joint setting (``tiny-mnist-mp`` x ``precision-scalable``, the accelerator
with the least EDAP that meets the bound) and retrained from scratch with quantisation-aware
training at its bits (LSQ weights, PACT activations); the table reports that quantised test
accuracy beside a float retraining of the same ops.

    python experiments/precision_mnist.py --out runs/precision-mnist

writes ``experiments/results/precision-mnist.{md,csv}``; an interrupted run resumes when the
same command is run again (finished runs are kept).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "bench"))
import hdx_suite as suite  # noqa: E402 - the suite's job runner

BASE = ROOT / "experiments" / "configs" / "precision-mnist.yaml"


@dataclass(frozen=True)
class Setting:
    """What differs between the embedded MNIST table and the reduced CIFAR-10 one."""

    name: str  # the results' file stem and the default run folder
    config: Path  # the run config every variant starts from
    mp_space: str  # the joint space: every block chooses op, weight bits, activation bits
    nas_space: str  # the same geometry in float, for the sequential flow's NAS step
    script: str  # the launcher, for the command line the report prints
    data_text: str  # the setting, in words, for the report
    needs_data: bool = False  # --data is required (CIFAR-10 is read from the archive the user gives)
    seeds: int = 3  # the default number of seeds
    factor: float = 1.5  # the default bound, as a multiple of the least latency of a uniform 8-bit network


MNIST = Setting("precision-mnist", BASE, "tiny-mnist-mp", "tiny-mnist", "experiments/precision_mnist.py",
                "Embedded MNIST, `tiny-mnist-mp` geometry")
#: the fixed accelerator of the sequential flow's mixed-precision step (HAQ quantises for BitFusion)
MP_TARGET = {"pe_x": 16, "pe_y": 16, "rf_bytes": 16, "dataflow": "ws", "precision": "bit-fused"}
VARIANTS = ("joint", "uniform-w8a8", "uniform-w4a4", "sequential")


def _us(seconds: float) -> str:
    return f"latency <= {seconds * 1e6:.2f}us"


def uniform_space(bits: int, setting: Setting = MNIST):
    """The setting's joint space with every searched layer at ``bits`` (weights and activations)."""
    from search_spaces.space import get_search_space
    base = get_search_space(setting.mp_space)
    return replace(base, name=f"{setting.nas_space}-w{bits}a{bits}", wbits=(bits,), abits=(bits,))


def mp_space(ops: dict, setting: Setting = MNIST):
    """The setting's joint space with every block's op fixed to ``ops`` and its bits still searched:
    one stage per block (the block's own stride), a single candidate, and no bits for a ``zero``."""
    from search_spaces.space import Stage, get_search_space
    base = get_search_space(setting.mp_space)
    stages, labels = [], []
    for i, st in enumerate(base.stages):
        if st.op is not None:  # a fixed stage (proxyless-cifar10's first block) stays as it is
            stages.append(st)
            continue
        for j in range(st.layers):
            op = ops[f"s{i}.b{j}"]
            stride = st.stride if j == 0 else 1
            if op == "zero":
                stages.append(Stage(st.channels, stride, 1, op="zero"))
            else:
                stages.append(Stage(st.channels, stride, 1, candidates=(op,)))
                labels.append((f"s{i}.b{j}", f"s{len(stages) - 1}.b0"))
    return replace(base, name=f"{setting.mp_space}-fixed-ops", stages=tuple(stages)), dict(labels)


def mp_hardware():
    from accelerators.space import DEFAULT_BASE, HardwareSpace
    return HardwareSpace({k: [v] for k, v in MP_TARGET.items()}, DEFAULT_BASE, name="bitfusion-style-16x16")


def joint_sample(arch: dict, ops: dict = None, setting: Setting = MNIST) -> dict:
    """The final network in the joint space's labels; ``ops``: the NAS ops of a sequential run,
    whose ``arch`` is in its fixed-op space's labels (see :func:`mp_space`)."""
    if ops is None:
        return dict(arch)
    _, mapping = mp_space(ops, setting)
    out = dict(ops)
    for orig, new in mapping.items():
        out[f"{orig}.wbits"] = arch[f"{new}.wbits"]
        out[f"{orig}.abits"] = arch[f"{new}.abits"]
    for label, op in ops.items():
        if op == "zero":  # a zero block has no layers; its bits do not price anything
            out[f"{label}.wbits"] = out[f"{label}.abits"] = 8
    return out


def bound_of(hw, factor: float, setting: Setting = MNIST) -> float:
    """``factor`` x the least latency a uniform 8-bit network reaches on the hardware space ``hw``."""
    from coexplore.pricing import CostTable
    return factor * float(CostTable(uniform_space(8, setting), hw).least("latency")[0])


def main(argv=None, setting: Setting = MNIST, doc: str = __doc__) -> int:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    if setting.needs_data:
        ap.add_argument("--data", required=True, help="the CIFAR-10 archive or folder (data.path)")
    ap.add_argument("--out", default=f"runs/{setting.name}")
    ap.add_argument("--seeds", type=int, default=setting.seeds)
    ap.add_argument("--factor", type=float, default=setting.factor,
                    help="the latency bound, as a multiple of the least latency of a uniform 8-bit network")
    ap.add_argument("-j", "--jobs", type=int, default=1)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides for every run")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--results", default=str(ROOT / "experiments" / "results"))
    args = ap.parse_args(argv)
    extra = list(args.set)
    if setting.needs_data:
        if suite.data_missing(args.data, Path(setting.script).stem):
            return 2
        extra = [f"data.path={Path(args.data).resolve()}", *extra]

    from coexplore.config import load_config
    from coexplore.constraints import ConstraintSet
    from coexplore.pricing import CostTable
    from coexplore.runfolder import read_result
    from coexplore.verify import Verifier

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = suite.minutes_log()

    cfg = load_config(setting.config, [*extra, "constraints=[latency <= 1s]"])  # the bound is set below
    hw = cfg.resolve_hardware_space()
    table = CostTable(cfg.resolve_search_space(), hw)
    bound = bound_of(hw, args.factor, setting)
    con = [_us(bound)]
    log(f"bound {con[0]} ({args.factor} x the least uniform 8-bit latency)")
    spaces = out / "spaces"
    spaces.mkdir(exist_ok=True)
    for b in (8, 4):
        uniform_space(b, setting).to_yaml(spaces / f"w{b}a{b}.yaml")
    mp_hardware().save(spaces / "bitfusion-style-16x16.yaml")
    seeds = list(range(args.seeds))

    def job(name, overrides):
        return suite.Job(name, out / name, suite._overrides(overrides) + extra, config=setting.config)

    phase1 = []
    for s in seeds:
        common = {"seed": s, "constraints": con}
        # the NAS step first: the sequential flow's mixed-precision step waits for it
        phase1 += [job(f"sequential/nas-s{s}", {"seed": s, "constraints": [], "method": "nas-hw", "lam": 0.5,
                                                "search_space": setting.nas_space, "hardware_space": "small",
                                                "retrain_epochs": 0,
                                                "name": f"sequential-nas-s{s}"}),
                   job(f"joint/s{s}", {**common, "name": f"joint-s{s}"}),
                   job(f"uniform-w8a8/s{s}", {**common, "search_space": spaces / "w8a8.yaml",
                                               "name": f"uniform-w8a8-s{s}"}),
                   job(f"uniform-w4a4/s{s}", {**common, "search_space": spaces / "w4a4.yaml",
                                               "name": f"uniform-w4a4-s{s}"})]
    if not args.report_only:
        log(f"{len(phase1)} first-phase jobs ({sum(j.done() for j in phase1)} already done), {args.jobs} at a time")
        suite.execute(phase1, args.jobs, log)
    phase2 = []
    for s in seeds:
        nas = out / "sequential" / f"nas-s{s}"
        if not (nas / "result.json").is_file():
            continue
        ops = read_result(nas).architecture
        (out / "sequential" / f"nas-ops-s{s}.json").write_text(json.dumps(ops, indent=1))
        sp, _ = mp_space(ops, setting)
        sp.to_yaml(spaces / f"mp-nas-s{s}.yaml")
        phase2.append(job(f"sequential/s{s}", {"seed": s, "constraints": con,
                                               "search_space": spaces / f"mp-nas-s{s}.yaml",
                                               "hardware_space": spaces / "bitfusion-style-16x16.yaml",
                                               "name": f"sequential-mp-s{s}"}))
    if not args.report_only and phase2:
        log(f"{len(phase2)} mixed-precision jobs of the sequential flow")
        suite.execute(phase2, args.jobs, log)

    check = Verifier(table, cfg.objective, ConstraintSet.parse(con))
    rows = []
    for v in VARIANTS:
        for s in seeds:
            run = out / v / f"s{s}"
            row = {"variant": v, "seed": s, "status": "missing"}
            if (run / "result.json").is_file():
                r = read_result(run)
                rt = r.retrain or {}
                ops = json.loads((run.parent / f"nas-ops-s{s}.json").read_text()) if v == "sequential" else None
                arch = joint_sample(r.architecture, ops, setting)
                c = check.check(arch)
                m, acc = c["metrics"], c["accelerator"].to_dict()
                bits = [(arch[f"{b.label}.wbits"], arch[f"{b.label}.abits"]) for b in table.space.blocks
                        if arch[b.label] != "zero"]
                row.update(status=r.status, met=bool(c["feasible"]), quant_acc=rt.get("quantized_test_accuracy"),
                           float_acc=rt.get("float_test_accuracy"), latency_s=m["latency_s"], energy_j=m["energy_j"],
                           edap=m["edap"], scheme=acc["precision"],
                           accelerator=f"{acc['pe_y']}x{acc['pe_x']} {acc['dataflow'].upper()} RF{acc['rf_bytes']}B",
                           bits=" ".join(f"{w}/{a}" for w, a in bits) or "-",
                           mean_wbits=float(np.mean([w for w, _ in bits])) if bits else float("nan"),
                           mean_abits=float(np.mean([a for _, a in bits])) if bits else float("nan"),
                           zero_blocks=sum(arch[b.label] == "zero" for b in table.space.blocks),
                           seconds=suite.run_seconds(run, r) + (suite.run_seconds(run.parent / f"nas-s{s}", read_result(
                               run.parent / f"nas-s{s}")) if v == "sequential" else 0))
            rows.append(row)
    cols = ["variant", "seed", "status", "met", "quant_acc", "float_acc", "latency_s", "energy_j", "edap", "scheme",
            "accelerator", "bits", "mean_wbits", "mean_abits", "zero_blocks", "seconds"]
    df = pd.DataFrame(rows).reindex(columns=cols)  # every column even where no run has finished
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    df.to_csv(res / f"{setting.name}.csv", index=False)
    (res / f"{setting.name}.md").write_text(report(df, con[0], args, setting, len(hw)))
    print(f"wrote {res / (setting.name + '.md')}")
    return 0


def report(df: pd.DataFrame, con: str, args, setting: Setting, designs: int) -> str:
    lines = ["# Mixed precision in the joint space: joint search against uniform precision and the sequential flow", "",
             f"Command: `python {setting.script}" + (" --data DATA" if setting.needs_data else "") + f" --out {args.out}"
             + (f" --seeds {args.seeds}" if args.seeds != setting.seeds else "") + (f" --factor {args.factor}" if args.factor != setting.factor else "")
             + (f" --set {' '.join(args.set)}" if args.set else "")
             + f"`; the runs' search epochs and retrainings add up to {df['seconds'].sum() / 60:.0f} min on the "
             "shared 2-core machine, one thread per run.", "",
             f"{setting.data_text} on the `precision-scalable` hardware space ({designs:,} designs: "
             f"PE array, RF, dataflow, precision scheme), bound `{con}` ({args.factor} x the least latency any uniform "
             "8-bit network reaches), HDX on the exact cost table with repair off for every search, the budget of "
             f"`{setting.config.relative_to(ROOT)}`.  Every final network is priced in the joint setting (the "
             "accelerator with the least EDAP that meets the bound) and retrained from scratch with QAT at its bits; "
             "`float` is the same ops retrained in float.  `bits` lists weight/activation bits of the non-zero blocks.", "",
             "## Mean over seeds", "",
             "| variant | runs meeting the bound | quantised accuracy (%) | float accuracy (%) | latency (us) | "
             "energy (uJ) | EDAP | mean weight / act bits | schemes chosen |", "|---|---|---|---|---|---|---|---|---|"]
    done = df[df["status"] != "missing"]
    for v in dict.fromkeys(df["variant"]):
        r = done[done["variant"] == v]
        if r.empty:
            lines.append(f"| {v} | (not run) |" + " |" * 7)
            continue
        qa = 100 * r["quant_acc"].astype(float)
        fa = 100 * r["float_acc"].astype(float)
        pm = (lambda x: f"{x.mean():.2f} ± {x.std(ddof=0):.2f}") if len(r) > 1 else (lambda x: f"{x.mean():.2f}")
        lines.append(f"| {v} | {int(r['met'].sum())}/{len(r)} | {pm(qa)} | "
                     f"{pm(fa)} | {1e6 * r['latency_s'].mean():.1f} | "
                     f"{1e6 * r['energy_j'].mean():.3f} | {r['edap'].mean():.3g} | "
                     f"{r['mean_wbits'].mean():.1f} / {r['mean_abits'].mean():.1f} | "
                     f"{', '.join(f'{k} x{n}' for k, n in r['scheme'].value_counts().items())} |")
    lines += ["", "## Every run", "",
              "| variant | seed | meets it | quantised (%) | float (%) | latency (us) | energy (uJ) | EDAP | accelerator | "
              "scheme | bits (w/a) | zero blocks | run time (s) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        if r["status"] == "missing":
            lines.append(f"| {r['variant']} | {r['seed']} | (not run) |" + " |" * 10)
            continue
        lines.append(f"| {r['variant']} | {r['seed']} | {'yes' if r['met'] else 'NO'} | {100 * float(r['quant_acc']):.1f} | "
                     f"{100 * float(r['float_acc']):.1f} | {1e6 * r['latency_s']:.1f} | {1e6 * r['energy_j']:.3f} | "
                     f"{r['edap']:.3g} | {r['accelerator']} | {r['scheme']} | {r['bits']} | {int(r['zero_blocks'])} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
