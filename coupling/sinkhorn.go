package coupling

import (
	"fmt"
	"math"
)

// SinkhornOptions are the parameters of an entropic plan.
type SinkhornOptions struct {
	// Reg is the entropic regularization epsilon > 0, in the units of the
	// cost (squared distance), as POT's `reg` and TorchCFM's
	// OTPlanSampler(reg=...) take it: the plan tends to the exact optimal
	// transport as Reg -> 0 and to the independent coupling as Reg grows.
	Reg float64
	// Tol is the L1 error sum_i |sum_j P_ij - 1/n| of the row marginals at
	// which the iterations stop (the column marginals are exact after each
	// iteration); DefaultSinkhornTol when 0.
	Tol float64
	// MaxIter bounds the iterations over all epsilon levels;
	// DefaultSinkhornMaxIter when 0. Stopping there is not an error: the
	// plan is used as it is and SinkhornStats says so.
	MaxIter int
}

// Defaults of SinkhornOptions.
const (
	DefaultSinkhornTol     = 1e-4
	DefaultSinkhornMaxIter = 1000
)

// SinkhornStats describes how a plan was reached.
type SinkhornStats struct {
	Iters     int     // Sinkhorn iterations, all levels together
	Levels    int     // epsilon levels (docs/math.md §11.3)
	Err       float64 // final L1 error of the row marginals
	Converged bool    // the last level (epsilon = Reg) reached Err <= Tol
}

// Sinkhorn computes entropic optimal transport plans between two uniform
// marginals (docs/math.md §11.3): the plan P minimizing
// sum_ij P_ij C_ij - Reg H(P) with row and column sums 1/n,
// P_ij = exp((f_i + g_j - C_ij) / Reg). It iterates the Sinkhorn scaling
// on a kernel stabilized by absorbing the scalings into the potentials
// (f, g) whenever they grow (Schmitzer 2019), so it never overflows or
// divides by an underflowed sum, and it reaches small Reg through a
// decreasing sequence of epsilons warm-started from each other.
//
// The zero value is ready to use; a Sinkhorn keeps its buffers between
// calls and is not safe for concurrent use. Results depend only on the
// inputs: every sum runs in a fixed order.
type Sinkhorn struct {
	k        []float64 // n x n: exp((f_i + g_j - C_ij) / eps)
	f, g     []float64 // potentials absorbed so far
	a, b     []float64 // scalings on top of them
	kb, kta  []float64 // K b and K^T a
	lse, tmp []float64
}

func (s *Sinkhorn) grow(n int) {
	if cap(s.k) < n*n {
		s.k = make([]float64, n*n)
	}
	s.k = s.k[:n*n]
	if cap(s.f) < n {
		s.f, s.g, s.a, s.b = make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
		s.kb, s.kta, s.lse, s.tmp = make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	}
	s.f, s.g, s.a, s.b = s.f[:n], s.g[:n], s.a[:n], s.b[:n]
	s.kb, s.kta, s.lse, s.tmp = s.kb[:n], s.kta[:n], s.lse[:n], s.tmp[:n]
}

// Epsilon scaling: the first level's epsilon is the spread of the reduced
// costs divided by sinkhornFirst, and each level divides it by
// sinkhornTheta until Reg; the levels before the last stop at an error of
// sinkhornLevelTol (their plan only warm-starts the next).
const (
	sinkhornFirst    = 4
	sinkhornTheta    = 4
	sinkhornLevelTol = 1e-2
)

// A scaling outside [absorbLo, absorbHi] = [e^-50, e^50] is folded into the
// potentials and the kernel recomputed: far from float64's limits (e^±709),
// so a product of a scaling, a kernel entry and another scaling stays
// representable.
var absorbLo, absorbHi = math.Exp(-50), math.Exp(50)

// sinkhornMinRegFrac is the smallest Reg a plan takes, as a fraction of the
// largest |cost|: the potentials and costs are that large, so each
// exponent (f_i + g_j - C_ij) / Reg carries a rounding error of a few
// 2^-53 |C| / Reg, at most about 2^-9 here (a relative error of 0.2% in
// a plan entry). Far below, the plan no longer sums to 1 (at 1e-18 of
// the costs' scale its mass was 12 to 118).
const sinkhornMinRegFrac = 0x1p-43

// Plan writes the entropic plan for the n x n cost (row-major; row i a
// noise point, column j a data point) into plan (n x n, summing to 1).
func (s *Sinkhorn) Plan(plan []float64, cost []float32, n int, opt SinkhornOptions) (SinkhornStats, error) {
	var st SinkhornStats
	if err := checkSquare(n, len(cost), n); err != nil {
		return st, err
	}
	if len(plan) < n*n {
		return st, fmt.Errorf("coupling: a plan of size %d needs %d values, got %d", n, n*n, len(plan))
	}
	if !(opt.Reg > 0) || math.IsInf(opt.Reg, 1) {
		return st, fmt.Errorf("coupling: Sinkhorn regularization %v: want a finite value > 0", opt.Reg)
	}
	tol := opt.Tol
	if tol == 0 {
		tol = DefaultSinkhornTol
	}
	maxIter := opt.MaxIter
	if maxIter == 0 {
		maxIter = DefaultSinkhornMaxIter
	}
	if !(tol > 0) || maxIter < 0 {
		return st, fmt.Errorf("coupling: Sinkhorn tolerance %v and iteration limit %d: want a tolerance > 0 and a limit >= 0 (0 for the defaults)", opt.Tol, opt.MaxIter)
	}
	big := 0.0
	for k, x := range cost[:n*n] {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return st, fmt.Errorf("coupling: cost[%d][%d] = %v: costs must be finite", k/n, k%n, x)
		}
		big = max(big, math.Abs(float64(x)))
	}
	if floor := big * sinkhornMinRegFrac; opt.Reg < floor {
		return st, fmt.Errorf("coupling: Sinkhorn regularization %g is too small for costs up to %g in magnitude: the exponents (f_i + g_j - C_ij) / Reg lose their precision in float64 below %g (2^-43 times the largest cost); use the exact coupling instead", opt.Reg, big, floor)
	}
	if n == 0 {
		st.Converged = true
		return st, nil
	}
	s.grow(n)
	c := cost[:n*n]
	// Potentials start at the row minima, then the column minima of what
	// is left: every reduced cost C - f - g is >= 0 and each row and column
	// has a zero, so the first kernel has no underflowing row.
	spread := 0.0
	for i := range n {
		row := c[i*n : (i+1)*n]
		m := math.Inf(1)
		for _, x := range row {
			m = math.Min(m, float64(x))
		}
		s.f[i] = m
	}
	for j := range n {
		s.g[j] = math.Inf(1)
	}
	for i := range n {
		row := c[i*n : (i+1)*n]
		for j, x := range row {
			s.g[j] = math.Min(s.g[j], float64(x)-s.f[i])
		}
	}
	for i := range n {
		row := c[i*n : (i+1)*n]
		for j, x := range row {
			spread = math.Max(spread, float64(x)-s.f[i]-s.g[j])
		}
	}
	eps := math.Max(opt.Reg, spread/sinkhornFirst)
	mu := 1 / float64(n)
	last := false
	for {
		last = eps <= opt.Reg
		levelTol := tol
		if !last {
			levelTol = math.Max(tol, sinkhornLevelTol)
		}
		st.Levels++
		s.kernel(c, n, eps)
		for {
			matVec(s.kb, s.k, s.b, n)
			st.Err = 0
			for i, kb := range s.kb {
				st.Err += math.Abs(s.a[i]*kb - mu)
			}
			if st.Err <= levelTol || st.Iters >= maxIter {
				break
			}
			st.Iters++
			for i, kb := range s.kb {
				s.a[i] = mu / kb
			}
			matTVec(s.kta, s.k, s.a, n)
			for j, kta := range s.kta {
				s.b[j] = mu / kta
			}
			switch s.scalings() {
			case scalingsLarge:
				s.fold(eps)
				s.kernel(c, n, eps)
			case scalingsBroken:
				s.absorb(c, n, eps)
			}
		}
		if last || st.Iters >= maxIter {
			break
		}
		s.fold(eps)
		eps = math.Max(opt.Reg, eps/sinkhornTheta)
	}
	st.Converged = last && st.Err <= tol
	plan = plan[:n*n]
	for i := range n {
		ai := s.a[i]
		for j, kij := range s.k[i*n : (i+1)*n] {
			plan[i*n+j] = ai * kij * s.b[j]
		}
	}
	return st, nil
}

// kernel computes K = exp((f_i + g_j - C_ij)/eps) for the current
// potentials (exp64: e^x within a few ulps, 0 below e^-708) and resets
// the scalings to 1.
func (s *Sinkhorn) kernel(c []float32, n int, eps float64) {
	for i := range n {
		expKernelRow(s.k[i*n:(i+1)*n], c[i*n:(i+1)*n], s.f[i], s.g[:n], eps)
		s.a[i], s.b[i] = 1, 1
	}
}

// fold moves the scalings into the potentials: f += eps ln a, g += eps ln b.
func (s *Sinkhorn) fold(eps float64) {
	for i := range s.a {
		s.f[i] += eps * math.Log(s.a[i])
		s.g[i] += eps * math.Log(s.b[i])
		s.a[i], s.b[i] = 1, 1
	}
}

// What scalings reports of a and b.
const (
	scalingsFine   = iota
	scalingsLarge  // some outside [absorbLo, absorbHi]: fold them into the potentials
	scalingsBroken // some zero, infinite or NaN: recover in the log domain
)

func (s *Sinkhorn) scalings() int {
	res := scalingsFine
	for i := range s.a {
		a, b := s.a[i], s.b[i]
		if !(a > 0 && b > 0 && a <= math.MaxFloat64 && b <= math.MaxFloat64) {
			return scalingsBroken
		}
		if !(a > absorbLo && a < absorbHi && b > absorbLo && b < absorbHi) {
			res = scalingsLarge
		}
	}
	return res
}

// absorb recovers from scalings out of range: it folds the usable ones
// into the potentials, then makes one exact log-domain iteration,
//
//	f_i = eps ln(1/n) - eps ln sum_j exp((g_j - C_ij)/eps)
//	g_j = eps ln(1/n) - eps ln sum_i exp((f_i - C_ij)/eps),
//
// which is finite whatever the scalings were, and recomputes the kernel.
func (s *Sinkhorn) absorb(c []float32, n int, eps float64) {
	for j := range n {
		if b := s.b[j]; b > 0 && !math.IsInf(b, 1) {
			s.g[j] += eps * math.Log(b)
		}
	}
	lnMu := math.Log(1 / float64(n))
	// Row log-sum-exp: the maximum, then the sum shifted by it.
	for i := range n {
		row := c[i*n : (i+1)*n]
		m := math.Inf(-1)
		for j, x := range row {
			m = math.Max(m, (s.g[j]-float64(x))/eps)
		}
		sum := 0.0
		for j, x := range row {
			sum += math.Exp((s.g[j]-float64(x))/eps - m)
		}
		s.f[i] = eps * (lnMu - m - math.Log(sum))
	}
	// Column log-sum-exp, row by row so that C is read in order.
	m, sum := s.lse, s.tmp
	for j := range n {
		m[j], sum[j] = math.Inf(-1), 0
	}
	for i := range n {
		fi := s.f[i]
		for j, x := range c[i*n : (i+1)*n] {
			m[j] = math.Max(m[j], (fi-float64(x))/eps)
		}
	}
	for i := range n {
		fi := s.f[i]
		for j, x := range c[i*n : (i+1)*n] {
			sum[j] += math.Exp((fi-float64(x))/eps - m[j])
		}
	}
	for j := range n {
		s.g[j] = eps * (lnMu - m[j] - math.Log(sum[j]))
	}
	s.kernel(c, n, eps)
}

// matVecGo writes out = K x for the n x n row-major K, the reference of
// the vectorized kernel: row i's products over its whole blocks of 32
// columns go to 32 running sums (column j to sum j mod 32, by fused
// multiply-adds), which are added in the kernel's order (sums l, l+8,
// l+16, l+24 in pairs, then the eight lanes' halves, quarters and last
// pair); the remaining columns are added one by one after.
func matVecGo(out, k, x []float64, n int) {
	n32 := n &^ 31
	for i := range out[:n] {
		row := k[i*n : (i+1)*n]
		s := 0.0
		if n32 > 0 {
			var p [32]float64
			for j := 0; j < n32; j += 32 {
				for l := range p {
					p[l] = math.FMA(row[j+l], x[j+l], p[l])
				}
			}
			s = sum32(&p)
		}
		out[i] = s
	}
	matVecTail(out, k, x, n, n32)
}

// matVecTail adds to each out_i the products of columns from..n-1, one by
// one.
func matVecTail(out, k, x []float64, n, from int) {
	if from == n {
		return
	}
	for i := range out[:n] {
		row := k[i*n : (i+1)*n]
		s := out[i]
		for j := from; j < n; j++ {
			s = math.FMA(row[j], x[j], s)
		}
		out[i] = s
	}
}

// sum32 adds 32 running sums in the vectorized kernel's order.
func sum32(p *[32]float64) float64 {
	var l8 [8]float64
	for l := range l8 {
		l8[l] = (p[l] + p[8+l]) + (p[16+l] + p[24+l])
	}
	var l4 [4]float64
	for l := range l4 {
		l4[l] = l8[l] + l8[l+4]
	}
	return (l4[0] + l4[2]) + (l4[1] + l4[3])
}

// matTVecGo writes out = K^T x, the reference of the vectorized kernel:
// each column's sum over the rows in order, by fused multiply-adds.
func matTVecGo(out, k, x []float64, n int) {
	out = out[:n]
	for j := range out {
		out[j] = 0
	}
	for i, xi := range x[:n] {
		row := k[i*n : (i+1)*n]
		for j, kij := range row {
			out[j] = math.FMA(kij, xi, out[j])
		}
	}
}

// matTVecColumns computes out_j as matTVecGo does for the columns
// from..n-1 only.
func matTVecColumns(out, k, x []float64, n, from int) {
	for j := from; j < n; j++ {
		s := 0.0
		for i, xi := range x[:n] {
			s = math.FMA(k[i*n+j], xi, s)
		}
		out[j] = s
	}
}

// SampleRows draws, for each row i of the n x n plan, a column from the
// row's conditional distribution P_ij / sum_j P_ij by inversion with the
// uniform u[i] in [0, 1): idx[i] is the first j whose cumulative sum
// exceeds u[i] times the row's total. Each noise point thus keeps exactly
// one data point, and (i, idx[i]) is a draw from the plan stratified over
// its rows (docs/math.md §11.3). The uniforms come from the caller's
// counter-based generator, so a draw is a function of (seed, step).
func SampleRows(idx []int, plan []float64, n int, u []float64) error {
	if len(idx) < n || len(plan) < n*n || len(u) < n {
		return fmt.Errorf("coupling: sampling %d rows needs %d plan values, %d uniforms and %d slots, got %d, %d and %d", n, n*n, n, n, len(plan), len(u), len(idx))
	}
	for i := range n {
		ui := u[i]
		if !(ui >= 0 && ui < 1) {
			return fmt.Errorf("coupling: uniform %d is %v: want a value in [0, 1)", i, ui)
		}
		row := plan[i*n : (i+1)*n]
		total := 0.0
		for _, p := range row {
			total += p
		}
		target := ui * total
		pick, cum := -1, 0.0
		for j, p := range row {
			if p <= 0 {
				continue
			}
			pick = j // the last column with mass, should rounding leave cum <= target
			if cum += p; cum > target {
				break
			}
		}
		if pick < 0 {
			return fmt.Errorf("coupling: plan row %d has no mass", i)
		}
		idx[i] = pick
	}
	return nil
}
