package generate

import (
	"context"
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/sampler"
)

// likelihoodChunk bounds the rows of a vector model integrated at once
// (the augmented system and the divergence's probes take several copies
// of the state).
const likelihoodChunk = 1 << 14

// LikelihoodOptions are the choices of LogLikelihood.
type LikelihoodOptions struct {
	// Solver is the ODE solver. Its T0 and T1 are set to integrate the
	// path's time range backwards, data to noise, with the model's time
	// shift.
	Solver sampler.Options
	// Divergence is how tr(dv/dx) is computed: Exact (Dim backward passes
	// per evaluation) or Hutchinson's estimator with Probes probes of
	// ProbeKind drawn from Seed.
	Divergence sampler.Divergence
	Probes     int
	ProbeKind  sampler.ProbeKind
	Seed       uint64
	// OnProgress, when set, is called after every chunk with the rows done
	// and the statistics so far.
	OnProgress func(done, total int, sofar Stats)
}

// LogLikelihood returns log p(x) in nats for each of the n rows of x (n x
// Dim values in data units; 8-bit images dequantized first, see
// data.Dequantize): the change of variables integrated from the data to
// the prior, plus the prior's log-density and the log-Jacobian of the
// model's standardization. x is not modified. When ctx is cancelled it
// stops after the current step and returns ctx's error.
func LogLikelihood(ctx context.Context, m *Model, x []float32, n int, o LikelihoodOptions) ([]float64, Stats, error) {
	var total Stats
	d := m.Dim()
	if n < 1 || len(x) != n*d {
		return nil, total, fmt.Errorf("generate: %d values for %d rows of dimension %d", len(x), n, d)
	}
	if err := ctx.Err(); err != nil {
		return nil, total, err
	}
	z := append([]float32(nil), x...)
	m.Std.Apply(z)
	for i, v := range z {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			// finite in data units, beyond float32 in the network's
			return nil, total, fmt.Errorf("generate: row %d: %g in column %d is %g once standardized (mean %g, std %g): beyond float32",
				i/d, x[i], i%d, v, m.Std.Mean[i%d], m.Std.Std[i%d])
		}
	}
	so := o.Solver
	lo, hi := m.Path.TimeRange()
	so.T0, so.T1 = hi, lo // backwards, from data to noise
	so.TimeShift = m.TimeShift
	so.Stop = ctx.Err
	lo2 := sampler.LikelihoodOptions{Solve: so, Divergence: o.Divergence, Probes: o.Probes, ProbeKind: o.ProbeKind,
		Seed: o.Seed, PriorStd: m.Path.PriorStd(), LogDetCorrection: m.Std.LogDetJacobian()}
	chunk := likelihoodChunk
	if m.Config().Kind == model.KindUNet {
		chunk = ChunkRows(m.Config())
	}
	b := m.b
	buf := b.Alloc(min(n, chunk) * d)
	defer b.Free(buf)
	logp := make([]float64, 0, n)
	for first := 0; first < n; first += chunk {
		if err := ctx.Err(); err != nil {
			return nil, total, err
		}
		rows := min(chunk, n-first)
		xb := buf.Slice(0, rows*d)
		b.Upload(xb, z[first*d:(first+rows)*d])
		// each chunk its own probes: shared, row r of every chunk would
		// carry the same probe error
		lo2.FirstProbe = uint64(first/chunk) * uint64(max(o.Probes, 1))
		lp, st, err := sampler.LogLikelihood(b, m.Net, xb, rows, lo2)
		if err != nil {
			return nil, total, err
		}
		total.add(st)
		logp = append(logp, lp...)
		if o.OnProgress != nil {
			o.OnProgress(len(logp), n, total)
		}
	}
	for i, v := range logp {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, total, &NonFiniteError{What: "log-likelihood", Index: i}
		}
	}
	return logp, total, nil
}
