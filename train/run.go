package train

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/internal/atomicfile"
)

// CheckpointName is the file a run keeps in its output directory.
const CheckpointName = "checkpoint.safetensors"

// MetricsName is the run's metrics log, one JSON object per line.
const MetricsName = "metrics.jsonl"

// Metric is one line of metrics.jsonl: the progress at a step, or (Event
// set) something that happened there.
type Metric struct {
	Step int `json:"step"`
	// Loss is the CFM loss per element, averaged over the batch and the D
	// dimensions (what PyTorch's mse_loss reports), over the steps since
	// the previous line; LossSum is the same summed over the dimensions
	// (D times Loss).
	Loss      float64 `json:"loss"`
	LossSum   float64 `json:"loss_sum"`
	LR        float64 `json:"lr"`
	GradNorm  float64 `json:"grad_norm"`
	StepsPerS float64 `json:"steps_per_s"`
	// ElapsedSec is the training time since step 0, over every run that
	// led to this line (a resumed run continues from its last line).
	ElapsedSec float64 `json:"elapsed_s"`
	// Event is "resume" on the line a resumed run writes when settings
	// changed, with the changes by setting: [checkpoint's, this run's].
	Event   string                        `json:"event,omitempty"`
	Changed map[string][2]json.RawMessage `json:"changed,omitempty"`
	// Partial marks the line of a run that stopped between two of its
	// lines (StopAt, a signal); the resumed run replaces it by its next
	// line, which averages the same steps as the run that did not stop.
	Partial bool `json:"partial,omitempty"`
	// SinkhornUnconverged counts the steps since the previous line whose
	// Sinkhorn plan stopped at its iteration limit short of its tolerance.
	SinkhornUnconverged int `json:"sinkhorn_unconverged,omitempty"`
}

// RunOptions control Run.
type RunOptions struct {
	OutDir          string
	CheckpointEvery int // 0: only at the end
	LogEvery        int // host reads every LogEvery steps (default 100)
	Std             data.Standardization
	Data            DataInfo
	// OnLog is called after every read with the latest metric.
	OnLog func(Metric)
	// OnCheckpoint, when set, runs after every checkpoint is written (the
	// CLI draws a grid of samples for image data); its error stops the run.
	OnCheckpoint func(step int) error
	// StopAt, when between the current step and Steps, ends this run after
	// that step with a checkpoint, as if interrupted there: a long run can
	// be done in chunks (batch-queue time limits) and resumed exactly.
	StopAt int
	// OnStep, when set, is called after every step is queued (it must be
	// cheap: the device is not waited for).
	OnStep func(step int)
	// Changes are the settings a resumed run changed from its checkpoint's;
	// Run notes them in metrics.jsonl at the step it starts from.
	Changes []Change
}

// Run trains until the configured step count, reading progress every
// LogEvery steps, writing metrics.jsonl at every read and a checkpoint
// every CheckpointEvery steps and at the end. When ctx is cancelled it
// saves a checkpoint at the current step and returns ctx's error. A
// non-finite loss or gradient returns a *NonFiniteError without
// overwriting the last checkpoint.
func (tr *Trainer) Run(ctx context.Context, o RunOptions) error {
	if o.LogEvery <= 0 {
		o.LogEvery = 100
	}
	tr.schedule = &ScheduleInfo{LogEvery: o.LogEvery, CheckpointEvery: o.CheckpointEvery}
	ckPath := filepath.Join(o.OutDir, CheckpointName)
	mPath := filepath.Join(o.OutDir, MetricsName)
	var metrics []Metric
	var err error
	partialElapsed := 0.0
	if tr.writes() {
		if metrics, err = readMetrics(mPath, tr.step, tr.cfg.Model.Dim); err != nil {
			return err
		}
		if n := len(metrics); tr.carry != nil && tr.carry.Step == tr.step && n > 0 && metrics[n-1].Partial && metrics[n-1].Step == tr.step {
			// its loss is carried into the next line, its time too
			partialElapsed = metrics[n-1].ElapsedSec
			metrics = metrics[:n-1]
		}
	}
	if len(o.Changes) > 0 && tr.writes() {
		ev := Metric{Step: tr.step, Event: "resume", Changed: map[string][2]json.RawMessage{}}
		for _, c := range o.Changes {
			ev.Changed[c.Setting] = [2]json.RawMessage{c.Was, c.Now}
		}
		metrics = append(metrics, ev)
		if err := writeMetrics(mPath, metrics); err != nil {
			return err
		}
	}
	tr.AddCarriedLoss()
	d := float64(tr.cfg.Model.Dim)
	// In a data-parallel run, rank 0 alone writes the files.
	save := func() error {
		if !tr.writes() {
			return nil
		}
		return tr.Save(ckPath, o.Std, o.Data)
	}
	// saveAndHook is a checkpoint outside an interrupt: the hook may take a
	// while (sampling), which an interrupted run must not wait for.
	saveAndHook := func() error {
		if !tr.writes() {
			return nil
		}
		if err := save(); err != nil {
			return err
		}
		if o.OnCheckpoint != nil {
			return o.OnCheckpoint(tr.step)
		}
		return nil
	}
	// elapsed_s counts from the run's first step: a resumed run goes on
	// from its last logged line (the time from that line to the stop is
	// not counted)
	elapsed0 := partialElapsed
	for _, m := range metrics {
		if m.Event == "" {
			elapsed0 = max(elapsed0, m.ElapsedSec)
		}
	}
	start := time.Now()
	lastT, lastStep := start, tr.step
	lastUnconverged, _ := tr.SinkhornUnconverged()
	end := tr.cfg.Steps
	if o.StopAt > 0 && o.StopAt < end {
		end = o.StopAt
	}
	for tr.step < end {
		if tr.par != nil {
			tr.par.stopLocal = ctx.Err() != nil
		}
		if err := tr.advance(ctx); err != nil {
			// a streaming trainer's source failed or was cancelled: keep the
			// steps done (not after a failed collective: its step's update
			// is not the sum of every rank's gradient)
			if tr.step == 0 || tr.collectiveErr() != nil {
				return err
			}
			if saveErr := save(); saveErr != nil {
				return fmt.Errorf("%w, and saving failed: %v", err, saveErr)
			}
			return err
		}
		s := tr.step
		if o.OnStep != nil {
			o.OnStep(s)
		}
		due := s%o.LogEvery == 0 || s == end
		ckDue := o.CheckpointEvery > 0 && s%o.CheckpointEvery == 0
		cancelled := ctx.Err() != nil
		if tr.par != nil {
			// the ranks stop together, after a step they all read the
			// summed stop flags of
			cancelled = false
			if s%tr.par.stopEvery == 0 || due || ckDue {
				if cancelled, err = tr.stopAgreed(); err != nil {
					return err
				}
			}
		}
		if !due && !ckDue && !cancelled {
			continue
		}
		p, err := tr.Read()
		if err != nil {
			return err
		}
		// a line the run that does not stop would not write
		partial := s%o.LogEvery != 0 && !ckDue && s != tr.cfg.Steps
		tr.MarkPartial(partial)
		now := time.Now()
		m := Metric{Step: s, Loss: p.Loss / d, LossSum: p.Loss, LR: p.LR, GradNorm: p.GradNorm,
			StepsPerS: float64(s-lastStep) / now.Sub(lastT).Seconds(), ElapsedSec: elapsed0 + now.Sub(start).Seconds(), Partial: partial}
		if n, _ := tr.SinkhornUnconverged(); n > lastUnconverged {
			m.SinkhornUnconverged, lastUnconverged = n-lastUnconverged, n
		}
		lastT, lastStep = now, s
		metrics = append(metrics, m)
		if cancelled {
			// the checkpoint first: a launcher may kill the process soon
			// after the signal (mpirun: SIGKILL a second after SIGTERM)
			if err := save(); err != nil {
				return fmt.Errorf("interrupted at step %d, and saving failed: %w", s, err)
			}
		}
		if tr.writes() {
			if err := writeMetrics(mPath, metrics); err != nil {
				return err
			}
		}
		if o.OnLog != nil {
			o.OnLog(m)
		}
		if cancelled {
			if err := tr.waitForRank0(); err != nil {
				return err
			}
			if ctx.Err() == nil {
				return ErrPeerInterrupted
			}
			return ctx.Err()
		}
		if ckDue && s != end {
			if err := saveAndHook(); err != nil {
				return err
			}
		}
	}
	return saveAndHook()
}

// AddCarriedLoss puts back into the loss sum the loss read at a stop
// between two lines (by an earlier Run of this trainer, or by the run whose
// checkpoint Resume read), so that the next Read covers the same steps as
// a run that did not stop. Run calls it; a loop of one's own over Step and
// Read calls it before its first step, and MarkPartial after each Read.
func (tr *Trainer) AddCarriedLoss() {
	c := tr.carry
	if c == nil || c.Step != tr.step || tr.sinceRead != 0 {
		return
	}
	if tr.par == nil || tr.par.comm.Rank() == 0 {
		tr.b.Upload(tr.lossSum, []float32{c.Sum}) // the other ranks' shares are in it
	}
	tr.sinceRead = c.Steps
}

// MarkPartial records whether the last Read was at a stop between two of
// the run's lines: its loss is then carried (into a checkpoint saved now,
// and by AddCarriedLoss into the next line).
func (tr *Trainer) MarkPartial(partial bool) {
	tr.carry = nil
	if partial {
		c := tr.lastRead
		tr.carry = &c
	}
}

// readMetrics keeps the lines of an earlier run up to step (a resumed run
// continues the file; a fresh run, step 0, starts it anew). Lines written
// before loss_sum was recorded hold the sum over the dim dimensions in
// loss; they are read into the current form.
func readMetrics(path string, step, dim int) ([]Metric, error) {
	if step == 0 {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", path, err)
	}
	var out []Metric
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for line := 1; sc.Scan(); line++ {
		var m Metric
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("metrics %s line %d: %v", path, line, err)
		}
		if m.Event == "" && !bytes.Contains(sc.Bytes(), []byte(`"loss_sum"`)) {
			m.LossSum, m.Loss = m.Loss, m.Loss/float64(dim)
		}
		if m.Step <= step {
			out = append(out, m)
		}
	}
	return out, sc.Err()
}

func writeMetrics(path string, ms []Metric) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		for _, m := range ms {
			// NaN has no JSON form; a non-finite loss is reported as an error
			// elsewhere and logged here as null.
			js, err := json.Marshal(finiteMetric(m))
			if err != nil {
				return err
			}
			bw.Write(js)
			bw.WriteByte('\n')
		}
		return bw.Flush()
	})
}

func finiteMetric(m Metric) map[string]any {
	f := func(v float64) any {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return v
	}
	if m.Event != "" {
		return map[string]any{"step": m.Step, "event": m.Event, "changed": m.Changed}
	}
	line := map[string]any{"step": m.Step, "loss": f(m.Loss), "loss_sum": f(m.LossSum), "lr": f(m.LR), "grad_norm": f(m.GradNorm),
		"steps_per_s": f(m.StepsPerS), "elapsed_s": f(m.ElapsedSec)}
	if m.Partial {
		line["partial"] = true
	}
	if m.SinkhornUnconverged > 0 {
		line["sinkhorn_unconverged"] = m.SinkhornUnconverged
	}
	return line
}
