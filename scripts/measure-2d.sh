#!/usr/bin/env bash
# Measures what the CLI issue asks for, with the default training of
# `fmgpu train`: for moons, 8gaussians and checkerboard the exact W2
# distance between 2,000 samples and 2,000 fresh data points beside the W2
# between two fresh 2,000-point draws (the noise floor); for the gaussian
# set the mean NLL of 2,000 fresh points from `fmgpu likelihood` beside its
# analytic value. Usage: scripts/measure-2d.sh [OUTDIR] [extra train flags]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/measure-2d}
shift || true
mkdir -p "$out" bin
go build -o bin/fmgpu ./cmd/fmgpu
for set in moons 8gaussians checkerboard gaussian; do
  rm -rf "$out/$set"
  start=$(date +%s.%N)
  bin/fmgpu train --data "$set" --out "$out/$set" --quiet "$@"
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  sps=$(tail -n 1 "$out/$set/metrics.jsonl" | sed 's/.*"steps_per_s":\([0-9.]*\).*/\1/')
  steps=$(tail -n 1 "$out/$set/metrics.jsonl" | sed 's/.*"step":\([0-9]*\).*/\1/')
  echo "set=$set train_seconds=$secs steps=$steps last_steps_per_s=$sps"
  if [ "$set" = gaussian ]; then
    bin/fmgpu likelihood --checkpoint "$out/$set/checkpoint.safetensors" --data gaussian --n-data 2000 --seed 2 | tail -n 1
    go run ./scripts/gaussian-nll -n 2000 -seed 2
  else
    bin/fmgpu sample --checkpoint "$out/$set/checkpoint.safetensors" --n 2000 --seed 7 --out "$out/$set/samples-2000.npy" >/dev/null
    bin/fmgpu eval --samples "$out/$set/samples-2000.npy" --data "$set" --n 2000 --floors 5
  fi
done
