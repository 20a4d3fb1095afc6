package generate

import (
	"context"
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/metrics"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/sampler"
)

// PathOptions are the choices of PathStats.
type PathOptions struct {
	// Steps is the number of RK4 steps of equal length over the path's time
	// range (4 Steps + 1 network evaluations per trajectory).
	Steps int
	// Seed, Labels and Guidance are Sample's: the same seed starts from
	// the same noise as Sample does.
	Seed     uint64
	Labels   []int
	Guidance float64
	// OnProgress, when set, is called after every chunk with the
	// trajectories done.
	OnProgress func(done, total int)
}

// PathStats measures how straight m's flow is along its own ODE
// trajectories (Liu et al.'s straightness, docs/math.md §12.2): n noises
// x0 are drawn as Sample draws them, each is carried by m's ODE to x1 with
// o.Steps RK4 steps, and the integrals of metrics.PathStats are taken on
// the step boundaries. The pairs (x0, x1) are thus the model's own
// coupling, not the training pairs.
//
// Units: the network's, that is the standardized data (the prior is
// N(0, PriorStd^2 I) there), with time rescaled to s in [0, 1] over the
// path's time range [lo, hi] (dx/ds = (hi - lo) v), so that a straight
// path at constant speed has S = 0 whatever the range. A class-conditional
// model is measured on its guided field. It stops between network
// evaluations when ctx is cancelled and returns ctx's error.
func PathStats(ctx context.Context, m *Model, n int, o PathOptions) (metrics.PathStats, error) {
	var st metrics.PathStats
	if n < 1 || o.Steps < 1 {
		return st, fmt.Errorf("generate: path statistics over %d trajectories of %d steps: need at least 1 of each", n, o.Steps)
	}
	classes := m.Classes()
	switch {
	case o.Labels != nil && classes == 0:
		return st, fmt.Errorf("generate: labels given for an unconditional model")
	case o.Labels != nil && len(o.Labels) != n:
		return st, fmt.Errorf("generate: %d labels for %d trajectories", len(o.Labels), n)
	case math.IsNaN(o.Guidance) || math.IsInf(o.Guidance, 0) || o.Guidance < 0:
		return st, fmt.Errorf("generate: guidance %g: need a finite weight >= 0", o.Guidance)
	}
	for i, l := range o.Labels {
		if l < 0 || l >= classes {
			return st, fmt.Errorf("generate: label %d of trajectory %d outside 0..%d", l, i, classes-1)
		}
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	b, d := m.b, m.Dim()
	lo, hi := m.Path.TimeRange()
	span := hi - lo
	chunk := ChunkRows(m.Config())
	rows0 := min(n, chunk)
	xb, vb := b.Alloc(rows0*d), b.Alloc(rows0*d)
	defer b.Free(xb)
	defer b.Free(vb)
	x0 := make([]float32, rows0*d)
	var total metrics.PathStats
	for first, stream := 0, uint64(0); first < n; first, stream = first+chunk, stream+1 {
		rows := min(chunk, n-first)
		xs, vs := xb.Slice(0, rows*d), vb.Slice(0, rows*d)
		// the same noise as Sample's chunk of the same rows
		b.RandNormal(xs, o.Seed, stream, float32(m.Path.PriorStd()))
		b.Download(x0[:rows*d], xs)
		c, err := chunkPathStats(ctx, b, m, xs, vs, x0[:rows*d], first, rows, lo, span, o)
		if err != nil {
			return st, err
		}
		w := float64(rows)
		total.Straightness += w * c.Straightness
		total.Kinetic += w * c.Kinetic
		total.Displacement += w * c.Displacement
		total.Nodes = c.Nodes
		if o.OnProgress != nil {
			o.OnProgress(first+rows, n)
		}
	}
	fn := float64(n)
	total.Straightness /= fn
	total.Kinetic /= fn
	total.Displacement /= fn
	return total, nil
}

// chunkPathStats integrates the rows of one chunk from x0; the guided
// field of a class-conditional model is released before it returns.
func chunkPathStats(ctx context.Context, b gpu.Backend, m *Model, xs, vs gpu.Buffer, x0 []float32, first, rows int, lo, span float64, o PathOptions) (metrics.PathStats, error) {
	var field sampler.Field = m.Net
	if classes := m.Classes(); classes > 0 {
		labels := make([]int, rows)
		for i := range labels {
			labels[i] = classes // the null class
			if o.Labels != nil {
				labels[i] = o.Labels[first+i]
			}
		}
		gf := model.NewGuided(b, m.Net, labels, o.Guidance)
		defer gf.Release()
		field = gf
	}
	var failed error
	v := func(s float64, x, out []float32) {
		if failed != nil {
			return
		}
		b.Upload(xs, x)
		field.Velocity(lo+span*s, rows, xs, vs)
		b.Download(out, vs)
		if err := b.Sync(); err != nil {
			failed = err
			clear(out)
			return
		}
		for i, u := range out {
			out[i] = float32(span * float64(u))
		}
	}
	st, _, err := metrics.FlowPathStats(ctx, v, x0, rows, m.Dim(), o.Steps)
	if failed != nil {
		return st, failed
	}
	return st, err
}
