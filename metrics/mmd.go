package metrics

import (
	"fmt"
	"math"
	"slices"
)

// MedianMaxPoints bounds the points the median heuristic looks at: with
// more, it takes every k-th point of the pooled sample (x then y) so that
// at most MedianMaxPoints remain, and the median of their
// MedianMaxPoints*(MedianMaxPoints-1)/2 distances.
const MedianMaxPoints = 1000

// MMDResult is an MMD estimate with the bandwidth it used.
type MMDResult struct {
	// MMD2 is the unbiased estimate of the squared MMD; it has mean 0 when
	// both samples come from one distribution and can then be negative.
	MMD2 float64
	// Bandwidth is h in k(a, b) = exp(-|a - b|^2 / (2 h^2)).
	Bandwidth float64
}

// MMD returns the unbiased squared maximum mean discrepancy between the m
// points x and the n points y (dimension d, row-major) under the Gaussian
// kernel of bandwidth h (docs/math.md §12.1):
//
//	MMD2 = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
//	       - 2/(mn) sum_{i, j} k(x_i, y_j)
//
// h <= 0 selects the median heuristic (MedianBandwidth). It takes
// O((m + n)^2 d) time; m and n must be at least 2.
func MMD(x, y []float32, m, n, d int, h float64) (MMDResult, error) {
	if err := checkSets(x, y, m, n, d, 2); err != nil {
		return MMDResult{}, fmt.Errorf("mmd: %w", err)
	}
	if math.IsNaN(h) || math.IsInf(h, 0) {
		return MMDResult{}, fmt.Errorf("mmd: bandwidth %v: want a finite value, or 0 for the median heuristic", h)
	}
	if h <= 0 {
		h = MedianBandwidth(x, y, m, n, d)
		if h == 0 {
			// All sampled points coincide: any bandwidth gives the same
			// kernel on them; 1 keeps the kernel finite elsewhere.
			h = 1
		}
	}
	g := -1 / (2 * h * h)
	kxx := kernelSum(x, x, m, m, d, g, true)
	kyy := kernelSum(y, y, n, n, d, g, true)
	kxy := kernelSum(x, y, m, n, d, g, false)
	fm, fn := float64(m), float64(n)
	mmd2 := kxx/(fm*(fm-1)) + kyy/(fn*(fn-1)) - 2*kxy/(fm*fn)
	return MMDResult{MMD2: mmd2, Bandwidth: h}, nil
}

// kernelSum is sum_{i, j} exp(g |a_i - b_j|^2), over i != j when same (a
// and b are then one set, and each unordered pair is counted twice).
func kernelSum(a, b []float32, na, nb, d int, g float64, same bool) float64 {
	total := 0.0
	for i := range na {
		ai := a[i*d : (i+1)*d]
		row := 0.0
		j0 := 0
		if same {
			j0 = i + 1
		}
		for j := j0; j < nb; j++ {
			bj := b[j*d : (j+1)*d]
			row += math.Exp(g * sqDist(ai, bj))
		}
		total += row
	}
	if same {
		total *= 2
	}
	return total
}

func sqDist(a, b []float32) float64 {
	s := 0.0
	for k, v := range a {
		e := float64(v) - float64(b[k])
		s += e * e
	}
	return s
}

// MedianBandwidth is the median heuristic (Gretton et al. 2012): the
// median Euclidean distance between distinct points of the pooled sample
// x then y, taken on every k-th point when there are more than
// MedianMaxPoints; for an even count of distances, the mean of the two
// middle ones.
func MedianBandwidth(x, y []float32, m, n, d int) float64 {
	total := m + n
	stride := (total + MedianMaxPoints - 1) / MedianMaxPoints
	var pts [][]float32
	for p := 0; p < total; p += stride {
		if p < m {
			pts = append(pts, x[p*d:(p+1)*d])
		} else {
			q := p - m
			pts = append(pts, y[q*d:(q+1)*d])
		}
	}
	dist := make([]float64, 0, len(pts)*(len(pts)-1)/2)
	for i := range pts {
		for j := i + 1; j < len(pts); j++ {
			dist = append(dist, sqDist(pts[i], pts[j]))
		}
	}
	if len(dist) == 0 {
		return 0
	}
	slices.Sort(dist)
	k := len(dist) / 2
	if len(dist)%2 == 0 {
		return (math.Sqrt(dist[k-1]) + math.Sqrt(dist[k])) / 2
	}
	return math.Sqrt(dist[k])
}

// checkSets validates two point sets of at least min points each.
func checkSets(x, y []float32, m, n, d, min int) error {
	if d < 1 {
		return fmt.Errorf("dimension %d: want >= 1", d)
	}
	if m < min || n < min {
		return fmt.Errorf("%d and %d points: want at least %d in each set", m, n, min)
	}
	if len(x) < m*d || len(y) < n*d {
		return fmt.Errorf("%d and %d points of dimension %d need %d and %d values, got %d and %d", m, n, d, m*d, n*d, len(x), len(y))
	}
	for set, s := range [2][]float32{x[:m*d], y[:n*d]} {
		for k, v := range s {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("point %d of the %s set has the value %v", k/d, [2]string{"first", "second"}[set], v)
			}
		}
	}
	return nil
}
