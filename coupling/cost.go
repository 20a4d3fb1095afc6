package coupling

// The cost of pairing noise row i with data row j is the squared Euclidean
// distance, computed as a distance product:
//
//	C[i, j] = |x0_i|^2 + |x1_j|^2 - 2 x0_i . x1_j
//
// whose only O(n^2 d) part is the Gram matrix G = X0 X1^T, one Gemm on
// any backend. Every coupling here depends on C only up to a constant per
// row and a constant per column (the assignment's total changes by the
// same amount for every permutation; the entropic plan absorbs them in its
// potentials, docs/math.md §11.1), so the solvers accept -2 G as well as C:
// a backend may hand over the product with alpha = -2 and skip the norms,
// which also spares the float32 cancellation between the large norms and
// the Gram term at high dimension. The norms matter only when the
// transport cost itself is reported (MeanCost).

// SqNorms writes |x_i|^2 of the n rows of x (n x d, row-major) into dst,
// accumulated in float64.
func SqNorms(dst, x []float32, n, d int) {
	dst = dst[:n]
	x = x[:n*d]
	for i := range dst {
		row := x[i*d : (i+1)*d]
		s := 0.0
		for _, v := range row {
			s += float64(v) * float64(v)
		}
		dst[i] = float32(s)
	}
}

// Gram writes G[i, j] = x_i . y_j (nx x ny, row-major) for the rows of x
// (nx x d) and y (ny x d), accumulated in float64: the plain-Go reference
// of the product X Y^T a backend computes with its Gemm.
func Gram(dst, x, y []float32, nx, ny, d int) {
	dst = dst[:nx*ny]
	x, y = x[:nx*d], y[:ny*d]
	for i := range nx {
		xi := x[i*d : (i+1)*d]
		out := dst[i*ny : (i+1)*ny]
		for j := range out {
			yj := y[j*d : (j+1)*d]
			s := 0.0
			for k, v := range xi {
				s += float64(v) * float64(yj[k])
			}
			out[j] = float32(s)
		}
	}
}

// GramToSqDist turns a Gram matrix into squared distances in place:
// g[i, j] = xn[i] + yn[j] - 2 g[i, j], with xn and yn the squared norms of
// the rows (SqNorms). Rounding can leave a distance slightly below zero;
// it is kept, not clamped, since the solvers need no sign.
func GramToSqDist(g, xn, yn []float32, nx, ny int) {
	g = g[:nx*ny]
	xn, yn = xn[:nx], yn[:ny]
	for i, a := range xn {
		row := g[i*ny : (i+1)*ny]
		for j, b := range yn {
			row[j] = a + b - 2*row[j]
		}
	}
}

// SqDist writes C[i, j] = |x_i - y_j|^2 (nx x ny, row-major) as the
// distance product of Gram and GramToSqDist: the plain-Go reference of
// what the trainer computes on its backend.
func SqDist(dst, x, y []float32, nx, ny, d int) {
	xn := make([]float32, nx)
	yn := make([]float32, ny)
	SqNorms(xn, x, nx, d)
	SqNorms(yn, y, ny, d)
	Gram(dst, x, y, nx, ny, d)
	GramToSqDist(dst, xn, yn, nx, ny)
}

// MeanCost is (1/n) sum_i C[i, idx[i]], the mean cost of the pairs idx
// makes (for C the squared distances, the mean squared length of the
// straight paths), in float64.
func MeanCost(cost []float32, n int, idx []int) float64 {
	s := 0.0
	for i, j := range idx[:n] {
		s += float64(cost[i*n+j])
	}
	return s / float64(n)
}
