"""Mixed precision in the joint space on real CIFAR-10, reduced to a 2-core CPU budget: joint
(op, bits, accelerator) search against uniform-precision networks and the sequential NAS ->
mixed precision -> hardware flow, at one latency target.

The same experiment as ``experiments/precision_mnist.py`` (its docstring says what each variant
is and how it is scored) on ``proxyless-cifar10-mp`` (12 choice blocks, each choosing its op and
its weight and activation bits in {2, 4, 8}) and the ``precision-scalable`` hardware space, on the
budget of ``experiments/configs/precision-cifar10-reduced.yaml`` (a 4,000-image subset of each
split; one warm-up and four search epochs of 12 Gumbel-softmax steps; 2 retraining epochs, in QAT
and in float), one seed, and a bound of 2x the least latency any uniform 8-bit network reaches (the
looser bound of the two settings: 1.5x would ask a randomly initialised CIFAR network to halve its
latency in 48 architecture steps).

    python experiments/precision_cifar10_reduced.py --data ../shared/data/cifar10-jpg.tar.gz --out runs/precision-cifar10-reduced -j 2

writes ``experiments/results/precision-cifar10-reduced.{md,csv}``; an interrupted run resumes when
the same command is run again (finished runs are kept).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import precision_mnist as pm  # noqa: E402 - the experiment itself; this file is its CIFAR-10 setting

CIFAR10 = pm.Setting("precision-cifar10-reduced", ROOT / "experiments" / "configs" / "precision-cifar10-reduced.yaml",
                     "proxyless-cifar10-mp", "proxyless-cifar10", "experiments/precision_cifar10_reduced.py",
                     "Real CIFAR-10 reduced to a CPU budget, `proxyless-cifar10-mp` geometry", needs_data=True, factor=2.0,
                     seeds=1)


def main(argv=None) -> int:
    return pm.main(argv, setting=CIFAR10, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
