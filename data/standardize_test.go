package data

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/internal/numtest"
)

func TestFitExact(t *testing.T) {
	// Column 0: 1, 3, 5: mean 3, population variance (4+0+4)/3 = 8/3.
	// Column 1: constant 10: std 1, not 0. Column 2: -1, 1, 0: mean 0, variance 2/3.
	ds := &Dataset{X: []float32{1, 10, -1, 3, 10, 1, 5, 10, 0}, N: 3, D: 3}
	s := Fit(ds)
	wantMean := []float64{3, 10, 0}
	wantStd := []float64{math.Sqrt(8.0 / 3), 1, math.Sqrt(2.0 / 3)}
	numtest.AllClose(t, "mean", s.Mean, wantMean, 0, 1e-15)
	numtest.AllClose(t, "std", s.Std, wantStd, 0, 1e-15)
	if err := s.Validate(); err != nil {
		t.Error(err)
	}
	if s.Dim() != 3 {
		t.Errorf("Dim() = %d", s.Dim())
	}
}

func TestFitConstantColumn(t *testing.T) {
	// 0.1 is inexact: the mean of three copies, computed in float64, need not
	// equal them, so a computed variance would be a tiny positive number.
	v := float32(0.1)
	ds := &Dataset{X: []float32{v, v, v}, N: 3, D: 1}
	s := Fit(ds)
	if s.Std[0] != 1 {
		t.Errorf("constant column std = %v, want 1", s.Std[0])
	}
	x := []float32{v, v, v}
	s.Apply(x)
	for _, z := range x {
		if math.Abs(float64(z)) > 1e-7 || math.IsNaN(float64(z)) {
			t.Errorf("constant column standardizes to %v, want 0", z)
		}
	}
	// One point is a constant column too.
	one := Fit(&Dataset{X: []float32{2, -3}, N: 1, D: 2})
	if !slices.Equal(one.Std, []float64{1, 1}) || !slices.Equal(one.Mean, []float64{2, -3}) {
		t.Errorf("Fit of one point = %+v", one)
	}
}

func TestFitLargeOffset(t *testing.T) {
	// Values 1e6 + k, k = 0..999: the one-pass formula E[x²] - E[x]² loses
	// about 12 of float64's 16 digits here; two passes do not. The variance of
	// 0..n-1 is (n² - 1) / 12.
	const n = 1000
	x := make([]float32, n)
	for k := range x {
		x[k] = float32(1e6 + k)
	}
	s := Fit(&Dataset{X: x, N: n, D: 1})
	if want := math.Sqrt((n*n - 1) / 12.0); !numtest.Close(s.Std[0], want, 0, 1e-12) {
		t.Errorf("std = %.15g, want %.15g", s.Std[0], want)
	}
	if want := 1e6 + (n-1)/2.0; !numtest.Close(s.Mean[0], want, 0, 1e-15) {
		t.Errorf("mean = %.15g, want %.15g", s.Mean[0], want)
	}
}

func TestFitEmpty(t *testing.T) {
	s := Fit(&Dataset{D: 3})
	if !slices.Equal(s.Mean, []float64{0, 0, 0}) || !slices.Equal(s.Std, []float64{1, 1, 1}) {
		t.Errorf("Fit(empty) = %+v", s)
	}
}

func TestApplyInvertRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n, d = 4000, 3
	x := make([]float32, n*d)
	for i := range n {
		x[i*d] = float32(5 + 2*rng.NormFloat64())
		x[i*d+1] = float32(-1e3 + 0.01*rng.NormFloat64())
		x[i*d+2] = float32(rng.Float64())
	}
	orig := slices.Clone(x)
	ds := &Dataset{X: x, N: n, D: d}
	s := Fit(ds)
	s.Apply(x)
	// Standardized columns have mean 0 and std 1, up to float32 rounding of
	// each value (relative 6e-8 of values of order a few).
	z := Fit(ds)
	numtest.AllClose(t, "standardized mean", z.Mean, []float64{0, 0, 0}, 1e-6, 0)
	numtest.AllClose(t, "standardized std", z.Std, []float64{1, 1, 1}, 0, 1e-5)
	s.Invert(x)
	// Each direction rounds to float32 once: relative 6e-8 of the value, plus
	// the rounding of z (|z| < 5) scaled back by s <= 2, an absolute 1e-6 at
	// most near zero. rtol 1e-5 as docs/design.md ("Tests"), atol 1e-5 for the latter.
	numtest.AllClose(t, "round trip", x, orig, 1e-5, 1e-5)
}

func TestIdentity(t *testing.T) {
	s := Identity(2)
	x := []float32{1.5, -2, 3, 1e-30}
	want := slices.Clone(x)
	s.Apply(x)
	if !sameBits(x, want) {
		t.Errorf("Identity.Apply changed %v to %v", want, x)
	}
	s.Invert(x)
	if !sameBits(x, want) {
		t.Errorf("Identity.Invert changed %v to %v", want, x)
	}
	if s.LogDetJacobian() != 0 {
		t.Errorf("Identity log det = %v", s.LogDetJacobian())
	}
	Identity(0).Apply(nil) // nothing to do, no panic
}

func TestApplyPanics(t *testing.T) {
	for _, c := range []struct {
		s Standardization
		n int
	}{
		{Identity(2), 3},
		{Standardization{Mean: []float64{0, 0}, Std: []float64{1}}, 2},
		{Identity(0), 1},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "data.Standardization.Apply") {
					t.Errorf("Apply(len %d) with %+v: recovered %v", c.n, c.s, r)
				}
			}()
			c.s.Apply(make([]float32, c.n))
		}()
	}
}

func logNormal(x, mu, sigma float64) float64 {
	z := (x - mu) / sigma
	return -0.5*math.Log(2*math.Pi) - math.Log(sigma) - 0.5*z*z
}

// TestLogDetJacobian1D checks the change of variables on densities known in
// closed form. If x ~ N(mu, sigma²) and z = (x - m) / s, then
// z ~ N((mu - m) / s, (sigma / s)²), and log N(x; mu, sigma²) must equal
// log p_z(z) + LogDetJacobian for every x and every (m, s).
func TestLogDetJacobian1D(t *testing.T) {
	const mu, sigma = 2.5, 3.0
	for _, ms := range [][2]float64{{mu, sigma}, {0, 1}, {-1, 0.25}, {10, 7}} {
		st := Standardization{Mean: []float64{ms[0]}, Std: []float64{ms[1]}}
		if got, want := st.LogDetJacobian(), -math.Log(ms[1]); !numtest.Close(got, want, 1e-15, 0) {
			t.Errorf("LogDetJacobian = %v, want %v", got, want)
		}
		for _, xv := range []float64{-4, 0, 2.5, 7.25} {
			x := []float32{float32(xv)}
			st.Apply(x)
			z := (xv - ms[0]) / ms[1] // in float64: the identity is exact math
			lpz := logNormal(z, (mu-ms[0])/ms[1], sigma/ms[1])
			if got, want := lpz+st.LogDetJacobian(), logNormal(xv, mu, sigma); !numtest.Close(got, want, 1e-12, 1e-12) {
				t.Errorf("m=%v s=%v x=%v: log p_z + log det = %.15g, log p_x = %.15g", ms[0], ms[1], xv, got, want)
			}
			if !numtest.Close(float64(x[0]), z, 0, 1e-6) {
				t.Errorf("Apply gave %v, want %v", x[0], z)
			}
		}
	}
	// Uniform: x ~ U(0, 4) has density 1/4; z = (x - 2) / 0.5 ~ U(-4, 4), density 1/8.
	st := Standardization{Mean: []float64{2}, Std: []float64{0.5}}
	if got := math.Log(1.0/8) + st.LogDetJacobian(); !numtest.Close(got, math.Log(0.25), 1e-15, 0) {
		t.Errorf("uniform: %v, want log 1/4", got)
	}
	// Dimensions add: two independent coordinates.
	st2 := Standardization{Mean: []float64{1, 2}, Std: []float64{2, 5}}
	if got := st2.LogDetJacobian(); !numtest.Close(got, -math.Log(10), 1e-15, 0) {
		t.Errorf("2-D log det = %v, want -log 10", got)
	}
}

func TestStandardizationJSON(t *testing.T) {
	s := Standardization{Mean: []float64{1.5, -2}, Std: []float64{0.25, 3}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"mean":[1.5,-2],"std":[0.25,3]}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	var back Standardization
	if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back.Mean, s.Mean) || !slices.Equal(back.Std, s.Std) {
		t.Errorf("JSON round trip: %v %+v", err, back)
	}
}

func TestStandardizationValidate(t *testing.T) {
	cases := []struct {
		s    Standardization
		want string
	}{
		{Standardization{Mean: []float64{0}, Std: []float64{1, 1}}, "1 means but 2 deviations"},
		{Standardization{Mean: []float64{math.NaN()}, Std: []float64{1}}, "mean[0] = NaN is not finite"},
		{Standardization{Mean: []float64{0, 0}, Std: []float64{1, 0}}, "std[1] = 0 is not finite and positive"},
		{Standardization{Mean: []float64{0}, Std: []float64{-1}}, "std[0] = -1"},
		{Standardization{Mean: []float64{0}, Std: []float64{math.Inf(1)}}, "std[0] = +Inf"},
		{Standardization{Mean: []float64{0}, Std: []float64{math.NaN()}}, "std[0] = NaN"},
	}
	for _, c := range cases {
		if err := c.s.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.s, err, c.want)
		}
	}
}
