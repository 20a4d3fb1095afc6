//go:build kernelsim

package gpu_test

import (
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/gpu/gputest"
)

func newKernelSim(t testing.TB, o gpu.KernelSimOptions) gpu.Backend {
	be, err := gpu.NewKernelSimWith(o)
	if err != nil {
		t.Fatal(err)
	}
	return be
}

// The conformance suite on the device backend with the kernels compiled for
// the host: the CUDA backend's Go code and kernels, everything but the
// driver calls.
func TestKernelSimConformance(t *testing.T) {
	gputest.Run(t, func(t *testing.T) gpu.Backend { return newKernelSim(t, gpu.KernelSimOptions{}) })
}

func BenchmarkKernelSim(b *testing.B) {
	gputest.Bench(b, func(b *testing.B) gpu.Backend { return newKernelSim(b, gpu.KernelSimOptions{}) })
}

// The conformance suite again with a block's threads always in order and in
// reverse order between barriers, and blocks run one at a time: results
// must not depend on any of it.
func TestKernelSimConformanceOrders(t *testing.T) {
	if testing.Short() {
		t.Skip("the suite twice more")
	}
	for _, o := range []gpu.KernelSimOptions{{Order: "forward", Threads: 1}, {Order: "reverse", Threads: 3}} {
		t.Run(o.Order, func(t *testing.T) {
			gputest.Run(t, func(t *testing.T) gpu.Backend { return newKernelSim(t, o) })
		})
	}
}

// The device report (scripts/gpu-run.sh's table on a GPU) at small sizes:
// every op against the CPU backend through the device backend's code.
func TestKernelSimReport(t *testing.T) {
	be := newKernelSim(t, gpu.KernelSimOptions{})
	defer be.Close()
	runDeviceReport(t, be, 1024, time.Millisecond)
}

// The image ops against the CPU backend in the device report's form, at
// batch 1 (size 128 divides the GPU report's batch of 128).
func TestKernelSimImageReport(t *testing.T) {
	be := newKernelSim(t, gpu.KernelSimOptions{})
	defer be.Close()
	runImageReport(t, be, 128, time.Millisecond)
}
