package cudadriver_test

import (
	"math"
	"runtime"
	"testing"
	"unsafe"

	"github.com/fmgpu/fmgpu/internal/cudadriver"
	"github.com/fmgpu/fmgpu/internal/fakecuda"
)

// A launch is made thousands of times a second: it must not allocate
// (fmgpu bench reports allocs_per_step). The fake libcuda answers here.
func TestLaunchDoesNotAllocate(t *testing.T) {
	runtime.LockOSThread() // the context is current on this thread only
	defer runtime.UnlockOSThread()
	d, err := cudadriver.Open(fakecuda.Library(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	dev, err := d.Device(0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := d.PrimaryCtxRetain(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer d.PrimaryCtxRelease(dev)
	if err := d.CtxSetCurrent(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { d.CtxSynchronize() }); n != 0 {
		t.Errorf("cuCtxSynchronize: %v allocations", n)
	}
	p, err := d.MemAlloc(16)
	if err != nil {
		t.Fatal(err)
	}
	// The fake driver checks only the fatbin's magic number.
	m, err := d.ModuleLoadData([]byte{0x50, 0xed, 0x55, 0xba, 0, 0, 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	f, err := d.ModuleGetFunction(m, "fill_forward_kernel")
	if err != nil {
		t.Fatal(err)
	}
	slots := new([3]uint64)
	params := new([3]unsafe.Pointer)
	for i := range params {
		params[i] = unsafe.Pointer(&slots[i])
	}
	slots[0] = uint64(p)                     // dst
	slots[1] = uint64(math.Float32bits(2.5)) // v
	slots[2] = 4                             // n
	var lerr error
	n := testing.AllocsPerRun(100, func() {
		lerr = d.LaunchKernel(f, [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, 0, unsafe.Pointer(params))
	})
	if lerr != nil {
		t.Fatal(lerr)
	}
	if n != 0 {
		t.Errorf("cuLaunchKernel: %v allocations", n)
	}
	out := make([]float32, 4)
	if err := d.MemcpyDtoH(unsafe.Pointer(&out[0]), p, 16); err != nil {
		t.Fatal(err)
	}
	// fill_forward_kernel(dst, v, n), over the NaN the fake driver fills
	// new memory with.
	for i, v := range out {
		if v != 2.5 {
			t.Fatalf("element %d = %v after the fill", i, v)
		}
	}
}
