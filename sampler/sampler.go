// Package sampler integrates dx/dt = v(t, x) for a batch of states on any
// gpu.Backend (docs/math.md §7) and computes log-likelihoods by the
// instantaneous change of variables (docs/math.md §9).
//
// It sees a velocity field through the Field interface and never imports the
// network code. The state is one flat backend buffer of rows x Dim float32
// values, integrated in place. Every per-stage update is a named Backend op
// (Axpy for Euler, LinComb for the Runge-Kutta stages, ErrorNorm for Dopri5's
// error estimate), which the CUDA backend fuses into single passes; the only
// device-to-host reads are one scalar per Dopri5 step (its error norm, plus
// three while choosing the first step) and, for the likelihood, the final
// state. Workspace is allocated once per call and freed before returning.
package sampler

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
)

// Field is a batched velocity field.
type Field interface {
	// Dim is the dimension D of one state.
	Dim() int
	// Velocity writes v(t, x) for rows x Dim states x into v (both backend
	// buffers of at least rows*Dim elements, row-major).
	Velocity(t float64, rows int, x, v gpu.Buffer)
}

// VJPField is a Field that can also give vector-Jacobian products: for probe
// rows e (rows x Dim) it writes, per row, w = e^T (dv/dx) evaluated at that
// row's state (a network gets it from one backward pass). It writes v(t, x)
// into v as Velocity would.
type VJPField interface {
	Field
	VJP(t float64, rows int, x, e, v, w gpu.Buffer)
}

// DivergenceField is a Field with a closed-form divergence: it writes
// v(t, x) into v and div[r] = tr(dv/dx) at row r's state into div (rows
// elements).
type DivergenceField interface {
	Field
	Divergence(t float64, rows int, x, v, div gpu.Buffer)
}

// Method is an ODE integration scheme.
type Method int

const (
	Euler    Method = iota // explicit Euler, order 1, 1 evaluation per step
	Midpoint               // explicit midpoint, order 2, 2 evaluations per step
	Heun                   // Heun's method (explicit trapezoid), order 2, 2 evaluations per step
	RK4                    // classical Runge-Kutta, order 4, 4 evaluations per step
	Dopri5                 // adaptive Dormand-Prince 5(4) with FSAL, 6 evaluations per step
)

var methodNames = [...]string{"euler", "midpoint", "heun", "rk4", "dopri5"}

// String is the method's command-line name.
func (m Method) String() string {
	if m >= 0 && int(m) < len(methodNames) {
		return methodNames[m]
	}
	return fmt.Sprintf("Method(%d)", int(m))
}

// ParseMethod turns a command-line name (euler, midpoint, heun, rk4, dopri5)
// into a Method.
func ParseMethod(s string) (Method, error) {
	for i, n := range methodNames {
		if s == n {
			return Method(i), nil
		}
	}
	return 0, fmt.Errorf("unknown ODE method %q (want euler, midpoint, heun, rk4 or dopri5)", s)
}

// Order is the method's order of convergence: halving a fixed step divides
// the global error by about 2^Order.
func (m Method) Order() int {
	if m < Euler || m > Dopri5 {
		return 0
	}
	return [...]int{1, 2, 2, 4, 5}[m]
}

// Stages is the number of field evaluations per step (Dopri5: 6, the seventh
// stage being reused as the next step's first, plus one evaluation at the
// start of the solve).
func (m Method) Stages() int {
	if m < Euler || m > Dopri5 {
		return 0
	}
	return [...]int{1, 2, 2, 4, 6}[m]
}

// Adaptive reports whether the method chooses its own steps.
func (m Method) Adaptive() bool { return m == Dopri5 }

// DefaultMaxSteps is Options.MaxSteps when it is 0.
const DefaultMaxSteps = 10000

// Options configures Solve.
type Options struct {
	// Method is the integration scheme (the zero value is Euler).
	Method Method
	// Steps is the number of fixed steps (Euler, Midpoint, Heun, RK4); it
	// must be >= 1. Dopri5 ignores it.
	Steps int
	// T0 and T1 are the start and end times; T1 < T0 integrates backwards.
	// Both 0 means the sampling interval T0 = 0 (noise), T1 = 1 (data).
	T0, T1 float64
	// Rtol and Atol are Dopri5's tolerances (both > 0; they are applied in
	// float32, so values below about 1e-7 cannot be met by the float32 state).
	Rtol, Atol float64
	// MaxSteps caps Dopri5's accepted plus rejected steps; reaching it before
	// T1 is an error wrapping ErrMaxSteps. 0 means DefaultMaxSteps.
	MaxSteps int
	// InitialStep is Dopri5's first step size (magnitude); 0 chooses it
	// automatically with Hairer's heuristic (one extra evaluation).
	InitialStep float64
	// TimeShift applies the SD3 shift to the fixed-step grid (0 or 1: none):
	// with s_i = flow.ShiftTime(i/Steps, TimeShift), the grid points are
	// lo + (hi - lo) s_i for [lo, hi] the interval between T0 and T1, in the
	// t = 1-is-data convention; a backward solve (T1 < T0) visits the same
	// points in reverse order, retracing a forward solve's grid.
	TimeShift float64
	// SaveAt lists times (between T0 and T1 inclusive, any order) at which
	// OnSave is called with the state. They are hit exactly: a fixed-step
	// solve splits the step that contains a save time that is not a grid
	// point (so saving changes the step sequence), and Dopri5 clips its step
	// to land on it. Save times within 1e-12 |T1 - T0| of a grid point or
	// endpoint use that point.
	SaveAt []float64
	// OnSave receives each save time, in the order of integration (ties in
	// the order of SaveAt after sorting), and the state at that time (the
	// rows x Dim buffer that is being integrated, or a workspace buffer
	// holding it: read it during the call, do not keep or modify it).
	OnSave func(t float64, x gpu.Buffer)
	// Stop, when set, is called before every step; a non-nil result ends
	// the solve, which returns it with the state part-way (a caller passes
	// ctx.Err to make a solve cancellable). A solve that Recorder replays
	// asks it once, before it starts: a replay runs to its end.
	Stop func() error
	// Recorder, when not nil, records a fixed-step solve without saves as
	// one graph and replays it in later solves of the same field, rows
	// and grid (the chunks of a sampling run): see Recorder.
	Recorder *Recorder
}

// DefaultOptions is Dopri5 from t = 0 to t = 1 with rtol = atol = 1e-5 and
// Steps = 100 for when a fixed-step method is chosen.
func DefaultOptions() Options {
	return Options{Method: Dopri5, Steps: 100, T0: 0, T1: 1, Rtol: 1e-5, Atol: 1e-5}
}

// Stats describes one solve.
type Stats struct {
	// NFE counts evaluations of the right-hand side of the ODE (for the
	// likelihood, of the augmented system). Fixed steps: Stages() per step;
	// Dopri5: 1 + 6 (accepted + rejected), + 1 when the first step is chosen
	// automatically.
	NFE int
	// FieldCalls counts calls into the Field (Velocity, VJP or Divergence):
	// NFE for sampling, NFE times Dim or times Probes for a likelihood that
	// takes its divergence from VJPs.
	FieldCalls int
	// Steps counts accepted steps.
	Steps int
	// Rejected counts Dopri5's rejected steps.
	Rejected int
}

// ErrMaxSteps is wrapped by the error Dopri5 returns when it reaches
// Options.MaxSteps before T1.
var ErrMaxSteps = errors.New("step limit reached")

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// normalized validates o and returns it with defaults filled in and SaveAt
// sorted in the direction of integration (a copy).
func (o Options) normalized() (Options, error) {
	if o.Method < Euler || o.Method > Dopri5 {
		return o, fmt.Errorf("sampler: unknown method %d", int(o.Method))
	}
	if !finite(o.T0) || !finite(o.T1) {
		return o, fmt.Errorf("sampler: T0 = %g, T1 = %g: need finite times", o.T0, o.T1)
	}
	if o.T0 == 0 && o.T1 == 0 {
		o.T1 = 1
	}
	if o.T0 == o.T1 {
		return o, fmt.Errorf("sampler: T0 = T1 = %g: empty time interval", o.T0)
	}
	if o.Method.Adaptive() {
		if !finite(o.Rtol) || !finite(o.Atol) || float32(o.Rtol) <= 0 || float32(o.Atol) <= 0 {
			return o, fmt.Errorf("sampler: dopri5 needs finite tolerances Rtol > 0 and Atol > 0 (got Rtol = %g, Atol = %g)", o.Rtol, o.Atol)
		}
		if o.MaxSteps < 0 {
			return o, fmt.Errorf("sampler: MaxSteps = %d: need >= 0 (0: default %d)", o.MaxSteps, DefaultMaxSteps)
		}
		if o.MaxSteps == 0 {
			o.MaxSteps = DefaultMaxSteps
		}
		if !finite(o.InitialStep) || o.InitialStep < 0 {
			return o, fmt.Errorf("sampler: InitialStep = %g: need a finite step >= 0 (0: automatic)", o.InitialStep)
		}
	} else if o.Steps < 1 {
		return o, fmt.Errorf("sampler: Steps = %d: %v needs Steps >= 1", o.Steps, o.Method)
	}
	if !finite(o.TimeShift) || o.TimeShift < 0 {
		return o, fmt.Errorf("sampler: TimeShift = %g: need a finite shift >= 0 (0 or 1: none)", o.TimeShift)
	}
	lo, hi := min(o.T0, o.T1), max(o.T0, o.T1)
	for _, s := range o.SaveAt {
		if !finite(s) || s < lo || s > hi {
			return o, fmt.Errorf("sampler: save time %g outside [%g, %g]", s, lo, hi)
		}
	}
	if len(o.SaveAt) > 0 && o.OnSave == nil {
		return o, fmt.Errorf("sampler: SaveAt given without OnSave")
	}
	o.SaveAt = slices.Clone(o.SaveAt)
	slices.Sort(o.SaveAt)
	if o.T1 < o.T0 {
		slices.Reverse(o.SaveAt)
	}
	return o, nil
}

// point is a time the integration must reach exactly, with the number of
// save times to report there.
type point struct {
	t     float64
	saves int
}

// fixedGrid is the fixed-step grid of o, in the direction of integration
// (before save times are merged).
func fixedGrid(o Options) []float64 {
	lo, hi := min(o.T0, o.T1), max(o.T0, o.T1)
	n := o.Steps
	g := make([]float64, n+1)
	for i := range g {
		g[i] = lo + (hi-lo)*flow.ShiftTime(float64(i)/float64(n), o.TimeShift)
	}
	g[0], g[n] = lo, hi
	if o.T1 < o.T0 {
		slices.Reverse(g)
	}
	return g
}

// mergeSaves turns grid (times in the direction of integration, first T0,
// last T1) into points, adding o.SaveAt (sorted in that direction): a save
// time within eps of a point is reported there (an interior point moves onto
// it), any other is inserted as a new point.
func mergeSaves(grid []float64, o Options) []point {
	pts := make([]point, len(grid), len(grid)+len(o.SaveAt))
	for i, t := range grid {
		pts[i].t = t
	}
	dir := 1.0
	if o.T1 < o.T0 {
		dir = -1
	}
	eps := 1e-12 * math.Abs(o.T1-o.T0)
	k := 0 // saves are sorted, so the search resumes where the last ended
	for _, s := range o.SaveAt {
		for k+1 < len(pts) && dir*(pts[k+1].t-s) <= eps {
			k++
		}
		// Now pts[k] <= s + eps (in direction), and pts[k+1] > s + eps.
		switch {
		case math.Abs(pts[k].t-s) <= eps:
			if k != 0 && k != len(pts)-1 {
				pts[k].t = s
			}
			pts[k].saves++
		default:
			pts = slices.Insert(pts, k+1, point{t: s, saves: 1})
			k++
		}
	}
	return pts
}

// system is the right-hand side of an ODE over a flat state of size()
// elements: the velocity field of Solve, or the likelihood's augmented
// system.
type system interface {
	size() int
	// eval writes dy = F(t, y).
	eval(t float64, y, dy gpu.Buffer)
	// fieldCalls is the number of calls into the Field so far.
	fieldCalls() int
}

// velocitySystem is a Field over rows states.
type velocitySystem struct {
	f     Field
	rows  int
	calls int
}

func (s *velocitySystem) size() int       { return s.rows * s.f.Dim() }
func (s *velocitySystem) fieldCalls() int { return s.calls }
func (s *velocitySystem) eval(t float64, y, dy gpu.Buffer) {
	s.calls++
	s.f.Velocity(t, s.rows, y, dy)
}

// Backend is what the solvers run on: the Memory family (buffers, copies,
// Sync), the ODE family's updates and the Random family's draws (the
// Hutchinson probes). Every gpu.Backend is one; the velocity field brings
// its own.
type Backend interface {
	gpu.Memory
	gpu.ODE
	gpu.Random
}

// Solve integrates dx/dt = f.Velocity(t, x) from o.T0 to o.T1 for rows
// states of f.Dim() elements held in x (row-major, at least rows*Dim
// elements; the first rows*Dim are used), in place. Dopri5 uses one step size
// for the whole batch: its error norm is the root mean square of the scaled
// error over all rows*Dim elements, so the batch moves together.
func Solve(b Backend, f Field, x gpu.Buffer, rows int, o Options) (Stats, error) {
	if rows < 1 {
		return Stats{}, fmt.Errorf("sampler: rows = %d: need at least one state", rows)
	}
	d := f.Dim()
	if d < 1 {
		return Stats{}, fmt.Errorf("sampler: field dimension %d", d)
	}
	if x.Len() < rows*d {
		return Stats{}, fmt.Errorf("sampler: state buffer has %d elements, need rows*Dim = %d*%d", x.Len(), rows, d)
	}
	sys := &velocitySystem{f: f, rows: rows}
	if r := o.Recorder; r != nil && o.Method != Dopri5 && len(o.SaveAt) == 0 {
		if st, ok, err := r.solve(b, f, sys, x.Slice(0, rows*d), o); ok {
			return st, err
		}
	}
	return integrate(b, sys, x.Slice(0, rows*d), o, o.OnSave)
}

// integrate solves sys in place over y, calling save at o.SaveAt.
func integrate(b Backend, sys system, y gpu.Buffer, o Options, save func(float64, gpu.Buffer)) (Stats, error) {
	o, err := o.normalized()
	if err != nil {
		return Stats{}, err
	}
	o.OnSave = save
	var st Stats
	if o.Method == Dopri5 {
		st, err = dopri5(b, sys, y, o)
	} else {
		st, err = fixedSteps(b, sys, y, o)
	}
	st.FieldCalls = sys.fieldCalls()
	if err == nil {
		err = b.Sync()
	}
	return st, err
}
