#!/usr/bin/env bash
# gpu-bundle.sh DIR FMGPU: assemble the GPU proof bundle in DIR (make
# gpu-bundle): the cuda fmgpu, the cuda test binaries, the PyTorch peer and
# gpu-run.sh, which runs it all on an NVIDIA host and prints one table.
# Copy DIR to the host and run DIR/gpu-run.sh there (needs only the NVIDIA
# driver; python3 with torch for the peer's column).
set -euo pipefail
out=$1 bin=$2
cd "$(dirname "$0")/.."
rm -rf "$out"
mkdir -p "$out"
cp "$bin" "$out/fmgpu"
# The conformance suite and the device report on the GPU (gpu/cuda_test.go).
go test -c -tags cuda -o "$out/gpu.test" ./gpu
# Slot: the end-to-end GPU test (train 8gaussians, sample, W2 against fresh
# data), built from GPU_E2E_PKG; gpu-run.sh runs e2e.test when present.
if [ -n "${GPU_E2E_PKG:-}" ]; then
	go test -c -tags cuda -o "$out/e2e.test" "$GPU_E2E_PKG"
fi
peer=../shared/peers/torch_cfm.py
if [ -f "$peer" ]; then
	cp "$peer" "$out/"
else
	echo "gpu-bundle: $peer not found: the bundle has no PyTorch peer" >&2
fi
cp scripts/gpu-run.sh "$out/"
git rev-parse HEAD > "$out/COMMIT" 2>/dev/null || true
ls -l "$out"
