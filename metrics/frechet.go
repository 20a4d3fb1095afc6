package metrics

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Gaussian is the mean and covariance of a set of feature vectors.
type Gaussian struct {
	Mean []float64 // D
	Cov  []float64 // D x D, row-major, symmetric
	N    int       // points it was fitted to (0 for a given one)
}

// D is the dimension.
func (g Gaussian) D() int { return len(g.Mean) }

// FitGaussian returns the sample mean and the unbiased sample covariance
// (divided by n - 1, as numpy.cov and the usual FID code) of the n rows of
// x (n x d, row-major), in float64, from the centred rows.
func FitGaussian(x []float32, n, d int) (Gaussian, error) {
	if d < 1 || n < 2 {
		return Gaussian{}, fmt.Errorf("fit gaussian: %d points of dimension %d: want at least 2 of dimension >= 1", n, d)
	}
	if len(x) < n*d {
		return Gaussian{}, fmt.Errorf("fit gaussian: %d points of dimension %d need %d values, got %d", n, d, n*d, len(x))
	}
	mean := make([]float64, d)
	for k, v := range x[:n*d] {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return Gaussian{}, fmt.Errorf("fit gaussian: point %d has the value %v", k/d, v)
		}
		mean[k%d] += float64(v)
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	centred := make([]float64, n*d)
	for k, v := range x[:n*d] {
		centred[k] = float64(v) - mean[k%d]
	}
	var cov mat.SymDense
	cov.SymOuterK(1/float64(n-1), mat.NewDense(n, d, centred).T())
	out := make([]float64, d*d)
	for i := range d {
		for j := range d {
			out[i*d+j] = cov.At(i, j)
		}
	}
	return Gaussian{Mean: mean, Cov: out, N: n}, nil
}

// FrechetDistance is the Fréchet distance between the Gaussians a and b,
// the squared 2-Wasserstein distance between N(mu_a, S_a) and N(mu_b, S_b)
// (docs/math.md §12.3):
//
//	|mu_a - mu_b|^2 + tr S_a + tr S_b - 2 tr (S_a^{1/2} S_b S_a^{1/2})^{1/2}
//
// The last trace equals tr (S_a S_b)^{1/2}; it is computed from two
// symmetric eigendecompositions (S_a, then S_a^{1/2} S_b S_a^{1/2}), with
// eigenvalues that rounding leaves below zero taken as zero, so no complex
// square root appears. A result rounding leaves below zero is returned as 0.
func FrechetDistance(a, b Gaussian) (float64, error) {
	d := a.D()
	if d == 0 || b.D() != d || len(a.Cov) != d*d || len(b.Cov) != d*d {
		return 0, fmt.Errorf("frechet distance: Gaussians of dimensions %d (covariance %d values) and %d (%d values)", d, len(a.Cov), b.D(), len(b.Cov))
	}
	for _, g := range [2]Gaussian{a, b} {
		for _, v := range append(append([]float64(nil), g.Mean...), g.Cov...) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, fmt.Errorf("frechet distance: a mean or covariance has the value %v", v)
			}
		}
	}
	sa, err := symmetric(a.Cov, d)
	if err != nil {
		return 0, fmt.Errorf("frechet distance: first covariance: %w", err)
	}
	sb, err := symmetric(b.Cov, d)
	if err != nil {
		return 0, fmt.Errorf("frechet distance: second covariance: %w", err)
	}
	root, err := sqrtPSD(sa)
	if err != nil {
		return 0, fmt.Errorf("frechet distance: first covariance: %w", err)
	}
	var tmp, prod mat.Dense
	tmp.Mul(root, sb)
	prod.Mul(&tmp, root)
	m, err := symmetric(prod.RawMatrix().Data, d)
	if err != nil {
		return 0, err
	}
	var eig mat.EigenSym
	if !eig.Factorize(m, false) {
		return 0, fmt.Errorf("frechet distance: eigendecomposition did not converge")
	}
	trSqrt := 0.0
	for _, l := range eig.Values(nil) {
		trSqrt += math.Sqrt(math.Max(l, 0))
	}
	fd := 0.0
	for i := range d {
		e := a.Mean[i] - b.Mean[i]
		fd += e*e + a.Cov[i*d+i] + b.Cov[i*d+i]
	}
	return math.Max(fd-2*trSqrt, 0), nil
}

// FD fits a Gaussian to each feature set (FitGaussian) and returns their
// Fréchet distance.
func FD(x, y []float32, m, n, d int) (float64, error) {
	a, err := FitGaussian(x, m, d)
	if err != nil {
		return 0, fmt.Errorf("first set: %w", err)
	}
	b, err := FitGaussian(y, n, d)
	if err != nil {
		return 0, fmt.Errorf("second set: %w", err)
	}
	return FrechetDistance(a, b)
}

// symmetric returns the d x d matrix s as a SymDense, averaging the two
// triangles, after checking they agree to 1e-9 of the largest entry.
func symmetric(s []float64, d int) (*mat.SymDense, error) {
	scale := 0.0
	for _, v := range s[:d*d] {
		scale = math.Max(scale, math.Abs(v))
	}
	out := mat.NewSymDense(d, nil)
	for i := range d {
		for j := i; j < d; j++ {
			u, l := s[i*d+j], s[j*d+i]
			if math.Abs(u-l) > 1e-9*scale {
				return nil, fmt.Errorf("not symmetric: entries (%d, %d) and (%d, %d) are %v and %v", i, j, j, i, u, l)
			}
			out.SetSym(i, j, (u+l)/2)
		}
	}
	return out, nil
}

// sqrtPSD returns Q diag(sqrt(max(lambda, 0))) Q^T for s = Q diag(lambda) Q^T.
func sqrtPSD(s *mat.SymDense) (*mat.Dense, error) {
	var eig mat.EigenSym
	if !eig.Factorize(s, true) {
		return nil, fmt.Errorf("eigendecomposition did not converge")
	}
	var q mat.Dense
	eig.VectorsTo(&q)
	vals := eig.Values(nil)
	d := len(vals)
	var scaled mat.Dense
	scaled.CloneFrom(&q)
	for j, l := range vals {
		r := math.Sqrt(math.Max(l, 0))
		for i := range d {
			scaled.Set(i, j, scaled.At(i, j)*r)
		}
	}
	var root mat.Dense
	root.Mul(&scaled, q.T())
	return &root, nil
}
