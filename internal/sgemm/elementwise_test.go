package sgemm

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

func logistic64(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// TestSiLUGrad checks the vector SiLU gradient against float64 over a wide
// range, the tails where exp overflows, and every length mod the width,
// in place and out of place, with the tolerance of the gpu conformance
// suite (relative 2e-5 of s + |z s (1-s)|, plus 1e-6, times |dy|).
func TestSiLUGrad(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(21, 22))
		for _, n := range []int{1, 7, 8, 15, 16, 17, 33, 100, 4096, 4099} {
			z := make([]float32, n)
			dy := make([]float32, n)
			for i := range z {
				switch i % 5 {
				case 0:
					z[i] = float32(-100 + 200*r.Float64())
				default:
					z[i] = float32(r.NormFloat64() * 4)
				}
				dy[i] = float32(r.NormFloat64())
			}
			ext := []float32{20, -20, 90, -90, 1e4, -1e4, 0, -1.2785, 1e30, -1e30, 88, -88, 87.5, -87.5}
			for i := 0; i < n && i < len(ext); i++ {
				z[i*3%n] = ext[i]
			}
			for _, inPlace := range []bool{false, true} {
				dz := make([]float32, n)
				if inPlace {
					copy(dz, dy)
					SiLUGrad(dz, z, dz)
				} else {
					SiLUGrad(dy, z, dz)
				}
				for i := range dz {
					g, zz := float64(dy[i]), float64(z[i])
					s := logistic64(zz)
					want := g * s * (1 + zz*(1-s))
					tol := math.Abs(g) * (1e-6 + 2e-5*(s+math.Abs(zz*s*(1-s))))
					if d := math.Abs(float64(dz[i]) - want); !(d <= tol) {
						t.Errorf("n=%d inPlace=%v: silu'(%g) * %g = %g, want %g (diff %g > tol %g)", n, inPlace, zz, g, dz[i], want, d, tol)
					}
				}
			}
		}
	})
}

func TestAddColSums(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(23, 24))
		for _, s := range [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 64, 64}, {100, 257, 260}, {7, 3, 3}, {33, 130, 131}, {5, 8, 8}} {
			rows, cols, ldx := s[0], s[1], s[2]
			x := randSlice(r, rows*ldx)
			acc := make([]float64, cols+1)
			want := make([]float64, cols+1)
			for j := range acc {
				acc[j] = float64(j) * 0.5
				want[j] = acc[j]
			}
			for i := 0; i < rows; i++ {
				for j := 0; j < cols; j++ {
					want[j] += float64(x[i*ldx+j])
				}
			}
			AddColSums(acc, x, rows, cols, ldx)
			for j := range acc {
				if acc[j] != want[j] {
					t.Errorf("%v: acc[%d] = %v, want %v (bit-exact)", s, j, acc[j], want[j])
				}
			}
		}
	})
}

func BenchmarkSiLUGrad(b *testing.B) {
	defer SetKernel("")
	for _, name := range Kernels() {
		b.Run("kernel="+name, func(b *testing.B) {
			SetKernel(name)
			r := rand.New(rand.NewPCG(1, 2))
			n := 4096 * 16
			dy, z, dz := randSlice(r, n), randSlice(r, n), make([]float32, n)
			b.SetBytes(int64(12 * n))
			for i := 0; i < b.N; i++ {
				SiLUGrad(dy, z, dz)
			}
		})
	}
}

// TestAdam checks the vector Adam step bit for bit against the Go loop,
// for every option combination and lengths around the vector width.
func TestAdam(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	for _, n := range []int{1, 7, 16, 17, 40, 1000} {
		for _, opt := range []AdamConsts{
			{Clip: 1, Beta1: 0.9, Beta2: 0.999, InvBiasCorr1: 10, InvBiasCorr2: 1000, Eps: 1e-8, LR: 1e-3},
			{Clip: 0.5, WeightDecay: 0.01, Beta1: 0.8, Beta2: 0.99, InvBiasCorr1: 2, InvBiasCorr2: 3, Eps: 1e-6, LR: 1e-2, EMADecay: 0.999},
			{Clip: 0.7, WeightDecay: 0.1, Decoupled: true, Beta1: 0.9, Beta2: 0.999, InvBiasCorr1: 1.5, InvBiasCorr2: 7, Eps: 1e-8, LR: 3e-4, EMADecay: 0.9},
			{Clip: 1, Decoupled: true, Beta1: 0.9, Beta2: 0.999, InvBiasCorr1: 1, InvBiasCorr2: 1, Eps: 1e-8, LR: 1e-3},
		} {
			p, g := randSlice(r, n), randSlice(r, n)
			m, v, e := randSlice(r, n), randSlice(r, n), randSlice(r, n)
			for i := range v {
				v[i] *= v[i]
			}
			var ref [5][]float32
			for i, s := range [][]float32{p, g, m, v, e} {
				ref[i] = append([]float32(nil), s...)
			}
			adamGo(&opt, ref[0], ref[1], ref[2], ref[3], ref[4])
			if opt.EMADecay == 0 {
				ref[4] = append([]float32(nil), e...)
			}
			forEachKernel(t, func(t *testing.T) {
				var got [5][]float32
				for i, s := range [][]float32{p, g, m, v, e} {
					got[i] = append([]float32(nil), s...)
				}
				Adam(&opt, got[0], got[1], got[2], got[3], got[4])
				for i, name := range []string{"p", "g", "m", "v", "ema"} {
					for j := range got[i] {
						if math.Float32bits(got[i][j]) != math.Float32bits(ref[i][j]) {
							t.Fatalf("n=%d %+v: %s[%d] = %g, want %g", n, opt, name, j, got[i][j], ref[i][j])
						}
					}
				}
			})
		}
	}
}

func TestSumSquares(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	forEachKernel(t, func(t *testing.T) {
		for _, n := range []int{0, 1, 15, 16, 31, 32, 33, 4096, 4100} {
			x := randSlice(r, n)
			want := 0.0
			for _, v := range x {
				want += float64(v) * float64(v)
			}
			if got := SumSquares(x); math.Abs(got-want) > 1e-13*max(1, want) {
				t.Errorf("n=%d: %v, want %v", n, got, want)
			}
		}
	})
}

// TestElementwiseAllocs: the vector ops allocate nothing (the gpu CPU
// backend's training step relies on it).
func TestElementwiseAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(29, 30))
	n := 1000
	p, g, m, v, e := randSlice(r, n), randSlice(r, n), randSlice(r, n), randSlice(r, n), randSlice(r, n)
	acc := make([]float64, 100)
	c := &AdamConsts{Clip: 1, Beta1: 0.9, Beta2: 0.999, InvBiasCorr1: 1, InvBiasCorr2: 1, Eps: 1e-8, LR: 1e-3, EMADecay: 0.99}
	forEachKernel(t, func(t *testing.T) {
		f := func() {
			Adam(c, p, g, m, v, e)
			SiLUGrad(g, m, e)
			AddColSums(acc, g, 10, 100, 100)
			_ = SumSquares(p)
		}
		if a := testing.AllocsPerRun(10, f); a != 0 {
			t.Errorf("%v allocs per run", a)
		}
	})
}

// countTask records how often each index ran.
type countTask struct {
	hits  []int32
	inner *countTask // run a nested ParallelFor over inner from each range
}

func (c *countTask) Run(lo, hi int) {
	for i := lo; i < hi; i++ {
		atomic.AddInt32(&c.hits[i], 1)
	}
	if c.inner != nil {
		ParallelFor(c.inner, len(c.inner.hits), 4)
	}
}

// TestParallelFor checks that every index runs exactly once, for awkward
// sizes and chunk counts, nested loops, concurrent callers, and that a
// loop allocates nothing.
func TestParallelFor(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 7, 100, 1001} {
		for _, chunks := range []int{0, 1, 2, 3, 8, 5000} {
			c := &countTask{hits: make([]int32, n)}
			ParallelFor(c, n, chunks)
			for i, h := range c.hits {
				if h != 1 {
					t.Fatalf("n=%d chunks=%d: index %d ran %d times", n, chunks, i, h)
				}
			}
		}
	}
	inner := &countTask{hits: make([]int32, 50)}
	outer := &countTask{hits: make([]int32, 10), inner: inner}
	ParallelFor(outer, 10, 10)
	for i, h := range inner.hits {
		if h != 10 {
			t.Fatalf("nested: inner index %d ran %d times, want 10", i, h)
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &countTask{hits: make([]int32, 300)}
			for it := 0; it < 200; it++ {
				ParallelFor(c, 300, 3)
			}
			for i, h := range c.hits {
				if h != 200 {
					t.Errorf("concurrent: index %d ran %d times, want 200", i, h)
					return
				}
			}
		}()
	}
	wg.Wait()
	c := &countTask{hits: make([]int32, 64)}
	if a := testing.AllocsPerRun(20, func() { ParallelFor(c, 64, 2) }); a != 0 {
		t.Errorf("ParallelFor: %v allocs per call", a)
	}
}
