package coupling

import (
	"fmt"
	"math"
)

// Assigner solves dense square linear assignment problems exactly:
// given an n x n cost matrix C, it finds the permutation p minimizing
// sum_i C[i, p(i)] (docs/math.md §11.2). It follows Jonker and Volgenant
// (1987) on the costs less each row's minimum: three cheap initial phases
// (column reduction, reduction transfer, augmenting row reduction) assign
// most rows, and a shortest augmenting path search (Dijkstra over reduced
// costs) assigns the rest, keeping column prices v such that every reduced cost
// C[i, j] - u_i - v_j is >= 0 and is 0 on the assignment, which proves
// the result optimal (linear programming duality). O(n^3) in the worst
// case; arithmetic in float64.
//
// The zero value is ready to use; an Assigner keeps its buffers between
// calls (no allocation once grown) and is not safe for concurrent use.
type Assigner struct {
	c      []float64 // n x n working copy of the cost
	v      []float64 // column prices
	d      []float64 // shortest path lengths of the unsettled columns
	vs     []float64 // column prices in a search, -Inf once settled
	ds     []float64 // the settled columns' path lengths, in cols' order
	rowCol []int32   // column of each row, -1 when free
	colRow []int32   // row of each column, -1 when free
	free   []int32   // free rows
	cols   []int32   // the columns a search settled, in order
	pred   []int32   // row before each column on the shortest path tree
	count  []int32   // column reduction: how many columns chose each row
}

// Assign writes into perm (length n) the optimal permutation for the
// n x n cost matrix cost (row-major): row i is paired with column
// perm[i]. Costs must be finite; among optimal permutations the one
// returned depends only on cost, so runs are reproducible.
func (a *Assigner) Assign(perm []int, cost []float32, n int) error {
	if err := checkSquare(len(perm), len(cost), n); err != nil {
		return err
	}
	a.grow(n)
	c := a.c[:n*n]
	if !widenCosts(c, cost[:n*n]) {
		return nonFiniteCost(c, n)
	}
	return a.solve(perm, n)
}

// widenCostsGo is widenCosts in plain Go, the reference of the vectorized
// kernel: dst_k = src_k in float64; false if some src_k is NaN or
// infinite (x - x is 0 for every finite x, NaN otherwise: one subtraction
// and comparison a cost).
func widenCostsGo(dst []float64, src []float32) bool {
	dst = dst[:len(src)]
	nonFinite := false
	for k, x := range src {
		dst[k] = float64(x)
		nonFinite = nonFinite || x-x != 0
	}
	return !nonFinite
}

// Assign64 is Assign for a float64 cost matrix.
func (a *Assigner) Assign64(perm []int, cost []float64, n int) error {
	if err := checkSquare(len(perm), len(cost), n); err != nil {
		return err
	}
	a.grow(n)
	copy(a.c, cost[:n*n])
	nonFinite := false
	big := 0.0
	for _, x := range a.c {
		nonFinite = nonFinite || x-x != 0
		big = max(big, math.Abs(x))
	}
	if nonFinite {
		return nonFiniteCost(a.c, n)
	}
	if limit := maxCost64(n); big > limit {
		for k, x := range a.c {
			if math.Abs(x) > limit {
				return fmt.Errorf("coupling: cost[%d][%d] = %g: a %d x %d problem takes costs up to %g in magnitude (the solve's float64 sums of several costs must stay finite)", k/n, k%n, x, n, n, limit)
			}
		}
	}
	return a.solve(perm, n)
}

// maxCost64 bounds the magnitude of Assign64's costs for size n: the
// solve subtracts costs and adds reduced costs along augmenting paths, so
// a cost near the float64 limit overflows to an infinite price (a 3 x 3
// checkerboard of +-1e308 indexed column -1; costs of 3 2^1022 returned a
// permutation that was not optimal). Float32 costs (Assign) are far below.
func maxCost64(n int) float64 {
	return math.MaxFloat64 / float64(8*max(n, 1))
}

// nonFiniteCost returns the error naming the first cost that is NaN or
// infinite.
func nonFiniteCost(c []float64, n int) error {
	for k, x := range c {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("coupling: cost[%d][%d] = %v: costs must be finite", k/n, k%n, x)
		}
	}
	return nil
}

func checkSquare(nperm, ncost, n int) error {
	if n < 0 || nperm < n || ncost < n*n {
		return fmt.Errorf("coupling: assignment of size %d needs %d costs and %d slots, got %d and %d", n, n*n, n, ncost, nperm)
	}
	return nil
}

func (a *Assigner) grow(n int) {
	if cap(a.c) < n*n {
		a.c = make([]float64, n*n)
	}
	a.c = a.c[:n*n]
	if cap(a.v) < n {
		a.v, a.d = make([]float64, n), make([]float64, n)
		a.vs, a.ds = make([]float64, n), make([]float64, n)
		a.rowCol, a.colRow = make([]int32, n), make([]int32, n)
		a.free, a.cols = make([]int32, n), make([]int32, n)
		a.pred, a.count = make([]int32, n), make([]int32, n)
	}
	a.v, a.d = a.v[:n], a.d[:n]
	a.vs, a.ds = a.vs[:n], a.ds[:n]
	a.rowCol, a.colRow = a.rowCol[:n], a.colRow[:n]
	a.free, a.cols = a.free[:n], a.cols[:n]
	a.pred, a.count = a.pred[:n], a.count[:n]
}

// solve runs the phases on a.c, whose costs are finite.
func (a *Assigner) solve(perm []int, n int) error {
	if n == 0 {
		return nil
	}
	a.subtractRowMinima(n)
	a.reduceColumns(n)
	nfree := a.transfer(n)
	for pass := 0; pass < 2 && nfree > 0; pass++ {
		nfree = a.reduceRows(n, nfree)
	}
	for _, f := range a.free[:nfree] {
		a.augment(n, f)
	}
	for i, j := range a.rowCol {
		perm[i] = int(j)
	}
	return nil
}

// subtractRowMinima subtracts from each row of a.c its smallest cost. The
// optimal permutations stay the same (every permutation's total falls by
// the same amount), but the initial phases then work alike whatever
// constant each row carries: the trainer's cost -2 X0 X1^T lacks the
// squared distances' |x0_i|^2, and on its batches the search ran twice as
// many passes without this (docs/performance.md, "Couplings").
func (a *Assigner) subtractRowMinima(n int) {
	for i := range n {
		subtractRowMin(a.c[i*n : (i+1)*n])
	}
}

// subtractRowMinGo is subtractRowMin in plain Go, the reference of the
// vectorized kernel: row_j -= m for m the smallest row_j, made +0 when it
// is a zero (the kernel's lanes meet a row's -0 and +0 in another order).
func subtractRowMinGo(row []float64) {
	if len(row) == 0 {
		return
	}
	m := row[0]
	for _, x := range row[1:] {
		if x < m {
			m = x
		}
	}
	m += 0
	for j := range row {
		row[j] -= m
	}
}

// reduceColumns sets each column's price to its smallest cost and gives
// the column to that row when the row has none yet (scanning columns from
// the last, as Jonker and Volgenant do), counting in a.count how many
// columns chose each row.
func (a *Assigner) reduceColumns(n int) {
	c, v, best := a.c, a.v, a.pred // pred holds each column's best row here
	copy(v, c[:n])
	for j := range n {
		best[j] = 0
	}
	for i := 1; i < n; i++ {
		columnMin(c[i*n:(i+1)*n], v, best, int32(i))
	}
	for i := range n {
		a.rowCol[i], a.colRow[i], a.count[i] = -1, -1, 0
	}
	for j := n - 1; j >= 0; j-- {
		ib := best[j]
		a.count[ib]++
		if a.count[ib] == 1 {
			a.rowCol[ib], a.colRow[j] = int32(j), ib
		}
	}
}

// transfer lists the rows that got no column as free and, for each row
// that was the minimum of exactly one column, lowers that column's price
// by the row's second-best reduced cost, so the row keeps its column with
// slack passed on to the column. It returns the number of free rows.
func (a *Assigner) transfer(n int) int {
	c := a.c
	nfree := 0
	for i := range n {
		switch a.count[i] {
		case 0:
			a.free[nfree] = int32(i)
			nfree++
		case 1:
			j1 := int(a.rowCol[i])
			row := c[i*n : (i+1)*n]
			m := math.Inf(1)
			for j, x := range row {
				if j != j1 {
					m = math.Min(m, x-a.v[j])
				}
			}
			if !math.IsInf(m, 1) { // n == 1 has no second column
				a.v[j1] -= m
			}
		}
	}
	return nfree
}

// reduceRowsWork bounds the steps of one augmenting row reduction pass at
// reduceRowsWork*n. Unbounded, a pass can crawl (each step lowers a price
// by a positive amount that in floating point can be a few ulps) and, on
// clustered 2-D batches, turns into a long price war; of the budgets 0, 2
// and 8, 2 was the fastest overall on BenchmarkAssign's batches. The rows
// it leaves free go to the exact augmentation.
const reduceRowsWork = 2

// reduceRows is Jonker and Volgenant's augmenting row reduction: each free
// row takes its best column at the price that makes its second best
// equally good, evicting the column's owner, who is tried again at once
// when the price moved and in the next pass otherwise. Prices only fall,
// so the reduced costs of assigned rows stay >= 0. It returns the number
// of rows still free.
func (a *Assigner) reduceRows(n, nfree int) int {
	c, v := a.c, a.v
	k, prev := 0, nfree
	nfree = 0
	budget := reduceRowsWork * n
	for k < prev {
		i := int(a.free[k])
		k++
		if budget == 0 {
			a.free[nfree] = int32(i)
			nfree++
			continue
		}
		budget--
		u1, j1, u2, j2 := rowTop2(c[i*n:(i+1)*n], v)
		i0 := a.colRow[j1]
		moved := u1 < u2
		switch {
		case moved:
			v[j1] -= u2 - u1
		case i0 >= 0 && j2 >= 0:
			// A tie: take the second column instead, which may be free.
			j1 = j2
			i0 = a.colRow[j1]
		}
		if i0 >= 0 {
			a.rowCol[i0] = -1
		}
		a.rowCol[i], a.colRow[j1] = int32(j1), int32(i)
		if i0 >= 0 {
			if moved && k > 0 {
				k--
				a.free[k] = i0
			} else {
				a.free[nfree] = i0
				nfree++
			}
		}
	}
	return nfree
}

// augment assigns the free row f by a shortest augmenting path over the
// reduced costs C[i, j] - v_j - u_i: Dijkstra on the dense graph, which
// settles the nearest unsettled column and relaxes all columns through
// its row in one branch-free pass (relaxMin, vectorized where the CPU
// allows) that also finds the next nearest, a free one where several are
// nearest. Settled columns leave the search through their working prices:
// vs_j = -Inf makes every later candidate distance +Inf, so no pass needs
// to skip them. The search ends at the first free column it reaches; the
// columns settled before it lower their prices by the final distance minus
// their own, which keeps every reduced cost >= 0.
func (a *Assigner) augment(n int, f int32) {
	c, v, d, vs, pred := a.c, a.v, a.d, a.vs, a.pred
	inf := math.Inf(1)
	for j := range n {
		d[j], vs[j] = inf, v[j]
	}
	dmin, j := relaxMin(d, vs, c[int(f)*n:(int(f)+1)*n], pred, a.colRow, 0, f)
	nset := 0
	for a.colRow[j] >= 0 {
		a.cols[nset], a.ds[nset] = int32(j), dmin
		nset++
		d[j], vs[j] = inf, math.Inf(-1)
		i := a.colRow[j]
		ri := c[int(i)*n : (int(i)+1)*n]
		dmin, j = relaxMin(d, vs, ri, pred, a.colRow, ri[j]-v[j]-a.ds[nset-1], i)
	}
	for k, jk := range a.cols[:nset] {
		v[jk] += a.ds[k] - dmin
	}
	end := int32(j)
	for {
		i := pred[end]
		a.colRow[end] = i
		next := a.rowCol[i]
		a.rowCol[i] = end
		if i == f {
			break
		}
		end = next
	}
}

// columnMinGo is columnMin in plain Go, the reference of the vectorized
// kernels: v_j = row_j and best_j = i where row_j < v_j.
func columnMinGo(row, v []float64, best []int32, i int32) {
	v, best = v[:len(row)], best[:len(row)]
	for j, x := range row {
		if x < v[j] {
			v[j], best[j] = x, i
		}
	}
}

// rowTop2Go is rowTop2 in plain Go, the reference of the vectorized
// kernels: the smallest and the second smallest row_j - v_j and their
// columns, each the first column among equals (j2 = -1, u2 = +Inf when
// the row has one column).
func rowTop2Go(row, v []float64) (u1 float64, j1 int, u2 float64, j2 int) {
	u1, u2, j1, j2 = math.Inf(1), math.Inf(1), -1, -1
	v = v[:len(row)]
	for j, x := range row {
		h := x - v[j]
		if h < u2 {
			if h >= u1 {
				u2, j2 = h, j
			} else {
				u2, j2 = u1, j1
				u1, j1 = h, j
			}
		}
	}
	return u1, j1, u2, j2
}

// relaxMinGo is relaxMin in plain Go, the reference of the vectorized
// kernels: d_j = min(d_j, r_j - vs_j - h) with pred_j = i where r_j - vs_j
// - h is smaller; then the smallest d_j and the first column that has it,
// or the first free column (colRow_j < 0) that has it if there is one
// (-1 and +Inf if every d_j is +Inf).
func relaxMinGo(d, vs, r []float64, pred, colRow []int32, h float64, i int32) (float64, int) {
	best, jb, bestFree, jf := relaxMinGo4(d, vs, r, pred, colRow, h, i)
	return pickFree(best, jb, bestFree, jf)
}

// relaxMinGo4 is the pass of relaxMinGo, returning the smallest d_j and
// its first column over all columns and over the free ones.
func relaxMinGo4(d, vs, r []float64, pred, colRow []int32, h float64, i int32) (best float64, jb int, bestFree float64, jf int) {
	best, bestFree, jb, jf = math.Inf(1), math.Inf(1), -1, -1
	r, vs, pred, colRow = r[:len(d)], vs[:len(d)], pred[:len(d)], colRow[:len(d)]
	for j, old := range d {
		dj := r[j] - vs[j] - h
		if dj < old {
			d[j], pred[j], old = dj, i, dj
		}
		if old < best {
			best, jb = old, j
		}
		if colRow[j] < 0 && old < bestFree {
			bestFree, jf = old, j
		}
	}
	return best, jb, bestFree, jf
}

// pickFree prefers a free column among those at the smallest distance:
// the search can end there at once.
func pickFree(best float64, jb int, bestFree float64, jf int) (float64, int) {
	if jf >= 0 && bestFree == best {
		return best, jf
	}
	return best, jb
}
