//go:build !noasm

package sgemm

import "golang.org/x/sys/cpu"

// Register tiles of the avx512ymm kernels; they must match asm/gen.go.
const (
	mr512y = 6
	nr512y = 32
)

// The avx512ymm kernels run the AVX-512 micro-kernels' algorithm on the
// ymm registers Y0-Y31 (AVX-512VL, 6 x 32 tiles): generated to compare zmm
// and ymm at one register budget (docs/performance.md), they are not in
// the production dispatch. This package's tests and benchmarks run them
// beside the others, second in Kernels(). (Package files initialize before
// test files, so available is set.)
func init() {
	if !(cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512BW) {
		return
	}
	ymm := &kernelImpl{
		name: "avx512ymm", mr: mr512y, nr: nr512y, kc: 256, nc: 512,
		rowA: []microKernel{kern512yR1, kern512yR2, kern512yR3, kern512yR4, kern512yR5, kern512yR6},
		colA: []microKernel{kern512yC1, kern512yC2, kern512yC3, kern512yC4, kern512yC5, kern512yC6},
		epi:  epi256, epiW: 8,
		siluGrad: siluGrad256, colSum: colSum256, sumW: 4,
		adam: adamYMM, sumSq: sumSquares256, sqW: 16,
		dotRows: dotRowsTab,
		dot:     [dotMaxN]microKernel{nil, dot256N1R4, dot256N2R4, dot256N3R3, dot256N4R2, dot256N5R1, dot256N6R1, dot256N7R1},
		dot1:    [dotMaxN]microKernel{nil, dot256N1R1, dot256N2R1, dot256N3R1, dot256N4R1, dot256N5R1, dot256N6R1, dot256N7R1},
	}
	available = append(available[:1], append([]*kernelImpl{ymm}, available[1:]...)...)
}
