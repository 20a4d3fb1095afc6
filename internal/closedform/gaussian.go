// Package closedform holds flow-matching problems whose answers are known
// exactly, in float64, for checking solvers, likelihood code and a trained
// network's loss floor (docs/math.md §8).
//
// Gaussian is data N(m, S) under the `ot` path with sigma_min = 0: the
// marginal x_t is N(t m, C_t), C_t = (1-t)^2 I + t^2 S, and the marginal
// velocity field (the minimizer of the flow-matching loss) is
//
//	u(t, x) = m + A_t (x - t m),   A_t = (t S - (1-t) I) C_t^{-1}
//
// with divergence tr A_t. Because every C_t is diagonal in the eigenbasis of
// S (S = Q diag(lambda) Q^T), A_t = Q diag(a_i(t)) Q^T with
// a_i(t) = (t lambda_i - (1-t)) / ((1-t)^2 + t^2 lambda_i), and the flow of
// u from x(0) = z is x(t) = t m + C_t^{1/2} z (Transport): integrating from
// N(0, I) gives N(m, S) at t = 1, sample by sample.
//
// Field adapts a Gaussian to the batched field interfaces of package sampler
// (Velocity, VJP, Divergence) on any gpu.Backend, by downloading the rows,
// computing in float64 and uploading the results. It satisfies them
// structurally: this package does not import sampler, so that sampler's tests
// can import it.
package closedform

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/fmgpu/fmgpu/gpu"
)

// Gaussian is the closed form for data N(M, S) and the `ot` path with
// sigma_min = 0. Its methods are exact up to float64 rounding of one
// symmetric eigendecomposition of S.
type Gaussian struct {
	d   int
	m   []float64
	s   []float64 // row-major d x d, exactly symmetric
	lam []float64 // eigenvalues of S, all > 0
	q   []float64 // row-major d x d, column i is the eigenvector of lam[i]
}

// NewGaussian returns the closed form for data N(m, s), s given row-major
// (len(m) x len(m)). s must be symmetric (to 1e-12 relative; it is then
// symmetrized exactly) and positive definite.
func NewGaussian(m, s []float64) (*Gaussian, error) {
	d := len(m)
	if d == 0 {
		return nil, fmt.Errorf("closedform: empty mean")
	}
	if len(s) != d*d {
		return nil, fmt.Errorf("closedform: covariance has %d elements, want %d x %d", len(s), d, d)
	}
	for _, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("closedform: non-finite mean entry %g", v)
		}
	}
	scale := 0.0
	for _, v := range s {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("closedform: non-finite covariance entry %g", v)
		}
		scale = math.Max(scale, math.Abs(v))
	}
	sym := mat.NewSymDense(d, nil)
	ss := make([]float64, d*d)
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			a, b := s[i*d+j], s[j*d+i]
			if math.Abs(a-b) > 1e-12*scale {
				return nil, fmt.Errorf("closedform: covariance not symmetric: S[%d,%d] = %g, S[%d,%d] = %g", i, j, a, j, i, b)
			}
			ss[i*d+j] = (a + b) / 2
		}
	}
	for i := 0; i < d; i++ {
		for j := i; j < d; j++ {
			sym.SetSym(i, j, ss[i*d+j])
		}
	}
	var eig mat.EigenSym
	if !eig.Factorize(sym, true) {
		return nil, fmt.Errorf("closedform: eigendecomposition of the covariance failed")
	}
	lam := eig.Values(nil)
	for i, l := range lam {
		if !(l > 0) {
			return nil, fmt.Errorf("closedform: covariance not positive definite (eigenvalue %d is %g)", i, l)
		}
	}
	var vec mat.Dense
	eig.VectorsTo(&vec)
	q := make([]float64, d*d)
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			q[i*d+j] = vec.At(i, j)
		}
	}
	return &Gaussian{d: d, m: append([]float64(nil), m...), s: ss, lam: lam, q: q}, nil
}

// MustGaussian is NewGaussian that panics on error, for tests.
func MustGaussian(m, s []float64) *Gaussian {
	g, err := NewGaussian(m, s)
	if err != nil {
		panic(err)
	}
	return g
}

// Dim is the dimension D.
func (g *Gaussian) Dim() int { return g.d }

// Mean returns a copy of m.
func (g *Gaussian) Mean() []float64 { return append([]float64(nil), g.m...) }

// Cov returns a copy of S, row-major.
func (g *Gaussian) Cov() []float64 { return append([]float64(nil), g.s...) }

// Eigenvalues returns a copy of the eigenvalues of S, ascending.
func (g *Gaussian) Eigenvalues() []float64 { return append([]float64(nil), g.lam...) }

// spectral returns Q diag(f(lambda_i)) Q^T, row-major, into out (d x d).
func (g *Gaussian) spectral(out []float64, f func(lam float64) float64) []float64 {
	d := g.d
	if len(out) < d*d {
		out = make([]float64, d*d)
	}
	out = out[:d*d]
	clear(out)
	for k, l := range g.lam {
		fk := f(l)
		for i := 0; i < d; i++ {
			qik := g.q[i*d+k] * fk
			for j := 0; j < d; j++ {
				out[i*d+j] += qik * g.q[j*d+k]
			}
		}
	}
	return out
}

// coefA is a_i(t) = (t lambda - (1-t)) / ((1-t)^2 + t^2 lambda), the
// eigenvalue of A_t on the eigenvector of lambda.
func coefA(t, lam float64) float64 {
	s := 1 - t
	return (t*lam - s) / (s*s + t*t*lam)
}

// A writes A_t = (t S - (1-t) I) C_t^{-1} (symmetric, row-major d x d) into
// out, allocating when out is short, and returns it.
func (g *Gaussian) A(t float64, out []float64) []float64 {
	return g.spectral(out, func(l float64) float64 { return coefA(t, l) })
}

// CovAt writes C_t = (1-t)^2 I + t^2 S into out (row-major) and returns it.
func (g *Gaussian) CovAt(t float64, out []float64) []float64 {
	return g.spectral(out, func(l float64) float64 { return (1-t)*(1-t) + t*t*l })
}

// Velocity writes u(t, x) = m + A_t (x - t m) into out (length D).
func (g *Gaussian) Velocity(t float64, x, out []float64) {
	a := g.A(t, nil)
	g.velocityWith(a, t, x, out)
}

func (g *Gaussian) velocityWith(a []float64, t float64, x, out []float64) {
	d := g.d
	for i := 0; i < d; i++ {
		s := g.m[i]
		for j := 0; j < d; j++ {
			s += a[i*d+j] * (x[j] - t*g.m[j])
		}
		out[i] = s
	}
}

// Divergence is div u(t, .) = tr A_t = sum_i a_i(t) (the same at every x).
func (g *Gaussian) Divergence(t float64) float64 {
	s := 0.0
	for _, l := range g.lam {
		s += coefA(t, l)
	}
	return s
}

// VJP writes the vector-Jacobian product e^T (du/dx) = e^T A_t into out.
func (g *Gaussian) VJP(t float64, e, out []float64) {
	vjpWith(g.A(t, nil), g.d, e, out)
}

func vjpWith(a []float64, d int, e, out []float64) {
	for j := 0; j < d; j++ {
		s := 0.0
		for i := 0; i < d; i++ {
			s += e[i] * a[i*d+j]
		}
		out[j] = s
	}
}

// LogDensity is log N(x; t m, C_t), the marginal density of the path at time
// t (t = 0: the prior N(0, I); t = 1: the data).
func (g *Gaussian) LogDensity(t float64, x []float64) float64 {
	d := g.d
	quad, logdet := 0.0, 0.0
	for k, l := range g.lam {
		c := (1-t)*(1-t) + t*t*l
		p := 0.0
		for i := 0; i < d; i++ {
			p += g.q[i*d+k] * (x[i] - t*g.m[i])
		}
		quad += p * p / c
		logdet += math.Log(c)
	}
	return -0.5 * (float64(d)*math.Log(2*math.Pi) + logdet + quad)
}

// LogPdf is log N(x; m, S), the data log-likelihood the likelihood ODE must
// reproduce.
func (g *Gaussian) LogPdf(x []float64) float64 { return g.LogDensity(1, x) }

// Transport writes x(t) = t m + C_t^{1/2} z, the solution at time t of
// dx/dt = u(t, x) with x(0) = z, into out (C_t^{1/2} the symmetric root).
// Transport(1, z) of z ~ N(0, I) is a draw of N(m, S).
func (g *Gaussian) Transport(t float64, z, out []float64) {
	r := g.spectral(nil, func(l float64) float64 { return math.Sqrt((1-t)*(1-t) + t*t*l) })
	d := g.d
	for i := 0; i < d; i++ {
		s := t * g.m[i]
		for j := 0; j < d; j++ {
			s += r[i*d+j] * z[j]
		}
		out[i] = s
	}
}

// Field is a Gaussian as a batched field on a gpu.Backend: it implements
// sampler.Field, sampler.VJPField and sampler.DivergenceField. Each call
// downloads the rows it needs, computes in float64 and uploads float32
// results, so it works on any backend (slowly: it is a reference). It keeps
// host scratch space and is not safe for concurrent use.
type Field struct {
	g      *Gaussian
	b      gpu.Backend
	a      []float64
	x, e   []float32
	v, w   []float32
	div    []float32
	row    []float64
	rowOut []float64
	// Calls counts calls of Velocity, VJP and Divergence.
	Calls int
}

// Field returns the Gaussian's field on backend b.
func (g *Gaussian) Field(b gpu.Backend) *Field {
	return &Field{g: g, b: b, row: make([]float64, 2*g.d), rowOut: make([]float64, g.d)}
}

// Gaussian returns the closed form behind the field.
func (f *Field) Gaussian() *Gaussian { return f.g }

// Dim is D.
func (f *Field) Dim() int { return f.g.d }

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// velocities downloads x and writes u(t, x) for each row into f.v.
func (f *Field) velocities(t float64, rows int, x gpu.Buffer) {
	d := f.g.d
	n := rows * d
	f.x = grow(f.x, n)
	f.v = grow(f.v, n)
	f.b.Download(f.x, x)
	f.a = f.g.A(t, f.a)
	xr, vr := f.row[:d], f.rowOut
	for r := 0; r < rows; r++ {
		for j := 0; j < d; j++ {
			xr[j] = float64(f.x[r*d+j])
		}
		f.g.velocityWith(f.a, t, xr, vr)
		for j := 0; j < d; j++ {
			f.v[r*d+j] = float32(vr[j])
		}
	}
}

// Velocity writes u(t, x) for rows x D states x into v.
func (f *Field) Velocity(t float64, rows int, x, v gpu.Buffer) {
	f.Calls++
	f.velocities(t, rows, x)
	f.b.Upload(v, f.v)
}

// VJP writes v = u(t, x) and, per row, w = e^T A_t for probe rows e.
func (f *Field) VJP(t float64, rows int, x, e, v, w gpu.Buffer) {
	f.Calls++
	f.velocities(t, rows, x)
	d := f.g.d
	n := rows * d
	f.e = grow(f.e, n)
	f.w = grow(f.w, n)
	f.b.Download(f.e, e)
	er, wr := f.row[:d], f.rowOut
	for r := 0; r < rows; r++ {
		for j := 0; j < d; j++ {
			er[j] = float64(f.e[r*d+j])
		}
		vjpWith(f.a, d, er, wr)
		for j := 0; j < d; j++ {
			f.w[r*d+j] = float32(wr[j])
		}
	}
	f.b.Upload(v, f.v)
	f.b.Upload(w, f.w)
}

// Divergence writes v = u(t, x) and div[r] = tr A_t for each of rows rows.
func (f *Field) Divergence(t float64, rows int, x, v, div gpu.Buffer) {
	f.Calls++
	f.velocities(t, rows, x)
	f.div = grow(f.div, rows)
	dv := float32(f.g.Divergence(t))
	for r := range f.div {
		f.div[r] = dv
	}
	f.b.Upload(v, f.v)
	f.b.Upload(div, f.div)
}
