#!/usr/bin/env bash
# Reproduces the quality-against-NFE tables of README and docs/metrics.md:
# for each built-in 2-D set, default training with the independent and the
# ot coupling, then fmgpu eval --checkpoint with Euler at 1, 2, 4, 8 and
# 16 steps (2,000 samples, W2 over the noise floor and MMD^2), the flow's
# straightness and kinetic energy, and a picture of the samples per step
# count (OUT/SET-COUPLING.png).
#   scripts/eval-nfe.sh [OUTDIR] [SETS...]
set -euo pipefail
out=${1:-eval-nfe}
shift || true
sets=${*:-moons 8gaussians}
# FMGPU: the binary to run; by default the repository's bin/fmgpu, built
# when missing (from any working directory)
root=$(cd "$(dirname "$0")/.." && pwd)
fmgpu=${FMGPU:-$root/bin/fmgpu}
if [ -z "${FMGPU:-}" ] && [ ! -x "$fmgpu" ]; then
	(cd "$root" && go build -o bin/fmgpu ./cmd/fmgpu)
fi
mkdir -p "$out"
for d in $sets; do
	for c in independent ot; do
		m=$out/$d/$c
		[ -e "$m/checkpoint.safetensors" ] || "$fmgpu" train --data "$d" --coupling "$c" --out "$m" --no-plot --quiet
		echo "== $d, --coupling $c"
		"$fmgpu" eval --checkpoint "$m/checkpoint.safetensors" --plot "$out/$d-$c.png" --quiet | tee "$out/$d-$c.txt"
	done
done
