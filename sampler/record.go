package sampler

import (
	"reflect"

	"github.com/fmgpu/fmgpu/gpu"
)

// Recorder keeps one fixed-step solve recorded as a graph (gpu.Capture):
// the first solve of a field, rows and grid runs op by op (which also
// sizes the backend's scratch space), the second is recorded and replayed,
// and later ones with the same field, rows and grid are replays, one
// launch each. A replay computes exactly what the ops do: the times and
// step sizes of a fixed grid are the same in every solve, and the state
// is copied into and out of the recorder's own buffer, over which the
// graph was recorded. On a backend that does not record graphs, a solve
// with a Recorder is an ordinary solve. A Recorder serves one backend and
// one goroutine; Close frees it.
type Recorder struct {
	b       Backend
	key     recordKey
	seen    bool // a solve of key ran op by op
	failed  bool // recording key failed: op by op from now on
	graph   *gpu.Graph
	y       gpu.Buffer // the recorded state
	st      *stepper
	stats   Stats
	replays int
}

// recordKey is what a recorded solve depends on besides the state's
// values: the field (by identity), rows and the grid.
type recordKey struct {
	field         Field
	rows          int
	method        Method
	steps         int
	t0, t1, shift float64
}

// NewRecorder returns a Recorder for solves on b.
func NewRecorder(b Backend) *Recorder { return &Recorder{b: b} }

// Replays is the number of solves run as one graph launch.
func (r *Recorder) Replays() int { return r.replays }

// Close frees the recorded graph and its buffers.
func (r *Recorder) Close() {
	if r == nil {
		return
	}
	r.drop()
	r.seen, r.failed = false, false
}

func (r *Recorder) drop() {
	r.graph.Close()
	r.graph = nil
	if r.st != nil {
		r.st.free()
		r.st = nil
	}
	if r.y != nil {
		r.b.Free(r.y)
		r.y = nil
	}
}

// solve runs a fixed-step solve of sys over y through r; ok false: not
// recordable here (the caller solves op by op).
func (r *Recorder) solve(b Backend, f Field, sys *velocitySystem, y gpu.Buffer, o Options) (st Stats, ok bool, err error) {
	if b != r.b || !gpu.CanCapture(b) || !reflect.TypeOf(f).Comparable() {
		return Stats{}, false, nil
	}
	o, err = o.normalized()
	if err != nil {
		return Stats{}, true, err
	}
	key := recordKey{field: f, rows: sys.rows, method: o.Method, steps: o.Steps, t0: o.T0, t1: o.T1, shift: o.TimeShift}
	if key != r.key {
		r.drop()
		r.key, r.seen, r.failed = key, false, false
	}
	if r.failed {
		return Stats{}, false, nil
	}
	if !r.seen {
		r.seen = true
		return Stats{}, false, nil // op by op: sizes the scratch space
	}
	if o.Stop != nil {
		if err := o.Stop(); err != nil {
			return Stats{}, true, err
		}
	}
	if r.graph != nil {
		b.Copy(r.y, y)
		if r.graph.Launch() == nil {
			b.Copy(y, r.y)
			r.replays++
			return r.stats, true, b.Sync()
		}
		r.drop() // stale: record again
	}
	n := y.Len()
	r.y = b.Alloc(n)
	r.st = newStepper(b, sys, o.Method)
	b.Copy(r.y, y)
	calls := sys.calls
	o.Stop = nil // asked above; a replay runs to its end
	g, err := gpu.Capture(b, func() { r.stats = r.st.run(fixedGrid(o), r.y) })
	if g == nil || err != nil {
		// Nothing ran: the solve goes op by op, counting its own calls.
		r.drop()
		r.failed = true
		sys.calls = calls
		if err := b.Sync(); err != nil {
			return Stats{}, true, err
		}
		return Stats{}, false, nil
	}
	r.stats.FieldCalls = sys.calls - calls
	r.graph = g
	return r.solve(b, f, sys, y, o)
}
