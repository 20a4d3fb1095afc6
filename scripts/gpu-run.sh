#!/usr/bin/env bash
# gpu-run.sh: the GPU proof of fmgpu's CUDA backend, run from the bundle
# `make gpu-bundle` assembles (dist/gpu-bundle) on a machine with an NVIDIA
# GPU and driver. In under 5 minutes it runs:
#   1. fmgpu info (device name, compute capability, memory, driver);
#   2. gpu.test's conformance suite: every op against float64 references
#      (rerun with a sync after every launch if it fails, to name the
#      faulting kernel);
#   3. gpu.test's device report: every op against the CPU backend at GPU
#      sizes, with GB/s (and the fraction of a device-to-device copy's) or
#      TFLOP/s;
#   4. e2e.test when the bundle has it (train 8gaussians, sample, W2);
#   5. fmgpu bench --device cuda and the PyTorch peer on the same GPU;
# and ends with one table. Logs are kept in ./logs.
set -uo pipefail
cd "$(dirname "$0")"
mkdir -p logs
start=$SECONDS
step() { echo "== [$((SECONDS - start))s] $*" >&2; }

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > logs/nvidia-smi.txt 2>&1
cat logs/nvidia-smi.txt >&2
./fmgpu info > logs/info.txt 2>&1
cat logs/info.txt >&2

step "conformance suite"
timeout 150 ./gpu.test -test.run '^(TestCUDAProbe|TestCUDAConformance)$' -test.v > logs/conformance.log 2>&1
conf=$?
if [ $conf -ne 0 ]; then
	step "conformance failed (exit $conf): again with a sync after every launch"
	timeout 90 ./gpu.test -test.run '^TestCUDAConformance$' -test.v -cuda.sync > logs/conformance-sync.log 2>&1
	grep -E -- '--- FAIL|Error|error' logs/conformance-sync.log | head -20 >&2
fi

step "device report"
timeout 120 ./gpu.test -test.run '^TestCUDA(Image)?Report$' -test.v > logs/report.log 2>&1
report=$?

if [ -x ./e2e.test ]; then
	step "end-to-end training"
	timeout 120 ./e2e.test -test.v > logs/e2e.log 2>&1
	e2e=$?
else
	echo "e2e.test not in this bundle (make gpu-bundle GPU_E2E_PKG=...)" > logs/e2e.log
	e2e=skip
fi

step "fmgpu bench --device cuda"
timeout 90 ./fmgpu bench --device cuda --workload all > logs/bench-fmgpu.log 2>&1
if [ -f torch_cfm.py ] && python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null; then
	step "PyTorch peer --device cuda"
	timeout 120 python3 torch_cfm.py --device cuda --workload all > logs/bench-torch.log 2>&1
else
	echo "no python3 with a CUDA torch here: no peer column" | tee logs/bench-torch.log >&2
fi
step "done"

# ---- the table ----------------------------------------------------------
echo
echo "fmgpu GPU proof: $(head -1 logs/nvidia-smi.txt); commit $(cat COMMIT 2> /dev/null || echo unknown); $((SECONDS - start)) s"
echo "conformance: exit $conf; device report: exit $report; e2e: $e2e"
awk '
	function kv(line, key,   re, m) {  # value of key=value in line
		if (match(line, "(^| )" key "=[^ ]+")) {
			m = substr(line, RSTART, RLENGTH); sub(/^ /, "", m); sub(key "=", "", m); return m
		}
		return ""
	}
	FILENAME ~ /conformance.log$/ && /--- (PASS|FAIL|SKIP): TestCUDAConformance\// {
		split($3, p, "/"); c = $2; sub(/:$/, "", c); conf[p[2]] = c; next
	}
	FILENAME ~ /report.log$/ && /^report / {
		op = kv($0, "op"); gsub(/"/, "", op)
		n++; ops[n] = op; err[n] = kv($0, "maxerr"); us[n] = kv($0, "time_us")
		if (kv($0, "tflops") != "") rate[n] = kv($0, "tflops") " TFLOP/s"
		else { rate[n] = kv($0, "gbs") " GB/s"; frac[n] = sprintf("%.0f%% of copy", 100 * kv($0, "copy_frac")) }
		next
	}
	FILENAME ~ /e2e.log$/ && /w2=/ { e2e = e2e " " $0; next }
	FILENAME ~ /bench-fmgpu.log$/ && /^workload=/ {
		w = kv($0, "workload"); fm[w] = kv($0, "steps_per_s") kv($0, "points_per_s"); lps[w] = kv($0, "launches_per_step"); wl[++nw] = w; next
	}
	FILENAME ~ /bench-torch.log$/ && /^peer=torch/ { w = kv($0, "workload"); pt[w] = kv($0, "steps_per_s") kv($0, "points_per_s"); next }
	END {
		fmt = "%-8s %-46s %-6s %-9s %-10s %-16s %s\n"
		printf fmt, "section", "item", "check", "error", "time_us", "rate", "vs"
		for (i = 1; i <= n; i++) {
			name = ops[i]; sub(/[_(].*/, "", name)
			c = (name in conf) ? conf[name] : "-"
			printf fmt, "op", ops[i], c, err[i], us[i], rate[i], frac[i]
		}
		for (k in conf) if (conf[k] == "FAIL") printf fmt, "op", k " (conformance)", "FAIL", "", "", "", "see logs/conformance*.log"
		printf fmt, "e2e", "8gaussians W2", (e2e == "" ? "-" : "ran"), "", "", "", (e2e == "" ? "no e2e result (logs/e2e.log)" : e2e)
		for (i = 1; i <= nw; i++) {
			w = wl[i]; unit = (w == "sample-euler") ? " points/s" : " steps/s"
			vs = (w in pt && pt[w] > 0) ? sprintf("torch %s: %.2fx", pt[w], fm[w] / pt[w]) : "no peer"
			printf fmt, "bench", w " (" lps[w] " launches/step)", "", "", "", fm[w] unit, vs
		}
	}
' logs/conformance.log logs/report.log logs/e2e.log logs/bench-fmgpu.log logs/bench-torch.log
