#!/usr/bin/env bash
# DANCE on CIFAR-10 for the three objectives of the paper (EDAP, latency-, energy-oriented).
# Usage: COEXPLORE_CIFAR10=/path/to/cifar experiments/run_dance_cifar10.sh [extra key=value overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
coexplore evaluator build --space proxyless-cifar10 --objective edap --out runs/evaluators/cifar10-edap.pt
for obj in edap latency energy; do
  coexplore search -c "experiments/configs/dance-cifar10-${obj}.yaml" --out "runs/dance-cifar10-${obj}" "$@" || true
done
coexplore pareto runs/dance-cifar10-* --x edap --y error --out runs/dance-cifar10-front
