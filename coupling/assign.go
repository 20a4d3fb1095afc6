package coupling

import (
	"fmt"
	"math"
)

// Assigner solves dense square linear assignment problems exactly:
// given an n x n cost matrix C, it finds the permutation p minimizing
// sum_i C[i, p(i)] (docs/math.md §11.2). It follows Jonker and Volgenant
// (1987): three cheap initial phases (column reduction, reduction
// transfer, augmenting row reduction) assign most rows, and a shortest
// augmenting path search (Dijkstra over reduced costs) assigns the rest,
// keeping column prices v such that every reduced cost
// C[i, j] - u_i - v_j is >= 0 and is 0 on the assignment, which proves
// the result optimal (linear programming duality). O(n^3) in the worst
// case; arithmetic in float64.
//
// The zero value is ready to use; an Assigner keeps its buffers between
// calls (no allocation once grown) and is not safe for concurrent use.
type Assigner struct {
	c      []float64 // n x n working copy of the cost
	v      []float64 // column prices
	d      []float64 // shortest path lengths
	rowCol []int32   // column of each row, -1 when free
	colRow []int32   // row of each column, -1 when free
	free   []int32   // free rows
	cols   []int32   // column order of the Dijkstra search
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
	for k, x := range cost[:n*n] {
		a.c[k] = float64(x)
	}
	return a.solve(perm, n)
}

// Assign64 is Assign for a float64 cost matrix.
func (a *Assigner) Assign64(perm []int, cost []float64, n int) error {
	if err := checkSquare(len(perm), len(cost), n); err != nil {
		return err
	}
	a.grow(n)
	copy(a.c, cost[:n*n])
	return a.solve(perm, n)
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
		a.rowCol, a.colRow = make([]int32, n), make([]int32, n)
		a.free, a.cols = make([]int32, n), make([]int32, n)
		a.pred, a.count = make([]int32, n), make([]int32, n)
	}
	a.v, a.d = a.v[:n], a.d[:n]
	a.rowCol, a.colRow = a.rowCol[:n], a.colRow[:n]
	a.free, a.cols = a.free[:n], a.cols[:n]
	a.pred, a.count = a.pred[:n], a.count[:n]
}

// solve runs the four phases on a.c.
func (a *Assigner) solve(perm []int, n int) error {
	for k, x := range a.c {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("coupling: cost[%d][%d] = %v: costs must be finite", k/n, k%n, x)
		}
	}
	if n == 0 {
		return nil
	}
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
		row := c[i*n : (i+1)*n]
		for j, x := range row {
			b := best[j]
			if x < v[j] {
				b = int32(i)
			}
			best[j] = b
			v[j] = min(v[j], x)
		}
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
		row := c[i*n : (i+1)*n]
		u1, u2 := row[0]-v[0], math.Inf(1)
		j1, j2 := 0, -1
		for j := 1; j < n; j++ {
			h := row[j] - v[j]
			if h < u2 {
				if h >= u1 {
					u2, j2 = h, j
				} else {
					u2, j2 = u1, j1
					u1, j1 = h, j
				}
			}
		}
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
// reduced costs C[i, j] - v_j - u_i (Dijkstra, with the columns at the
// current minimum distance scanned as a block), then lowers the price of
// each column settled before the path's end by the final distance minus
// its own, which keeps every reduced cost >= 0.
func (a *Assigner) augment(n int, f int32) {
	c, v, d, cols, pred := a.c, a.v, a.d, a.cols, a.pred
	row := c[int(f)*n : (int(f)+1)*n]
	for j := range n {
		d[j] = row[j] - v[j]
		pred[j] = f
		cols[j] = int32(j)
	}
	// cols[:lo] are scanned, cols[lo:hi] are at distance dmin and not yet
	// scanned, cols[hi:] are farther.
	lo, hi, last := 0, 0, 0
	end := int32(-1)
	dmin := 0.0
	for end < 0 {
		if lo == hi {
			last = lo
			dmin = d[cols[hi]]
			hi++
			for k := hi; k < n; k++ {
				j := cols[k]
				h := d[j]
				if h <= dmin {
					if h < dmin {
						hi, dmin = lo, h
					}
					cols[k], cols[hi] = cols[hi], j
					hi++
				}
			}
			for k := lo; k < hi; k++ {
				if a.colRow[cols[k]] < 0 {
					end = cols[k]
					break
				}
			}
			if end >= 0 {
				break
			}
		}
		j1 := cols[lo]
		lo++
		i := int(a.colRow[j1])
		ri := c[i*n : (i+1)*n]
		h := ri[j1] - v[j1] - dmin
		for k := hi; k < n; k++ {
			j := cols[k]
			dj := ri[j] - v[j] - h
			old, p := d[j], pred[j]
			if dj < old { // a conditional move, not a branch
				p = int32(i)
			}
			d[j], pred[j] = min(old, dj), p
			if dj == dmin { // j joins the columns at the minimum
				if a.colRow[j] < 0 {
					end = j
					break
				}
				cols[k], cols[hi] = cols[hi], j
				hi++
			}
		}
	}
	for _, j := range cols[:last] {
		v[j] += d[j] - dmin
	}
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
