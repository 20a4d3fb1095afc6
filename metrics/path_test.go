package metrics

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/internal/numtest"
)

func normalSet(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func meanSq(x []float32, n, d int) float64 {
	s := 0.0
	for _, v := range x[:n*d] {
		s += float64(v) * float64(v)
	}
	return s / float64(n)
}

// A constant field moves every point along a straight line at constant
// speed: S = 0, K = |c|^2 = displacement.
func TestPathStatsConstantField(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n, d = 50, 3
	c := []float32{0.5, -2, 1}
	st, x1, err := FlowPathStats(context.Background(), func(_ float64, x, v []float32) {
		for i := range v {
			v[i] = c[i%d]
		}
	}, normalSet(r, n*d), n, d, 7)
	if err != nil {
		t.Fatal(err)
	}
	want := 0.25 + 4 + 1
	if st.Straightness > 1e-12 || !numtest.Close(st.Kinetic, want, 0, 1e-12) || !numtest.Close(st.Displacement, want, 0, 1e-6) || st.Nodes != 8 {
		t.Errorf("%+v, want S = 0, K = %v", st, want)
	}
	if len(x1) != n*d {
		t.Errorf("x1 has %d values", len(x1))
	}
}

// The rectified flow between N(0, 1) and N(0, s^2) in one dimension,
// v(t, x) = (s - 1) x / (1 + (s - 1) t), moves x0 to s x0 along straight
// lines at constant speed: S = 0 and K = (s - 1)^2 E x0^2.
func TestPathStatsStraightLinearFlow(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n, s = 200, 3.0
	x0 := normalSet(r, n)
	st, _, err := FlowPathStats(context.Background(), func(tt float64, x, v []float32) {
		for i := range v {
			v[i] = float32((s - 1) * float64(x[i]) / (1 + (s-1)*tt))
		}
	}, x0, n, 1, 50)
	if err != nil {
		t.Fatal(err)
	}
	want := (s - 1) * (s - 1) * meanSq(x0, n, 1)
	// RK4 on 50 steps and float32 states: the velocity along each path
	// stays constant to about 1e-6 relative, so S is ~1e-12 of K.
	if st.Straightness > 1e-9*want || !numtest.Close(st.Kinetic, want, 0, 1e-5) {
		t.Errorf("%+v, want S = 0, K = %v", st, want)
	}
}

// A rotation v = w J x keeps |x| and turns by w: K = w^2 E|x0|^2 and, as
// x_1 - x_0 = (R(w) - I) x0 has squared length 2 (1 - cos w) |x0|^2,
// S = K - displacement = (w^2 - 2 (1 - cos w)) E|x0|^2. |v|^2 is constant
// along each path, so K is exact to the RK4 states; S carries the
// trapezoid error of ∫ v dt, second order in the step.
func TestPathStatsRotation(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const n, w = 100, 2.0
	x0 := normalSet(r, 2*n)
	r2 := meanSq(x0, n, 2)
	field := func(_ float64, x, v []float32) {
		for i := 0; i < len(x); i += 2 {
			v[i], v[i+1] = float32(-w*float64(x[i+1])), float32(w*float64(x[i]))
		}
	}
	wantS := (w*w - 2*(1-math.Cos(w))) * r2
	wantK := w * w * r2
	var errS [2]float64
	for k, steps := range []int{20, 40} {
		st, _, err := FlowPathStats(context.Background(), field, x0, n, 2, steps)
		if err != nil {
			t.Fatal(err)
		}
		// RK4's per-step amplitude error (w h)^6 / 144 is below 1e-7 at
		// these steps, at the level of the float32 states.
		if !numtest.Close(st.Kinetic, wantK, 0, 1e-5) || !numtest.Close(st.Displacement, wantK-wantS, 0, 1e-5) {
			t.Errorf("steps %d: %+v, want K = %.9g, displacement %.9g", steps, st, wantK, wantK-wantS)
		}
		errS[k] = math.Abs(st.Straightness - wantS)
	}
	// The trapezoid rule shrinks ∫ v dt by (w h)^2 / 12 at leading order,
	// which moves S by 2 (w h)^2 / 12 times the displacement: 0.4% of S at
	// 20 steps here.
	if ratio := errS[0] / errS[1]; ratio < 3.5 || ratio > 4.5 || errS[0] > 0.01*wantS {
		t.Errorf("S errors %.3g (20 steps), %.3g (40): ratio %.2f, want about 4; S = %.6g", errS[0], errS[1], ratio, wantS)
	}
}

// A curved flow whose integrand varies in t: the exact flow of N(0, 1) to
// N(0, lam) under the `ot` path (docs/math.md §8), x_t = sqrt(c(t)) z
// with c(t) = (1 - t)^2 + t^2 lam, fed to PathIntegral on a non-uniform
// grid. S per unit E z^2 is ∫ (sqrt(lam) - 1 - c'(t) / (2 sqrt(c(t))))^2 dt,
// evaluated here by a fine composite Simpson rule; the trapezoid error
// falls as h^2.
func TestPathIntegralCurvedFlow(t *testing.T) {
	const lam = 9.0
	c := func(t float64) float64 { return (1-t)*(1-t) + t*t*lam }
	vel := func(t float64) float64 { return (t*lam - (1 - t)) / math.Sqrt(c(t)) } // d sqrt(c)/dt
	f := func(t float64) float64 { e := math.Sqrt(lam) - 1 - vel(t); return e * e }
	simpson := func(g func(float64) float64, m int) float64 {
		h := 1 / float64(m)
		s := g(0) + g(1)
		for k := 1; k < m; k++ {
			s += float64(2+2*(k%2)) * g(float64(k)*h)
		}
		return s * h / 3
	}
	wantS := simpson(f, 1<<16)
	wantK := simpson(func(t float64) float64 { return vel(t) * vel(t) }, 1<<16)
	z := []float32{1, -2, 0.5}
	ez2 := meanSq(z, 3, 1)
	errAt := func(nodes int) float64 {
		p, err := NewPathIntegral(3, 1)
		if err != nil {
			t.Fatal(err)
		}
		x, v := make([]float32, 3), make([]float32, 3)
		for k := 0; k <= nodes; k++ {
			u := float64(k) / float64(nodes)
			tt := u * u * (3 - 2*u) // smoothstep: a non-uniform grid
			for i, zi := range z {
				x[i] = float32(math.Sqrt(c(tt)) * float64(zi))
				v[i] = float32(vel(tt) * float64(zi))
			}
			if err := p.Add(tt, x, v); err != nil {
				t.Fatal(err)
			}
		}
		st, err := p.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if !numtest.Close(st.Kinetic, wantK*ez2, 0, 20/float64(nodes*nodes)) {
			t.Errorf("%d nodes: K = %.6g, want %.6g", nodes, st.Kinetic, wantK*ez2)
		}
		return math.Abs(st.Straightness - wantS*ez2)
	}
	e1, e2 := errAt(100), errAt(200)
	if ratio := e1 / e2; ratio < 3.5 || ratio > 4.5 || e1 > 1e-2*wantS*ez2 {
		t.Errorf("S errors %.3g (100 nodes), %.3g (200): ratio %.2f, want about 4 (second order); S = %.6g", e1, e2, ratio, wantS*ez2)
	}
}

func TestPathIntegralErrors(t *testing.T) {
	if _, err := NewPathIntegral(0, 2); err == nil {
		t.Error("n = 0 accepted")
	}
	p, _ := NewPathIntegral(2, 1)
	if _, err := p.Stats(); err == nil || !strings.Contains(err.Error(), "0 nodes") {
		t.Errorf("no nodes: %v", err)
	}
	ok := []float32{1, 2}
	if err := p.Add(0.5, ok, ok); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		t    float64
		x, v []float32
		want string
	}{
		{0.5, ok, ok, "times must be finite and increase"},
		{math.NaN(), ok, ok, "t = NaN"},
		{0.7, ok, []float32{1}, "1 velocities, want 2"},
		{0.7, []float32{1, float32(math.Inf(1))}, ok, "row 1 has a non-finite"},
	} {
		if err := p.Add(c.t, c.x, c.v); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("t=%v: %v, want %q", c.t, err, c.want)
		}
	}
	if _, _, err := FlowPathStats(context.Background(), func(float64, []float32, []float32) {}, ok, 2, 1, 0); err == nil {
		t.Error("0 steps accepted")
	}
}

// A context cancelled during the integration stops it before the next
// evaluation of the field, with the context's error.
func TestFlowPathStatsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	field := func(_ float64, x, v []float32) {
		calls++
		if calls == 6 {
			cancel()
		}
		copy(v, x)
	}
	_, x1, err := FlowPathStats(ctx, field, []float32{1, 2}, 1, 2, 1000)
	if !errors.Is(err, context.Canceled) || x1 != nil || calls != 6 {
		t.Errorf("%v after %d calls, x1 %v: want context.Canceled after 6 calls", err, calls, x1)
	}
}
