package gpu

import (
	"fmt"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// CPU is the pure-Go backend: buffers are Go slices, ops run synchronously
// on the calling goroutine or split over a fixed pool of workers. It is the
// reference the CUDA backend is checked against.
type CPU struct {
	pool     *workPool
	threads  int
	epilogue sgemm.Epilogue // reused so that Linear allocates nothing

	// Each op's task lives here, so that handing it to the pool allocates
	// nothing (see parallel.go).
	biasAct  biasActTask
	embed    embedTask
	mse      mseTask
	sumSq    sumSqTask
	adam     adamTask
	target   targetTask
	draw     drawTask
	normal   normalTask
	axpy     axpyTask
	lincomb  linCombTask
	errNorm  errNormTask
	rowDot   rowDotTask
	partials []float64 // one partial sum per reduceChunk elements
	// the bias gradient's partial column sums, one row per row chunk
	biasPartials []float64
	img          imageState // the image ops' tasks and scratch (cpu_image.go)

	// the last path built from a Spec, so that ops do not rebuild (and
	// allocate) it on every call
	lastSpec flow.Spec
	lastPath flow.Path
}

// NewCPU returns a CPU backend using threads workers (<= 0: GOMAXPROCS).
func NewCPU(threads int) *CPU {
	if threads <= 0 {
		threads = defaultThreads()
	}
	return &CPU{pool: newWorkPool(threads), threads: threads}
}

type cpuBuffer struct{ d []float32 }

func (b *cpuBuffer) Len() int { return len(b.d) }

func (b *cpuBuffer) Slice(off, n int) Buffer {
	if off < 0 || n < 0 || off+n > len(b.d) {
		panic(fmt.Sprintf("gpu: slice [%d, %d) of a buffer of %d", off, off+n, len(b.d)))
	}
	return &cpuBuffer{b.d[off : off+n : off+n]}
}

// host returns the slice behind a CPU buffer (nil for a nil Buffer).
func host(b Buffer) []float32 {
	if b == nil {
		return nil
	}
	cb, ok := b.(*cpuBuffer)
	if !ok {
		panic(fmt.Sprintf("gpu: a %T passed to the CPU backend", b))
	}
	return cb.d
}

// HostData exposes the storage of a CPU backend buffer, for host-side code
// (closed-form fields, tests) that would otherwise copy; ok is false for
// buffers of other backends.
func HostData(b Buffer) (data []float32, ok bool) {
	cb, ok := b.(*cpuBuffer)
	if !ok {
		return nil, false
	}
	return cb.d, true
}

func (c *CPU) Info() DeviceInfo {
	return DeviceInfo{Backend: "cpu", Name: cpuName(), Threads: c.threads}
}

func (c *CPU) Alloc(n int) Buffer {
	if n < 0 {
		panic("gpu: negative allocation")
	}
	return &cpuBuffer{make([]float32, n)}
}

func (c *CPU) Free(Buffer)  {}
func (c *CPU) Sync() error  { return nil }
func (c *CPU) Close() error { c.pool.close(); return nil }
func (c *CPU) Threads() int { return c.threads }
func checkLen(name string, b []float32, n int) {
	if len(b) < n {
		panic(fmt.Sprintf("gpu: %s has %d elements, need %d", name, len(b), n))
	}
}

func (c *CPU) Upload(dst Buffer, src []float32) {
	d := host(dst)
	checkLen("upload destination", d, len(src))
	copy(d, src)
}

func (c *CPU) Download(dst []float32, src Buffer) {
	s := host(src)
	checkLen("download source", s, len(dst))
	copy(dst, s)
}

func (c *CPU) Copy(dst, src Buffer) {
	d, s := host(dst), host(src)
	checkLen("copy destination", d, len(s))
	copy(d, s)
}

func (c *CPU) Fill(dst Buffer, v float32) {
	d := host(dst)
	for i := range d {
		d[i] = v
	}
}

func (c *CPU) Gemm(transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, cb Buffer, ldc int) {
	sgemm.Gemm(transA, transB, m, n, k, alpha, host(a), lda, host(b), ldb, beta, host(cb), ldc)
}

// Linear runs as one product with the bias, the pre-activation copy and
// the activation fused into its epilogue, applied tile by tile while the
// tile is in cache.
func (c *CPU) Linear(rows, in, out int, x Buffer, ldx int, w, bias Buffer, act Act, pre, y Buffer) {
	ep := &c.epilogue
	*ep = sgemm.Epilogue{Bias: host(bias), Act: sgemm.Activation(act), Pre: host(pre), LdPre: out}
	sgemm.GemmEpilogue(false, true, rows, out, in, 1, host(x), ldx, host(w), in, 0, host(y), out, ep)
}
