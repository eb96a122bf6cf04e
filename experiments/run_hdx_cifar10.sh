#!/usr/bin/env bash
# HDX at 60 fps and 30 fps against its baselines (soft penalty, NAS->HW, random, NSGA-II), then
# the fronts with the constraint lines. Usage: COEXPLORE_CIFAR10=/path experiments/run_hdx_cifar10.sh
set -euo pipefail
cd "$(dirname "$0")/.."
coexplore sweep experiments/sweeps/hdx-vs-baselines.yaml --out runs/hdx-vs-baselines -j "${JOBS:-1}"
coexplore sweep experiments/sweeps/soft-penalty-lambda.yaml --out runs/soft-penalty -j "${JOBS:-1}"
coexplore search -c experiments/configs/nas-hw-cifar10.yaml --out runs/nas-hw-cifar10-60fps || true
for fps in 60 30; do
  coexplore pareto runs/hdx-vs-baselines runs/soft-penalty runs/nas-hw-cifar10-60fps --x latency --y error \
    --constraint "fps >= ${fps}" --out "runs/hdx-front-${fps}fps"
done
