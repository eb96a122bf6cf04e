"""Mutation check: remove a method's key step and the test suite must go red.

Each mutation below is applied to a scratch copy of the repository (the tracked files),
then the tests that guard the step are run; a surviving mutant (tests still green) fails
this script.  The table goes to ``experiments/results/mutations.md``.

    python experiments/check_mutations.py            # every mutation (~5 minutes on 2 cores)
    python experiments/check_mutations.py --only M1  # one of them
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (id, what is removed, file, old text, new text, tests that must fail)
MUTATIONS = [
    ("M1", "HDX's gradient manipulation removed from the architecture step", "coexplore/trainer.py",
     "            grads = self.steering.adjust(grads, params, out)", "            pass  # mutant",
     "tests/coexplore/test_parts.py"),
    ("M2", "HDX's manipulator returns the loss gradient unchanged", "coexplore/hdx.py",
     "        new = self.manipulator.manipulate(list(grads), t_grads, violated)", "        new = list(grads)  # mutant",
     "tests/coexplore/test_parts.py tests/coexplore/test_hdx.py"),
    ("M3", "the per-epoch calibration is not called", "coexplore/search.py",
     '            row.update(self.calibrator.update(surrogate, check["metrics"], check["constraints"]))',
     "            pass  # mutant", "tests/coexplore/test_parts.py"),
    ("M4", "hw_encoding: argmax ignored (the soft probabilities are priced)", "coexplore/trainer.py",
     '        if self.s.hw_encoding == "expected":', "        if True:  # mutant", "tests/coexplore/test_parts.py"),
    ("M5", "the loop prices the soft encoding whatever hw_encoding says", "coexplore/trainer.py",
     "            loss, out = self.penalty(ce, self.hw_encoding())",
     "            loss, out = self.penalty(ce, self.net.arch_encoding())  # mutant", "tests/coexplore/test_parts.py"),
    ("M6", "the repair takes the worst move", "coexplore/verify.py",
     "                    if best is None or score > best[0]:", "                    if best is None or score < best[0]:",
     "tests/coexplore/test_parts.py"),
    ("M7", "BatchNorm recalibration turned off", "search_spaces/train.py",
     "            m.reset_running_stats()\n            m.momentum = None  # cumulative average over the calibration batches\n",
     "            pass  # mutant\n", "tests/coexplore/test_parts.py"),
    ("M8", "repair always runs for HDX (repair: false ignored)", "coexplore/finalize.py",
     '        if not v["feasible"] and len(run.constraints) and cfg.repair:',
     '        if not v["feasible"] and len(run.constraints) and (cfg.repair or cfg.method == "hdx"):',
     "tests/coexplore/test_parts.py"),
    ("M9", "the verifier ignores the constraints when choosing the accelerator", "coexplore/constraints.py",
     "    eligible = viol <= np.maximum(least, 0.0)", "    eligible = np.ones_like(viol, dtype=bool)",
     "tests/coexplore/test_search.py tests/coexplore/test_constraints.py tests/coexplore/test_evaluator.py"),
    ("M10", "the checkpoint is unpickled with weights_only=False", "coexplore/checkpoint.py",
     "        st = torch.load(path, map_location=map_location, weights_only=True)",
     "        st = torch.load(path, map_location=map_location, weights_only=False)", "tests/test_hardening.py"),
    ("M11", "divergence is not detected", "coexplore/trainer.py",
     "                if not math.isfinite(step_loss) or step_loss > EXPLOSION * max(1.0, self.reference_loss or 1.0):",
     "                if False:  # mutant", "tests/test_hardening.py"),
    ("M12", "LSQ weight quantisation without rounding (clamp only)", "search_spaces/quant.py",
     "        return torch._fake_quantize_learnable_per_channel_affine(\n"
     "            weight, self.step(bits).abs() + _EPS, zero, 0, qn, qp, grad_factor)",
     "        s_ = (self.step(bits).abs() + _EPS).view(-1, *([1] * (weight.dim() - 1)))\n"
     "        return torch.maximum(torch.minimum(weight, qp * s_), qn * s_)  # mutant",
     "tests/search_spaces/test_precision.py"),
    ("M13", "a block's layers do not carry its bit choice (bits dropped from pricing)", "search_spaces/space.py",
     "        return self._with_bits(_ops.op_layers(op, b.C_in, b.C_out, b.stride, b.in_hw, N=N, prefix=b.label),\n"
     "                               wbits, abits)",
     "        return _ops.op_layers(op, b.C_in, b.C_out, b.stride, b.in_hw, N=N, prefix=b.label)  # mutant",
     "tests/search_spaces/test_precision.py"),
    ("M14", "the candidate table's weights ignore the wbits slice", "search_spaces/pricing.py",
     "                m = m * pw[..., None, :, None]",
     "                m = m * (pw[..., None, :, None] * 0 + 1.0 / pw.shape[-1])  # mutant",
     "tests/search_spaces/test_precision.py"),
    ("M15", "the supernet ignores the drawn bit widths", "search_spaces/supernet.py",
     "                x = cell(x, path.active, path.weights, path.probes, gates[0], gates[1])",
     "                x = cell(x, path.active, path.weights, path.probes, None, None)  # mutant",
     "tests/search_spaces/test_precision.py"),
    ("M16", "retraining builds the float network in a space with bits (no QAT)", "coexplore/finalize.py",
     "    model, hist, res = one(quantized)", "    model, hist, res = one(False)  # mutant",
     "tests/coexplore/test_precision_search.py"),
    ("M17", "the precision scheme's speed-up is ignored (compute cycles at one MAC per PE)", "accelerators/cost_model.py",
     "            compute_c = compute if thr is None else compute / thr",
     "            compute_c = compute  # mutant", "tests/accelerators/test_precision.py"),
    ("M18", "layer bits ignored in capacity and traffic (every operand one word)", "accelerators/cost_model.py",
     "    if not lm[:, 9:12].any():\n        return word,", "    if True:  # mutant\n        return word,",
     "tests/accelerators/test_precision.py"),
    ("M19", "BitFusion's rounding of bits to 2, 4, 8, 16 removed", "accelerators/precision.py",
     "    return np.where(b <= 2, 2.0, np.where(b <= 4, 4.0, np.where(b <= 8, 8.0, 16.0)))",
     "    return b  # mutant", "tests/accelerators/test_precision.py"),
]


def run(only=None) -> int:
    rows = []
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for mid, what, path, old, new, tests in MUTATIONS:
        if only and mid not in only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"mutant-{mid}-") as tmp:
            tmp = Path(tmp)
            for f in files:
                (tmp / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, tmp / f)
            target = tmp / path
            text = target.read_text()
            if old not in text:
                rows.append((mid, what, path, "NOT APPLIED (the code moved: update the mutation)", 0.0))
                continue
            target.write_text(text.replace(old, new, 1))
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests.split()],
                               cwd=tmp, capture_output=True, text=True)
            last = [l for l in r.stdout.splitlines() if " passed" in l or " failed" in l or " error" in l]
            verdict = "killed (tests red)" if r.returncode != 0 else "SURVIVED (tests green)"
            rows.append((mid, what, path, f"{verdict}: {last[-1] if last else r.returncode}",
                         time.perf_counter() - t0))
            print(f"{mid}: {verdict}", flush=True)
    lines = ["# Mutation check", "", "Each mutation removes a key step; the tests that guard it must fail. "
             "Command: `python experiments/check_mutations.py`.", "",
             "| id | mutation | file | outcome | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {w} | `{p}` | {o} | {s:.0f} |" for m, w, p, o, s in rows]
    if not only:
        out = ROOT / "experiments" / "results" / "mutations.md"
        out.write_text("\n".join(lines) + "\n")
        print(f"wrote {out}")
    else:
        print("\n".join(lines))
    return 0 if all(o.startswith("killed") for _, _, _, o, _ in rows) else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="mutation ids, e.g. M1 M3")
    sys.exit(run(ap.parse_args().only))
