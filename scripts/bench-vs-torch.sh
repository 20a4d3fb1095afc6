#!/usr/bin/env bash
# Runs `fmgpu bench` and the PyTorch peer (peers/run_torch_peer.sh,
# or $PEER) workload by workload, alternating, in one go on this machine,
# and prints the ratio fmgpu/torch for each. The machines are shared and
# noisy: ROUNDS alternations (default 2) of each pair, best of each side.
# Usage: scripts/bench-vs-torch.sh [--device cpu|cuda] [workload...]
# Needs: apt-get install -y python3-torch libopenblas0-openmp
set -euo pipefail
cd "$(dirname "$0")/.."
device=cpu
if [ "${1:-}" = --device ]; then device=$2; shift 2; fi
workloads=${*:-mlp256-b256 mlp256-b4096 mlp512x4-b4096 sample-euler}
peer=${PEER:-peers/run_torch_peer.sh}
rounds=${ROUNDS:-2}
[ -x "$peer" ] || { echo "bench-vs-torch: peer $peer not found (set PEER=)" >&2; exit 2; }
mkdir -p bin
go build -o bin/fmgpu ./cmd/fmgpu
fmgpu=bin/fmgpu
if [ "$device" = cuda ]; then
	make cuda >/dev/null
	fmgpu=bin/fmgpu-cuda
fi

# value KEY LINE: the number after KEY= in LINE
value() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<< " $2"; }
best() { awk 'BEGIN{m=0} {if ($1+0 > m) m=$1+0} END{print m}'; }

printf '%-16s %14s %14s %8s  %s\n' workload fmgpu torch ratio unit
for w in $workloads; do
	f=() t=()
	for _ in $(seq "$rounds"); do
		fl=$($fmgpu bench --device "$device" --workload "$w" 2>/dev/null | grep "workload=$w")
		tl=$("$peer" --device "$device" --workload "$w" | grep "workload=$w")
		unit=steps_per_s
		[ "$w" = sample-euler ] && unit=points_per_s
		f+=("$(value $unit "$fl")")
		t+=("$(value $unit "$tl")")
		echo "  $fl" >&2
		echo "  $tl" >&2
	done
	fb=$(printf '%s\n' "${f[@]}" | best)
	tb=$(printf '%s\n' "${t[@]}" | best)
	ratio=$(awk -v a="$fb" -v b="$tb" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}')
	printf '%-16s %14s %14s %8s  %s\n' "$w" "$fb" "$tb" "${ratio}x" "$unit"
done
