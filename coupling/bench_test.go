package coupling

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// benchBatch draws a training-like batch: noise x0 ~ N(0, I) and data x1
// from a mixture of eight well-separated Gaussians (d = 2, like the
// built-in 8gaussians) or uniform in [-1, 1]^d (image-like ranges).
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

var benchShapes = []struct{ n, d int }{{256, 2}, {256, 784}, {64, 784}, {128, 3072}}

func BenchmarkSqDist(b *testing.B) {
	for _, s := range benchShapes {
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

// BenchmarkAssign times the exact solver alone on a fresh batch's cost
// (the cost matrix is the backend's product).
func BenchmarkAssign(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(fmt.Sprintf("n=%d,d=%d", s.n, s.d), func(b *testing.B) {
			const batches = 8 // cycle through several batches: solve time varies
			costs := make([][]float32, batches)
			for k := range costs {
				x0, x1 := benchBatch(s.n, s.d, uint64(k))
				costs[k] = make([]float32, s.n*s.n)
				SqDist(costs[k], x0, x1, s.n, s.n, s.d)
			}
			p := make([]int, s.n)
			var a Assigner
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				if err := a.Assign(p, costs[k%batches], s.n); err != nil {
					b.Fatal(err)
				}
				k++
			}
		})
	}
}
