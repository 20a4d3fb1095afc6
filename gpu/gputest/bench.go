package gputest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
)

// Bench runs the benchmark suite: every op at the sizes training and
// sampling use, each sub-benchmark on its own backend from newBackend
// (Closed when it ends). Each iteration ends with Sync, so that device
// backends are timed to completion; the reported GB/s counts the bytes an
// op must read and write once (its roofline traffic), GFLOP/s the
// products' 2mnk.
func Bench(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	b.Run("Gemm", func(b *testing.B) { benchGemm(b, newBackend) })
	b.Run("Linear", func(b *testing.B) { benchLinear(b, newBackend) })
	b.Run("BiasActBackward", func(b *testing.B) {
		const rows, cols = 4096, 256
		bench(b, fmt.Sprintf("rows=%d,cols=%d,act=silu", rows, cols), newBackend, func(w *workload) (float64, float64, func()) {
			dy, pre, dp, db := w.normals(rows*cols), w.normals(rows*cols), w.alloc(rows*cols), w.alloc(cols)
			return 12 * rows * cols, 0, func() { w.be.BiasActBackward(gpu.ActSiLU, rows, cols, dy, pre, dp, db) }
		})
	})
	b.Run("EmbedInput", func(b *testing.B) {
		const rows, d = 4096, 2
		emb := gpu.TimeEmbedding{Freqs: 16, Scale: 1000, MaxPeriod: 10000}
		bench(b, fmt.Sprintf("rows=%d,d=%d,freqs=%d", rows, d, emb.Freqs), newBackend, func(w *workload) (float64, float64, func()) {
			x, t, out := w.normals(rows*d), w.normals(rows), w.alloc(rows*(d+emb.Width()))
			return 4 * float64(rows*d+rows+rows*(d+emb.Width())), 0, func() { w.be.EmbedInput(rows, d, x, t, emb, out) }
		})
	})
	b.Run("MSELoss", func(b *testing.B) {
		for _, sh := range [][2]int{{4096, 2}, {4096, 784}} {
			n := sh[0] * sh[1]
			bench(b, fmt.Sprintf("rows=%d,d=%d", sh[0], sh[1]), newBackend, func(w *workload) (float64, float64, func()) {
				p, t, g, l := w.normals(n), w.normals(n), w.alloc(n), w.alloc(1)
				return 12 * float64(n), 0, func() { w.be.MSELoss(p, t, 1/float32(sh[0]), g, l) }
			})
		}
	})
	b.Run("SumSquares", func(b *testing.B) {
		const n = 200000
		bench(b, fmt.Sprintf("n=%d", n), newBackend, func(w *workload) (float64, float64, func()) {
			x, out := w.normals(n), w.alloc(1)
			return 4 * n, 0, func() { w.be.SumSquares(x, out) }
		})
	})
	b.Run("AdamEMA", func(b *testing.B) {
		const n = 200000
		bench(b, fmt.Sprintf("n=%d", n), newBackend, func(w *workload) (float64, float64, func()) {
			p, g, m, v, ema := w.normals(n), w.normals(n), w.alloc(n), w.alloc(n), w.normals(n)
			gss, st := w.be.Alloc(1), w.alloc(1)
			w.be.Fill(gss, 1e4)
			s := gpu.AdamStep{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Decoupled: true,
				BiasCorr1: 0.1, BiasCorr2: 0.001, EMADecay: 0.999, MaxGradNorm: 1, Step: 1}
			// reads params, grads, m, v, ema; writes params, m, v, ema
			return 36 * n, 0, func() { w.be.AdamEMA(s, p, g, m, v, ema, gss, st) }
		})
	})
	b.Run("PathTarget", func(b *testing.B) {
		for _, sh := range [][2]int{{4096, 2}, {4096, 784}} {
			rows, d := sh[0], sh[1]
			for _, k := range []flow.Kind{flow.KindOT, flow.KindVP} {
				spec := flow.DefaultSpec(k)
				bench(b, fmt.Sprintf("path=%v/B=%d,D=%d", k, rows, d), newBackend, func(w *workload) (float64, float64, func()) {
					x0, x1, t, xt, ut := w.normals(rows*d), w.normals(rows*d), w.uniforms(rows), w.alloc(rows*d), w.alloc(rows*d)
					return 4 * float64(4*rows*d+rows), 0, func() { w.be.PathTarget(spec, rows, d, x0, x1, t, xt, ut) }
				})
			}
		}
	})
	b.Run("DrawBatch", func(b *testing.B) {
		for _, sh := range [][3]int{{4096, 2, 100000}, {4096, 784, 60000}} {
			rows, d, nData := sh[0], sh[1], sh[2]
			for _, ts := range []flow.TimeSampler{flow.DefaultTimeSampler(flow.TimeUniform), flow.DefaultTimeSampler(flow.TimeLogitNormal)} {
				dr := gpu.BatchDraw{Path: flow.DefaultSpec(flow.KindOT), Time: ts, Seed: 1}
				bench(b, fmt.Sprintf("time=%v/B=%d,D=%d,nData=%d", ts.Kind, rows, d, nData), newBackend, func(w *workload) (float64, float64, func()) {
					data := w.normals(nData * d)
					x0, x1, t, xt, ut := w.alloc(rows*d), w.alloc(rows*d), w.alloc(rows), w.alloc(rows*d), w.alloc(rows*d)
					// reads the gathered rows; writes x0, x1, xt, ut, t
					return 4 * float64(5*rows*d+rows), 0, func() {
						dr.Step++
						w.be.DrawBatch(dr, data, nData, d, rows, x0, x1, t, xt, ut)
					}
				})
			}
		}
	})
	b.Run("RandNormal", func(b *testing.B) {
		const n = 4096 * 784
		bench(b, fmt.Sprintf("n=%d", n), newBackend, func(w *workload) (float64, float64, func()) {
			x := w.alloc(n)
			stream := uint64(0)
			return 4 * n, 0, func() { stream++; w.be.RandNormal(x, 1, stream, 1) }
		})
	})
	b.Run("Axpy", func(b *testing.B) {
		for _, sh := range [][2]int{{20000, 2}, {4096, 784}} {
			n := sh[0] * sh[1]
			bench(b, fmt.Sprintf("rows=%d,d=%d", sh[0], sh[1]), newBackend, func(w *workload) (float64, float64, func()) {
				x, y := w.normals(n), w.normals(n)
				return 12 * float64(n), 0, func() { w.be.Axpy(1e-3, x, y) }
			})
		}
	})
	b.Run("LinComb", func(b *testing.B) {
		for _, sh := range [][2]int{{20000, 2}, {4096, 784}} {
			n := sh[0] * sh[1]
			bench(b, fmt.Sprintf("stages=7/rows=%d,d=%d", sh[0], sh[1]), newBackend, func(w *workload) (float64, float64, func()) {
				x, dst, ks := w.normals(n), w.alloc(n), w.stages(n, gpu.MaxStages)
				coef := []float32{35.0 / 384, 0.1, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0.2}
				return 4 * float64(n*(gpu.MaxStages+2)), 0, func() { w.be.LinComb(dst, x, 0.01, coef, ks) }
			})
		}
	})
	b.Run("ErrorNorm", func(b *testing.B) {
		const rows, d = 4096, 784
		const n = rows * d
		bench(b, fmt.Sprintf("stages=7/rows=%d,d=%d", rows, d), newBackend, func(w *workload) (float64, float64, func()) {
			x, xn, out, ks := w.normals(n), w.normals(n), w.alloc(1), w.stages(n, gpu.MaxStages)
			return 4 * float64(n*(gpu.MaxStages+2)), 0, func() { w.be.ErrorNorm(x, xn, 0.01, dopriErr, ks, 1e-3, 1e-6, out) }
		})
	})
	b.Run("RowDot", func(b *testing.B) {
		const rows, cols = 4096, 784
		bench(b, fmt.Sprintf("rows=%d,cols=%d", rows, cols), newBackend, func(w *workload) (float64, float64, func()) {
			x, y, out := w.normals(rows*cols), w.normals(rows*cols), w.alloc(rows)
			return 8 * rows * cols, 2 * rows * cols, func() { w.be.RowDot(rows, cols, 1, x, y, 1, out) }
		})
	})
	b.Run("Conv2D", func(b *testing.B) { benchConv(b, newBackend, 0) })
	b.Run("Conv2DBackwardData", func(b *testing.B) { benchConv(b, newBackend, 1) })
	b.Run("Conv2DBackwardFilter", func(b *testing.B) { benchConv(b, newBackend, 2) })
	b.Run("ImageOps", func(b *testing.B) { benchImageOps(b, newBackend) })
	b.Run("UnitColumn", func(b *testing.B) {
		const rows, cols = 4096, 784
		bench(b, fmt.Sprintf("rows=%d,cols=%d", rows, cols), newBackend, func(w *workload) (float64, float64, func()) {
			e := w.alloc(rows * cols)
			return 4 * rows * cols, 0, func() { w.be.UnitColumn(rows, cols, 7, e) }
		})
	})
}

// The MLP's products per layer for batch B and hidden width H: forward
// X(B x H) W^T, dX = dY W, dW = dY^T X.
func benchGemm(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	type shape struct {
		ta, tb  bool
		m, n, k int
	}
	var shapes []shape
	seen := map[shape]bool{}
	for _, bh := range [][2]int{{4096, 256}, {256, 256}, {4096, 512}, {256, 512}} {
		B, H := bh[0], bh[1]
		for _, s := range []shape{{false, true, B, H, H}, {false, false, B, H, H}, {true, false, H, H, B}} {
			if !seen[s] {
				seen[s] = true
				shapes = append(shapes, s)
			}
		}
	}
	for _, s := range shapes {
		name := fmt.Sprintf("ta=%v,tb=%v/m=%d,n=%d,k=%d", s.ta, s.tb, s.m, s.n, s.k)
		bench(b, name, newBackend, func(w *workload) (float64, float64, func()) {
			lda, ldb := s.k, s.n
			if s.ta {
				lda = s.m
			}
			if s.tb {
				ldb = s.k
			}
			a, bb, c := w.normals(s.m*s.k), w.normals(s.k*s.n), w.alloc(s.m*s.n)
			bytes := 4 * float64(s.m*s.k+s.k*s.n+s.m*s.n)
			return bytes, 2 * float64(s.m) * float64(s.n) * float64(s.k), func() {
				w.be.Gemm(s.ta, s.tb, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
			}
		})
	}
}

// Linear at the MLP's shapes: the first layer (2-D data plus a 32-column
// time embedding) and a hidden layer.
func benchLinear(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	for _, sh := range [][3]int{{4096, 34, 256}, {4096, 256, 256}, {256, 512, 512}} {
		rows, in, out := sh[0], sh[1], sh[2]
		bench(b, fmt.Sprintf("rows=%d,in=%d,out=%d,act=silu", rows, in, out), newBackend, func(w *workload) (float64, float64, func()) {
			x, wt, bias, pre, y := w.normals(rows*in), w.normals(out*in), w.normals(out), w.alloc(rows*out), w.alloc(rows*out)
			bytes := 4 * float64(rows*in+out*in+out+2*rows*out)
			return bytes, 2 * float64(rows) * float64(in) * float64(out), func() {
				w.be.Linear(rows, in, out, x, in, wt, bias, gpu.ActSiLU, pre, y)
			}
		})
	}
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
