package sampler

import (
	"fmt"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// noopField leaves v as it is: the benchmarks time the solver's state
// updates alone, not a network.
type noopField struct{ d int }

func (f noopField) Dim() int                                      { return f.d }
func (f noopField) Velocity(float64, int, gpu.Buffer, gpu.Buffer) {}

var benchShapes = []struct{ rows, d int }{{20000, 2}, {4096, 784}}

// benchStep times one step of method m on the CPU backend over rows x d
// states; floats is the number of float32 values the step's ops read and
// write per state element.
func benchStep(b *testing.B, m Method, floats int) {
	for _, s := range benchShapes {
		b.Run(fmt.Sprintf("rows=%d,d=%d", s.rows, s.d), func(b *testing.B) {
			be := gpu.NewCPU(0)
			defer be.Close()
			n := s.rows * s.d
			sys := &velocitySystem{f: noopField{s.d}, rows: s.rows}
			st := newStepper(be, sys, m)
			defer st.free()
			x := be.Alloc(n)
			be.RandNormal(x, 1, 0, 1)
			for _, k := range st.k {
				be.RandNormal(k, 2, 0, 1)
			}
			bytes := int64(floats) * 4 * int64(n)
			b.SetBytes(bytes)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				st.step(0, 1e-3, x)
			}
			b.StopTimer()
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(bytes)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

// BenchmarkEulerStep is the Euler update x <- x + h v: one Axpy, reading x
// and v and writing x (3 x 4 bytes per element).
func BenchmarkEulerStep(b *testing.B) { benchStep(b, Euler, 3) }

// BenchmarkRK4Step is RK4's four stage updates (the field is a no-op):
// three LinCombs tmp = x + c h k_i (read x, k_i, write tmp: 3 floats each)
// and the final x += h sum w_i k_i (read x and four stages, write x: 6),
// 15 x 4 bytes per element.
func BenchmarkRK4Step(b *testing.B) { benchStep(b, RK4, 15) }
