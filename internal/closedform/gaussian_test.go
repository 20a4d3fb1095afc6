package closedform

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat/distmv"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/numtest"
)

// Two test Gaussians with non-diagonal covariances and nonzero means.
func testGaussians() []*Gaussian {
	return []*Gaussian{
		MustGaussian([]float64{1, -0.5}, []float64{2, 0.8, 0.8, 0.7}),
		MustGaussian([]float64{0.5, -1, 2}, []float64{
			1.5, 0.4, -0.3,
			0.4, 0.8, 0.2,
			-0.3, 0.2, 0.6,
		}),
	}
}

func randVec(r *rand.Rand, d int) []float64 {
	v := make([]float64, d)
	for i := range v {
		v[i] = r.NormFloat64()
	}
	return v
}

func TestNewGaussianErrors(t *testing.T) {
	cases := []struct {
		name string
		m, s []float64
	}{
		{"empty", nil, nil},
		{"length", []float64{0, 0}, []float64{1, 0, 0}},
		{"asymmetric", []float64{0, 0}, []float64{1, 0.5, 0.4, 1}},
		{"indefinite", []float64{0, 0}, []float64{1, 2, 2, 1}},
		{"singular", []float64{0, 0}, []float64{1, 1, 1, 1}},
		{"nan", []float64{math.NaN(), 0}, []float64{1, 0, 0, 1}},
	}
	for _, c := range cases {
		if _, err := NewGaussian(c.m, c.s); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

// The spectral forms match docs/math.md §8.1's matrices: C_t = (1-t)^2 I + t^2 S and
// A_t C_t = t S - (1-t) I.
func TestSpectralForms(t *testing.T) {
	for _, g := range testGaussians() {
		d := g.d
		// C_1 = S to 1e-14 (one eigendecomposition's rounding).
		numtest.AllClose(t, "C_1", g.CovAt(1, nil), g.s, 1e-14, 0)
		for _, tt := range []float64{0, 0.2, 0.5, 0.9, 1} {
			// C_t written directly from docs/math.md §8.1, not from the eigenbasis.
			direct := make([]float64, d*d)
			for i := range direct {
				direct[i] = tt * tt * g.s[i]
			}
			for i := 0; i < d; i++ {
				direct[i*d+i] += (1 - tt) * (1 - tt)
			}
			numtest.AllClose(t, "C_t", g.CovAt(tt, nil), direct, 1e-14, 0)
			a := mat.NewDense(d, d, g.A(tt, nil))
			c := mat.NewDense(d, d, direct)
			var ac mat.Dense
			ac.Mul(a, c) // should be t S - (1-t) I
			want := make([]float64, d*d)
			for i := range want {
				want[i] = tt * g.s[i]
			}
			for i := 0; i < d; i++ {
				want[i*d+i] -= 1 - tt
			}
			numtest.AllClose(t, "A_t C_t", ac.RawMatrix().Data, want, 1e-13, 0)
		}
	}
}

// u is d/dt of the flow Transport, at x = Transport(t, z): central
// difference with h = 1e-5, tolerance 1e-8 (truncation ~h^2 times the third derivative).
func TestVelocityIsFlowDerivative(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	worst := 0.0
	for _, g := range testGaussians() {
		d := g.d
		x, u := make([]float64, d), make([]float64, d)
		xp, xm := make([]float64, d), make([]float64, d)
		for range 20 {
			z := randVec(r, d)
			tt := 0.02 + 0.96*r.Float64()
			g.Transport(tt, z, x)
			g.Velocity(tt, x, u)
			const h = 1e-5
			g.Transport(tt+h, z, xp)
			g.Transport(tt-h, z, xm)
			for i := range u {
				fd := (xp[i] - xm[i]) / (2 * h)
				worst = max(worst, math.Abs(fd-u[i]))
				if !numtest.Close(u[i], fd, 1e-8, 1e-8) {
					t.Errorf("D=%d t=%.3f: u[%d] = %.12g, flow derivative %.12g", d, tt, i, u[i], fd)
				}
			}
		}
	}
	t.Log(numtest.Describe("u vs d/dt Transport", worst, 1e-8))
}

// The divergence is the trace of the central-difference Jacobian of u, and
// the VJP is e^T J; tolerance 1e-8 (u is affine in x: the difference is
// exact up to rounding, ~1e-16/h).
func TestDivergenceAndVJPAgainstJacobian(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	worst := 0.0
	for _, g := range testGaussians() {
		d := g.d
		for _, tt := range []float64{0, 0.3, 0.7, 1} {
			x := randVec(r, d)
			e := randVec(r, d)
			jac := make([]float64, d*d) // jac[i*d+j] = du_i/dx_j
			up, um := make([]float64, d), make([]float64, d)
			const h = 1e-6
			for j := 0; j < d; j++ {
				xp := append([]float64(nil), x...)
				xm := append([]float64(nil), x...)
				xp[j] += h
				xm[j] -= h
				g.Velocity(tt, xp, up)
				g.Velocity(tt, xm, um)
				for i := 0; i < d; i++ {
					jac[i*d+j] = (up[i] - um[i]) / (2 * h)
				}
			}
			tr := 0.0
			for i := 0; i < d; i++ {
				tr += jac[i*d+i]
			}
			div := g.Divergence(tt)
			worst = max(worst, math.Abs(div-tr))
			if !numtest.Close(div, tr, 1e-8, 0) {
				t.Errorf("D=%d t=%g: divergence %.12g, Jacobian trace %.12g", d, tt, div, tr)
			}
			w := make([]float64, d)
			g.VJP(tt, e, w)
			want := make([]float64, d)
			for j := 0; j < d; j++ {
				for i := 0; i < d; i++ {
					want[j] += e[i] * jac[i*d+j]
				}
			}
			numtest.AllClose(t, "VJP", w, want, 1e-8, 0)
		}
		// At t = 0, A_0 = -I: u(0, x) = m - x, divergence -D.
		if div := g.Divergence(0); div != -float64(d) {
			t.Errorf("D=%d: divergence at t = 0 is %g, want %d", d, div, -d)
		}
	}
	t.Log(numtest.Describe("divergence vs Jacobian trace", worst, 1e-8))
}

// LogPdf agrees with gonum's multivariate normal (a Cholesky-based,
// independent implementation) to 1e-12; LogDensity(0) is N(0, I).
func TestLogPdf(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, g := range testGaussians() {
		d := g.d
		sym := mat.NewSymDense(d, append([]float64(nil), g.s...))
		ref, ok := distmv.NewNormal(g.m, sym, nil)
		if !ok {
			t.Fatal("gonum rejects the covariance")
		}
		for range 20 {
			x := randVec(r, d)
			for i := range x {
				x[i] = 2*x[i] + g.m[i]
			}
			if got, want := g.LogPdf(x), ref.LogProb(x); !numtest.Close(got, want, 1e-12, 1e-12) {
				t.Errorf("D=%d: LogPdf %.15g, gonum %.15g", d, got, want)
			}
			sq := 0.0
			for _, v := range x {
				sq += v * v
			}
			want0 := -0.5*float64(d)*math.Log(2*math.Pi) - sq/2
			if got := g.LogDensity(0, x); !numtest.Close(got, want0, 1e-12, 1e-12) {
				t.Errorf("D=%d: LogDensity(0) %.15g, want %.15g", d, got, want0)
			}
		}
	}
}

// The continuity equation along the flow: d/dt log p_t(x(t)) = -div u(t),
// central difference h = 1e-5, tolerance 1e-8. This ties LogDensity,
// Transport and Divergence together.
func TestContinuityEquation(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	worst := 0.0
	for _, g := range testGaussians() {
		d := g.d
		x := make([]float64, d)
		for range 10 {
			z := randVec(r, d)
			tt := 0.05 + 0.9*r.Float64()
			lp := func(s float64) float64 {
				g.Transport(s, z, x)
				return g.LogDensity(s, x)
			}
			fd := numtest.CentralDiff(lp, tt, 1e-5)
			worst = max(worst, math.Abs(fd+g.Divergence(tt)))
			if !numtest.Close(fd, -g.Divergence(tt), 1e-8, 0) {
				t.Errorf("D=%d t=%.3f: d/dt log p = %.12g, -div = %.12g", d, tt, fd, -g.Divergence(tt))
			}
		}
	}
	t.Log(numtest.Describe("continuity equation", worst, 1e-8))
}

// Transport(1, .) is an affine map with covariance S: R R^T = S.
func TestTransportCovariance(t *testing.T) {
	for _, g := range testGaussians() {
		d := g.d
		r := make([]float64, d*d)
		zero := make([]float64, d)
		col := make([]float64, d)
		base := make([]float64, d)
		g.Transport(1, zero, base)
		numtest.AllClose(t, "Transport(1, 0)", base, g.m, 1e-15, 0)
		for j := 0; j < d; j++ {
			e := make([]float64, d)
			e[j] = 1
			g.Transport(1, e, col)
			for i := 0; i < d; i++ {
				r[i*d+j] = col[i] - base[i]
			}
		}
		rm := mat.NewDense(d, d, r)
		var rrt mat.Dense
		rrt.Mul(rm, rm.T())
		numtest.AllClose(t, "R R^T", rrt.RawMatrix().Data, g.s, 1e-13, 0)
	}
}

// The backend field agrees with the float64 methods to float32 rounding of
// its inputs and outputs (rtol 1e-6, atol 1e-6).
func TestFieldOnCPU(t *testing.T) {
	b := gpu.NewCPU(2)
	defer b.Close()
	r := rand.New(rand.NewPCG(9, 10))
	for _, g := range testGaussians() {
		d := g.d
		const rows = 7
		f := g.Field(b)
		if f.Dim() != d {
			t.Fatalf("Dim %d, want %d", f.Dim(), d)
		}
		xs := make([]float32, rows*d)
		es := make([]float32, rows*d)
		for i := range xs {
			xs[i] = float32(r.NormFloat64())
			es[i] = float32(r.NormFloat64())
		}
		x, e := b.Alloc(rows*d), b.Alloc(rows*d)
		v, w, div := b.Alloc(rows*d), b.Alloc(rows*d), b.Alloc(rows)
		b.Upload(x, xs)
		b.Upload(e, es)
		const tt = 0.37
		wantV := make([]float64, rows*d)
		wantW := make([]float64, rows*d)
		wantDiv := make([]float64, rows)
		row := make([]float64, d)
		for i := 0; i < rows; i++ {
			for j := range row {
				row[j] = float64(xs[i*d+j])
			}
			g.Velocity(tt, row, wantV[i*d:i*d+d])
			for j := range row {
				row[j] = float64(es[i*d+j])
			}
			g.VJP(tt, row, wantW[i*d:i*d+d])
			wantDiv[i] = g.Divergence(tt)
		}
		got := func(buf gpu.Buffer) []float32 {
			h, _ := gpu.HostData(buf)
			return h
		}
		f.Velocity(tt, rows, x, v)
		numtest.AllClose(t, "Velocity", got(v), wantV, 1e-6, 1e-6)
		b.Fill(v, 0)
		f.VJP(tt, rows, x, e, v, w)
		numtest.AllClose(t, "VJP v", got(v), wantV, 1e-6, 1e-6)
		numtest.AllClose(t, "VJP w", got(w), wantW, 1e-6, 1e-6)
		b.Fill(v, 0)
		f.Divergence(tt, rows, x, v, div)
		numtest.AllClose(t, "Divergence v", got(v), wantV, 1e-6, 1e-6)
		numtest.AllClose(t, "Divergence", got(div), wantDiv, 1e-6, 1e-6)
		if f.Calls != 3 {
			t.Errorf("Calls = %d, want 3", f.Calls)
		}
	}
}
