#!/usr/bin/env bash
# device-run.sh [BUDGET_S]: the command for the device tool's run
# (docs/performance.md, "GPU"), from the repository root, with
# dist/gpu-bundle.tgz carried (make gpu-bundle). It unpacks the bundle,
# runs its gpu-run.sh within BUDGET_S seconds (default 420), and leaves in
# $OUT the one-screen summary and one archive of every log (the tool brings
# back a few files, not a folder of them). The summary is also printed.
set -uo pipefail
budget=${1:-420}
dest=${OUT:-.}
tmp=$(mktemp -d)
if ! tar xzf dist/gpu-bundle.tgz -C "$tmp"; then
	echo "device-run: no dist/gpu-bundle.tgz here: run make gpu-bundle and carry dist/gpu-bundle.tgz" >&2
	exit 2
fi
"$tmp/gpu-bundle/gpu-run.sh" "$tmp/gpu" "$budget"
rc=$?
tar czf "$dest/gpu-logs.tgz" -C "$tmp" gpu
cp "$tmp/gpu/summary.txt" "$dest/" 2> /dev/null
exit $rc
