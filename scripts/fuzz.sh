#!/usr/bin/env bash
# Runs every loader's Go fuzz test for a while: briefly in CI (default 5s
# each), longer by hand: scripts/fuzz.sh 10m
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-5s}
# -fuzzminimizetime bounded: the default minimization of large inputs can
# take the whole budget; fmgpu's corpora hold whole checkpoints.
for target in "./data FuzzReadNPY" "./data FuzzReadCSV" "./data FuzzReadIDX" "./data FuzzDecodeImage" "./train FuzzParseCheckpoint"; do
  set -- $target
  echo "== fuzz $2 ($t)"
  go test "$1" -run XXX -fuzz "^$2\$" -fuzztime "$t" -fuzzminimizetime 500x
done
