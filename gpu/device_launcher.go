package gpu

import (
	"fmt"
	"math"
)

// devPtr is a device address: a CUdeviceptr through the CUDA driver, the address
// of host memory standing in for device memory in the kernelsim build.
type devPtr uint64

// dim3 is a CUDA grid or block shape.
type dim3 struct{ x, y, z uint32 }

// maxKernelArgs bounds the arguments of one kernel (lin_comb_update_kernel
// and error_norm_reduce_kernel take the most: 7 stage pointers and 7
// coefficients plus their other operands).
const maxKernelArgs = 32

// kernelCall is one kernel launch as the device backend describes it to a
// launcher: the kernel's name in kernels/*.cu, its grid, block and dynamic
// shared memory, and its arguments, each in an 8-byte slot (the driver
// reads each parameter's size, from its kernel's signature, at the slot's
// address; a 4-byte int or float sits in the slot's low bytes, which is
// where a little-endian kernel reads it)
// with a signature letter per argument that the kernelsim harness checks
// against the kernel's C++ parameter types.
type kernelCall struct {
	name   string
	grid   dim3
	block  dim3
	shared int
	n      int
	slots  [maxKernelArgs]uint64
	sig    [maxKernelArgs]byte
}

func (k *kernelCall) arg(bits uint64, sig byte) *kernelCall {
	if k.n == maxKernelArgs {
		panic(fmt.Sprintf("gpu: %s: more than %d kernel arguments", k.name, maxKernelArgs))
	}
	k.slots[k.n], k.sig[k.n] = bits, sig
	k.n++
	return k
}

// ptr appends a pointer argument (T* in the kernel).
func (k *kernelCall) ptr(p devPtr) *kernelCall { return k.arg(uint64(p), 'p') }

// i32 appends an int argument; v must fit in int32.
func (k *kernelCall) i32(v int) *kernelCall {
	if v < math.MinInt32 || v > math.MaxInt32 {
		panic(fmt.Sprintf("gpu: %s: argument %d does not fit the kernel's int", k.name, v))
	}
	return k.arg(uint64(uint32(int32(v))), 'i')
}

// f32 appends a float argument.
func (k *kernelCall) f32(v float32) *kernelCall { return k.arg(uint64(math.Float32bits(v)), 'f') }

// f64 appends a double argument.
func (k *kernelCall) f64(v float64) *kernelCall { return k.arg(math.Float64bits(v), 'd') }

// smem sets the launch's dynamic shared memory in bytes. Above
// maxDefaultSmem the launchers first raise the kernel's maximum (the
// driver's CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, once per
// kernel), as a GPU refuses the launch otherwise.
func (k *kernelCall) smem(bytes int) *kernelCall {
	k.shared = bytes
	return k
}

// maxDefaultSmem is the dynamic shared memory a kernel may use without the
// attribute (48 KiB, less its static shared memory, on every GPU).
const maxDefaultSmem = 48 << 10

// u32 appends an unsigned int argument.
func (k *kernelCall) u32(v uint32) *kernelCall { return k.arg(uint64(v), 'u') }

// u64 appends an unsigned long long argument.
func (k *kernelCall) u64(v uint64) *kernelCall { return k.arg(v, 'L') }

// signature is the argument letters, for the kernelsim check and errors.
func (k *kernelCall) signature() string { return string(k.sig[:k.n]) }

// launcher is all the device backend needs of a device: memory, copies and
// kernel launches, in one stream (every call is ordered after the previous
// ones). cuda.go implements it with the CUDA driver loaded at run time (a
// real GPU, or the fake libcuda in tests), kernelsim.go (build tag
// kernelsim) with the host-compiled kernels called directly.
// Errors of asynchronous work may surface at a later call, whatever that
// call is: alloc then returns the new allocation together with such an
// error, and the device backend keeps it.
type launcher interface {
	info() DeviceInfo
	alloc(bytes int) (devPtr, error)
	free(p devPtr) error
	// upload copies src to dst; the caller may reuse src when it returns.
	upload(dst devPtr, src []float32) error
	// download waits for queued work, then copies src to dst.
	download(dst []float32, src devPtr) error
	copyDtoD(dst, src devPtr, bytes int) error
	memset32(dst devPtr, v uint32, n int) error
	launch(k *kernelCall) error
	// sync waits for queued work.
	sync() error
	close() error
}
