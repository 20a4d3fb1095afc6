//go:build cuda

package gpu_test

import (
	"flag"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/gpu/gputest"
)

// These run on a machine with an NVIDIA GPU (scripts/gpu-run.sh runs them
// from the bundle's gpu.test); a cuda build cannot start without one.

var cudaSync = flag.Bool("cuda.sync", false, "wait for every kernel and check its error (pinpoints a faulting kernel)")

func newCUDA(t testing.TB) gpu.Backend {
	be, err := gpu.NewCUDAWith(gpu.CUDAOptions{SyncEachLaunch: *cudaSync})
	if err != nil {
		t.Fatal(err)
	}
	return be
}

func TestCUDAProbe(t *testing.T) {
	info, err := gpu.ProbeCUDA()
	if err != nil {
		t.Fatal(err)
	}
	if info.Backend != "cuda" || info.Name == "" || info.ComputeCapability == "" || info.MemoryBytes <= 0 {
		t.Errorf("ProbeCUDA() = %+v", info)
	}
	t.Logf("%+v", info)
}

// The conformance suite on the GPU: every op against gputest's float64
// references, through the driver.
func TestCUDAConformance(t *testing.T) {
	gputest.Run(t, func(t *testing.T) gpu.Backend { return newCUDA(t) })
}

// The device report at GPU sizes: each op's error against the CPU backend
// and its GB/s (against a device-to-device copy) or TFLOP/s.
func TestCUDAReport(t *testing.T) {
	if testing.Short() {
		t.Skip("GPU-sized buffers and CPU references")
	}
	be := newCUDA(t)
	defer be.Close()
	runDeviceReport(t, be, 1, 50*time.Millisecond)
}

func BenchmarkCUDA(b *testing.B) {
	gputest.Bench(b, func(b *testing.B) gpu.Backend { return newCUDA(b) })
}
