//go:build kernelsim && !cuda

package gpu_test

import (
	"testing"

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
