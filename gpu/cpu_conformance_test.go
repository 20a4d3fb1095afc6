package gpu_test

import (
	"fmt"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/gpu/gputest"
)

func TestCPUConformance(t *testing.T) {
	gputest.Run(t, func(t *testing.T) gpu.Backend { return gpu.NewCPU(0) })
}

// One worker runs every op unsplit; three split rows into uneven chunks.
// Both must agree with the float64 reference as the default does.
func TestCPUConformanceThreads(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("threads=%d", n), func(t *testing.T) {
			gputest.Run(t, func(t *testing.T) gpu.Backend { return gpu.NewCPU(n) })
		})
	}
}

func BenchmarkCPU(b *testing.B) {
	gputest.Bench(b, func(b *testing.B) gpu.Backend { return gpu.NewCPU(0) })
}
