//go:build !noasm

package sgemm

import "golang.org/x/sys/cpu"

// Register tiles of the generated kernels; they must match asm/gen.go.
const (
	mr512 = 12
	nr512 = 32
	mr256 = 6
	nr256 = 16
)

// dotRowsTab: rows of C per dot-kernel call, by n (asm/gen.go dotRows).
var dotRowsTab = [dotMaxN]int{0, 4, 4, 3, 2, 1, 1, 1}

// hasAsm reports whether this build carries the assembly kernels.
const hasAsm = true

// archKernels returns the assembly kernels this CPU supports, default
// first. Zen 4 splits each zmm FMA into two 256-bit halves; the zmm
// kernel still measured faster than the same tiles on ymm registers
// (avx512ymm, which only the tests register: kernels_ymm_amd64_test.go;
// docs/performance.md), so AVX-512 leads.
func archKernels() []*kernelImpl {
	var ks []*kernelImpl
	avx512 := cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512BW
	if avx512 {
		ks = append(ks, &kernelImpl{
			name: "avx512", mr: mr512, nr: nr512, kc: 256, nc: 512,
			rowA: []microKernel{kern512R1, kern512R2, kern512R3, kern512R4, kern512R5, kern512R6,
				kern512R7, kern512R8, kern512R9, kern512R10, kern512R11, kern512R12},
			colA: []microKernel{kern512C1, kern512C2, kern512C3, kern512C4, kern512C5, kern512C6,
				kern512C7, kern512C8, kern512C9, kern512C10, kern512C11, kern512C12},
			epi: epi512, epiW: 16,
			siluGrad: siluGrad512, colSum: colSum512, sumW: 8,
			adam: adamZMM, sumSq: sumSquares512, sqW: 32,
			dotRows: dotRowsTab,
			dot:     [dotMaxN]microKernel{nil, dot512N1R4, dot512N2R4, dot512N3R3, dot512N4R2, dot512N5R1, dot512N6R1, dot512N7R1},
			dot1:    [dotMaxN]microKernel{nil, dot512N1R1, dot512N2R1, dot512N3R1, dot512N4R1, dot512N5R1, dot512N6R1, dot512N7R1},
		})
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, &kernelImpl{
			name: "avx2", mr: mr256, nr: nr256, kc: 256, nc: 512,
			rowA: []microKernel{kern256R1, kern256R2, kern256R3, kern256R4, kern256R5, kern256R6},
			colA: []microKernel{kern256C1, kern256C2, kern256C3, kern256C4, kern256C5, kern256C6},
			epi:  epi256, epiW: 8,
			siluGrad: siluGrad256, colSum: colSum256, sumW: 4,
			adam: adamYMM, sumSq: sumSquares256, sqW: 16,
			dotRows: dotRowsTab,
			dot:     [dotMaxN]microKernel{nil, dot256N1R4, dot256N2R4, dot256N3R3, dot256N4R2, dot256N5R1, dot256N6R1, dot256N7R1},
			dot1:    [dotMaxN]microKernel{nil, dot256N1R1, dot256N2R1, dot256N3R1, dot256N4R1, dot256N5R1, dot256N6R1, dot256N7R1},
		})
	}
	return ks
}

// fmaProbe runs the FMA loops of the generated assembly; see clock_test.go.
func fmaProbe(kind string, n int) bool {
	switch kind {
	case "latency":
		fmaLatency(n)
	case "zmm":
		if !cpu.X86.HasAVX512F {
			return false
		}
		fmaThroughput512(n)
	case "ymm":
		if !(cpu.X86.HasAVX2 && cpu.X86.HasFMA) {
			return false
		}
		fmaThroughput256(n)
	default:
		return false
	}
	return true
}

var hasAVX = cpu.X86.HasAVX

// packBTAsm packs the first 8*(kb/8) rows of a full transposed B panel
// (NR columns, NR a multiple of 8) with packBT8 and returns how many rows
// it packed; the caller packs the rest.
func packBTAsm(dst []float32, NR int, b []float32, ldb, j0, p0, kb int) int {
	kb8 := kb / 8
	if !hasAVX || NR%8 != 0 || kb8 == 0 {
		return 0
	}
	_ = dst[kb8*8*NR-1]
	_ = b[(j0+NR-1)*ldb+p0+kb8*8-1]
	packBT8(&dst[0], 4*NR, &b[j0*ldb+p0], 4*ldb, NR/8, kb8)
	return kb8 * 8
}

// adamKernel runs the assembly Adam step of kind k (adamZMM or adamYMM).
func adamKernel(k adamKind, n int, p, g, m, v, ema *float32, kc *[adCount]float32) {
	if k == adamZMM {
		adam512(n, p, g, m, v, ema, &kc[0])
	} else {
		adam256(n, p, g, m, v, ema, &kc[0])
	}
}
