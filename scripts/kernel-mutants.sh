#!/usr/bin/env bash
# kernel-mutants.sh [ID...]: plants each fault of the table below in the
# real kernels (or their ptxas report), one at a time, in a scratch copy of
# the repository, runs the kernelsim test that exercises the kernel, and
# counts the mutant caught when the test fails with the named checker's
# message (a wrong result alone does not count: the point is that the
# checker sees the fault). Prints a table and caught/total; exits non-zero
# unless every mutant is caught. With IDs, runs only those.
#
# Needs Go and a C++ compiler (the kernelsim build); each mutant rebuilds
# the harness and the gpu test binary (about a minute or two each).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

# One mutant a line, tab-separated (no field empty: read joins tabs): id,
# file, the text to replace, its replacement, conformance subtest, the
# checker's message (an extended regexp), what the mutation does. The text
# must occur exactly once; \n stands for a newline. A text "re:PATTERN" is
# a Perl regexp with one capture group instead, which the replacement
# replaces (the ptxas report's figures change whenever the kernels are
# rebuilt).
mutants=$(cat <<'EOF'
gemm-no-barrier	kernels/gemm.cuh	acc[i][j] += a[i] * b[j];\n        }\n        __syncthreads();\n    }\n}	acc[i][j] += a[i] * b[j];\n        }\n    }\n}	Gemm	racecheck: __shared__ gemm_tile_at::(As|Bs)	remove the barrier after a k step: the next tiles overwrite the ones being read
allsum-no-barrier	kernels/norm.cu	    for (int i = 0; i < nw; i++) t += part[i];\n    __syncthreads();	    for (int i = 0; i < nw; i++) t += part[i];	GroupNorm	racecheck: __shared__ block_allsum_d::part	remove block_allsum_d's closing barrier: its second call overwrites the warps' sums being read
partial-all-threads	kernels/optimizer.cu	    acc = block_sum_d(acc);\n    if (threadIdx.x == 0) partial[blockIdx.x] = acc;	    acc = block_sum_d(acc);\n    partial[blockIdx.x] = acc;	SumSquares	racecheck: global memory.*in the same barrier interval	every thread of a block stores the block's partial sum
partial-one-slot	kernels/optimizer.cu	    if (threadIdx.x == 0) partial[blockIdx.x] = acc;\n    if (!last_block_of	    if (threadIdx.x == 0) partial[0] = acc;\n    if (!last_block_of	SumSquares	racecheck: global memory.*blocks are unordered	every block stores its partial sum in slot 0
lastblock-no-release	kernels/common.cuh	        fm_fence();  // this block's partials before its count	        // (no fence)	SumSquares	racecheck: global memory.*blocks are unordered	last_block_of without the fence before a block counts: its partials may not be visible to the last block
lastblock-no-acquire	kernels/common.cuh	    if (last) fm_fence();  // the others' partials after their counts	    // (no fence)	SumSquares	racecheck: global memory.*blocks are unordered	last_block_of without the last block's fence after its count: it may read stale partials
fill-off-by-one	kernels/memory.cu	i < n; i += grid_stride()) dst[i] = v;	i <= n; i += grid_stride()) dst[i] = v;	Fill	memcheck: .*past the end of allocation	off-by-one bound: one element past the buffer
linear-off-by-one	kernels/dense.cu	            if (c >= out) continue;\n            long long o	            if (c > out) continue;\n            long long o	Linear	(memcheck|racecheck): 	off-by-one column bound in the Linear epilogue
lds4-misaligned	kernels/gemm.cuh	lds4(&As[p][4 * ty], a);	lds4(&As[p][4 * ty + 1], a);	Gemm	memcheck: .*misaligned 16-byte vector access to __shared__ gemm_tile_at::As	a 128-bit shared load one float off its 16-byte alignment
pathcoef-uninit	kernels/draw.cu	    if ((int)threadIdx.x < nr) path_coef(kind, p0, p1, (double)t[r0 + threadIdx.x], coef[threadIdx.x]);	    if ((int)threadIdx.x < nr - 1) path_coef(kind, p0, p1, (double)t[r0 + threadIdx.x], coef[threadIdx.x]);	PathTarget	initcheck: .*__shared__ path_target_forward_kernel::coef	the last row's coefficients never written to shared memory
allsum-uninit	kernels/norm.cu	    if (lane == 0) part[w] = v;\n    __syncthreads();\n    double t = 0.0;	    if (lane == 0 && w > 0) part[w] = v;\n    __syncthreads();\n    double t = 0.0;	GroupNorm	initcheck: .*__shared__ block_allsum_d::part	warp 0's sum never written to shared memory
softmax-mask	kernels/attention.cu	v = fmax32(v, __shfl_xor_sync(0xffffffffu, v, o));	v = fmax32(v, __shfl_xor_sync(0x7fffffffu, v, o));	Softmax	synccheck: __shfl_xor_sync with mask 0x7fffffff	a shuffle mask without lane 31, which calls it
warpsum-mask	kernels/common.cuh	v += __shfl_xor_sync(0xffffffffu, v, o);	v += __shfl_xor_sync(0x0000ffffu, v, o);	SumSquares	synccheck: __shfl_xor_sync with mask 0x0000ffff	half a warp's mask in the butterfly sum
loss-divergent-barrier	kernels/dense.cu	    acc = block_sum_d(acc);\n    if (threadIdx.x == 0) partial[blockIdx.x] = acc;\n    if (!last_block_of(counter, gridDim.x)) return;\n    acc = final_sum_d(partial, (int)gridDim.x);\n    if (threadIdx.x == 0) {\n        float l	    if (threadIdx.x < 128) acc = block_sum_d(acc);\n    if (threadIdx.x == 0) partial[blockIdx.x] = acc;\n    if (!last_block_of(counter, gridDim.x)) return;\n    acc = final_sum_d(partial, (int)gridDim.x);\n    if (threadIdx.x == 0) {\n        float l	MSELoss	synccheck: (divergent __syncthreads|__syncthreads reached by)	the block sum's barrier in code only half the block runs
tc-no-wait	kernels/gemm_tc.cuh	        fm_cp_async_wait<TC_STAGES - 2>();\n        __syncthreads();	        __syncthreads();	GemmAligned_tf32	initcheck: .*dynamic shared memory	the tensor-core pipeline without cp.async.wait_group: a stage is read before its copies land
tc-no-barrier	kernels/gemm_tc.cuh	        fm_cp_async_wait<TC_STAGES - 2>();\n        __syncthreads();	        fm_cp_async_wait<TC_STAGES - 2>();	GemmAligned_tf32x3	(racecheck|initcheck): .*dynamic shared memory	the tensor-core pipeline without the barrier after its wait: warps read other threads' copies, and overwrite a stage still being read
conv-tc-no-wait	kernels/conv.cu	        fm_cp_async_wait<CONV_TC_STAGES - 2>();\n        __syncthreads();	        __syncthreads();	Conv2D_tf32	initcheck: .*__shared__ conv2d_forward::t	the convolutions' tensor-core pipeline without cp.async.wait_group: a stage is read before its gathers land
bf16-frag-index	kernels/gemm_tc.cuh	a[i][2 * step + 1] = fm_bf16x2(af[i][1], af[i][3]);	a[i][2 * step + 1] = fm_bf16x2(af[i][1], af[i][2]);	GemmAligned_bf16	elements out of tolerance	a wrong bf16 A fragment index (k + 4 of row g instead of row g + 8): no checker sees a wrong value, the conformance bound (1e-4 against the bf16-rounded operands' product) does
bf16-mma-partial-warp	kernels/gemm_tc.cuh	            fm_mma_bf16<TC_MT, TC_NT>(acc, a, b);	            if (lane < 31) fm_mma_bf16<TC_MT, TC_NT>(acc, a, b);	Linear_bf16	synccheck: 	the bf16 mma.sync issued by 31 lanes of a warp: the instruction is .aligned, every lane must issue it
report-static-smem	kernels/ptxas-report.txt	re:Function properties for conv2d_forward_kernel\n[^\n]*\nptxas info    : Used \d+ registers, (\d+) bytes smem\n	50176	Conv2D	resources: conv2d_forward_kernel: 50176 bytes of static shared memory, above sm_90's 49152	a kernel whose static shared memory (per its sm_90 ptxas report) exceeds 48 KiB
report-registers	kernels/ptxas-report.txt	re:Function properties for gemm_nn_forward_kernel\n[^\n]*\nptxas info    : Used (\d+) registers, \d+ bytes smem\n	255	Gemm	-	a kernel whose registers (per its sm_90 ptxas report) are at the limit: still fits (control: must pass)
EOF
)

want=("$@")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git ls-files -z | tar --null -T - -cf - | tar -x -C "$tmp"

caught=0 total=0 report=""
while IFS=$'\t' read -r id file from to subtest expect what; do
	[ -n "$id" ] || continue
	if [ ${#want[@]} -gt 0 ] && ! printf '%s\n' "${want[@]}" | grep -qx "$id"; then continue; fi
	control=0
	case "$what" in *"(control: must pass)"*) control=1 ;; esac
	total=$((total + 1))
	cp "$tmp/$file" "$tmp/$file.orig"
	if ! FROM=$from TO=$to perl -0pi -e '
		my ($f, $t) = ($ENV{FROM}, $ENV{TO});
		s/\\n/\n/g for ($f, $t);
		if ($f =~ s/^re://) {
			my $n = () = /$f/g;
			die "matches $n times\n" unless $n == 1;
			/$f/ or die;
			substr($_, $-[1], $+[1] - $-[1]) = $t;
		} else {
			my $n = () = /\Q$f\E/g;
			die "matches $n times\n" unless $n == 1;
			s/\Q$f\E/$t/;
		}' "$tmp/$file" 2> "$tmp/perl.err"; then
		result="NOT APPLIED ($(cat "$tmp/perl.err"))"
	else
		set +e
		out=$(cd "$tmp" && timeout 1200 go test -tags kernelsim -count=1 -run "TestKernelSimConformance\$/^${subtest}\$" ./gpu 2>&1)
		rc=$?
		set -e
		if [ $control = 1 ]; then
			if [ $rc = 0 ]; then result=passed; caught=$((caught + 1)); else result="FAILED (a control must pass)"; fi
		elif [ $rc != 0 ] && grep -Eq -- "$expect" <<< "$out"; then
			result=caught
			caught=$((caught + 1))
		elif [ $rc != 0 ]; then
			result="failed without the checker's message"
		else
			result=MISSED
		fi
		if [ "$result" != caught ] && [ "$result" != passed ]; then
			printf '%s\n' "$out" | tail -n 20 > "$tmp/$id.log"
			echo "--- $id: $result; the test's output ends:" >&2
			cat "$tmp/$id.log" >&2
		fi
	fi
	mv "$tmp/$file.orig" "$tmp/$file"
	line=$(printf '%-24s %-26s %-22s %s' "$id" "$file" "$subtest" "$result")
	echo "$line"
	report+="$line"$'\n'
done <<< "$mutants"

echo
printf '%-24s %-26s %-22s %s\n' mutant file subtest result
printf '%s' "$report"
echo "kernel-mutants: caught $caught/$total"
[ "$caught" = "$total" ]
