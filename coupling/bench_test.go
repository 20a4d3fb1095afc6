package coupling

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/fmgpu/fmgpu/data"
)

// benchBatch draws a synthetic batch for tests: noise x0 ~ N(0, I) and
// data x1 from eight Gaussians of radius 4 and standard deviation 0.5
// (d = 2) or uniform in [-1, 1]^d.
func benchBatch(n, d int, seed uint64) (x0, x1 []float32) {
	r := rand.New(rand.NewPCG(seed, 1))
	x0 = randNormal32(r, n*d)
	x1 = make([]float32, n*d)
	for i := range n {
		if d == 2 {
			a := 2 * math.Pi * float64(r.IntN(8)) / 8
			x1[2*i] = float32(4*math.Cos(a) + 0.5*r.NormFloat64())
			x1[2*i+1] = float32(4*math.Sin(a) + 0.5*r.NormFloat64())
			continue
		}
		for k := range d {
			x1[i*d+k] = float32(2*r.Float64() - 1)
		}
	}
	return x0, x1
}

// benchCase is a training-like batch: N(0, I) noise against a built-in
// 2-D set or MNIST images (uniform data of the same shape when the MNIST
// files are missing, noted in the name).
type benchCase struct {
	name string
	n, d int
}

var benchCases = []benchCase{
	{"8gaussians", 256, 2},
	{"moons", 256, 2},
	{"checkerboard", 256, 2},
	{"mnist", 256, 784},
	{"mnist", 64, 784},
}

const benchBatches = 8 // solve times vary from batch to batch: cycle through several

var (
	mnistOnce sync.Once
	mnistX    []float32
)

// Cost forms of benchCosts.
const (
	costSqDist = iota // |x0_i - x1_j|^2
	costGram          // -2 x0_i . x1_j, the trainer's (it leaves out the terms of one row or one column)
)

// benchCosts returns the costs of benchBatches batches, in the form given.
func benchCosts(b testing.TB, c benchCase, form int) ([][]float32, string) {
	name := c.name
	costs := make([][]float32, benchBatches)
	for k := range costs {
		r := rand.New(rand.NewPCG(uint64(k), 2))
		x0 := randNormal32(r, c.n*c.d)
		var x1 []float32
		switch {
		case c.d == 2:
			ds, err := data.Builtin(c.name, c.n, uint64(k))
			if err != nil {
				b.Fatal(err)
			}
			x1 = ds.X
		default:
			mnistOnce.Do(func() {
				if is, err := data.LoadImages("mnist", data.ImageOptions{Max: 4096}); err == nil {
					mnistX = is.X
				}
			})
			if mnistX == nil {
				name = "uniform"
				_, x1 = benchBatch(c.n, c.d, uint64(k))
				break
			}
			x1 = make([]float32, c.n*c.d)
			for i := range c.n {
				src := r.IntN(len(mnistX) / c.d)
				copy(x1[i*c.d:(i+1)*c.d], mnistX[src*c.d:(src+1)*c.d])
			}
		}
		costs[k] = make([]float32, c.n*c.n)
		if form == costGram {
			Gram(costs[k], x0, x1, c.n, c.n, c.d)
			for i := range costs[k] {
				costs[k][i] *= -2
			}
			continue
		}
		SqDist(costs[k], x0, x1, c.n, c.n, c.d)
	}
	if form == costGram {
		name += "/gram"
	}
	return costs, fmt.Sprintf("%s/n=%d,d=%d", name, c.n, c.d)
}

// BenchmarkSqDist times the plain-Go reference cost (a backend computes
// the Gram part with its Gemm instead).
func BenchmarkSqDist(b *testing.B) {
	for _, s := range []struct{ n, d int }{{256, 2}, {256, 784}, {64, 784}} {
		b.Run(fmt.Sprintf("n=%d,d=%d", s.n, s.d), func(b *testing.B) {
			x0, x1 := benchBatch(s.n, s.d, 1)
			c := make([]float32, s.n*s.n)
			b.ReportAllocs()
			for b.Loop() {
				SqDist(c, x0, x1, s.n, s.n, s.d)
			}
		})
	}
}

// BenchmarkAssign times the exact solver on a batch's cost matrix, as
// squared distances and in the trainer's form.
func BenchmarkAssign(b *testing.B) {
	for _, c := range benchCases {
		for _, form := range []int{costSqDist, costGram} {
			costs, name := benchCosts(b, c, form)
			b.Run(name, func(b *testing.B) {
				p := make([]int, c.n)
				var a Assigner
				b.ReportAllocs()
				k := 0
				for b.Loop() {
					if err := a.Assign(p, costs[k%benchBatches], c.n); err != nil {
						b.Fatal(err)
					}
					k++
				}
			})
		}
	}
}

// BenchmarkSinkhorn times a plan and the draw of the pairs from it, with
// the default tolerance and iteration limit.
func BenchmarkSinkhorn(b *testing.B) {
	for _, c := range benchCases {
		costs, name := benchCosts(b, c, costSqDist)
		for _, reg := range []float64{0.05, 0.5, 5} {
			b.Run(fmt.Sprintf("%s,reg=%g", name, reg), func(b *testing.B) {
				cp, err := NewCoupler(Options{Kind: KindSinkhorn, Sinkhorn: SinkhornOptions{Reg: reg}})
				if err != nil {
					b.Fatal(err)
				}
				idx := make([]int, c.n)
				u := make([]float64, c.n)
				for i := range u {
					u[i] = (float64(i) + 0.5) / float64(c.n)
				}
				b.ReportAllocs()
				k, iters, conv := 0, 0, 0
				for b.Loop() {
					st, err := cp.Pair(idx, costs[k%benchBatches], c.n, nil, u)
					if err != nil {
						b.Fatal(err)
					}
					iters += st.Sinkhorn.Iters
					if st.Sinkhorn.Converged {
						conv++
					}
					k++
				}
				b.ReportMetric(float64(iters)/float64(k), "iters/op")
				b.ReportMetric(float64(conv)/float64(k), "converged/op")
			})
		}
	}
}
