#!/usr/bin/env bash
# gpu-bundle.sh DIR: assemble the device bundle in DIR (make gpu-bundle):
# the fmgpu binary, the test binaries gpu.test, e2e.test and
# collective.test, gpu-report,
# the list of kernels in the fatbin, the PyTorch peers when PEERS_DIR has
# them, and gpu-run.sh. Copy DIR to a machine with an NVIDIA GPU and run
# `DIR/gpu-run.sh OUTDIR` there: it needs only the NVIDIA driver (python3
# with a CUDA torch for the peer columns, compute-sanitizer for its runs).
# Nothing here needs CUDA: the binaries load the driver at run time.
set -euo pipefail
out=$1
cd "$(dirname "$0")/.."
rm -rf "$out"
mkdir -p "$out"
export CGO_ENABLED=0 # no libc dependency beyond the loader purego needs
# stripped: the device tool carries 64 MiB in all, the working tree's
# files included, and three of these binaries embed the fatbin
small=(-trimpath -ldflags='-s -w')
go build "${small[@]}" -o "$out/fmgpu" ./cmd/fmgpu
go test -c "${small[@]}" -o "$out/gpu.test" ./gpu
go test -c "${small[@]}" -o "$out/e2e.test" ./internal/e2e
go test -c "${small[@]}" -o "$out/collective.test" ./collective
go build "${small[@]}" -o "$out/gpu-report" ./scripts/gpu-report
perl -0777 -ne 'print "$1\n" while /extern "C" __global__ void\s+(?:__launch_bounds__\(\d+(?:,\s*\d+)?\)\s+)?(\w+)\s*\(/g' kernels/*.cu | sort -u > "$out/kernels.txt"
peers=${PEERS_DIR:-peers}
for p in torch_cfm.py torch_unet.py; do
	if [ -f "$peers/$p" ]; then
		cp "$peers/$p" "$out/"
	else
		echo "gpu-bundle: $peers/$p not found: no PyTorch column for it (set PEERS_DIR)" >&2
	fi
done
cp scripts/gpu-run.sh "$out/"
git rev-parse HEAD > "$out/COMMIT" 2> /dev/null || true
# one archive to carry (scripts/device-run.sh unpacks it on the device)
tar czf "$out.tgz" -C "$(dirname "$out")" "$(basename "$out")"
mib() { echo $((($1 + 1048575) / 1048576)); }
bundle=$(stat -c %s "$out.tgz")
tree=$(git ls-files -z 2> /dev/null | du -cb --files0-from=- 2> /dev/null | tail -1 | cut -f1)
tree=${tree:-0}
echo "gpu-bundle: $(wc -l < "$out/kernels.txt") kernels; $(du -sh "$out" | cut -f1) in $out; $out.tgz $(mib "$bundle") MiB + the tracked files $(mib "$tree") MiB of the device tool's 64"
if ((bundle + tree > 64 * 1048576)); then
	echo "gpu-bundle: over the 64 MiB the device tool carries" >&2
	exit 1
fi
