package metrics

import (
	"fmt"

	"github.com/fmgpu/fmgpu/internal/wasserstein"
)

// W2 is the exact 2-Wasserstein distance between two equally weighted
// sets of n points of dimension d (row-major), by internal/wasserstein's
// optimal assignment: sqrt(min over permutations s of (1/n) sum_i
// |x_i - y_s(i)|^2). Its noise floor is the W2 between two draws of the
// data (docs/math.md §12).
func W2(x, y []float32, n, d int) (float64, error) {
	if err := checkSets(x, y, n, n, d, 1); err != nil {
		return 0, fmt.Errorf("w2: %w", err)
	}
	a, b := make([]float64, n*d), make([]float64, n*d)
	for i := range a {
		a[i], b[i] = float64(x[i]), float64(y[i])
	}
	w, _, err := wasserstein.W2(a, b, n, d)
	return w, err
}
