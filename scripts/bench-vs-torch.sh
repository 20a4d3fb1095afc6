#!/usr/bin/env bash
# Runs `fmgpu bench` and the PyTorch peer (peers/run_torch_peer.sh,
# or $PEER) workload by workload, alternating, in one go on this machine,
# and prints the ratio fmgpu/torch for each. The machines are shared and
# noisy: ROUNDS alternations (default 2) of each pair, best of each side.
# The image workloads (unet-mnist-b64, unet-mnist-b64-attn) run the image
# peer, torch_unet.py beside $PEER (or $UNET_PEER), at batch 64 for
# UNET_STEPS timed steps (default 20), without and with --attention, with
# the same OpenBLAS and malloc settings as run_torch_peer.sh.
# unet-cifar10-b128 (named only: some 15-30 s a step on 2 cores) runs the
# image peer's --preset cifar10 for CIFAR_STEPS timed steps (default 5)
# after 2 untimed ones, as fmgpu bench does.
# HOG=N runs N busy shell loops beside both sides (a machine shared with
# other work): how each degrades when its threads are descheduled.
# Usage: scripts/bench-vs-torch.sh [--device cpu|cuda] [workload...]
# Needs: apt-get install -y python3-torch libopenblas0-openmp
set -euo pipefail
cd "$(dirname "$0")/.."
device=cpu
if [ "${1:-}" = --device ]; then device=$2; shift 2; fi
workloads=${*:-mlp256-b256 mlp256-b4096 mlp512x4-b4096 sample-euler unet-mnist-b64 unet-mnist-b64-attn}
peer=${PEER:-peers/run_torch_peer.sh}
unet_peer=${UNET_PEER:-$(dirname "$peer")/torch_unet.py}
unet_steps=${UNET_STEPS:-20}
cifar_steps=${CIFAR_STEPS:-5}
rounds=${ROUNDS:-2}
hog=${HOG:-0}
[[ $hog =~ ^[0-9]+$ ]] || { echo "bench-vs-torch: HOG=$hog: want a number of busy loops" >&2; exit 2; }
hogs=()
stop_hogs() {
	if [ ${#hogs[@]} -gt 0 ]; then
		kill "${hogs[@]}" 2>/dev/null || true
	fi
	hogs=()
}
trap stop_hogs EXIT
trap 'stop_hogs; exit 130' INT TERM
[ -x "$peer" ] || { echo "bench-vs-torch: peer $peer not found (set PEER=)" >&2; exit 2; }
case " $workloads " in *" unet-"*)
	[ -f "$unet_peer" ] || { echo "bench-vs-torch: image peer $unet_peer not found (set UNET_PEER=)" >&2; exit 2; } ;;
esac

# run_peer WORKLOAD: the peer's output line for WORKLOAD
run_peer() {
	case $1 in
	unet-mnist-b64 | unet-mnist-b64-attn | unet-cifar10-b128)
		local args=(--batch 64 --steps "$unet_steps")
		[ "$1" = unet-mnist-b64-attn ] && args+=(--attention)
		[ "$1" = unet-cifar10-b128 ] && args=(--preset cifar10 --steps "$cifar_steps" --warmup 2)
		(
			ob=/usr/lib/x86_64-linux-gnu/openblas-openmp
			[ -d "$ob" ] && export LD_LIBRARY_PATH="$ob${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
			grep -q avx512f /proc/cpuinfo && export OPENBLAS_CORETYPE=SkylakeX
			export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=268435456
			/usr/bin/python3 "$unet_peer" --device "$device" "${args[@]}"
		) | grep 'steps_per_s=' | sed "s/workload=[^ ]*/workload=$1/"
		;;
	*) "$peer" --device "$device" --workload "$1" | grep "workload=$1" ;;
	esac
}
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

for _ in $(seq "$hog"); do
	(while :; do :; done) &
	hogs+=($!)
done
if [ "$hog" -gt 0 ]; then echo "($hog busy loops running beside both sides)"; fi
printf '%-20s %14s %14s %8s  %s\n' workload fmgpu torch ratio unit
for w in $workloads; do
	f=() t=()
	for _ in $(seq "$rounds"); do
		steps=()
		case $w in
		unet-cifar10-*) steps=(--steps "$cifar_steps") ;;
		unet-*) steps=(--steps "$unet_steps") ;;
		esac
		errf=$(mktemp)
		if ! fl=$($fmgpu bench --device "$device" --workload "$w" "${steps[@]}" 2>"$errf" | grep "workload=$w "); then
			# fmgpu's own one-line reason, not a silent exit
			echo "bench-vs-torch.sh: fmgpu bench --device $device --workload $w failed:" >&2
			grep -v '^fmgpu bench on ' "$errf" >&2 || true
			rm -f "$errf"
			exit 1
		fi
		rm -f "$errf"
		tl=$(run_peer "$w")
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
	printf '%-20s %14s %14s %8s  %s\n' "$w" "$fb" "$tb" "${ratio}x" "$unit"
done
