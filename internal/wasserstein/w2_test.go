package wasserstein

import (
	"math"
	"math/rand/v2"
	"testing"
)

// bruteForce tries every permutation: the reference for small n.
func bruteForce(a, b []float64, n, d int) float64 {
	best := math.Inf(1)
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	var rec func(k int)
	rec = func(k int) {
		if k == n {
			s := 0.0
			for i, j := range perm {
				for c := 0; c < d; c++ {
					e := a[i*d+c] - b[j*d+c]
					s += e * e
				}
			}
			best = math.Min(best, s)
			return
		}
		for i := k; i < n; i++ {
			perm[k], perm[i] = perm[i], perm[k]
			rec(k + 1)
			perm[k], perm[i] = perm[i], perm[k]
		}
	}
	rec(0)
	return math.Sqrt(best / float64(n))
}

func TestW2AgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 40; trial++ {
		n, d := 1+r.IntN(7), 1+r.IntN(3)
		a, b := make([]float64, n*d), make([]float64, n*d)
		for i := range a {
			a[i], b[i] = r.NormFloat64(), r.NormFloat64()
		}
		got, p, err := W2(a, b, n, d)
		if err != nil {
			t.Fatal(err)
		}
		seen := make([]bool, n)
		for _, j := range p {
			if seen[j] {
				t.Fatalf("assignment %v is not a permutation", p)
			}
			seen[j] = true
		}
		if want := bruteForce(a, b, n, d); math.Abs(got-want) > 1e-12*(1+want) {
			t.Errorf("n=%d d=%d: W2 %.15g, brute force %.15g", n, d, got, want)
		}
	}
}

// In 1-D the optimal assignment matches sorted orders; a shift by c moves
// every point by c, so W2 = |c| exactly.
func TestW2Shift(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	n := 300
	a, b := make([]float64, 2*n), make([]float64, 2*n)
	for i := 0; i < n; i++ {
		a[2*i], a[2*i+1] = r.NormFloat64(), r.NormFloat64()
		b[2*i], b[2*i+1] = a[2*i]+0.3, a[2*i+1]-0.4
	}
	got, _, _ := W2(a, b, n, 2)
	if math.Abs(got-0.5) > 1e-9 {
		t.Errorf("W2 of a (0.3, -0.4) shift = %v, want 0.5", got)
	}
	if _, _, err := W2(a, b[:10], n, 2); err == nil {
		t.Error("mismatched sizes accepted")
	}
}
