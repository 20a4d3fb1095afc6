#!/usr/bin/env bash
# kernels-verify.sh NVCC CCBIN FLAGS: rebuild kernels/fmgpu.fatbin in a
# scratch directory with the Makefile's flags and check that the committed
# fatbin and ptxas report are what the sources build. nvcc 11.8's output is
# byte-deterministic for fixed sources and flags (measured: two builds, and
# builds from different directories, are identical), so the check is a
# byte comparison; on a mismatch it prints which kernels' SASS or PTX
# differ (cuobjdump listings) to say what changed.
set -euo pipefail
nvcc=$1 ccbin=$2 flags=$3
cd "$(dirname "$0")/../kernels"
want=$(cat nvcc-version.txt)
have=$("$nvcc" --version | tail -n 2)
if [ "$want" != "$have" ]; then
	echo "kernels-verify: the committed fatbin was built by"
	echo "  $want"
	echo "but this nvcc is"
	echo "  $have"
	echo "kernels-verify: a byte comparison needs the same nvcc; rebuild with make kernels and commit, or use that nvcc"
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp ./*.cu ./*.cuh "$tmp"/
(cd "$tmp" && "$nvcc" ${ccbin:+-ccbin "$ccbin"} $flags -fatbin -o fmgpu.fatbin fmgpu.cu 2> ptxas-report.txt) || {
	cat "$tmp/ptxas-report.txt"
	exit 1
}
ok=1
if ! cmp -s "$tmp/fmgpu.fatbin" fmgpu.fatbin; then
	ok=0
	echo "kernels-verify: kernels/fmgpu.fatbin differs from what kernels/*.cu build"
	if command -v cuobjdump >/dev/null; then
		# Tag every listing line with its kernel, then name the kernels
		# whose lines differ.
		tag='/Function : /{f=$3} /\.entry /{f=$NF; sub(/\(.*/, "", f)} {print arch "\t" f "\t" $0}'
		for kind in sass ptx; do
			cuobjdump -$kind fmgpu.fatbin | awk -v arch=$kind "$tag" > "$tmp/committed.$kind" || true
			cuobjdump -$kind "$tmp/fmgpu.fatbin" | awk -v arch=$kind "$tag" > "$tmp/built.$kind" || true
		done
		cat "$tmp"/committed.* | sort > "$tmp/c"
		cat "$tmp"/built.* | sort > "$tmp/b"
		comm -3 "$tmp/c" "$tmp/b" | awk -F'\t' '{gsub(/^\t/, ""); print "  " $1 " of " $2 " differs"}' | sort -u | head -20
	fi
fi
if ! cmp -s "$tmp/ptxas-report.txt" ptxas-report.txt; then
	ok=0
	echo "kernels-verify: kernels/ptxas-report.txt differs:"
	diff ptxas-report.txt "$tmp/ptxas-report.txt" | head -20
fi
if [ $ok = 0 ]; then
	echo "kernels-verify: run make kernels and commit kernels/fmgpu.fatbin and kernels/ptxas-report.txt"
	exit 1
fi
echo "kernels-verify: kernels/fmgpu.fatbin and ptxas-report.txt match the sources ($(grep -c 'Compiling entry function' ptxas-report.txt) kernel builds, $(echo $have | head -c 60))"
