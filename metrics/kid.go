package metrics

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// KIDOptions choose the subsets of the kernel inception distance.
type KIDOptions struct {
	// Subsets is how many subset pairs are drawn (default 100).
	Subsets int
	// SubsetSize is the points per subset (default 1000), at most the
	// smaller set's size (it is lowered to it).
	SubsetSize int
	// Seed selects the subsets: the draws are a function of it alone.
	Seed uint64
}

// Defaults of KIDOptions, those of Bińkowski et al. and the usual KID code.
const (
	DefaultKIDSubsets    = 100
	DefaultKIDSubsetSize = 1000
)

// KIDResult is the mean and spread of the subset estimates.
type KIDResult struct {
	// Mean is the average of the unbiased MMD^2 estimates over the subsets.
	Mean float64
	// Std is their sample standard deviation (divided by Subsets - 1; 0
	// for one subset).
	Std                 float64
	Subsets, SubsetSize int
}

// kidStream is the PCG stream of the subset draws.
const kidStream = 0x6b6964 // "kid"

// KID returns the kernel inception distance between the feature sets x
// (m x d) and y (n x d) (docs/math.md §12.4): the unbiased squared MMD
// under the polynomial kernel k(a, b) = (a . b / d + 1)^3, averaged over
// opt.Subsets pairs of subsets of opt.SubsetSize points, each subset
// drawn without replacement. The Gram matrices of the subsets are float32
// products (internal/sgemm: a float64 BLAS took 28 s for the default
// subsets of 128-wide features, against about a second); the kernel and
// the sums are evaluated in float64.
func KID(x, y []float32, m, n, d int, opt KIDOptions) (KIDResult, error) {
	if err := checkSets(x, y, m, n, d, 2); err != nil {
		return KIDResult{}, fmt.Errorf("kid: %w", err)
	}
	if opt.Subsets < 0 || opt.SubsetSize < 0 || opt.SubsetSize == 1 {
		return KIDResult{}, fmt.Errorf("kid: %d subsets of %d points: want >= 1 subsets of >= 2 points (0 for the defaults)", opt.Subsets, opt.SubsetSize)
	}
	subsets := cmpDefault(opt.Subsets, DefaultKIDSubsets)
	size := min(cmpDefault(opt.SubsetSize, DefaultKIDSubsetSize), m, n)
	rng := rand.New(rand.NewPCG(opt.Seed, kidStream))
	k := newKIDWork(size, d)
	px, py := identity(m), identity(n)
	var sum, sum2 float64
	for range subsets {
		ix := drawSubset(rng, px, size)
		iy := drawSubset(rng, py, size)
		v := k.mmd2(x, y, ix, iy, d)
		sum += v
		sum2 += v * v
	}
	res := KIDResult{Mean: sum / float64(subsets), Subsets: subsets, SubsetSize: size}
	if subsets > 1 {
		res.Std = math.Sqrt(math.Max(sum2-sum*sum/float64(subsets), 0) / float64(subsets-1))
	}
	return res, nil
}

func cmpDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// drawSubset returns size distinct indices of 0..len(perm)-1: the first
// size entries of perm after a partial Fisher-Yates shuffle. perm holds a
// permutation of 0..len(perm)-1 (any: shuffling it makes every subset
// equally likely) and is kept between draws.
func drawSubset(rng *rand.Rand, perm []int, size int) []int {
	n := len(perm)
	for i := range size {
		j := i + rng.IntN(n-i)
		perm[i], perm[j] = perm[j], perm[i]
	}
	return perm[:size]
}

func identity(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	return p
}

type kidWork struct {
	s, d          int
	a, b          []float32 // the subsets' rows, s x d
	kxx, kyy, kxy []float32 // their Gram matrices, s x s
}

func newKIDWork(s, d int) *kidWork {
	return &kidWork{s: s, d: d,
		a: make([]float32, s*d), b: make([]float32, s*d),
		kxx: make([]float32, s*s), kyy: make([]float32, s*s), kxy: make([]float32, s*s)}
}

// mmd2 is the unbiased estimate on the rows ix of x and iy of y:
// 1/(s(s-1)) (sum_{i != j} k(x_i, x_j) + sum_{i != j} k(y_i, y_j))
// - 2/s^2 sum_{i, j} k(x_i, y_j).
func (w *kidWork) mmd2(x, y []float32, ix, iy []int, d int) float64 {
	s := w.s
	for r, i := range ix {
		copy(w.a[r*d:(r+1)*d], x[i*d:(i+1)*d])
	}
	for r, i := range iy {
		copy(w.b[r*d:(r+1)*d], y[i*d:(i+1)*d])
	}
	sgemm.Gemm(false, true, s, s, d, 1, w.a, d, w.a, d, 0, w.kxx, s)
	sgemm.Gemm(false, true, s, s, d, 1, w.b, d, w.b, d, 0, w.kyy, s)
	sgemm.Gemm(false, true, s, s, d, 1, w.a, d, w.b, d, 0, w.kxy, s)
	inv := 1 / float64(d)
	poly := func(g float32) float64 { u := float64(g)*inv + 1; return u * u * u }
	var xx, yy, xy float64
	for i := range s {
		for j := range s {
			xy += poly(w.kxy[i*s+j])
			if i != j {
				xx += poly(w.kxx[i*s+j])
				yy += poly(w.kyy[i*s+j])
			}
		}
	}
	fs := float64(s)
	return (xx+yy)/(fs*(fs-1)) - 2*xy/(fs*fs)
}
