package generate

import (
	"context"
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/sampler"
)

// sampleChunk bounds the rows of a vector model integrated at once, so
// that the network's activations stay within a few hundred MB whatever n
// is.
const sampleChunk = 1 << 15

// imageChunk is the same bound for a U-Net, whose activations take
// megabytes per image.
const imageChunk = 100

// ChunkRows is how many rows Sample integrates at once for a network of
// configuration c.
func ChunkRows(c model.Config) int {
	if c.Kind == model.KindUNet {
		return imageChunk
	}
	return sampleChunk
}

// SampleOptions are the choices of Sample beyond the model.
type SampleOptions struct {
	// Solver is the ODE solver. Its T0 and T1 are set to the path's time
	// range (noise to data); a TimeShift of 0 takes the model's.
	Solver sampler.Options
	// Seed selects the noise: chunk k of rows draws Philox stream k of Seed.
	Seed uint64
	// Labels holds one class per sample for a class-conditional model (nil:
	// the null class, unconditional sampling); it must be nil for an
	// unconditional model.
	Labels []int
	// Guidance is the classifier-free guidance weight w of
	// v_null + w (v_class - v_null) for a class-conditional model (1: plain
	// conditional sampling).
	Guidance float64
	// OnSave, when set with Solver.SaveAt, receives the k-th saved state of
	// every chunk, mapped to data units, with the chunk's first row. x is
	// reused: copy what is kept.
	OnSave func(k, first int, x []float32)
	// OnProgress, when set, is called after every chunk with the rows done
	// and the statistics so far.
	OnProgress func(done, total int, sofar Stats)
}

// Stats describes a Sample or LogLikelihood call over all its chunks.
type Stats struct {
	// NFE is the solver's evaluations of the ODE's right-hand side per
	// trajectory, the figure papers report: the same for every chunk of a
	// fixed-step solver, the largest over the chunks for Dopri5.
	NFE int
	// TotalNFE sums NFE over the chunks.
	TotalNFE int
	// FieldCalls counts the calls into the network over all chunks (for a
	// likelihood with a VJP divergence, NFE times D or times the probes).
	FieldCalls int
	// Steps and Rejected are the accepted and rejected steps of the chunk
	// with the largest NFE.
	Steps, Rejected int
	// Chunks is the number of separate solves.
	Chunks int
}

func (s *Stats) add(st sampler.Stats) {
	if st.NFE > s.NFE {
		s.NFE, s.Steps, s.Rejected = st.NFE, st.Steps, st.Rejected
	}
	s.TotalNFE += st.NFE
	s.FieldCalls += st.FieldCalls
	s.Chunks++
}

// NonFiniteError reports an output that came out NaN or infinite: a
// diverged model, or a solve too coarse for it.
type NonFiniteError struct {
	What  string // "sample" or "log-likelihood"
	Index int    // the row
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("the %s of row %d came out non-finite", e.What, e.Index)
}

// Sample draws n samples from m: x0 from the path's prior, the ODE solved
// from the start of the path's time range to its end, mapped back to data
// units. It returns n x Dim values row-major. When ctx is cancelled it
// stops after the current chunk's step and returns ctx's error.
func Sample(ctx context.Context, m *Model, n int, o SampleOptions) ([]float32, Stats, error) {
	var total Stats
	if n < 1 {
		return nil, total, fmt.Errorf("generate: %d samples: need at least 1", n)
	}
	classes := m.Classes()
	switch {
	case o.Labels != nil && classes == 0:
		return nil, total, fmt.Errorf("generate: labels given for an unconditional model")
	case o.Labels != nil && len(o.Labels) != n:
		return nil, total, fmt.Errorf("generate: %d labels for %d samples", len(o.Labels), n)
	case math.IsNaN(o.Guidance) || math.IsInf(o.Guidance, 0) || o.Guidance < 0:
		return nil, total, fmt.Errorf("generate: guidance %g: need a finite weight >= 0", o.Guidance)
	}
	for i, l := range o.Labels {
		if l < 0 || l >= classes {
			return nil, total, fmt.Errorf("generate: label %d of sample %d outside 0..%d", l, i, classes-1)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, total, err
	}
	b, d := m.b, m.Dim()
	out := make([]float32, n*d)
	so := o.Solver
	so.T0, so.T1 = m.Path.TimeRange()
	if so.TimeShift == 0 {
		so.TimeShift = m.TimeShift
	}
	so.Stop = ctx.Err
	chunk := ChunkRows(m.Config())
	x := b.Alloc(min(n, chunk) * d)
	defer b.Free(x)
	if o.OnSave == nil && !so.Method.Adaptive() {
		// Chunks of the same rows and field replay one recorded solve.
		rec := sampler.NewRecorder(b)
		defer rec.Close()
		so.Recorder = rec
	}
	var host []float32
	if o.OnSave != nil {
		host = make([]float32, min(n, chunk)*d)
	}
	for first, stream := 0, uint64(0); first < n; first, stream = first+chunk, stream+1 {
		if err := ctx.Err(); err != nil {
			return nil, total, err
		}
		rows := min(chunk, n-first)
		xs := x.Slice(0, rows*d)
		b.RandNormal(xs, o.Seed, stream, float32(m.Path.PriorStd()))
		st, err := solveChunk(b, m, xs, first, rows, so, o, host)
		if err != nil {
			return nil, total, err
		}
		total.add(st)
		b.Download(out[first*d:(first+rows)*d], xs)
		if o.OnProgress != nil {
			if err := b.Sync(); err != nil {
				return nil, total, err
			}
			o.OnProgress(first+rows, n, total)
		}
	}
	if err := b.Sync(); err != nil {
		return nil, total, err
	}
	m.Std.Invert(out)
	if i := firstNonFinite(out); i >= 0 {
		return nil, total, &NonFiniteError{What: "sample", Index: i / d}
	}
	return out, total, nil
}

// solveChunk integrates the rows of one chunk in place; the guided field
// of a class-conditional model is released before it returns, so that
// device memory does not grow with the number of chunks.
func solveChunk(b gpu.Backend, m *Model, xs gpu.Buffer, first, rows int, so sampler.Options, o SampleOptions, host []float32) (sampler.Stats, error) {
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
	if o.OnSave != nil {
		k := 0
		h := host[:rows*m.Dim()]
		so.OnSave = func(_ float64, st gpu.Buffer) {
			b.Download(h, st)
			m.Std.Invert(h)
			o.OnSave(k, first, h)
			k++
		}
	}
	return sampler.Solve(b, field, xs, rows, so)
}

func firstNonFinite(x []float32) int {
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return i
		}
	}
	return -1
}
