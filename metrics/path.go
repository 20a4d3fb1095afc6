package metrics

import (
	"context"
	"fmt"
	"math"
)

// Velocity evaluates a flow's velocity field on a batch: v = v(t, x) for
// the n rows of x (n x d, row-major), written into v (same shape). It is
// the shape of the sampler's model call.
type Velocity func(t float64, x, v []float32)

// PathStats are the averages over trajectories x_t, t in [t0, t1], of a
// flow (docs/math.md §12.2):
//
//	Straightness  S = E ∫ |(x_1 - x_0) - v(t, x_t)|^2 dt
//	Kinetic       K = E ∫ |v(t, x_t)|^2 dt
//	Displacement  E |x_1 - x_0|^2
//
// For exact trajectories over [0, 1], ∫ v dt = x_1 - x_0, so
// S = K - Displacement: S is the kinetic energy in excess of the straight
// line's, 0 exactly when every path is a straight line at constant speed.
type PathStats struct {
	Straightness, Kinetic, Displacement float64
	// Nodes is the number of times at which the velocity was known.
	Nodes int
}

// PathIntegral accumulates PathStats over trajectories given node by
// node: Add is called at increasing times with the states and the
// velocities there; the integrals are by the trapezoid rule on those
// nodes (error O(h^2) in the largest gap h), which allows any grid, such
// as an adaptive solver's accepted steps. The first node's states are
// x_0, the last one's x_1.
type PathIntegral struct {
	n, d  int
	nodes int
	t     float64   // last node's time
	x0, x []float32 // first and last states
	v     []float32 // last node's velocities
	intV  []float64 // ∫ v dt per coordinate
	intV2 []float64 // ∫ |v|^2 dt per row
}

// NewPathIntegral returns an empty integral over n trajectories in d
// dimensions.
func NewPathIntegral(n, d int) (*PathIntegral, error) {
	if n < 1 || d < 1 {
		return nil, fmt.Errorf("path integral: %d trajectories of dimension %d: want at least 1 of dimension >= 1", n, d)
	}
	return &PathIntegral{
		n: n, d: d,
		x0: make([]float32, n*d), x: make([]float32, n*d), v: make([]float32, n*d),
		intV: make([]float64, n*d), intV2: make([]float64, n),
	}, nil
}

// Add records the node at time t: states x and velocities v = v(t, x)
// (n x d each). Times must increase strictly; values must be finite.
func (p *PathIntegral) Add(t float64, x, v []float32) error {
	nd := p.n * p.d
	if len(x) < nd || len(v) < nd {
		return fmt.Errorf("path integral: node at t = %v has %d states and %d velocities, want %d each", t, len(x), len(v), nd)
	}
	if math.IsNaN(t) || math.IsInf(t, 0) || (p.nodes > 0 && !(t > p.t)) {
		return fmt.Errorf("path integral: node at t = %v after t = %v: times must be finite and increase", t, p.t)
	}
	for k := range nd {
		if math.IsNaN(float64(x[k])) || math.IsInf(float64(x[k]), 0) || math.IsNaN(float64(v[k])) || math.IsInf(float64(v[k]), 0) {
			return fmt.Errorf("path integral: node at t = %v: row %d has a non-finite state or velocity", t, k/p.d)
		}
	}
	if p.nodes == 0 {
		copy(p.x0, x[:nd])
	} else {
		half := (t - p.t) / 2
		for i := range p.n {
			s := 0.0
			for k := i * p.d; k < (i+1)*p.d; k++ {
				a, b := float64(p.v[k]), float64(v[k])
				p.intV[k] += half * (a + b)
				s += a*a + b*b
			}
			p.intV2[i] += half * s
		}
	}
	copy(p.x, x[:nd])
	copy(p.v, v[:nd])
	p.t = t
	p.nodes++
	return nil
}

// Stats returns the averages over the trajectories. It needs at least two
// nodes. Straightness is evaluated as
// |x_1 - x_0|^2 - 2 (x_1 - x_0) . ∫ v dt + ∫ |v|^2 dt, the same quadrature
// of the same integrand expanded, in float64.
func (p *PathIntegral) Stats() (PathStats, error) {
	if p.nodes < 2 {
		return PathStats{}, fmt.Errorf("path integral: %d nodes: want at least 2", p.nodes)
	}
	var st PathStats
	for i := range p.n {
		disp, cross := 0.0, 0.0
		for k := i * p.d; k < (i+1)*p.d; k++ {
			delta := float64(p.x[k]) - float64(p.x0[k])
			disp += delta * delta
			cross += delta * p.intV[k]
		}
		st.Displacement += disp
		st.Kinetic += p.intV2[i]
		st.Straightness += disp - 2*cross + p.intV2[i]
	}
	fn := float64(p.n)
	st.Displacement /= fn
	st.Kinetic /= fn
	// Rounding can leave a straight flow's S a few ulps below zero.
	st.Straightness = math.Max(st.Straightness/fn, 0)
	st.Nodes = p.nodes
	return st, nil
}

// FlowPathStats integrates dx/dt = v(t, x) from x0 (n x d) at t = 0 to
// t = 1 with `steps` classical Runge-Kutta (RK4) steps of equal length and
// returns the PathStats on the step boundaries (each step's first stage is
// the velocity at its node; one more evaluation at t = 1) and the final
// states x1. It makes 4 steps + 1 calls of v, and checks ctx before each:
// once ctx is cancelled it returns ctx's error.
func FlowPathStats(ctx context.Context, v Velocity, x0 []float32, n, d, steps int) (PathStats, []float32, error) {
	if steps < 1 {
		return PathStats{}, nil, fmt.Errorf("path stats: %d steps: want >= 1", steps)
	}
	if len(x0) < n*d {
		return PathStats{}, nil, fmt.Errorf("path stats: %d values for %d points of dimension %d", len(x0), n, d)
	}
	p, err := NewPathIntegral(n, d)
	if err != nil {
		return PathStats{}, nil, err
	}
	nd := n * d
	x := append([]float32(nil), x0[:nd]...)
	tmp := make([]float32, nd)
	k := [4][]float32{make([]float32, nd), make([]float32, nd), make([]float32, nd), make([]float32, nd)}
	h := 1 / float64(steps)
	stage := func(from []float32, scale float64) []float32 { // x + scale * from
		for i := range tmp {
			tmp[i] = float32(float64(x[i]) + scale*float64(from[i]))
		}
		return tmp
	}
	// eval is v(t, x) into out after a look at ctx: a network evaluation can
	// take a second, a whole step four.
	eval := func(t float64, x, out []float32) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		v(t, x, out)
		return nil
	}
	for s := range steps {
		t := float64(s) * h
		if err := eval(t, x, k[0]); err != nil {
			return PathStats{}, nil, err
		}
		if err := p.Add(t, x, k[0]); err != nil {
			return PathStats{}, nil, fmt.Errorf("path stats: %w", err)
		}
		if err := eval(t+h/2, stage(k[0], h/2), k[1]); err != nil {
			return PathStats{}, nil, err
		}
		if err := eval(t+h/2, stage(k[1], h/2), k[2]); err != nil {
			return PathStats{}, nil, err
		}
		if err := eval(t+h, stage(k[2], h), k[3]); err != nil {
			return PathStats{}, nil, err
		}
		for i := range x {
			x[i] = float32(float64(x[i]) + h/6*(float64(k[0][i])+2*float64(k[1][i])+2*float64(k[2][i])+float64(k[3][i])))
		}
	}
	if err := eval(1, x, k[0]); err != nil {
		return PathStats{}, nil, err
	}
	if err := p.Add(1, x, k[0]); err != nil {
		return PathStats{}, nil, fmt.Errorf("path stats: %w", err)
	}
	st, err := p.Stats()
	return st, x, err
}
