package gputest

import (
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// Bench runs the benchmark suite: the ops on hot paths at the sizes
// training and sampling use, family by family (each family's benchmarks
// are in its file), each sub-benchmark on its own backend from newBackend
// (Closed when it ends). Each iteration ends with Sync, so that device
// backends are timed to completion; the reported GB/s counts the bytes an
// op must read and write once (its roofline traffic), GFLOP/s the
// products' 2mnk.
func Bench(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	benchProducts(b, newBackend)
	benchDense(b, newBackend)
	benchOptimizer(b, newBackend)
	benchDraw(b, newBackend)
	benchRandom(b, newBackend)
	benchODE(b, newBackend)
	benchConv(b, newBackend)
	benchNorm(b, newBackend)
	benchAttention(b, newBackend)
}

// workload is a benchmark's backend and its input generator.
type workload struct {
	be  gpu.Backend
	rng *rand.Rand
}

func (w *workload) alloc(n int) gpu.Buffer { return w.be.Alloc(n) }

func (w *workload) normals(n int) gpu.Buffer {
	b := w.be.Alloc(n)
	w.be.Upload(b, normals(w.rng, n, 1))
	return b
}

func (w *workload) uniforms(n int) gpu.Buffer {
	b := w.be.Alloc(n)
	w.be.Upload(b, uniforms(w.rng, n, 0, 1))
	return b
}

func (w *workload) stages(n, ns int) []gpu.Buffer {
	ks := make([]gpu.Buffer, ns)
	for i := range ks {
		ks[i] = w.normals(n)
	}
	return ks
}

// bench runs one sub-benchmark: setup builds the inputs on a fresh backend
// and returns the bytes and flops of one call and the call; the call is
// made once untimed (warm-up: lazy allocation, kernel loading), then timed
// with a Sync ending every iteration.
func bench(b *testing.B, name string, newBackend func(b *testing.B) gpu.Backend, setup func(w *workload) (bytes, flops float64, op func())) {
	b.Run(name, func(b *testing.B) {
		be := newBackend(b)
		defer be.Close()
		w := &workload{be: be, rng: rand.New(rand.NewPCG(1, 2))}
		bytes, flops, op := setup(w)
		op()
		if err := be.Sync(); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
		b.ReportAllocs()
		for b.Loop() {
			op()
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		sec := b.Elapsed().Seconds()
		if sec <= 0 {
			return
		}
		if bytes > 0 {
			b.ReportMetric(bytes*float64(b.N)/sec/1e9, "GB/s")
		}
		if flops > 0 {
			b.ReportMetric(flops*float64(b.N)/sec/1e9, "GFLOP/s")
		}
	})
}
