#!/usr/bin/env bash
# HDX co-exploration on the embedded MNIST digits (minutes on a CPU), then its Pareto plot.
set -euo pipefail
cd "$(dirname "$0")/.."
coexplore search -c experiments/configs/quickstart.yaml --out "${1:-runs/quickstart}" "${@:2}"
coexplore pareto "${1:-runs/quickstart}" --constraint "latency <= 0.1ms"
