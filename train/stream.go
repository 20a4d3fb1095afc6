package train

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
)

// Source delivers the training rows of a streaming run on demand: a
// generator, a file read piece by piece, a database cursor. A streaming
// trainer (NewStream) asks it for Batch rows before every step, so the
// data need not fit in memory, nor be known in advance.
type Source interface {
	// Dim is the number of values in a row.
	Dim() int
	// Next fills x (rows x Dim values, row-major) with the next rows and,
	// for a class-conditional model, labels (one per row) with their
	// classes in [0, Classes); labels is nil for an unconditional model.
	// Rows are used as given: a caller that standardizes does it here.
	// Next fills every row or returns an error, which ends the run (io.EOF
	// for a source that ran out). ctx is the run's: a Next that waits for
	// its rows should give up with ctx.Err() when ctx is done.
	Next(ctx context.Context, x []float32, labels []int32) error
}

// RowSeeker is a Source that can continue from a given row. A streaming
// trainer calls SeekRow once, before its first step, with the rows the
// steps already done consumed (Step x Batch; 0 in a fresh run), so that a
// run resumed from a checkpoint carries on where the source was.
type RowSeeker interface {
	SeekRow(ctx context.Context, row int64) error
}

// SourceError is a failure of a streaming run's Source, at the step it
// was to deliver the rows of.
type SourceError struct {
	Step int // 1-based step whose rows were asked for
	Err  error
}

func (e *SourceError) Error() string {
	return fmt.Sprintf("step %d: data source: %v", e.Step, e.Err)
}

func (e *SourceError) Unwrap() error { return e.Err }

// streamState is what a streaming trainer adds to the in-memory one.
type streamState struct {
	src    Source
	path   flow.Path
	x      []float32 // the batch's rows on the host, Batch x Dim
	labels []int32   // the batch's classes (conditional nets)
	t, y   []float32 // the batch's times and model labels on the host
	x0, x1 gpu.Buffer
	seeked bool // SeekRow has been called (or the source cannot seek)
	// noise writes x0 for a step; tests replace it to replay the in-memory
	// trainer's draws.
	noise func(step int, x0 gpu.Buffer)
}

// NewStream builds a trainer for cfg on b whose steps take their rows
// from src (see StepStream) instead of drawing them from data uploaded
// once: for data too large for the device, or a stream. The network is
// class-conditional when cfg.Model.Classes > 0, and src then labels its
// rows. Run and StepStream drive it; Step must not be called.
func NewStream(b gpu.Backend, cfg Config, src Source) (*Trainer, error) {
	if src == nil {
		return nil, errors.New("train: NewStream without a source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Coupling.IsIndependent() {
		return nil, fmt.Errorf("train: coupling %s: a streaming run pairs its rows as they come (independent only)", cfg.Coupling.Kind)
	}
	d := cfg.Model.Dim
	if src.Dim() != d {
		return nil, fmt.Errorf("data source: rows of %d values, the model's are %d", src.Dim(), d)
	}
	path, err := flow.New(cfg.Path)
	if err != nil {
		return nil, err
	}
	// The trainer is built over one zero row, which the streaming step
	// never reads: it writes its own rows into the batch buffers.
	var labels []int32
	if cfg.Model.Classes > 0 {
		labels = []int32{0}
	}
	tr, err := NewConditional(b, cfg, make([]float32, d), labels, 1)
	if err != nil {
		return nil, err
	}
	bs := cfg.Batch
	st := &streamState{src: src, path: path, x: make([]float32, bs*d), t: make([]float32, bs)}
	if cfg.Model.Classes > 0 {
		st.labels, st.y = make([]int32, bs), make([]float32, bs)
	}
	st.x0, st.x1 = b.Alloc(bs*d), b.Alloc(bs*d)
	tr.owned = append(tr.owned, st.x0, st.x1)
	st.noise = func(step int, x0 gpu.Buffer) { b.RandNormal(x0, cfg.Seed, uint64(step), 1) }
	tr.stream = st
	if err := b.Sync(); err != nil {
		tr.Close()
		return nil, err
	}
	return tr, nil
}

// Streaming reports whether the trainer takes its rows from a Source.
func (tr *Trainer) Streaming() bool { return tr.stream != nil }

// StepStream queues one training step on the next Batch rows of the
// trainer's source: they are read on the host, checked (finite values,
// labels in range), uploaded, and x_t, u_t computed on the device from
// them, x0 and t (PathTarget); forward, loss, backward and the update are
// Step's ops (queued one by one, not replayed from a recorded graph). x0 is N(0, I) from Philox stream (Seed, step)
// (RandNormal), t and the label dropout are drawn on the host from the
// streams DrawBatch and DrawLabels use for the step, so that the noise of
// a run does not depend on its rows. An error of the source is a
// *SourceError and leaves the trainer at the last completed step.
func (tr *Trainer) StepStream(ctx context.Context) error {
	st := tr.stream
	if st == nil {
		return errors.New("train: StepStream on a trainer without a source (NewStream)")
	}
	c := tr.cfg
	b, bs, d := tr.b, c.Batch, c.Model.Dim
	s := tr.step + 1
	if !st.seeked {
		if sk, ok := st.src.(RowSeeker); ok {
			if err := sk.SeekRow(ctx, int64(tr.step)*int64(bs)); err != nil {
				return &SourceError{Step: s, Err: err}
			}
		}
		st.seeked = true
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := st.src.Next(ctx, st.x, st.labels); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return ctx.Err()
		}
		return &SourceError{Step: s, Err: err}
	}
	if err := st.check(c.Model.Classes, d); err != nil {
		return &SourceError{Step: s, Err: err}
	}
	st.drawTimes(c, uint64(tr.step))
	b.Upload(st.x1, st.x)
	b.Upload(tr.t, st.t)
	if st.y != nil {
		st.dropLabels(c, uint64(tr.step))
		b.Upload(tr.y, st.y)
	}
	st.noise(tr.step, st.x0)
	b.PathTarget(c.Path, bs, d, st.x0, st.x1, tr.t, tr.xt, tr.ut)
	tr.uploadScalars(s)
	tr.queueUpdate() // op by op: the uploads and draws above change every step
	tr.step = s
	tr.sinceRead++
	return nil
}

// check refuses a batch with a non-finite value or a label out of range.
func (st *streamState) check(classes, d int) error {
	for i, v := range st.x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("row %d of the batch holds %g in column %d", i/d, v, i%d)
		}
	}
	for r, l := range st.labels {
		if l < 0 || int(l) >= classes {
			return fmt.Errorf("label %d of row %d of the batch outside 0..%d", l, r, classes-1)
		}
	}
	return nil
}

// drawTimes writes the batch's times: DrawBatch's for the same step.
func (st *streamState) drawTimes(c Config, step uint64) {
	var u, n [4]float32
	for r := range st.t {
		lane := r % 4
		if lane == 0 {
			blk := uint32(r / 4)
			w := gpu.PhiloxBlock(c.Seed, gpu.PurposeTimeU, step, blk)
			for i := range u {
				u[i] = gpu.Uniform01(w[i])
			}
			if c.Time.Kind == flow.TimeLogitNormal {
				n = gpu.NormalBlock(gpu.PhiloxBlock(c.Seed, gpu.PurposeTimeN, step, blk))
			}
		}
		st.t[r] = float32(flow.Clamp(st.path, c.Time.Transform(float64(u[lane]), float64(n[lane]))))
	}
}

// dropLabels writes the labels the network sees: the row's, or the null
// class with probability ClassDropout (DrawLabels' draws for the step).
func (st *streamState) dropLabels(c Config, step uint64) {
	null, p := float32(c.Model.Classes), float32(c.ClassDropout)
	for r, l := range st.labels {
		if gpu.Uniform01(gpu.PhiloxBlock(c.Seed, gpu.PurposeLabelDrop, step, uint32(r/4))[r%4]) < p {
			st.y[r] = null
			continue
		}
		st.y[r] = float32(l)
	}
}

// advance queues the next step of Run: Step, or StepStream for a trainer
// with a source.
func (tr *Trainer) advance(ctx context.Context) error {
	if tr.stream == nil {
		tr.Step()
		return tr.collectiveErr()
	}
	return tr.StepStream(ctx)
}
