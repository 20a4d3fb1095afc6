package gpu

import (
	"errors"
	"fmt"
)

// Graph is a sequence of a backend's ops recorded once (Capture) and
// replayed by Launch: one launch of the whole sequence instead of one per
// kernel (CUDA graphs). A replay runs the recorded kernels with the
// recorded arguments over the same buffers; values that change from one
// replay to the next must be read by the kernels from device memory
// (BatchDraw.StepFrom, AdamStep.Scalars), written before each Launch.
type Graph struct {
	d       *DeviceBackend
	exec    uint64
	kernels int64  // kernels of one replay
	gen     uint64 // the backend's buffer generation the graph was recorded over
}

// ErrGraphStale is Launch's error for a graph recorded over buffers that
// were freed (or scratch space that grew) since: record it again.
var ErrGraphStale = errors.New("gpu: graph recorded over buffers freed since")

// errCapture is the error of an op that cannot be recorded.
var errCapture = errors.New("not allowed while a graph is recorded (the ops of a graph are kernels over buffers allocated before)")

// Capture records the ops f queues on b into a Graph instead of running
// them: nothing of f runs until Launch. It returns nil, nil without
// calling f when b cannot record graphs (the CPU backend, the kernelsim
// launcher, a driver without graphs, CUDAOptions.NoGraphs, profiling). f
// may only queue kernels over buffers that exist: no Alloc, Free, Upload,
// Download, Copy or Sync, and no scratch space beyond what the same ops
// needed before (run them once eagerly first). On an error nothing of f
// has run and b is usable.
func Capture(b Memory, f func()) (*Graph, error) {
	d, ok := b.(*DeviceBackend)
	if !ok {
		return nil, nil
	}
	return d.capture(f)
}

// CanCapture reports whether Capture records graphs on b.
func CanCapture(b Memory) bool {
	d, ok := b.(*DeviceBackend)
	if !ok || d.closed {
		return false
	}
	gl, ok := d.l.(graphLauncher)
	return ok && gl.canCapture()
}

// graphLauncher is a launcher that can record launches into a graph and
// replay it (the CUDA driver's stream capture).
type graphLauncher interface {
	canCapture() bool
	beginCapture() error
	// endCapture ends the recording and returns the executable graph.
	endCapture() (uint64, error)
	launchGraph(g uint64) error
	destroyGraph(g uint64) error
}

func (d *DeviceBackend) capture(f func()) (g *Graph, err error) {
	gl, ok := d.l.(graphLauncher)
	if !ok || !gl.canCapture() || d.closed {
		return nil, nil
	}
	if d.capturing {
		return nil, errors.New("gpu: Capture inside Capture")
	}
	if err := d.Sync(); err != nil {
		return nil, err
	}
	if err := gl.beginCapture(); err != nil {
		return nil, fmt.Errorf("gpu: begin a graph: %w", err)
	}
	d.capturing = true
	start := d.launches
	defer func() {
		// Also when f panics: the stream must leave capture mode.
		d.capturing = false
		kernels := d.launches - start
		d.launches, d.queued = start, false
		exec, endErr := gl.endCapture()
		ferr := d.err
		d.err = nil // nothing ran: the backend is as before Capture
		if ferr == nil && endErr == nil {
			g = &Graph{d: d, exec: exec, kernels: kernels, gen: d.gen}
			return
		}
		if exec != 0 {
			gl.destroyGraph(exec)
		}
		g, err = nil, errors.Join(ferr, endErr)
		if err != nil {
			err = fmt.Errorf("gpu: record a graph: %w", err)
		}
	}()
	f()
	return nil, nil
}

// Launch queues one replay of g's ops. Its errors are the backend's
// (sticky, reported at the next Sync), except ErrGraphStale, returned
// with nothing queued.
func (g *Graph) Launch() error {
	d := g.d
	if g.exec == 0 {
		panic("gpu: launch of a closed graph")
	}
	if d.closed {
		panic("gpu: device backend used after Close")
	}
	if g.gen != d.gen {
		return ErrGraphStale
	}
	if d.capturing {
		d.fail("launch a graph", errCapture)
		return nil
	}
	if d.err != nil {
		return nil
	}
	d.launches += g.kernels
	d.graphLaunches++
	d.queued = true
	if err := d.l.(graphLauncher).launchGraph(g.exec); err != nil {
		d.fail("launch a graph", err)
	}
	return nil
}

// Kernels is the number of kernels one replay runs.
func (g *Graph) Kernels() int64 { return g.kernels }

// Close frees g (after the replays queued so far: the driver keeps a
// launched graph until it finishes).
func (g *Graph) Close() {
	if g == nil || g.exec == 0 {
		return
	}
	if !g.d.closed {
		g.d.failAt("destroy a graph", g.d.l.(graphLauncher).destroyGraph(g.exec))
	}
	g.exec = 0
}

// GraphLaunches is the number of graph replays launched so far (fmgpu
// bench divides it by the steps it ran); Launches counts the kernels they
// ran.
func (d *DeviceBackend) GraphLaunches() int64 { return d.graphLaunches }

// outsideCapture reports whether an op that is not a kernel may run now,
// recording an error when a graph is being recorded.
func (d *DeviceBackend) outsideCapture(what string) bool {
	if d.capturing {
		d.fail(what, errCapture)
		return false
	}
	return true
}
