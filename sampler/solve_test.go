package sampler

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/numtest"
)

var fixedMethods = []Method{Euler, Midpoint, Heun, RK4}

func TestParseMethod(t *testing.T) {
	for _, m := range []Method{Euler, Midpoint, Heun, RK4, Dopri5} {
		got, err := ParseMethod(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMethod(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMethod("rk45"); err == nil {
		t.Error("ParseMethod(rk45): no error")
	}
	if s := Method(9).String(); s != "Method(9)" {
		t.Errorf("Method(9).String() = %q", s)
	}
}

// v = 3 t^2: x(1) = x(0) + 1. Each fixed method is a quadrature rule of
// int_0^1 3 t^2 dt on the uniform grid h = 1/N, with a known value:
// Euler (left rectangles) (N-1)(2N-1)/(2N^2), midpoint 1 - h^2/4,
// Heun (trapezoid) 1 + h^2/2, RK4 (Simpson) and Dopri5 exactly 1.
// Tolerance 1e-6 absolute: float32 rounding of N = 10 additions to O(1)
// values (ulp 1.2e-7).
func TestPolynomialField(t *testing.T) {
	b := newCPU(t)
	const n = 10
	h := 1.0 / n
	x0 := []float32{0, 0.5, -1, 2.25}
	want := map[Method]float64{
		Euler:    float64((n-1)*(2*n-1)) / (2 * n * n),
		Midpoint: 1 - h*h/4,
		Heun:     1 + h*h/2,
		RK4:      1,
		Dopri5:   1,
	}
	for _, m := range []Method{Euler, Midpoint, Heun, RK4, Dopri5} {
		f := &polyField{b: b, d: 2}
		x := upload(b, append(append([]float32(nil), x0...), x0...))
		st, err := Solve(b, f, x, 4, Options{Method: m, Steps: n, Rtol: 1e-6, Atol: 1e-6})
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		got := hostOf(x)
		worst := 0.0
		for i, v := range got {
			w := float64(x0[i%4]) + want[m]
			worst = max(worst, math.Abs(float64(v)-w))
		}
		t.Logf("%v: %s, NFE %d", m, numtest.Describe("x(1) - x(0) - increment", worst, 1e-6), st.NFE)
		if worst > 1e-6 {
			t.Errorf("%v: x(1) off by %.3g from x(0) + %.9g", m, worst, want[m])
		}
		if m != Dopri5 && st.NFE != n*m.Stages() {
			t.Errorf("%v: NFE %d, want %d", m, st.NFE, n*m.Stages())
		}
		if st.FieldCalls != st.NFE || len(f.times) != st.NFE {
			t.Errorf("%v: FieldCalls %d, field saw %d calls, NFE %d", m, st.FieldCalls, len(f.times), st.NFE)
		}
	}
}

// stability is the method's amplification factor for x' = lambda x with
// z = lambda h: x_{n+1} = R(z) x_n exactly (Heun and midpoint coincide on
// autonomous linear problems).
func stability(m Method, z float64) float64 {
	switch m {
	case Euler:
		return 1 + z
	case Midpoint, Heun:
		return 1 + z + z*z/2
	case RK4:
		return 1 + z + z*z/2 + z*z*z/6 + z*z*z*z/24
	}
	panic(m)
}

// v = a x: forward from x(0), each fixed method gives exactly
// x(0) R(a h)^N (its stability polynomial), and backward (T0 = 1, T1 = 0)
// from x(1) it gives x(1) R(-a h)^N: this pins the sign and size of every
// stage. Tolerance rtol 2e-6: float32 rounding over N = 20 steps. RK4 and
// Dopri5 also reproduce x(0) e^a and invert it backwards (rtol 1e-5; RK4's
// truncation with N = 20, a = 1.5 is ~1e-6 relative).
func TestLinearFieldForwardBackward(t *testing.T) {
	b := newCPU(t)
	const a, n, rows = 1.5, 20, 5
	x0 := []float32{1, -0.5, 2, 0.125, -3}
	ea := math.Exp(float64(float32(a)))
	for _, m := range fixedMethods {
		f := &linearField{b: b, d: 1, a: a}
		x := upload(b, x0)
		if _, err := Solve(b, f, x, rows, Options{Method: m, Steps: n}); err != nil {
			t.Fatal(err)
		}
		r := math.Pow(stability(m, float64(float32(a))/n), n)
		want := make([]float64, rows)
		for i := range want {
			want[i] = float64(x0[i]) * r
		}
		numtest.AllClose(t, m.String()+" forward vs R(ah)^N", hostOf(x), want, 0, 2e-6)

		x1 := make([]float32, rows)
		for i := range x1 {
			x1[i] = float32(float64(x0[i]) * ea)
		}
		x = upload(b, x1)
		if _, err := Solve(b, f, x, rows, Options{Method: m, Steps: n, T0: 1, T1: 0}); err != nil {
			t.Fatal(err)
		}
		r = math.Pow(stability(m, -float64(float32(a))/n), n)
		for i := range want {
			want[i] = float64(x1[i]) * r
		}
		numtest.AllClose(t, m.String()+" backward vs R(-ah)^N", hostOf(x), want, 0, 2e-6)
	}
	for _, o := range []Options{
		{Method: RK4, Steps: n},
		{Method: Dopri5, Rtol: 1e-6, Atol: 1e-6},
	} {
		f := &linearField{b: b, d: 1, a: a}
		x := upload(b, x0)
		if _, err := Solve(b, f, x, rows, o); err != nil {
			t.Fatal(err)
		}
		want := make([]float64, rows)
		for i := range want {
			want[i] = float64(x0[i]) * ea
		}
		fwd := numtest.MaxRelErr(hostOf(x), want, 1e-30)
		numtest.AllClose(t, o.Method.String()+" x(0) e^a", hostOf(x), want, 0, 1e-5)
		o.T0, o.T1 = 1, 0
		if _, err := Solve(b, f, x, rows, o); err != nil {
			t.Fatal(err)
		}
		back := numtest.MaxRelErr(hostOf(x), x0, 1e-30)
		numtest.AllClose(t, o.Method.String()+" round trip", hostOf(x), x0, 0, 1e-5)
		t.Logf("%v: forward max rel error %.3g, round trip %.3g (tolerance 1e-5)", o.Method, fwd, back)
	}
}

// Halving the step divides the global error by 2^p (p = 1, 2, 2, 4) within
// +-0.3 in log2. Problem: v = (0.5 + t) x on [0, 1], x(1) = x(0) e
// (time-dependent, so Heun and midpoint differ). The state is float32, so
// the step counts keep the error far above float32 rounding: the error is
// the mean over 1024 rows (x(0) in [0.5, 2)) of the signed relative error,
// which averages the rounding of individual rows away and leaves a bias of
// about 3e-8 (the float32 RK4 weights); RK4 therefore uses few steps (its
// smallest error, at N = 16, is ~2e-7).
func TestOrder(t *testing.T) {
	b := newCPU(t)
	const rows = 1024
	r := rand.New(rand.NewPCG(11, 12))
	x0 := make([]float32, rows)
	for i := range x0 {
		x0[i] = float32(0.5 + 1.5*r.Float64())
	}
	steps := map[Method][]int{
		Euler:    {32, 64, 128},
		Midpoint: {16, 32, 64},
		Heun:     {16, 32, 64},
		RK4:      {4, 8, 16},
	}
	for _, m := range fixedMethods {
		var errs []float64
		for _, n := range steps[m] {
			x := upload(b, x0)
			if _, err := Solve(b, &linearField{b: b, d: 1, a: 0.5, c: 1}, x, rows, Options{Method: m, Steps: n}); err != nil {
				t.Fatal(err)
			}
			e := 0.0
			for i, v := range hostOf(x) {
				e += float64(v)/float64(x0[i])/math.E - 1
			}
			errs = append(errs, math.Abs(e/rows))
		}
		for i := 1; i < len(errs); i++ {
			p := math.Log2(errs[i-1] / errs[i])
			t.Logf("%v: N = %d -> %d: error %.3g -> %.3g, observed order %.3f (want %d +- 0.3)",
				m, steps[m][i-1], steps[m][i], errs[i-1], errs[i], p, m.Order())
			if math.Abs(p-float64(m.Order())) > 0.3 || math.IsNaN(p) {
				t.Errorf("%v: observed order %.3f, want %d +- 0.3", m, p, m.Order())
			}
		}
	}
}

// Dopri5 meets its tolerance: with atol = rtol, the global relative error
// at T1 stays below 10 rtol (a local-error controller does not bound the
// global error; 10 is the margin measured problems need, logged below) on
// three problems with known solutions, and the NFE accounting is exact:
// NFE = 1 (first stage) + 1 (starting-step heuristic) + 6 per attempted
// step, and FieldCalls = NFE.
func TestDopri5Tolerance(t *testing.T) {
	b := newCPU(t)
	type problem struct {
		name   string
		f      func() Field
		d      int
		x0     []float32
		t0, t1 float64
		exact  func(t float64, x0 []float32) []float64
	}
	logistic := func(t float64, x0 []float32) []float64 {
		out := make([]float64, len(x0))
		for i, v := range x0 {
			out[i] = 1 / (1 + (1/float64(v)-1)*math.Exp(-t))
		}
		return out
	}
	const omega = 2.0
	problems := []problem{
		{"v = 1.5 x", func() Field { return &linearField{b: b, d: 1, a: 1.5} }, 1,
			[]float32{1, -0.5, 2}, 0, 1,
			func(t float64, x0 []float32) []float64 {
				out := make([]float64, len(x0))
				for i, v := range x0 {
					out[i] = float64(v) * math.Exp(float64(float32(1.5))*t)
				}
				return out
			}},
		{"logistic v = x(1-x)", func() Field {
			return &hostField{d: 1, fn: func(t float64, x, v []float32) { v[0] = x[0] * (1 - x[0]) }}
		}, 1, []float32{0.1, 0.5, 0.9}, 0, 6, logistic},
		{"rotation, backwards", func() Field {
			return &hostField{d: 2, fn: func(t float64, x, v []float32) { v[0], v[1] = -omega*x[1], omega*x[0] }}
		}, 2, []float32{1, 0, 0.3, -0.8}, 3, 0,
			func(t float64, x0 []float32) []float64 {
				s, c := math.Sincos(omega * (t - 3))
				out := make([]float64, len(x0))
				for r := 0; r < len(x0); r += 2 {
					out[r] = c*float64(x0[r]) - s*float64(x0[r+1])
					out[r+1] = s*float64(x0[r]) + c*float64(x0[r+1])
				}
				return out
			}},
	}
	for _, p := range problems {
		for _, tol := range []float64{1e-3, 1e-4, 1e-5, 1e-6} {
			f := p.f()
			x := upload(b, p.x0)
			rows := len(p.x0) / p.d
			st, err := Solve(b, f, x, rows, Options{Method: Dopri5, T0: p.t0, T1: p.t1, Rtol: tol, Atol: tol})
			if err != nil {
				t.Fatalf("%s rtol %g: %v", p.name, tol, err)
			}
			want := p.exact(p.t1, p.x0)
			rel := numtest.MaxRelErr(hostOf(x), want, 1)
			t.Logf("%s, rtol = atol = %g: max global error %.3g (%.2f rtol), NFE %d, steps %d, rejected %d",
				p.name, tol, rel, rel/tol, st.NFE, st.Steps, st.Rejected)
			if rel > 10*tol {
				t.Errorf("%s rtol %g: global error %.3g > 10 rtol", p.name, tol, rel)
			}
			if want := 2 + 6*(st.Steps+st.Rejected); st.NFE != want {
				t.Errorf("%s: NFE %d, want 2 + 6 (steps + rejected) = %d", p.name, st.NFE, want)
			}
			if st.FieldCalls != st.NFE {
				t.Errorf("%s: FieldCalls %d != NFE %d", p.name, st.FieldCalls, st.NFE)
			}
		}
	}
}

// With a given first step there is no heuristic evaluation, so
// NFE = 1 + 6 (steps + rejected); a first step far too large for the
// tolerance must be rejected, and the counts still add up.
func TestDopri5Accounting(t *testing.T) {
	b := newCPU(t)
	f := &linearField{b: b, d: 1, a: -3}
	x := upload(b, []float32{1, 2})
	st, err := Solve(b, f, x, 2, Options{Method: Dopri5, Rtol: 1e-6, Atol: 1e-6, InitialStep: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("InitialStep 1: steps %d, rejected %d, NFE %d", st.Steps, st.Rejected, st.NFE)
	if st.Rejected == 0 {
		t.Error("expected a first step of 1 to be rejected at rtol 1e-6")
	}
	if want := 1 + 6*(st.Steps+st.Rejected); st.NFE != want || f.calls != st.NFE {
		t.Errorf("NFE %d, field calls %d, want 1 + 6 (steps + rejected) = %d", st.NFE, f.calls, want)
	}
	want := []float64{math.Exp(-3), 2 * math.Exp(-3)}
	numtest.AllClose(t, "x(1)", hostOf(x), want, 1e-6, 1e-5)
}

// Reaching MaxSteps is an error wrapping ErrMaxSteps, after exactly
// MaxSteps attempts, leaving the state at the last accepted time.
func TestDopri5MaxSteps(t *testing.T) {
	b := newCPU(t)
	f := &linearField{b: b, d: 1, a: 1.5}
	x := upload(b, []float32{1})
	st, err := Solve(b, f, x, 1, Options{Method: Dopri5, Rtol: 1e-7, Atol: 1e-7, MaxSteps: 3})
	if !errors.Is(err, ErrMaxSteps) {
		t.Fatalf("err = %v, want ErrMaxSteps", err)
	}
	t.Logf("error: %v", err)
	if st.Steps+st.Rejected != 3 {
		t.Errorf("%d attempts, want MaxSteps = 3", st.Steps+st.Rejected)
	}
	if v := hostOf(x)[0]; !(v > 1 && v < float32(math.Exp(1.5))) {
		t.Errorf("state %g: want the value at an intermediate time", v)
	}
}

// A state or field that is not finite at the start ends Dopri5 at once,
// naming it: its starting step came out NaN, and every attempt at t = NaN
// was rejected until MaxSteps (60,002 evaluations by default).
func TestDopri5NonFiniteStart(t *testing.T) {
	b := newCPU(t)
	f := &linearField{b: b, d: 1, a: -1}
	x := upload(b, []float32{1, float32(math.NaN())})
	st, err := Solve(b, f, x, 2, Options{Method: Dopri5, Rtol: 1e-5, Atol: 1e-5})
	if err == nil || !strings.Contains(err.Error(), "not finite (NaN or Inf) at the start") || st.NFE > 1 {
		t.Errorf("err %v after %d evaluations", err, st.NFE)
	}
}

// Stop is asked before every step, and its error ends the solve at once,
// with the steps taken so far counted.
func TestStop(t *testing.T) {
	b := newCPU(t)
	stopErr := errors.New("stop")
	for _, m := range []Method{Euler, RK4, Dopri5} {
		f := &linearField{b: b, d: 1, a: -1}
		x := upload(b, []float32{1})
		asked := 0
		o := Options{Method: m, Steps: 50, Rtol: 1e-6, Atol: 1e-6, Stop: func() error {
			asked++
			if asked > 3 {
				return stopErr
			}
			return nil
		}}
		st, err := Solve(b, f, x, 1, o)
		if !errors.Is(err, stopErr) {
			t.Fatalf("%v: err = %v, want the Stop error", m, err)
		}
		if st.Steps+st.Rejected != 3 || asked != 4 {
			t.Errorf("%v: %d steps and %d rejected after Stop was asked %d times, want 3 steps", m, st.Steps, st.Rejected, asked)
		}
		if f.calls != st.NFE {
			t.Errorf("%v: %d field calls, NFE %d", m, f.calls, st.NFE)
		}
	}
}

// Save times are reported exactly (the t passed to OnSave is the requested
// value, bit for bit), in the order of integration, with the state at that
// time: Dopri5 clips its steps onto them; a fixed-step solve splits the step
// that contains an off-grid save time. States within rtol 1e-5 of x(0) e^{at}
// (RK4 with 10 steps has truncation error ~1e-6 here).
func TestSaveAt(t *testing.T) {
	b := newCPU(t)
	const a = 1.5
	x0 := []float32{1, -2}
	saves := []float64{0.7, 0.1, 1.0 / 3, 1, 0, 0.5, 0.5}
	for _, dir := range []string{"forward", "backward"} {
		for _, m := range []Method{RK4, Dopri5} {
			o := Options{Method: m, Steps: 10, Rtol: 1e-6, Atol: 1e-6, SaveAt: saves}
			start := x0
			sorted := []float64{0, 0.1, 1.0 / 3, 0.5, 0.5, 0.7, 1}
			if dir == "backward" {
				o.T0, o.T1 = 1, 0
				start = []float32{float32(math.Exp(a)), float32(-2 * math.Exp(a))}
				sorted = []float64{1, 0.7, 0.5, 0.5, 1.0 / 3, 0.1, 0}
			}
			var got []float64
			o.OnSave = func(tt float64, x gpu.Buffer) {
				got = append(got, tt)
				want := []float64{math.Exp(a * tt), -2 * math.Exp(a*tt)}
				numtest.AllClose(t, m.String()+" saved state", download(b, x), want, 0, 1e-5)
			}
			x := upload(b, start)
			st, err := Solve(b, &linearField{b: b, d: 1, a: a}, x, 2, o)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(sorted) {
				t.Fatalf("%v %s: saved at %v, want %v", m, dir, got, sorted)
			}
			for i := range got {
				if got[i] != sorted[i] {
					t.Errorf("%v %s: save %d at t = %v, want exactly %v", m, dir, i, got[i], sorted[i])
				}
			}
			// RK4's grid is 0, 0.1, ..., 1: 1/3 is off the grid and splits a
			// step, 0.1, 0.5 and 0.7 are within 1e-12 of grid points.
			if m == RK4 && (st.Steps != 11 || st.NFE != 44) {
				t.Errorf("RK4 %s: %d steps, NFE %d, want 11 and 44", dir, st.Steps, st.NFE)
			}
		}
	}
}

// The fixed grid with TimeShift: Euler evaluates at the start of each step,
// t_i = lo + (hi - lo) ShiftTime(i/N, shift); backwards it visits the same
// points in reverse.
func TestTimeShiftGrid(t *testing.T) {
	b := newCPU(t)
	const n, shift = 4, 3.0
	for _, c := range []struct{ t0, t1 float64 }{{0, 1}, {1, 0}, {0.2, 0.6}} {
		f := &polyField{b: b, d: 1}
		x := upload(b, []float32{0})
		st, err := Solve(b, f, x, 1, Options{Method: Euler, Steps: n, T0: c.t0, T1: c.t1, TimeShift: shift})
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := min(c.t0, c.t1), max(c.t0, c.t1)
		grid := make([]float64, n+1)
		for i := range grid {
			grid[i] = lo + (hi-lo)*flow.ShiftTime(float64(i)/n, shift)
		}
		want := grid[:n]
		if c.t1 < c.t0 {
			want = []float64{grid[4], grid[3], grid[2], grid[1]}
		}
		numtest.AllClose(t, "Euler times", f.times, want, 1e-15, 0)
		if st.Steps != n {
			t.Errorf("%d steps, want %d", st.Steps, n)
		}
		// The Euler sum of 3t^2 over the grid, with signed steps.
		sum := 0.0
		for i := 0; i < n; i++ {
			a, z := grid[i], grid[i+1]
			if c.t1 < c.t0 {
				a, z = grid[n-i], grid[n-i-1]
			}
			sum += (z - a) * 3 * a * a
		}
		if got := float64(hostOf(x)[0]); !numtest.Close(got, sum, 1e-6, 1e-6) {
			t.Errorf("T0 %g T1 %g: x = %.9g, want %.9g", c.t0, c.t1, got, sum)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	b := newCPU(t)
	f := &linearField{b: b, d: 2, a: 1}
	x := b.Alloc(8)
	save := func(float64, gpu.Buffer) {}
	cases := []struct {
		name string
		o    Options
		rows int
		msg  string
	}{
		{"steps", Options{Method: RK4}, 4, "Steps"},
		{"nan T0", Options{Method: RK4, Steps: 1, T0: math.NaN()}, 4, "finite"},
		{"inf T1", Options{Method: RK4, Steps: 1, T1: math.Inf(1)}, 4, "finite"},
		{"empty interval", Options{Method: RK4, Steps: 1, T0: 0.5, T1: 0.5}, 4, "empty"},
		{"rtol", Options{Method: Dopri5, Atol: 1e-5}, 4, "Rtol"},
		{"atol", Options{Method: Dopri5, Rtol: 1e-5, Atol: -1}, 4, "Atol"},
		{"tiny rtol", Options{Method: Dopri5, Rtol: 1e-50, Atol: 1e-5}, 4, "Rtol"},
		{"max steps", Options{Method: Dopri5, Rtol: 1e-5, Atol: 1e-5, MaxSteps: -1}, 4, "MaxSteps"},
		{"initial step", Options{Method: Dopri5, Rtol: 1e-5, Atol: 1e-5, InitialStep: math.NaN()}, 4, "InitialStep"},
		{"shift", Options{Method: Euler, Steps: 1, TimeShift: -2}, 4, "TimeShift"},
		{"save range", Options{Method: Euler, Steps: 1, SaveAt: []float64{1.5}, OnSave: save}, 4, "outside"},
		{"save hook", Options{Method: Euler, Steps: 1, SaveAt: []float64{0.5}}, 4, "OnSave"},
		{"method", Options{Method: Method(7), Steps: 1}, 4, "method"},
		{"rows", Options{Method: Euler, Steps: 1}, 0, "rows"},
		{"short state", Options{Method: Euler, Steps: 1}, 5, "state buffer"},
	}
	for _, c := range cases {
		_, err := Solve(b, f, x, c.rows, c.o)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %q does not mention %q", c.name, err, c.msg)
		}
	}
	if f.calls != 0 {
		t.Errorf("the field was called %d times by invalid solves", f.calls)
	}
}

// The zero-value interval is [0, 1]; DefaultOptions is a valid Dopri5 solve.
func TestDefaults(t *testing.T) {
	b := newCPU(t)
	f := &polyField{b: b, d: 1}
	x := upload(b, []float32{0})
	if _, err := Solve(b, f, x, 1, DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	if got := hostOf(x)[0]; math.Abs(float64(got)-1) > 1e-6 {
		t.Errorf("default interval: x(1) - x(0) = %g, want 1", got)
	}
}
