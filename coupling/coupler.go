package coupling

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// Kind is how a batch's noise rows are paired with its data rows. Its
// name is the command-line value (`--coupling`) and what a checkpoint
// stores; the numbers are not stable and must not be stored.
type Kind uint8

const (
	// KindIndependent keeps the batch as drawn: noise row i with data row i.
	KindIndependent Kind = iota
	// KindOT pairs by exact minibatch optimal transport under squared
	// Euclidean cost (Assigner): a permutation of the data rows.
	KindOT
	// KindSinkhorn draws each noise row's partner from the entropic plan
	// (Sinkhorn, SampleRows): data rows may repeat or be left out.
	KindSinkhorn
)

var kindNames = [...]string{KindIndependent: "independent", KindOT: "ot", KindSinkhorn: "sinkhorn"}

// KindNames lists the kinds' names in order.
func KindNames() []string { return slices.Clone(kindNames[:]) }

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// ParseKind returns the kind named s.
func ParseKind(s string) (Kind, error) {
	for k, name := range kindNames {
		if s == name {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("unknown coupling %q: want %s", s, strings.Join(kindNames[:], ", "))
}

// Options choose a coupling.
type Options struct {
	Kind     Kind
	Sinkhorn SinkhornOptions // KindSinkhorn only; Reg is required there
}

// Stats describes the pairs of one batch.
type Stats struct {
	// Before and After are the mean cost of the pairs as drawn (noise row
	// i with data row i) and as made, (1/n) sum_i C[i, idx[i]]: the mean
	// squared length of the straight paths when C is the squared distance
	// (with the -2G form of the cost they are offset by a constant).
	Before, After float64
	// Classes is the number of groups paired separately (1 without labels).
	Classes int
	// Sinkhorn sums Iters and Levels over the classes and keeps the largest
	// Err; Converged is true when every class converged.
	Sinkhorn SinkhornStats
}

// Coupler pairs batches. It keeps the solvers' buffers between calls:
// make one per training run (or per goroutine), not one per batch.
type Coupler struct {
	opt    Options
	assign Assigner
	sink   Sinkhorn
	order  []int     // rows sorted by class, then by index
	sub    []float32 // a class's block of the cost
	subU   []float64
	perm   []int
	plan   []float64
}

// NewCoupler checks opt and returns a Coupler for it.
func NewCoupler(opt Options) (*Coupler, error) {
	switch opt.Kind {
	case KindIndependent, KindOT:
	case KindSinkhorn:
		if r := opt.Sinkhorn.Reg; !(r > 0) || math.IsInf(r, 1) {
			return nil, fmt.Errorf("coupling sinkhorn: regularization %v: want a finite value > 0", r)
		}
		if opt.Sinkhorn.Tol < 0 || math.IsNaN(opt.Sinkhorn.Tol) || opt.Sinkhorn.MaxIter < 0 {
			return nil, fmt.Errorf("coupling sinkhorn: tolerance %v and iteration limit %d: want >= 0 (0 for the defaults)", opt.Sinkhorn.Tol, opt.Sinkhorn.MaxIter)
		}
	default:
		return nil, fmt.Errorf("coupling: unknown kind %v", opt.Kind)
	}
	return &Coupler{opt: opt}, nil
}

// Options returns the options the Coupler was made with.
func (c *Coupler) Options() Options { return c.opt }

// Pair writes into idx (length n) the data row paired with each noise row:
// the trainer builds the path from x0[i] and x1[idx[i]].
//
// cost is the n x n matrix C[i, j] between noise row i and data row j,
// row-major: the squared distances (SqDist, or a backend's product with
// GramToSqDist), or -2 x0 . x1^T alone, which gives the same pairs
// (cost.go). labels, when not nil, are the class labels of the data rows
// (length n): pairs are then made within each class only, noise row i
// taking the class of data row i, so that idx[i] has the label of row i
// and the batch's labels need no reordering (docs/math.md §11.4). u holds
// n uniforms in [0, 1) from the caller's counter-based generator, used
// by KindSinkhorn only (nil otherwise). The pairs depend only on the
// arguments.
func (c *Coupler) Pair(idx []int, cost []float32, n int, labels []int32, u []float64) (Stats, error) {
	st := Stats{Classes: 1, Sinkhorn: SinkhornStats{Converged: true}}
	if err := checkSquare(len(idx), len(cost), n); err != nil {
		return st, err
	}
	if labels != nil && len(labels) < n {
		return st, fmt.Errorf("coupling: %d labels for a batch of %d", len(labels), n)
	}
	if c.opt.Kind == KindSinkhorn && len(u) < n {
		return st, fmt.Errorf("coupling sinkhorn: %d uniforms for a batch of %d", len(u), n)
	}
	for i := range n {
		st.Before += float64(cost[i*n+i])
	}
	st.Before /= float64(max(n, 1))
	if c.opt.Kind == KindIndependent || n == 0 {
		for i := range n {
			idx[i] = i
		}
		st.After = st.Before
		return st, nil
	}
	if labels == nil {
		if err := c.pairBlock(idx, cost, n, nil, u, &st); err != nil {
			return st, err
		}
	} else {
		c.order = slices.Grow(c.order[:0], n)[:n]
		for i := range c.order {
			c.order[i] = i
		}
		slices.SortStableFunc(c.order, func(a, b int) int { return cmp.Compare(labels[a], labels[b]) })
		st.Classes = 0
		for lo := 0; lo < n; {
			hi := lo + 1
			for hi < n && labels[c.order[hi]] == labels[c.order[lo]] {
				hi++
			}
			if err := c.pairBlock(idx, cost, n, c.order[lo:hi], u, &st); err != nil {
				return st, fmt.Errorf("class %d: %w", labels[c.order[lo]], err)
			}
			st.Classes++
			lo = hi
		}
	}
	st.After = MeanCost(cost, n, idx)
	return st, nil
}

// pairBlock pairs the rows rows (nil: all n) among themselves.
func (c *Coupler) pairBlock(idx []int, cost []float32, n int, rows []int, u []float64, st *Stats) error {
	m := n
	block, bu := cost[:n*n], u
	if rows != nil {
		m = len(rows)
		c.sub = slices.Grow(c.sub[:0], m*m)[:m*m]
		for a, i := range rows {
			for b, j := range rows {
				c.sub[a*m+b] = cost[i*n+j]
			}
		}
		block = c.sub
		if u != nil {
			c.subU = slices.Grow(c.subU[:0], m)[:m]
			for a, i := range rows {
				c.subU[a] = u[i]
			}
			bu = c.subU
		}
	}
	c.perm = slices.Grow(c.perm[:0], m)[:m]
	switch c.opt.Kind {
	case KindOT:
		if err := c.assign.Assign(c.perm, block, m); err != nil {
			return err
		}
	case KindSinkhorn:
		c.plan = slices.Grow(c.plan[:0], m*m)[:m*m]
		ss, err := c.sink.Plan(c.plan, block, m, c.opt.Sinkhorn)
		if err != nil {
			return err
		}
		st.Sinkhorn.Iters += ss.Iters
		st.Sinkhorn.Levels += ss.Levels
		st.Sinkhorn.Err = math.Max(st.Sinkhorn.Err, ss.Err)
		st.Sinkhorn.Converged = st.Sinkhorn.Converged && ss.Converged
		if err := SampleRows(c.perm, c.plan, m, bu); err != nil {
			return err
		}
	}
	if rows == nil {
		copy(idx[:n], c.perm)
		return nil
	}
	for a, i := range rows {
		idx[i] = rows[c.perm[a]]
	}
	return nil
}

// PairPoints is Pair with the cost computed on the host from the noise x0
// and the data x1 (n x d each, row-major) by SqDist.
func (c *Coupler) PairPoints(idx []int, x0, x1 []float32, n, d int, labels []int32, u []float64) (Stats, error) {
	if n < 0 || d < 1 || len(x0) < n*d || len(x1) < n*d {
		return Stats{}, fmt.Errorf("coupling: batches of %d points of dimension %d need %d values each, got %d and %d", n, d, n*d, len(x0), len(x1))
	}
	cost := make([]float32, n*n)
	SqDist(cost, x0, x1, n, n, d)
	return c.Pair(idx, cost, n, labels, u)
}

// couplingStream separates StepUniforms' PCG streams from other uses of
// the same seed.
const couplingStream = 0x636f75706c696e67 // "coupling"

// StepUniforms fills u with uniforms in [0, 1) for KindSinkhorn that depend
// only on (seed, step): math/rand/v2's PCG seeded with seed and with step
// in its stream, so a run resumed at a step draws the same pairs. It is for
// callers without a counter-based generator of their own; the trainer may
// use its Philox streams instead.
func StepUniforms(u []float64, seed, step uint64) {
	r := rand.New(rand.NewPCG(seed, step^couplingStream))
	for i := range u {
		u[i] = r.Float64()
	}
}
