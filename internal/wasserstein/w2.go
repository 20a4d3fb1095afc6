// Package wasserstein computes the exact 2-Wasserstein distance between two
// equally weighted point sets of the same size: the optimal assignment
// under squared Euclidean cost, solved by the Hungarian algorithm with
// potentials (O(n^3)), so sample quality is measured without the bias of
// entropic or sliced approximations.
package wasserstein

import (
	"fmt"
	"math"
)

// W2 returns sqrt(min over permutations p of (1/n) sum_i |a_i - b_p(i)|^2)
// for n points of dimension d each (row-major a and b, n*d values), and
// the optimal assignment.
func W2(a, b []float64, n, d int) (float64, []int, error) {
	if n < 1 || d < 1 || len(a) != n*d || len(b) != n*d {
		return 0, nil, fmt.Errorf("wasserstein: need two sets of %d points of dimension %d, got %d and %d values", n, d, len(a), len(b))
	}
	cost := func(i, j int) float64 {
		s := 0.0
		for k := 0; k < d; k++ {
			e := a[i*d+k] - b[j*d+k]
			s += e * e
		}
		return s
	}
	p := assign(n, cost)
	total := 0.0
	for i, j := range p {
		total += cost(i, j)
	}
	return math.Sqrt(total / float64(n)), p, nil
}

// assign solves the n x n assignment problem min sum_i cost(i, p(i)) by
// successive shortest augmenting paths with row and column potentials
// (the classic O(n^3) Hungarian method, 1-based internally).
func assign(n int, cost func(i, j int) float64) []int {
	inf := math.Inf(1)
	u := make([]float64, n+1)
	v := make([]float64, n+1)
	match := make([]int, n+1) // match[j] = row assigned to column j
	way := make([]int, n+1)
	minv := make([]float64, n+1)
	used := make([]bool, n+1)
	for i := 1; i <= n; i++ {
		match[0] = i
		j0 := 0
		for j := range minv {
			minv[j] = inf
			used[j] = false
		}
		for {
			used[j0] = true
			i0, delta, j1 := match[j0], inf, 0
			for j := 1; j <= n; j++ {
				if used[j] {
					continue
				}
				cur := cost(i0-1, j-1) - u[i0] - v[j]
				if cur < minv[j] {
					minv[j], way[j] = cur, j0
				}
				if minv[j] < delta {
					delta, j1 = minv[j], j
				}
			}
			for j := 0; j <= n; j++ {
				if used[j] {
					u[match[j]] += delta
					v[j] -= delta
				} else {
					minv[j] -= delta
				}
			}
			j0 = j1
			if match[j0] == 0 {
				break
			}
		}
		for j0 != 0 {
			j1 := way[j0]
			match[j0] = match[j1]
			j0 = j1
		}
	}
	p := make([]int, n)
	for j := 1; j <= n; j++ {
		p[match[j]-1] = j - 1
	}
	return p
}
