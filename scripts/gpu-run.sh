#!/usr/bin/env bash
# gpu-run.sh OUTDIR [BUDGET_S]: the GPU verdict of fmgpu's CUDA backend, run
# from the bundle `make gpu-bundle` assembles (dist/gpu-bundle) on a machine
# with an NVIDIA GPU and driver. Everything it writes goes to OUTDIR; the
# whole run, failures included, ends within BUDGET_S seconds (default 420):
# each step gets the smaller of its own limit and what is left, and a step
# with under 5 s left is skipped (and says so). The steps run in the order
# of what a short device run must not miss: correctness, fmgpu's speed in
# every precision, the PyTorch peers at the same precisions, then the
# reports, the U-Nets, NCCL and the sanitizers.
#
#   header      uname -m, glibc, driver, nvidia-smi, fmgpu info
#   conformance gpu.test: every op against float64 references through the
#               NVIDIA driver, with the kernels each test launched (again
#               with a sync after every launch if it fails)
#   report      gpu.test: every op against the CPU backend at GPU sizes,
#               GB/s against a copy, TFLOP/s against the fp32 peak
#   e2e         e2e.test: train 8gaussians, sample, W2 against fresh data
#   profile     e2e.test: one training step per workload, every kernel
#               timed with CUDA events
#   bench       fmgpu bench --device cuda (the MLPs and sample-euler) in
#               fp32, tf32x3, tf32 and bf16; the MNIST U-Net (batch 64) in
#               fp32 and bf16; the CIFAR-10 preset's step, unet-cifar10-b128
#   nccl        collective.test: one NCCL rank through the real libnccl.so.2
#               (PyTorch's CUDA wheels ship one), all-reduce per workload
#   sanitizer   compute-sanitizer memcheck and racecheck over the
#               conformance suite, where the tool is present
#   peers       the PyTorch peers on the same GPU: eager fp32, tf32, bf16
#               autocast, bf16 with torch.compile (the MLPs); fp32 and
#               compiled bf16 (the MNIST U-Net, batch 128); fp32 and bf16
#               (the CIFAR-10 preset's U-Net); PEERS=0 skips them
# and ends with gpu-report's one-screen summary (OUTDIR/summary.txt; the
# per-kernel table in OUTDIR/kernels-table.txt).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: gpu-run.sh OUTDIR [BUDGET_S]}
budget=${2:-420}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"
if [ ! -x ./gpu.test ] || [ ! -x ./fmgpu ]; then
	echo "gpu-run: no fmgpu and gpu.test beside this script: run the copy in the bundle (make gpu-bundle), not scripts/gpu-run.sh" >&2
	exit 2
fi
export PYTHONUNBUFFERED=1
start=$SECONDS
deadline=$((start + budget - 10)) # 10 s for the summary
: > "$out/steps.tsv"

# step NAME LIMIT_S CMD...: runs CMD with its output in OUTDIR/NAME.log.
step() {
	local name=$1 limit=$2
	shift 2
	local left=$((deadline - SECONDS))
	((limit > left)) && limit=$left
	if ((limit < 5)); then
		echo "== [$((SECONDS - start))s] $name: skipped (budget spent)" >&2
		printf '%s\tskipped\t0\n' "$name" >> "$out/steps.tsv"
		return 99
	fi
	echo "== [$((SECONDS - start))s] $name (limit ${limit}s)" >&2
	local t0=$SECONDS rc
	timeout -k 5 "$limit" "$@" > "$out/$name.log" 2>&1
	rc=$?
	printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$out/steps.tsv"
	return $rc
}

{
	echo "machine: $(uname -m), $(ldd --version 2> /dev/null | head -1)"
	echo "commit: $(cat COMMIT 2> /dev/null || echo unknown)"
	timeout -k 5 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
	timeout -k 5 30 ./fmgpu info 2>&1
} > "$out/header.txt"
cat "$out/header.txt" >&2
lib=${FMGPU_LIBCUDA:-libcuda.so.1}

rm -f "$out/conformance-kernels.tsv"
if ! step conformance 60 ./gpu.test -test.run '^(TestCUDAProbe|TestCUDAConformance|TestCUDACapture)$' -test.v \
	-cuda.lib="$lib" -cuda.kernellog="$out/conformance-kernels.tsv"; then
	step conformance-sync 45 ./gpu.test -test.run '^TestCUDAConformance$' -test.v -cuda.lib="$lib" -cuda.sync
fi
step e2e 60 ./e2e.test -test.run '^TestTrainSampleW2$' -test.v -cuda.lib="$lib"
step bench-fmgpu 40 ./fmgpu bench --device cuda --workload all
for p in tf32x3 tf32 bf16; do
	step "bench-fmgpu-$p" 30 ./fmgpu bench --device cuda --workload all --precision "$p"
done

torch=0
if [ "${PEERS:-1}" = 0 ]; then
	echo "PEERS=0: no peer columns" > "$out/torch.log"
elif timeout -k 5 60 python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null; then
	torch=1
else
	echo "no python3 with a CUDA torch here: no peer columns" | tee "$out/torch.log" >&2
fi
if ((torch)); then
	for v in "fp32" "tf32" "bf16" "bf16 --compile"; do
		set -- $v
		tag=$1${2:+-compile}
		[ -f torch_cfm.py ] && step "torch-cfm-$tag" 45 python3 torch_cfm.py --device cuda --workload all --precision "$@"
	done
fi
step report 90 ./gpu.test -test.run '^TestCUDA(Image)?Report$' -test.v -cuda.lib="$lib"
step profile 45 ./e2e.test -test.run '^TestStepProfile$' -test.v -cuda.lib="$lib"
for p in fp32 bf16; do
	step "bench-fmgpu-unet-$p" 40 ./fmgpu bench --device cuda --workload unet-mnist-b64 --precision "$p"
done
if ((torch)); then
	[ -f torch_unet.py ] && step torch-unet-fp32 45 python3 torch_unet.py --device cuda --batch 64 --precision fp32
fi
step bench-fmgpu-cifar10 45 ./fmgpu bench --device cuda --workload unet-cifar10-b128
if ((torch)); then
	for v in fp32 bf16; do
		[ -f torch_unet.py ] && step "torch-unet-cifar10-$v" 60 python3 torch_unet.py --device cuda --preset cifar10 --precision "$v"
	done
fi

nccl=${FMGPU_LIBNCCL:-$(timeout -k 5 30 python3 -c 'import os, nvidia.nccl as n; print(os.path.join(list(n.__path__)[0], "lib", "libnccl.so.2"))' 2> /dev/null)}
if [ -n "$nccl" ] && [ -f "$nccl" ]; then
	FMGPU_NCCL_DEVICE_TEST=1 FMGPU_LIBNCCL=$nccl step nccl 30 ./collective.test -test.run '^TestNCCLDevice$' -test.v
else
	echo "no libnccl.so.2 found (set FMGPU_LIBNCCL): no NCCL run" > "$out/nccl.log"
fi

if command -v compute-sanitizer > /dev/null; then
	step sanitizer-memcheck 60 compute-sanitizer --tool memcheck --error-exitcode 3 --print-limit 20 \
		./gpu.test -test.run '^TestCUDAConformance$' -cuda.lib="$lib"
	# racecheck is slow: the ops whose kernels share memory between
	# threads, every precision of the products (cp.async, ldmatrix)
	step sanitizer-racecheck 120 compute-sanitizer --tool racecheck --error-exitcode 3 --print-limit 20 \
		./gpu.test -test.run '^TestCUDAConformance$/^(Gemm.*|Linear.*|Conv2D.*|GroupNorm.*|SumSquares|MSELoss|ErrorNorm|RowDot|Softmax.*|ChannelSum|BiasActBackward)$' -cuda.lib="$lib"
else
	echo "compute-sanitizer not on PATH: no sanitizer runs" > "$out/sanitizer.log"
fi
if ((torch)); then
	# compiled bf16, PyTorch's best on the U-Net: its compilation took
	# over 45 s on the H200
	[ -f torch_unet.py ] && step torch-unet-bf16-compile 150 python3 torch_unet.py --device cuda --batch 64 --precision bf16 --compile
fi

echo "== [$((SECONDS - start))s] summary" >&2
./gpu-report -dir "$out" -kernels kernels.txt -elapsed $((SECONDS - start)) | tee "$out/summary.txt"
# the exit status: 1 when the kernels' conformance or the end-to-end run
# failed (the other steps' verdicts are in the summary)
awk -F'\t' '($1 == "conformance" || $1 == "e2e") && $2 != 0 { bad = 1 } END { exit bad }' "$out/steps.tsv"
