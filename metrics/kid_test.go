package metrics

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/internal/numtest"
)

// kidNaive recomputes KID with the same subset draws, term by term.
func kidNaive(x, y []float32, m, n, d, subsets, size int, seed uint64) float64 {
	rng := rand.New(rand.NewPCG(seed, kidStream))
	px, py := identity(m), identity(n)
	k := func(a, b []float32) float64 {
		s := 0.0
		for i := range a {
			s += float64(a[i]) * float64(b[i])
		}
		u := s/float64(d) + 1
		return u * u * u
	}
	row := func(s []float32, i int) []float32 { return s[i*d : (i+1)*d] }
	total := 0.0
	for range subsets {
		ix := append([]int(nil), drawSubset(rng, px, size)...)
		iy := append([]int(nil), drawSubset(rng, py, size)...)
		var xx, yy, xy float64
		for a := range size {
			for b := range size {
				if a != b {
					xx += k(row(x, ix[a]), row(x, ix[b]))
					yy += k(row(y, iy[a]), row(y, iy[b]))
				}
				xy += k(row(x, ix[a]), row(y, iy[b]))
			}
		}
		s := float64(size)
		total += (xx+yy)/(s*(s-1)) - 2*xy/(s*s)
	}
	return total / float64(subsets)
}

func TestKIDMatchesDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	const m, n, d = 60, 45, 7
	x := gaussianSet(r, m, d, make([]float64, d), 1)
	y := gaussianSet(r, n, d, constVec(d, 0.3), 1.2)
	opt := KIDOptions{Subsets: 5, SubsetSize: 30, Seed: 9}
	got, err := KID(x, y, m, n, d, opt)
	if err != nil {
		t.Fatal(err)
	}
	want := kidNaive(x, y, m, n, d, 5, 30, 9)
	// The Gram entries are float32 products (relative error about 1e-7
	// sqrt(d)) of kernel values near 1 to 10; their errors average out in
	// the sums: 1e-6 absolute is 100 times the observed difference.
	if !numtest.Close(got.Mean, want, 1e-6, 0) || got.Subsets != 5 || got.SubsetSize != 30 || !(got.Std > 0) {
		t.Errorf("%+v, definition %.15g", got, want)
	}
	again, _ := KID(x, y, m, n, d, opt)
	if again != got {
		t.Errorf("not reproducible: %+v then %+v", got, again)
	}
	// The subset size is capped at the smaller set.
	capped, err := KID(x, y, m, n, d, KIDOptions{Subsets: 2})
	if err != nil || capped.SubsetSize != n || capped.Subsets != 2 {
		t.Errorf("defaults with %d points: %+v %v", n, capped, err)
	}
}

// polyMoment is E[(x y + 1)^3] for independent x ~ N(a, 1), y ~ N(b, 1):
// E x^3 E y^3 + 3 E x^2 E y^2 + 3 E x E y + 1, with E x^2 = a^2 + 1 and
// E x^3 = a^3 + 3a.
func polyMoment(a, b float64) float64 {
	return (a*a*a+3*a)*(b*b*b+3*b) + 3*(a*a+1)*(b*b+1) + 3*a*b + 1
}

// In one dimension the population KID between N(a, 1) and N(b, 1) is
// f(a, a) + f(b, b) - 2 f(a, b) with f = polyMoment.
func TestKIDClosedForm(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	const m, reps = 400, 30
	for _, c := range []struct{ a, b float64 }{{0, 0.5}, {0, 0}} {
		want := polyMoment(c.a, c.a) + polyMoment(c.b, c.b) - 2*polyMoment(c.a, c.b)
		mean, se := meanSE(reps, func() float64 {
			x := gaussianSet(r, m, 1, []float64{c.a}, 1)
			y := gaussianSet(r, m, 1, []float64{c.b}, 1)
			res, err := KID(x, y, m, m, 1, KIDOptions{Subsets: 20, SubsetSize: 200, Seed: r.Uint64()})
			if err != nil {
				t.Fatal(err)
			}
			return res.Mean
		})
		// Each subset estimate is unbiased, so is their mean: within 4
		// standard errors of the population value over independent pools.
		if math.Abs(mean-want) > 4*se || se > 0.2*math.Max(want, 0.1) {
			t.Errorf("a=%g b=%g: %.4f +- %.4f, closed form %.4f", c.a, c.b, mean, se, want)
		}
	}
}

func TestKIDErrors(t *testing.T) {
	x := []float32{0, 1, 2, 3}
	for _, c := range []struct {
		opt  KIDOptions
		want string
	}{
		{KIDOptions{Subsets: -1}, "-1 subsets"},
		{KIDOptions{SubsetSize: 1}, "of 1 points"},
	} {
		if _, err := KID(x, x, 4, 4, 1, c.opt); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.opt, err, c.want)
		}
	}
	if _, err := KID(x, x[:1], 4, 1, 1, KIDOptions{}); err == nil || !strings.HasPrefix(err.Error(), "kid: ") {
		t.Errorf("one point: %v", err)
	}
}
