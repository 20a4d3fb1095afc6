package metrics

import (
	"math/rand/v2"
	"testing"
)

// The sizes `fmgpu eval` uses: 2,000 points of 2-D data for MMD; 10,000
// feature vectors of a small classifier (128 wide) for FD and KID.
func BenchmarkMMD2D(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	x := gaussianSet(r, 2000, 2, []float64{0, 0}, 1)
	y := gaussianSet(r, 2000, 2, []float64{0.1, 0}, 1)
	for b.Loop() {
		if _, err := MMD(x, y, 2000, 2000, 2, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFD(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	const n, d = 10000, 128
	x := gaussianSet(r, n, d, make([]float64, d), 1)
	y := gaussianSet(r, n, d, make([]float64, d), 1.1)
	for b.Loop() {
		if _, err := FD(x, y, n, n, d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKID(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	const n, d = 10000, 128
	x := gaussianSet(r, n, d, make([]float64, d), 1)
	y := gaussianSet(r, n, d, make([]float64, d), 1.1)
	for b.Loop() {
		if _, err := KID(x, y, n, n, d, KIDOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
