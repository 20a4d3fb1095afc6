package coupling

import (
	"math"
	"math/rand/v2"
	"testing"
)

// exp64 is within 3 ulps of math.Exp over its range, +Inf above it and 0
// below; NaN stays NaN.
func TestExp64(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	worst := 0.0
	check := func(x float64) {
		got, want := exp64(x), math.Exp(x)
		if rel := math.Abs(got-want) / want; rel > worst {
			worst = rel
		}
	}
	for range 200000 {
		check(expMin + (expMax-expMin)*r.Float64())
		check(4 * r.NormFloat64())
	}
	for _, x := range []float64{0, -0.0, 1, -1, math.Ln2 / 2, -math.Ln2 / 2, expMin, expMax, 1e-300, -1e-300} {
		check(x)
	}
	// 3 ulps of a value in [1, 2): 3 * 2^-52
	if worst > 3*0x1p-52 {
		t.Errorf("exp64: worst relative error %.3g, want <= %.3g", worst, 3*0x1p-52)
	}
	t.Logf("worst relative error %.3g (%.2f ulps of 1)", worst, worst/0x1p-52)
	if got := exp64(expMax + 1); !math.IsInf(got, 1) {
		t.Errorf("exp64(%v) = %v, want +Inf", expMax+1, got)
	}
	if got := exp64(expMin - 1); got != 0 {
		t.Errorf("exp64(%v) = %v, want 0", expMin-1, got)
	}
	if got := exp64(math.NaN()); !math.IsNaN(got) {
		t.Errorf("exp64(NaN) = %v", got)
	}
}

// The vectorized kernel rows are expKernelRowGo's bit for bit, tails and
// the clamps included.
func TestExpKernelRowMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 7, 8, 9, 31, 64, 256, 259} {
		c := make([]float32, n)
		g := make([]float64, n)
		for j := range c {
			c[j] = float32(10 * r.NormFloat64())
			g[j] = 10 * r.NormFloat64()
		}
		for _, eps := range []float64{1e-3, 0.05, 1, 20} {
			fi := 10 * r.NormFloat64()
			got, want := make([]float64, n), make([]float64, n)
			expKernelRow(got, c, fi, g, eps)
			expKernelRowGo(want, c, fi, g, eps)
			for j := range got {
				if math.Float64bits(got[j]) != math.Float64bits(want[j]) {
					t.Fatalf("n=%d eps=%v: k[%d] = %v, want %v (x = %v)", n, eps, j, got[j], want[j], (fi+g[j]-float64(c[j]))/eps)
				}
			}
		}
	}
}
