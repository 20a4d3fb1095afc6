package sgemm

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"unsafe"
)

// microKernel computes an mr x nr tile (mr and nr fixed per function):
//
//	C = alpha * A*B + beta*C      (C not read when beta == 0)
//
// over kc steps. B(p, j) is at b + p*sb + 4j (sb in bytes). A(i, p) is at
// a + 4i + p*sa for the column-panel variant (packed panel, or a transposed
// A read in place) and at a + i*sa + 4p for the row variant (row-major A
// read in place). C(i, j) is at c + i*ldc + 4j, ldc in bytes.
type microKernel func(kc int, a *float32, sa int, b *float32, sb int, c *float32, ldc int, alpha, beta float32)

// kernelImpl is one instruction-set implementation: micro-kernels for every
// row count 1..mr in both A layouts, blocking sizes and the epilogue.
type kernelImpl struct {
	name   string
	mr, nr int // register tile
	kc, nc int // cache blocks: kc x nc of B stays in L2, kc x mr of A in L1
	rowA   []microKernel
	colA   []microKernel
	// epi applies the epilogue to rows x n floats (strides in bytes), n a
	// multiple of epiW; nil means the generic Go epilogue.
	epi  func(rows, n int, c *float32, ldc int, bias, pre *float32, ldpre int, flags int)
	epiW int
	// siluGrad sets dz = dy * silu'(z) over n floats, n a multiple of
	// epiW; colSum adds float64 column sums of a block (cols a multiple of
	// sumW, ldx in bytes) to acc. nil: the Go loops of elementwise.go.
	siluGrad func(n int, dy, z, dz *float32)
	colSum   func(rows, cols int, x *float32, ldx int, acc *float64)
	sumW     int
	// adam: one Adam step over n parameters (n a multiple of epiW), run
	// by adamKernel (a direct call, so that the constants stay on the
	// stack); sumSq: float64 sum of squares of n floats (n a multiple of
	// sqW).
	adam  adamKind
	sumSq func(n int, x *float32) float64
	sqW   int
	// Dot kernels for n < dotMaxN columns with A and B both contiguous
	// along k: dot[n] computes dotRows[n] rows, dot1[n] one row (same
	// argument meaning as microKernel with sa = lda, sb = ldb in bytes).
	// dot[n] == nil: no dot kernels.
	dotRows [dotMaxN]int
	dot     [dotMaxN]microKernel
	dot1    [dotMaxN]microKernel
	// conv: the direct convolution kernels (conv.go); nil: none. norm:
	// the group-norm kernels (norm.go).
	conv *convKernels
	norm bool
}

// dotMaxN bounds the n of the dot path (asm/gen.go dotMaxN).
const dotMaxN = 8

var (
	current atomic.Pointer[kernelImpl]
	// available lists the kernels this CPU can run, fastest first by
	// measurement on the reference machine (see doc.go).
	available []*kernelImpl
)

// envKernelErr is FMGPU_SGEMM_KERNEL naming no kernel this CPU runs.
var envKernelErr error

func init() {
	available = append(archKernels(), genericKernelImpl())
	k := available[0]
	if name := os.Getenv(EnvKernel); name != "" {
		envKernelErr = fmt.Errorf("%s=%q: this CPU runs the kernels %s", EnvKernel, name, strings.Join(Kernels(), ", "))
		for _, c := range available {
			if c.name == name {
				k, envKernelErr = c, nil
			}
		}
	}
	current.Store(k)
}

// EnvKernel forces a kernel by name (tests and benchmarks).
const EnvKernel = "FMGPU_SGEMM_KERNEL"

// EnvKernelError reports an EnvKernel that names no kernel of this CPU
// (the default kernel runs instead), for a command to refuse.
func EnvKernelError() error { return envKernelErr }

// Kernels returns the names of the kernels this CPU can run, the default
// first: a subset of "avx512", "avx2", "generic".
func Kernels() []string {
	s := make([]string, len(available))
	for i, k := range available {
		s[i] = k.name
	}
	return s
}

// Kernel returns the name of the kernel in use.
func Kernel() string { return current.Load().name }

// SetKernel selects the kernel used by later calls: "avx512", "avx2" or
// "generic" ("" restores the default). It is meant for tests and
// benchmarks; the environment variable FMGPU_SGEMM_KERNEL does the same at
// start-up. It returns an error when this CPU or build lacks the kernel.
func SetKernel(name string) error {
	if name == "" {
		current.Store(available[0])
		return nil
	}
	for _, k := range available {
		if k.name == name {
			current.Store(k)
			return nil
		}
	}
	return fmt.Errorf("sgemm: kernel %q not available (have %v)", name, Kernels())
}

// Generic kernel: plain Go, 4 x 16 tile.
const (
	mrGeneric = 4
	nrGeneric = 16
)

func genericKernelImpl() *kernelImpl {
	k := &kernelImpl{name: "generic", mr: mrGeneric, nr: nrGeneric, kc: 256, nc: 512}
	for mr := 1; mr <= mrGeneric; mr++ {
		mr := mr
		k.rowA = append(k.rowA, func(kc int, a *float32, sa int, b *float32, sb int, c *float32, ldc int, alpha, beta float32) {
			genericKernel(mr, sa, 4, kc, a, b, sb, c, ldc, alpha, beta)
		})
		k.colA = append(k.colA, func(kc int, a *float32, sa int, b *float32, sb int, c *float32, ldc int, alpha, beta float32) {
			genericKernel(mr, 4, sa, kc, a, b, sb, c, ldc, alpha, beta)
		})
	}
	return k
}

func at(p *float32, off int) *float32 { return (*float32)(unsafe.Add(unsafe.Pointer(p), off)) }

// genericKernel is the pure-Go micro-kernel: A(i, p) at a + i*ri + p*rp bytes.
func genericKernel(mr, ri, rp, kc int, a, b *float32, sb int, c *float32, ldc int, alpha, beta float32) {
	var acc [mrGeneric][nrGeneric]float32
	for p := 0; p < kc; p++ {
		bp := (*[nrGeneric]float32)(unsafe.Pointer(at(b, p*sb)))
		for i := 0; i < mr; i++ {
			av := *at(a, i*ri+p*rp)
			r := &acc[i]
			for j := range r {
				r[j] += av * bp[j]
			}
		}
	}
	for i := 0; i < mr; i++ {
		cr := (*[nrGeneric]float32)(unsafe.Pointer(at(c, i*ldc)))
		if beta == 0 {
			for j := range cr {
				cr[j] = alpha * acc[i][j]
			}
		} else {
			for j := range cr {
				cr[j] = alpha*acc[i][j] + beta*cr[j]
			}
		}
	}
}
