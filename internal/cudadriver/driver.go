// Package cudadriver binds the CUDA driver API (libcuda.so.1) at run time,
// without cgo: the library is opened with dlopen when a program first asks
// for a GPU, so one fmgpu binary runs on every Linux machine, uses the GPU
// where an NVIDIA driver is installed, and never fails to start where none
// is (the way PyTorch initialises CUDA lazily, and ollama discovers GPUs
// before it loads a backend).
//
// Only the entry points fmgpu uses are bound. Each returns an *Error naming
// the entry point and the driver's CUresult. The driver API is backward
// compatible: the symbols bound here are those of CUDA 11 and later, and
// the kernels (fmgpu.fatbin) carry SASS for sm_80/sm_90 and PTX that newer
// drivers compile.
//
// A CUDA context is current on one OS thread: callers run every call that
// needs the context on one goroutine locked to its thread
// (runtime.LockOSThread), as gpu's driver launcher does.
package cudadriver

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// LibraryEnv names the environment variable that overrides the path of the
// driver library (tests point it at the simulator's fake libcuda).
const LibraryEnv = "FMGPU_LIBCUDA"

// DefaultLibrary is the driver library's soname, which the NVIDIA driver
// installs on every Linux distribution.
const DefaultLibrary = "libcuda.so.1"

// Result is a CUresult.
type Result int32

// CUresult values that fmgpu names in its messages.
const (
	Success               Result = 0
	ErrorInvalidValue     Result = 1
	ErrorOutOfMemory      Result = 2
	ErrorNotInitialized   Result = 3
	ErrorNoDevice         Result = 100
	ErrorInvalidDevice    Result = 101
	ErrorNoBinaryForGPU   Result = 209
	ErrorUnsupportedPTX   Result = 222
	ErrorNotFound         Result = 500
	ErrorNotReady         Result = 600
	ErrorInsufficientDrv  Result = 35
	ErrorSystemDrvMismtch Result = 803
	ErrorCompatNotSupp    Result = 804
)

// Error is a failed driver call.
type Error struct {
	Func string // the entry point, e.g. "cuInit"
	Code Result
	Name string // e.g. "CUDA_ERROR_NO_DEVICE", empty if the driver could not say
	Desc string // the driver's description
}

func (e *Error) Error() string {
	name := e.Name
	if name == "" {
		name = fmt.Sprintf("CUresult %d", e.Code)
	}
	if e.Desc != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Func, name, e.Desc)
	}
	return fmt.Sprintf("%s: %s", e.Func, name)
}

// Is lets errors.Is(err, cudadriver.ErrorNoDevice) match by code.
func (e *Error) Is(target error) bool {
	if t, ok := target.(Result); ok {
		return t == e.Code
	}
	return false
}

// Error makes a Result usable as an errors.Is target.
func (r Result) Error() string { return fmt.Sprintf("CUresult %d", int32(r)) }

// LoadError is returned when the driver library cannot be opened or lacks
// an entry point fmgpu needs.
type LoadError struct {
	Path string
	Err  error
}

func (e *LoadError) Error() string { return fmt.Sprintf("load %s: %v", e.Path, e.Err) }
func (e *LoadError) Unwrap() error { return e.Err }

// Handles of the driver's objects. They are opaque: values the driver
// gave, passed back as they came.
type (
	Device    int32
	Context   uintptr
	Module    uintptr
	Function  uintptr
	Stream    uintptr // 0 is the legacy default stream
	Event     uintptr
	Graph     uintptr
	GraphExec uintptr
	DevicePtr uint64
)

// Device attributes (CUdevice_attribute) fmgpu reads.
const (
	AttrMaxThreadsPerBlock        = 1
	AttrMaxSharedPerBlock         = 8
	AttrWarpSize                  = 10
	AttrMaxRegistersPerBlock      = 12
	AttrClockRateKHz              = 13
	AttrMultiprocessorCount       = 16
	AttrMemoryClockRateKHz        = 36
	AttrGlobalMemoryBusWidth      = 37
	AttrL2CacheSize               = 38
	AttrMaxThreadsPerSM           = 39
	AttrComputeCapabilityMajor    = 75
	AttrComputeCapabilityMinor    = 76
	AttrMaxSharedPerSM            = 81
	AttrMaxRegistersPerSM         = 82
	AttrMaxSharedPerBlockOptin    = 97
	AttrPageableMemoryAccess      = 88
	AttrCanUseHostPointerForRegMm = 91
)

// Function attributes (CUfunction_attribute).
const (
	FuncAttrMaxThreadsPerBlock     = 0
	FuncAttrSharedSizeBytes        = 1
	FuncAttrLocalSizeBytes         = 3
	FuncAttrNumRegs                = 4
	FuncAttrMaxDynamicSharedBytes  = 8
	FuncAttrPreferredSharedCarveot = 9
)

// Driver is an opened libcuda. Its methods may be called from any
// goroutine, but those that use a context must run on the thread where it
// is current.
type Driver struct {
	Path string
	lib  uintptr

	cuInit, cuDriverGetVersion, cuGetErrorName, cuGetErrorString                           uintptr
	cuDeviceGetCount, cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute, cuDeviceTotalMem uintptr
	cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease, cuCtxSetCurrent, cuCtxSynchronize uintptr
	cuModuleLoadData, cuModuleUnload, cuModuleGetFunction                                  uintptr
	cuFuncGetAttribute, cuFuncSetAttribute, cuLaunchKernel                                 uintptr
	cuMemAlloc, cuMemFree, cuMemGetInfo                                                    uintptr
	cuMemcpyHtoD, cuMemcpyDtoH, cuMemcpyDtoD, cuMemsetD32                                  uintptr
	cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemsetD32Async, cuMemcpyDtoDAsync              uintptr
	cuStreamCreate, cuStreamDestroy, cuStreamSynchronize                                   uintptr
	cuEventCreate, cuEventRecord, cuEventSynchronize, cuEventElapsedTime, cuEventDestroy   uintptr
	cuStreamBeginCapture, cuStreamEndCapture, cuGraphInstantiateWithFlags, cuGraphLaunch   uintptr
	cuGraphExecDestroy, cuGraphDestroy                                                     uintptr
	cuEventQuery, cuCtxGetCurrent                                                          uintptr
}

var (
	openMu  sync.Mutex
	opened  = map[string]*Driver{}
	openErr = map[string]error{}
)

// Open opens the driver library: path, or when path is empty the file named
// by FMGPU_LIBCUDA, else libcuda.so.1 from the loader's search path. A
// library is opened once per process; later calls return the same Driver
// (or the same error).
func Open(path string) (*Driver, error) {
	if path == "" {
		path = os.Getenv(LibraryEnv)
	}
	if path == "" {
		path = DefaultLibrary
	}
	openMu.Lock()
	defer openMu.Unlock()
	if d, ok := opened[path]; ok {
		return d, nil
	}
	if err, ok := openErr[path]; ok {
		return nil, err
	}
	d, err := open(path)
	if err != nil {
		openErr[path] = err
		return nil, err
	}
	opened[path] = d
	return d, nil
}

func open(path string) (*Driver, error) {
	if runtime.GOOS != "linux" {
		return nil, &LoadError{Path: path, Err: fmt.Errorf("the CUDA driver is loaded on Linux only (this is %s)", runtime.GOOS)}
	}
	lib, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, &LoadError{Path: path, Err: err}
	}
	d := &Driver{Path: path, lib: lib}
	required := []struct {
		p    *uintptr
		name string
	}{
		{&d.cuInit, "cuInit"},
		{&d.cuDriverGetVersion, "cuDriverGetVersion"},
		{&d.cuGetErrorName, "cuGetErrorName"},
		{&d.cuGetErrorString, "cuGetErrorString"},
		{&d.cuDeviceGetCount, "cuDeviceGetCount"},
		{&d.cuDeviceGet, "cuDeviceGet"},
		{&d.cuDeviceGetName, "cuDeviceGetName"},
		{&d.cuDeviceGetAttribute, "cuDeviceGetAttribute"},
		{&d.cuDeviceTotalMem, "cuDeviceTotalMem_v2"},
		{&d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"},
		{&d.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"},
		{&d.cuCtxSetCurrent, "cuCtxSetCurrent"},
		{&d.cuCtxSynchronize, "cuCtxSynchronize"},
		{&d.cuModuleLoadData, "cuModuleLoadData"},
		{&d.cuModuleUnload, "cuModuleUnload"},
		{&d.cuModuleGetFunction, "cuModuleGetFunction"},
		{&d.cuFuncGetAttribute, "cuFuncGetAttribute"},
		{&d.cuLaunchKernel, "cuLaunchKernel"},
		{&d.cuMemAlloc, "cuMemAlloc_v2"},
		{&d.cuMemFree, "cuMemFree_v2"},
		{&d.cuMemGetInfo, "cuMemGetInfo_v2"},
		{&d.cuMemcpyHtoD, "cuMemcpyHtoD_v2"},
		{&d.cuMemcpyDtoH, "cuMemcpyDtoH_v2"},
		{&d.cuMemcpyDtoD, "cuMemcpyDtoD_v2"},
		{&d.cuMemsetD32, "cuMemsetD32_v2"},
		{&d.cuStreamCreate, "cuStreamCreate"},
		{&d.cuStreamDestroy, "cuStreamDestroy_v2"},
		{&d.cuStreamSynchronize, "cuStreamSynchronize"},
		{&d.cuEventCreate, "cuEventCreate"},
		{&d.cuEventRecord, "cuEventRecord"},
		{&d.cuEventSynchronize, "cuEventSynchronize"},
		{&d.cuEventElapsedTime, "cuEventElapsedTime"},
		{&d.cuEventDestroy, "cuEventDestroy_v2"},
	}
	for _, s := range required {
		if *s.p, err = purego.Dlsym(lib, s.name); err != nil {
			return nil, &LoadError{Path: path, Err: fmt.Errorf("entry point %s missing (driver older than CUDA 11?): %v", s.name, err)}
		}
	}
	// Optional entry points: their methods return an error when absent.
	for _, s := range []struct {
		p    *uintptr
		name string
	}{
		{&d.cuFuncSetAttribute, "cuFuncSetAttribute"},
		{&d.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"},
		{&d.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2"},
		{&d.cuMemsetD32Async, "cuMemsetD32Async"},
		{&d.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2"},
		{&d.cuStreamBeginCapture, "cuStreamBeginCapture_v2"},
		{&d.cuStreamEndCapture, "cuStreamEndCapture"},
		{&d.cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags"},
		{&d.cuGraphLaunch, "cuGraphLaunch"},
		{&d.cuGraphExecDestroy, "cuGraphExecDestroy"},
		{&d.cuGraphDestroy, "cuGraphDestroy"},
		{&d.cuEventQuery, "cuEventQuery"},
		{&d.cuCtxGetCurrent, "cuCtxGetCurrent"},
	} {
		*s.p, _ = purego.Dlsym(lib, s.name)
	}
	return d, nil
}

// call invokes a driver entry point and turns its CUresult into an error.
// Like purego.SyscallN, it keeps the Go memory that uintptr(unsafe.Pointer)
// arguments reach alive and in place for the call.
//
//go:uintptrescapes
func (d *Driver) call(name string, fn uintptr, args ...uintptr) error {
	if fn == 0 {
		return &Error{Func: name, Code: ErrorNotFound, Name: "CUDA_ERROR_NOT_FOUND", Desc: "entry point not in " + d.Path}
	}
	r, _, _ := purego.SyscallN(fn, args...)
	if res := Result(int32(r)); res != Success {
		return d.errorOf(name, res)
	}
	return nil
}

// callValues is call with its arguments in a pooled array, so that the
// calls made on every step (a graph replay, the copies and fills) allocate
// nothing. An argument that is a Go pointer must point into the heap
// (which the collector does not move) and be kept alive by the caller
// past the call: the host side of the copies is, since it reaches the
// driver goroutine through a channel.
func (d *Driver) callValues(name string, fn uintptr, args ...uintptr) error {
	if fn == 0 {
		return &Error{Func: name, Code: ErrorNotFound, Name: "CUDA_ERROR_NOT_FOUND", Desc: "entry point not in " + d.Path}
	}
	a := valueArgs.Get().(*[15]uintptr)
	n := copy(a[:], args)
	r, _, _ := purego.SyscallN(fn, a[:n]...)
	valueArgs.Put(a)
	if res := Result(int32(r)); res != Success {
		return d.errorOf(name, res)
	}
	return nil
}

var valueArgs = sync.Pool{New: func() any { return new([15]uintptr) }}

func (d *Driver) errorOf(name string, res Result) *Error {
	e := &Error{Func: name, Code: res}
	var p *byte
	if r, _, _ := purego.SyscallN(d.cuGetErrorName, uintptr(res), uintptr(unsafe.Pointer(&p))); r == 0 {
		e.Name = goString(p)
	}
	p = nil
	if r, _, _ := purego.SyscallN(d.cuGetErrorString, uintptr(res), uintptr(unsafe.Pointer(&p))); r == 0 {
		e.Desc = goString(p)
	}
	return e
}

// goString copies a NUL-terminated C string (static storage of the driver).
func goString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// cString is s with a terminating NUL, in Go memory kept alive by the
// caller for the duration of the call.
func cString(s string) []byte { return append([]byte(s), 0) }

// Init is cuInit(0). It must succeed before any other call.
func (d *Driver) Init() error { return d.call("cuInit", d.cuInit, 0) }

// Version is the driver's CUDA version, 1000 major + 10 minor (13000 for
// CUDA 13.0).
func (d *Driver) Version() (int, error) {
	var v int32
	err := d.call("cuDriverGetVersion", d.cuDriverGetVersion, uintptr(unsafe.Pointer(&v)))
	return int(v), err
}

// DeviceCount is the number of devices the process may use (after
// CUDA_VISIBLE_DEVICES).
func (d *Driver) DeviceCount() (int, error) {
	var n int32
	err := d.call("cuDeviceGetCount", d.cuDeviceGetCount, uintptr(unsafe.Pointer(&n)))
	return int(n), err
}

// Device returns the handle of device ordinal.
func (d *Driver) Device(ordinal int) (Device, error) {
	var dev int32
	err := d.call("cuDeviceGet", d.cuDeviceGet, uintptr(unsafe.Pointer(&dev)), uintptr(ordinal))
	return Device(dev), err
}

// DeviceName is the device's product name.
func (d *Driver) DeviceName(dev Device) (string, error) {
	buf := make([]byte, 256)
	if err := d.call("cuDeviceGetName", d.cuDeviceGetName, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), uintptr(dev)); err != nil {
		return "", err
	}
	return goString(&buf[0]), nil
}

// DeviceAttribute reads one CUdevice_attribute.
func (d *Driver) DeviceAttribute(dev Device, attr int) (int, error) {
	var v int32
	err := d.call("cuDeviceGetAttribute", d.cuDeviceGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(attr), uintptr(dev))
	return int(v), err
}

// DeviceTotalMem is the device's memory in bytes.
func (d *Driver) DeviceTotalMem(dev Device) (int64, error) {
	var n uint64
	err := d.call("cuDeviceTotalMem_v2", d.cuDeviceTotalMem, uintptr(unsafe.Pointer(&n)), uintptr(dev))
	return int64(n), err
}

// PrimaryCtxRetain retains the device's primary context (the one the
// CUDA runtime, and so PyTorch, uses: sharing it costs no second context).
func (d *Driver) PrimaryCtxRetain(dev Device) (Context, error) {
	var c uintptr
	err := d.call("cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain, uintptr(unsafe.Pointer(&c)), uintptr(dev))
	return Context(c), err
}

// PrimaryCtxRelease releases a retain.
func (d *Driver) PrimaryCtxRelease(dev Device) error {
	return d.call("cuDevicePrimaryCtxRelease_v2", d.cuDevicePrimaryCtxRelease, uintptr(dev))
}

// CtxSetCurrent binds ctx to the calling OS thread.
func (d *Driver) CtxSetCurrent(ctx Context) error {
	return d.call("cuCtxSetCurrent", d.cuCtxSetCurrent, uintptr(ctx))
}

// CtxSynchronize waits for all work of the current context.
func (d *Driver) CtxSynchronize() error { return d.call("cuCtxSynchronize", d.cuCtxSynchronize) }

// ModuleLoadData loads a cubin, PTX or fatbin image into the current
// context.
func (d *Driver) ModuleLoadData(image []byte) (Module, error) {
	if len(image) == 0 {
		return 0, &Error{Func: "cuModuleLoadData", Code: ErrorInvalidValue, Name: "CUDA_ERROR_INVALID_VALUE", Desc: "empty image"}
	}
	var m uintptr
	err := d.call("cuModuleLoadData", d.cuModuleLoadData, uintptr(unsafe.Pointer(&m)), uintptr(unsafe.Pointer(&image[0])))
	runtime.KeepAlive(image)
	return Module(m), err
}

// ModuleUnload unloads m.
func (d *Driver) ModuleUnload(m Module) error {
	return d.call("cuModuleUnload", d.cuModuleUnload, uintptr(m))
}

// ModuleGetFunction looks up an extern "C" kernel of m by name.
func (d *Driver) ModuleGetFunction(m Module, name string) (Function, error) {
	var f uintptr
	cname := cString(name)
	err := d.call("cuModuleGetFunction", d.cuModuleGetFunction, uintptr(unsafe.Pointer(&f)), uintptr(m), uintptr(unsafe.Pointer(&cname[0])))
	runtime.KeepAlive(cname)
	if err != nil {
		err = fmt.Errorf("kernel %s: %w", name, err)
	}
	return Function(f), err
}

// FuncAttribute reads one CUfunction_attribute of f (registers, static
// shared memory, local memory...).
func (d *Driver) FuncAttribute(f Function, attr int) (int, error) {
	var v int32
	err := d.call("cuFuncGetAttribute", d.cuFuncGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(attr), uintptr(f))
	return int(v), err
}

// FuncSetAttribute sets one CUfunction_attribute of f (for example the
// dynamic shared memory limit above 48 KiB).
func (d *Driver) FuncSetAttribute(f Function, attr, value int) error {
	return d.call("cuFuncSetAttribute", d.cuFuncSetAttribute, uintptr(f), uintptr(attr), uintptr(value))
}

// LaunchKernel queues f on stream. params points to an array of one
// pointer per kernel argument, each to the argument's value, in memory the
// caller keeps alive and in place (heap memory it holds) until the call
// returns; the driver copies the values at launch.
//
// It calls the driver directly rather than through call, with its
// arguments in a pooled array: a launch is the one call made thousands of
// times a second, and a variadic argument list would be allocated on every
// one.
func (d *Driver) LaunchKernel(f Function, grid, block [3]uint32, sharedBytes int, stream Stream, params unsafe.Pointer) error {
	a := launchArgs.Get().(*[11]uintptr)
	*a = [11]uintptr{uintptr(f), uintptr(grid[0]), uintptr(grid[1]), uintptr(grid[2]),
		uintptr(block[0]), uintptr(block[1]), uintptr(block[2]),
		uintptr(sharedBytes), uintptr(stream), uintptr(params), 0}
	r, _, _ := purego.SyscallN(d.cuLaunchKernel, a[:]...)
	launchArgs.Put(a)
	if res := Result(int32(r)); res != Success {
		return d.errorOf("cuLaunchKernel", res)
	}
	return nil
}

var launchArgs = sync.Pool{New: func() any { return new([11]uintptr) }}

// MemAlloc allocates bytes of device memory.
func (d *Driver) MemAlloc(bytes int) (DevicePtr, error) {
	var p uint64
	err := d.call("cuMemAlloc_v2", d.cuMemAlloc, uintptr(unsafe.Pointer(&p)), uintptr(bytes))
	return DevicePtr(p), err
}

// MemFree frees an allocation of MemAlloc.
func (d *Driver) MemFree(p DevicePtr) error { return d.call("cuMemFree_v2", d.cuMemFree, uintptr(p)) }

// MemGetInfo is the free and total device memory of the current context's
// device, in bytes.
func (d *Driver) MemGetInfo() (free, total int64, err error) {
	var f, t uint64
	err = d.call("cuMemGetInfo_v2", d.cuMemGetInfo, uintptr(unsafe.Pointer(&f)), uintptr(unsafe.Pointer(&t)))
	return int64(f), int64(t), err
}

// MemcpyHtoD copies bytes from host memory at src (heap memory, kept alive by the
// caller) to dst, synchronously with respect to the host.
func (d *Driver) MemcpyHtoD(dst DevicePtr, src unsafe.Pointer, bytes int) error {
	err := d.callValues("cuMemcpyHtoD_v2", d.cuMemcpyHtoD, uintptr(dst), uintptr(src), uintptr(bytes))
	runtime.KeepAlive(src)
	return err
}

// MemcpyDtoH copies bytes from dst to host memory at dst after the work
// queued before it.
func (d *Driver) MemcpyDtoH(dst unsafe.Pointer, src DevicePtr, bytes int) error {
	err := d.callValues("cuMemcpyDtoH_v2", d.cuMemcpyDtoH, uintptr(dst), uintptr(src), uintptr(bytes))
	runtime.KeepAlive(dst)
	return err
}

// MemcpyDtoD copies bytes between device buffers.
func (d *Driver) MemcpyDtoD(dst, src DevicePtr, bytes int) error {
	return d.call("cuMemcpyDtoD_v2", d.cuMemcpyDtoD, uintptr(dst), uintptr(src), uintptr(bytes))
}

// MemsetD32 sets n 32-bit words at dst to v.
func (d *Driver) MemsetD32(dst DevicePtr, v uint32, n int) error {
	return d.call("cuMemsetD32_v2", d.cuMemsetD32, uintptr(dst), uintptr(v), uintptr(n))
}

// MemcpyHtoDAsync queues a copy on stream; src must stay unchanged until
// the stream reaches it (page-locked memory makes it truly asynchronous).
func (d *Driver) MemcpyHtoDAsync(dst DevicePtr, src unsafe.Pointer, bytes int, s Stream) error {
	err := d.callValues("cuMemcpyHtoDAsync_v2", d.cuMemcpyHtoDAsync, uintptr(dst), uintptr(src), uintptr(bytes), uintptr(s))
	runtime.KeepAlive(src)
	return err
}

// MemcpyDtoHAsync queues a copy to host memory on stream.
func (d *Driver) MemcpyDtoHAsync(dst unsafe.Pointer, src DevicePtr, bytes int, s Stream) error {
	err := d.callValues("cuMemcpyDtoHAsync_v2", d.cuMemcpyDtoHAsync, uintptr(dst), uintptr(src), uintptr(bytes), uintptr(s))
	runtime.KeepAlive(dst)
	return err
}

// MemcpyDtoDAsync queues a device-to-device copy on stream.
func (d *Driver) MemcpyDtoDAsync(dst, src DevicePtr, bytes int, s Stream) error {
	return d.callValues("cuMemcpyDtoDAsync_v2", d.cuMemcpyDtoDAsync, uintptr(dst), uintptr(src), uintptr(bytes), uintptr(s))
}

// HasAsync reports whether the driver exports the stream-ordered copies
// and fill (a launcher that queues everything on one stream of its own
// needs all four).
func (d *Driver) HasAsync() bool {
	return d.cuMemcpyHtoDAsync != 0 && d.cuMemcpyDtoHAsync != 0 && d.cuMemcpyDtoDAsync != 0 && d.cuMemsetD32Async != 0
}

// MemsetD32Async queues a 32-bit fill on stream.
func (d *Driver) MemsetD32Async(dst DevicePtr, v uint32, n int, s Stream) error {
	return d.callValues("cuMemsetD32Async", d.cuMemsetD32Async, uintptr(dst), uintptr(v), uintptr(n), uintptr(s))
}

// StreamCreate makes a stream; flags 1 (CU_STREAM_NON_BLOCKING) does not
// synchronize with the legacy default stream.
func (d *Driver) StreamCreate(flags int) (Stream, error) {
	var s uintptr
	err := d.call("cuStreamCreate", d.cuStreamCreate, uintptr(unsafe.Pointer(&s)), uintptr(flags))
	return Stream(s), err
}

// StreamDestroy destroys s.
func (d *Driver) StreamDestroy(s Stream) error {
	return d.call("cuStreamDestroy_v2", d.cuStreamDestroy, uintptr(s))
}

// StreamSynchronize waits for the work queued on s.
func (d *Driver) StreamSynchronize(s Stream) error {
	return d.callValues("cuStreamSynchronize", d.cuStreamSynchronize, uintptr(s))
}

// EventCreate makes an event (flags 0: timing enabled).
func (d *Driver) EventCreate(flags int) (Event, error) {
	var e uintptr
	err := d.call("cuEventCreate", d.cuEventCreate, uintptr(unsafe.Pointer(&e)), uintptr(flags))
	return Event(e), err
}

// EventRecord queues e on s.
func (d *Driver) EventRecord(e Event, s Stream) error {
	return d.callValues("cuEventRecord", d.cuEventRecord, uintptr(e), uintptr(s))
}

// EventSynchronize waits for e.
func (d *Driver) EventSynchronize(e Event) error {
	return d.call("cuEventSynchronize", d.cuEventSynchronize, uintptr(e))
}

// EventElapsedMs is the time between two completed events in milliseconds
// (about 0.5 us resolution).
func (d *Driver) EventElapsedMs(start, end Event) (float32, error) {
	var ms float32
	err := d.call("cuEventElapsedTime", d.cuEventElapsedTime, uintptr(unsafe.Pointer(&ms)), uintptr(start), uintptr(end))
	return ms, err
}

// EventQuery reports whether the work queued before e's last record has
// completed (true for an event never recorded). Unlike a
// synchronization it never blocks, so a watchdog can poll it while
// another thread waits on the stream; the caller makes e's context
// current on its own thread first (CtxSetCurrent: a context may be
// current on several threads).
func (d *Driver) EventQuery(e Event) (bool, error) {
	err := d.callValues("cuEventQuery", d.cuEventQuery, uintptr(e))
	var de *Error
	if errors.As(err, &de) && de.Code == ErrorNotReady {
		return false, nil
	}
	return err == nil, err
}

// HasEventQuery reports whether the library has cuEventQuery.
func (d *Driver) HasEventQuery() bool { return d.cuEventQuery != 0 && d.cuCtxGetCurrent != 0 }

// CtxGetCurrent is the context current on the calling thread (0: none).
func (d *Driver) CtxGetCurrent() (Context, error) {
	var c uintptr
	err := d.call("cuCtxGetCurrent", d.cuCtxGetCurrent, uintptr(unsafe.Pointer(&c)))
	return Context(c), err
}

// EventDestroy destroys e.
func (d *Driver) EventDestroy(e Event) error {
	return d.call("cuEventDestroy_v2", d.cuEventDestroy, uintptr(e))
}

// Stream capture modes (CUstreamCaptureMode).
const (
	CaptureModeGlobal      = 0
	CaptureModeThreadLocal = 1
	CaptureModeRelaxed     = 2
)

// StreamBeginCapture starts recording the work queued on s into a graph
// instead of running it.
func (d *Driver) StreamBeginCapture(s Stream, mode int) error {
	return d.call("cuStreamBeginCapture_v2", d.cuStreamBeginCapture, uintptr(s), uintptr(mode))
}

// StreamEndCapture ends a capture and returns its graph.
func (d *Driver) StreamEndCapture(s Stream) (Graph, error) {
	var g uintptr
	err := d.call("cuStreamEndCapture", d.cuStreamEndCapture, uintptr(s), uintptr(unsafe.Pointer(&g)))
	return Graph(g), err
}

// GraphInstantiate makes an executable graph of g.
func (d *Driver) GraphInstantiate(g Graph) (GraphExec, error) {
	var e uintptr
	err := d.call("cuGraphInstantiateWithFlags", d.cuGraphInstantiateWithFlags, uintptr(unsafe.Pointer(&e)), uintptr(g), 0)
	return GraphExec(e), err
}

// GraphLaunch queues one replay of e on s.
func (d *Driver) GraphLaunch(e GraphExec, s Stream) error {
	return d.callValues("cuGraphLaunch", d.cuGraphLaunch, uintptr(e), uintptr(s))
}

// GraphExecDestroy destroys e.
func (d *Driver) GraphExecDestroy(e GraphExec) error {
	return d.call("cuGraphExecDestroy", d.cuGraphExecDestroy, uintptr(e))
}

// GraphDestroy destroys g.
func (d *Driver) GraphDestroy(g Graph) error {
	return d.call("cuGraphDestroy", d.cuGraphDestroy, uintptr(g))
}

// HasGraphs reports whether the driver exports the stream-capture and
// graph entry points.
func (d *Driver) HasGraphs() bool {
	return d.cuStreamBeginCapture != 0 && d.cuStreamEndCapture != 0 && d.cuGraphInstantiateWithFlags != 0 &&
		d.cuGraphLaunch != 0 && d.cuGraphExecDestroy != 0 && d.cuGraphDestroy != 0
}

// ErrNoLibrary reports whether err means the driver library is not
// installed (as opposed to installed but failing).
func ErrNoLibrary(err error) bool {
	var le *LoadError
	return errors.As(err, &le)
}
