package gpu

import "fmt"

// CPU is the pure-Go backend: buffers are Go slices, ops run synchronously
// on the calling goroutine or split over a fixed pool of workers. It is the
// reference the device backend is checked against.
//
// Each op checks its arguments (its family's check), fills its task in
// the backend and hands it to the pool (parallel.go): the tasks and
// scratch of family F live in F's state below, defined in cpu_F.go, so
// that a call allocates nothing. Reductions sum fixed chunks into float64
// partials added in order, so no result depends on the thread count.
type CPU struct {
	pool    *workPool
	threads int
	paths   pathCache // the Draw ops' path
	prec    Precision // SetPrecision's: fp32 or tf32x3, both computed in float32
	// partials holds the float64 partial sums of a chunked reduction.
	partials []float64

	products  productsState
	dense     denseState
	optimizer optimizerState
	draw      drawState
	random    randomState
	ode       odeState
	conv      convState
	norm      normState
	layout    layoutState
	attention attentionState
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

// reduceChunk is the length of the chunks a reduction sums into one
// float64 partial each.
const reduceChunk = 4096

// reduce runs a chunked reduction task over n elements and returns the
// ordered float64 sum of its partials.
func (c *CPU) reduce(t interface {
	task
	setPartials([]float64)
}, n, work int) float64 {
	chunks := (n + reduceChunk - 1) / reduceChunk
	if cap(c.partials) < chunks {
		c.partials = make([]float64, chunks)
	}
	parts := c.partials[:chunks]
	t.setPartials(parts)
	c.pool.do(t, chunks, work*reduceChunk)
	sum := 0.0
	for _, v := range parts {
		sum += v
	}
	return sum
}

// scratch returns (*buf)[:n], grown when needed.
func scratch(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	return (*buf)[:n]
}

// sum64 is sum x in float64. Like the other float64 sums of the CPU backend
// (cpu_norm.go) it runs four interleaved accumulators (one add chain would
// wait on the adder's latency) combined in a fixed order: the result
// depends on the data only.
func sum64(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		s0 += float64(v[0])
		s1 += float64(v[1])
		s2 += float64(v[2])
		s3 += float64(v[3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
	}
	return (s0 + s1) + (s2 + s3)
}
