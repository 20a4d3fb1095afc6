package gpu

import (
	"errors"
	"fmt"
	"math"
)

// DeviceBackend is the CUDA backend's logic: every Backend op as launches
// of the kernels in kernels/*.cu (grid shapes, argument order, views as a
// device pointer plus an offset, scratch space for reductions),
// written once over a launcher (device_launcher.go). NewCUDA runs it on a
// GPU through the CUDA driver, loaded at run time; the kernelsim build
// runs the same code, with the same kernels compiled for the host, on the
// CPU (NewKernelSim), and tests run the CUDA launcher itself over a fake
// libcuda made of that simulator: that is how it is tested without a GPU.
//
// This file holds what every op shares: buffers, the reduction scratch and
// launching. The ops of family F are in device_F.go, each calling its
// family's argument check first, as the CPU backend does.
//
// Reductions are deterministic and take one launch: each block writes one
// float64 partial sum over a fixed split of the input (the number of
// blocks depends on the length only, never on the device), and the last
// block to finish (the completion counters below) adds the partials in a
// fixed tree. No float atomics: the same inputs give the same bits on
// every run and every GPU.
//
// The kernels index with int: a buffer holds at most maxDeviceElems
// elements (a larger Alloc fails as one beyond the device's memory does),
// so every element count of a call fits; sizes that no buffer bounds (the
// row stride of a one-row matrix, a convolution's stride) must fit in an
// int32 too, or describing the launch panics.
//
// Like the CPU backend, a DeviceBackend serves one goroutine at a time.
type DeviceBackend struct {
	l    launcher
	err  error
	live map[*devAlloc]struct{}
	// scratch holds reduction partials; every op is ordered in one stream,
	// so one buffer serves them all.
	scratch      devPtr
	scratchBytes int
	// counters are the completion counters of the one-pass reductions
	// (common.cuh, last_block_of): zero between launches, each launch
	// setting back to 0 those it counted on, so all launches share them.
	counters  devPtr
	nCounters int
	launches  int64
	// graphLaunches counts graph replays; capturing is true while Capture
	// records; gen counts the frees and scratch moves that make a recorded
	// graph stale.
	graphLaunches int64
	capturing     bool
	gen           uint64
	// queued: kernels were launched since the last call that waited for
	// them (sync, download). A launcher reports a kernel's failure at its
	// next call, whatever that call is.
	queued bool
	closed bool
	paths  pathCache  // the Draw ops' path
	prec   Precision  // the products' (SetPrecision): which kernels Gemm and the Linear ops launch
	kc     kernelCall // the call being described (ops run one at a time)
}

// maxDeviceElems is the most elements a device buffer holds: the kernels'
// element counts and offsets are int.
const maxDeviceElems = math.MaxInt32

// devAlloc is one device allocation; buffers and their views point to it.
type devAlloc struct {
	ptr   devPtr
	n     int
	freed bool
}

// devBuffer is a Buffer of a DeviceBackend: elements [off, off+n) of an
// allocation.
type devBuffer struct {
	d      *DeviceBackend
	a      *devAlloc
	off, n int
}

func (b *devBuffer) Len() int { return b.n }

func (b *devBuffer) Slice(off, n int) Buffer {
	if off < 0 || n < 0 || off+n > b.n {
		panic(fmt.Sprintf("gpu: slice [%d, %d) of a buffer of %d", off, off+n, b.n))
	}
	return &devBuffer{d: b.d, a: b.a, off: b.off + off, n: n}
}

func newDeviceBackend(l launcher) *DeviceBackend {
	return &DeviceBackend{l: l, live: map[*devAlloc]struct{}{}}
}

// Launches is the number of kernels launched so far (fmgpu bench divides
// it by the steps it ran).
func (d *DeviceBackend) Launches() int64 { return d.launches }

// fail records the first error; later ops are skipped until Sync.
func (d *DeviceBackend) fail(what string, err error) {
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("gpu: %s: %w", what, err)
	}
}

// failAt records the error of a launcher call (what) that may also report
// the failure of a kernel queued before it.
func (d *DeviceBackend) failAt(what string, err error) {
	if err != nil && d.queued {
		what += " (or a kernel queued before it)"
	}
	d.fail(what, err)
}

// buf checks that b is a live buffer of this backend; nil stays nil.
func (d *DeviceBackend) buf(b Buffer) *devBuffer {
	db := d.bufAny(b)
	if db == nil {
		return nil
	}
	if db.d != d {
		panic("gpu: a buffer of another device backend")
	}
	if db.a.freed {
		panic("gpu: use of a freed buffer")
	}
	return db
}

// bufAny is buf without the ownership and freed checks.
func (d *DeviceBackend) bufAny(b Buffer) *devBuffer {
	if b == nil {
		return nil
	}
	db, ok := b.(*devBuffer)
	if !ok {
		panic(fmt.Sprintf("gpu: a %T passed to the device backend", b))
	}
	return db
}

// ptr is the device address of b's first element (0 for nil).
func (d *DeviceBackend) ptr(b Buffer) devPtr {
	db := d.buf(b)
	if db == nil {
		return 0
	}
	return db.a.ptr + devPtr(4*db.off)
}

// ptrAt is the device address of element off of b.
func (d *DeviceBackend) ptrAt(b Buffer, off int) devPtr {
	if off == 0 {
		return d.ptr(b)
	}
	return d.ptr(b) + devPtr(4*off)
}

// usable reports whether an op on b may touch the device: not after an
// error, and not on an allocation that failed.
func (d *DeviceBackend) usable(bs ...Buffer) bool {
	if d.err != nil {
		return false
	}
	for _, b := range bs {
		if db := d.buf(b); db != nil && db.n > 0 && db.a.ptr == 0 {
			d.fail("use of a buffer whose allocation failed", errors.New("no device memory"))
			return false
		}
	}
	return true
}

func (d *DeviceBackend) launch(k *kernelCall) {
	if d.err != nil {
		return
	}
	if d.closed {
		panic("gpu: device backend used after Close")
	}
	d.launches++
	d.queued = true
	if err := d.l.launch(k); err != nil {
		d.fail(fmt.Sprintf("launch %s grid (%d,%d,%d) block (%d,%d,%d) args (%s)", k.name,
			k.grid.x, k.grid.y, k.grid.z, k.block.x, k.block.y, k.block.z, k.signature()), err)
	}
}

// call starts describing a kernel call in d's one call record (launchers
// copy what they keep, so describing calls allocates nothing).
func (d *DeviceBackend) call(name string, grid, block dim3) *kernelCall {
	d.kc.name, d.kc.grid, d.kc.block, d.kc.shared, d.kc.n = name, grid, block, 0, 0
	return &d.kc
}

// Launch shapes. Elementwise kernels use grid-stride loops over at most
// maxElemBlocks blocks of elemThreads threads.
const (
	elemThreads   = 256
	maxElemBlocks = 4096
	// redThreads and redPerBlock: the first pass of a reduction gives each
	// block of redThreads threads at least redPerBlock elements, over at
	// most maxRedBlocks blocks (the final pass sums those partials in one
	// block).
	redThreads   = 256
	redPerBlock  = 2048
	maxRedBlocks = 1024
)

// blocksVec is the grid of the kernels that take FM_VEC (common.cuh)
// elements a thread per pass.
func blocksVec(n int) dim3 { return blocks1D((n + fmVec - 1) / fmVec) }

// fmVec is common.cuh's FM_VEC.
const fmVec = 4

func blocks1D(n int) dim3 {
	b := (n + elemThreads - 1) / elemThreads
	return dim3{uint32(min(max(b, 1), maxElemBlocks)), 1, 1}
}

var elemBlock = dim3{elemThreads, 1, 1}

func redBlocks(n int) int { return min(max((n+redPerBlock-1)/redPerBlock, 1), maxRedBlocks) }

// scratchPtr returns scratch space of at least bytes.
func (d *DeviceBackend) scratchPtr(bytes int) devPtr {
	if d.err != nil || bytes <= d.scratchBytes {
		return d.scratch
	}
	if !d.outsideCapture("grow the scratch buffer") {
		return 0
	}
	d.gen++
	if d.scratch != 0 {
		// Earlier launches may still read it.
		d.fail("sync before growing the scratch buffer", d.l.sync())
		d.queued = false
		d.failAt("free scratch", d.l.free(d.scratch))
		d.scratch, d.scratchBytes = 0, 0
	}
	if d.err != nil {
		return 0
	}
	bytes = max(bytes, 64<<10)
	p, err := d.l.alloc(bytes)
	if p != 0 {
		// kept even when err reports an earlier failure (see Alloc)
		d.scratch, d.scratchBytes = p, bytes
	}
	if err != nil {
		d.failAlloc(fmt.Sprintf("%d bytes of scratch", bytes), p, err)
		return 0
	}
	return p
}

// failAlloc records the error of an allocation (of what) that returned p.
// A launcher reports a queued kernel's failure at its next call: when the
// allocation itself succeeded (p != 0) the error is that kernel's, and the
// caller keeps p so that Close frees it.
func (d *DeviceBackend) failAlloc(what string, p devPtr, err error) {
	if p != 0 {
		d.fail("a kernel queued before allocating "+what, err)
		return
	}
	d.failAt("allocate "+what, err)
}

// countersPtr returns n completion counters, all 0.
func (d *DeviceBackend) countersPtr(n int) devPtr {
	if d.err != nil || n <= d.nCounters {
		return d.counters
	}
	if !d.outsideCapture("grow the reduction counters") {
		return 0
	}
	d.gen++
	if d.counters != 0 {
		d.fail("sync before growing the counters", d.l.sync())
		d.queued = false
		d.failAt("free counters", d.l.free(d.counters))
		d.counters, d.nCounters = 0, 0
	}
	if d.err != nil {
		return 0
	}
	n = max(n, 4096)
	p, err := d.l.alloc(4 * n)
	if p != 0 {
		d.counters, d.nCounters = p, n
	}
	if err != nil {
		d.failAlloc(fmt.Sprintf("%d reduction counters", n), p, err)
		return 0
	}
	d.failAt("clear the reduction counters", d.l.memset32(p, 0, n))
	return p
}

// reduceArgs appends a one-pass reduction's partials (nb doubles in the
// scratch) and its completion counter.
func (d *DeviceBackend) reduceArgs(k *kernelCall, nb int) *kernelCall {
	return k.ptr(d.scratchPtr(8 * nb)).ptr(d.countersPtr(1))
}
