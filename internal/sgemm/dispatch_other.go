//go:build noasm || !amd64

package sgemm

// hasAsm reports whether this build carries the assembly kernels.
const hasAsm = false

// archKernels returns no kernels: this build has only the generic one.
func archKernels() []*kernelImpl { return nil }

// fmaProbe is unavailable without assembly.
func fmaProbe(kind string, n int) bool { return false }

// packBTAsm is unavailable without assembly: it packs nothing.
func packBTAsm(dst []float32, NR int, b []float32, ldb, j0, p0, kb int) int { return 0 }

// adamKernel is unavailable without assembly (no kernel has an adamKind).
func adamKernel(k adamKind, n int, p, g, m, v, ema *float32, kc *[adCount]float32) {
	panic("sgemm: no assembly Adam in this build")
}

// The group-norm kernels are unavailable without assembly (no kernel set
// reports them).
func normSumsKernel(n int, x *float32, out *[2]float64) { panic("sgemm: no norm kernels") }

func normDotSumsKernel(n int, dy, x *float32, out *[2]float64) { panic("sgemm: no norm kernels") }

func normApplyKernel(n int, x, y *float32, k *[4]float32) { panic("sgemm: no norm kernels") }

func normBackApplyKernel(n int, dy, x, dx *float32, k *[4]float32) {
	panic("sgemm: no norm kernels")
}

func siluToKernel(n int, x, y *float32) { panic("sgemm: no SiLU kernel") }

func axpyKernel(n int, a float32, x, y *float32) { panic("sgemm: no axpy kernel") }
