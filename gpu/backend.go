// Package gpu holds the Backend interface through which every tensor
// operation of fmgpu runs, the pure-Go CPU backend (always built), and the
// device backend that runs the CUDA kernels of package kernels (on a GPU in
// the cuda build, on the host in the kernelsim build). Every backend
// implements the same operations on float32 buffers, row-major, and they
// must agree op by op (gpu/gputest).
//
// The operations come in families, one name each from its interface to its
// tests (docs/design.md): for a family F, gpu/F.go holds the interface
// group, its shape types, the definition of each op by its math and the
// op's argument check; cpu_F.go the CPU backend's implementation;
// device_F.go the device backend's launches; kernels/F.cu the kernels; and
// gpu/gputest/F.go the conformance tests and benchmarks. Backend is the
// union of the families.
//
// Operations are queued, not necessarily finished, when a method returns;
// Download and Sync wait. Errors are sticky: an op that fails records the
// first error, later ops are skipped, and Sync returns it. Invalid
// arguments (lengths, shapes) are programming errors and panic: each op's
// arguments go through one check, in its family's file, that every backend
// calls first, so that every backend accepts the same calls. A nil Buffer
// holds no elements: it may stand for any operand the op does not touch.
package gpu

// Buffer is a float32 array owned by a Backend. A view made with Slice
// shares storage with its parent; it must not outlive the parent's Free.
// Implementations are pointer types, so Buffers compare with == (the same
// view object), which lets callers cache views of a buffer they are given.
type Buffer interface {
	Len() int
	// Slice returns elements [off, off+n) as a Buffer sharing storage.
	Slice(off, n int) Buffer
}

// DeviceInfo is what a backend reports about its device.
type DeviceInfo struct {
	Backend           string // "cpu", "cuda", "kernelsim"
	Name              string
	ComputeCapability string
	MemoryBytes       int64
	Driver            string
	Threads           int
	// Device figures for rates against peak (CUDA only; 0 when unknown).
	Multiprocessors int
	ClockKHz        int // SM clock
	MemoryClockKHz  int
	MemoryBusBits   int
}

// Backend is the set of operations fmgpu's trainer, models and samplers run
// on: the union of the op families. All matrices are float32, row-major,
// with explicit row strides (ld) where an operation may work on a
// sub-matrix.
type Backend interface {
	Memory
	Products
	Dense
	Optimizer
	Draw
	Random
	ODE
	Conv
	Norm
	Layout
	Attention
}
