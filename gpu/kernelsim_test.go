//go:build kernelsim

package gpu_test

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/gpu/gputest"
	"github.com/fmgpu/fmgpu/kernels"
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
// driver calls. Run whole, it must have launched every kernel with the
// access checks (kernels/README.md, "Checks").
func TestKernelSimConformance(t *testing.T) {
	before := kernels.SimCheckedLaunches()
	gputest.Run(t, func(t *testing.T) gpu.Backend { return newKernelSim(t, gpu.KernelSimOptions{}) })
	if strings.Contains(flag.Lookup("test.run").Value.String(), "/") || t.Failed() || !kernels.SimChecksAvailable() {
		return // part of the suite, or no checks in this build
	}
	var unchecked []string
	for name, n := range kernels.SimCheckedLaunches() {
		if !strings.HasPrefix(name, "simtest_") && n == before[name] {
			unchecked = append(unchecked, name)
		}
	}
	slices.Sort(unchecked)
	if len(unchecked) > 0 {
		t.Errorf("the conformance suite launched no kernel of %v with the checks", unchecked)
	}
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
