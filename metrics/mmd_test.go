package metrics

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/internal/numtest"
)

func gaussianSet(r *rand.Rand, n, d int, mean []float64, std float64) []float32 {
	x := make([]float32, n*d)
	for i := range n {
		for k := range d {
			x[i*d+k] = float32(mean[k] + std*r.NormFloat64())
		}
	}
	return x
}

// mmd2Naive is the definition, term by term, in float64.
func mmd2Naive(x, y []float32, m, n, d int, h float64) float64 {
	k := func(a, b []float32) float64 {
		s := 0.0
		for i := range a {
			e := float64(a[i]) - float64(b[i])
			s += e * e
		}
		return math.Exp(-s / (2 * h * h))
	}
	row := func(s []float32, i int) []float32 { return s[i*d : (i+1)*d] }
	var xx, yy, xy float64
	for i := range m {
		for j := range m {
			if i != j {
				xx += k(row(x, i), row(x, j))
			}
		}
		for j := range n {
			xy += k(row(x, i), row(y, j))
		}
	}
	for i := range n {
		for j := range n {
			if i != j {
				yy += k(row(y, i), row(y, j))
			}
		}
	}
	fm, fn := float64(m), float64(n)
	return xx/(fm*(fm-1)) + yy/(fn*(fn-1)) - 2*xy/(fm*fn)
}

func TestMMDMatchesDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		m, n, d int
		h       float64
	}{{2, 2, 1, 0.7}, {17, 30, 2, 1.3}, {40, 25, 5, 2}} {
		x := gaussianSet(r, c.m, c.d, make([]float64, c.d), 1)
		y := gaussianSet(r, c.n, c.d, constVec(c.d, 0.5), 1.5)
		got, err := MMD(x, y, c.m, c.n, c.d, c.h)
		if err != nil {
			t.Fatal(err)
		}
		want := mmd2Naive(x, y, c.m, c.n, c.d, c.h)
		// Same terms summed in a different order.
		if !numtest.Close(got.MMD2, want, 1e-14, 1e-11) || got.Bandwidth != c.h {
			t.Errorf("m=%d n=%d d=%d: %+v, definition %.17g", c.m, c.n, c.d, got, want)
		}
	}
}

func constVec(d int, v float64) []float64 {
	x := make([]float64, d)
	for i := range x {
		x[i] = v
	}
	return x
}

// mmd2Gaussians is the population MMD^2 between N(0, s^2 I) and
// N(delta, s^2 I) in d dimensions under the kernel of bandwidth h:
// x - y ~ N(mu, 2 s^2 I) and E exp(-|z|^2 / 2h^2) for z ~ N(mu, v I) is
// (h^2 / (h^2 + v))^{d/2} exp(-|mu|^2 / (2 (h^2 + v))).
func mmd2Gaussians(d int, s, delta2, h float64) float64 {
	v := 2 * s * s
	a := math.Pow(h*h/(h*h+v), float64(d)/2)
	return 2 * a * (1 - math.Exp(-delta2/(2*(h*h+v))))
}

// meanSE runs f reps times and returns the mean and its standard error.
func meanSE(reps int, f func() float64) (mean, se float64) {
	var s, s2 float64
	for range reps {
		v := f()
		s += v
		s2 += v * v
	}
	mean = s / float64(reps)
	sd := math.Sqrt(math.Max(s2/float64(reps)-mean*mean, 0) * float64(reps) / float64(reps-1))
	return mean, sd / math.Sqrt(float64(reps))
}

func TestMMDShiftedGaussians(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const m, reps = 300, 20
	for _, c := range []struct {
		d     int
		shift float64 // along the first axis
		h     float64
	}{{2, 1, 1}, {2, 0.5, 2}, {5, 1, 1.5}} {
		mu := make([]float64, c.d)
		mu[0] = c.shift
		mean, se := meanSE(reps, func() float64 {
			x := gaussianSet(r, m, c.d, make([]float64, c.d), 1)
			y := gaussianSet(r, m, c.d, mu, 1)
			res, err := MMD(x, y, m, m, c.d, c.h)
			if err != nil {
				t.Fatal(err)
			}
			return res.MMD2
		})
		want := mmd2Gaussians(c.d, 1, c.shift*c.shift, c.h)
		// The estimator is unbiased: its mean over the repeats is within
		// 4 standard errors of the population value (a false alarm has
		// probability about 6e-5), and that spread is small enough for the
		// test to mean something.
		if math.Abs(mean-want) > 4*se || se > 0.1*want {
			t.Errorf("d=%d shift=%g h=%g: mean %.5f +- %.5f, closed form %.5f", c.d, c.shift, c.h, mean, se, want)
		}
	}
}

func TestMMDSameDistribution(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const m, reps = 300, 30
	mean, se := meanSE(reps, func() float64 {
		x := gaussianSet(r, m, 2, []float64{1, -1}, 2)
		y := gaussianSet(r, m, 2, []float64{1, -1}, 2)
		res, err := MMD(x, y, m, m, 2, 0)
		if err != nil {
			t.Fatal(err)
		}
		return res.MMD2
	})
	// Mean 0 within 4 standard errors; and the noise floor (the spread of
	// one estimate, se * sqrt(reps)) is O(1/m): well below the shifted
	// case's 0.1.
	if math.Abs(mean) > 4*se || se*math.Sqrt(reps) > 0.01 {
		t.Errorf("same distribution: mean %.6f +- %.6f", mean, se)
	}
}

// For two independent N(0, I_2) points, |a - b|^2 / 2 ~ chi^2_2, whose
// median is 2 ln 2: the median distance is 2 sqrt(ln 2).
func TestMedianBandwidth(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	x := gaussianSet(r, 1500, 2, []float64{0, 0}, 1)
	y := gaussianSet(r, 1500, 2, []float64{0, 0}, 1)
	h := MedianBandwidth(x, y, 1500, 1500, 2) // strided down to 1000 points
	want := 2 * math.Sqrt(math.Ln2)
	// The sample median of 5e5 dependent distances from 1000 points is
	// within about 1% of the population median.
	if !numtest.Close(h, want, 0, 0.02) {
		t.Errorf("median bandwidth %.4f, want %.4f", h, want)
	}
	res, err := MMD(x, y, 1500, 1500, 2, 0)
	if err != nil || res.Bandwidth != h {
		t.Errorf("MMD with the heuristic: %+v %v, bandwidth want %v", res, err, h)
	}
	// Even count of distances (4 points, 6 distances): the mean of the
	// middle two. Points on a line at 0, 1, 3, 7: distances 1, 2, 3, 4, 6, 7.
	line := []float32{0, 1, 3, 7}
	if got := MedianBandwidth(line[:2], line[2:], 2, 2, 1); got != 3.5 {
		t.Errorf("median of 1, 2, 3, 4, 6, 7 = %v, want 3.5", got)
	}
}

func TestMMDErrors(t *testing.T) {
	ok := []float32{0, 1, 2, 3}
	for _, c := range []struct {
		x, y []float32
		m, n int
		h    float64
		want string
	}{
		{ok, ok, 1, 4, 0, "at least 2"},
		{ok, ok, 4, 5, 0, "need 4 and 5 values"},
		{[]float32{0, float32(math.NaN()), 2}, ok, 3, 4, 0, "point 1 of the first set has the value NaN"},
		{ok, []float32{0, 1, float32(math.Inf(-1))}, 4, 3, 0, "point 2 of the second set has the value -Inf"},
		{ok, ok, 4, 4, math.Inf(1), "bandwidth +Inf"},
	} {
		_, err := MMD(c.x, c.y, c.m, c.n, 1, c.h)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "mmd: ") {
			t.Errorf("%v: error %v, want %q", c, err, c.want)
		}
	}
}
