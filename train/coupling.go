package train

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fmgpu/fmgpu/coupling"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
)

// Coupling is how a training batch's noise rows are paired with its data
// rows (package coupling; docs/math.md §11), as a checkpoint stores it.
type Coupling struct {
	// Kind is "independent" (or empty, in checkpoints written before the
	// coupling was recorded), "ot", "sinkhorn", or CouplingPairs.
	Kind string `json:"kind"`
	// Reg is Sinkhorn's entropic regularization, in the units of the
	// squared distance between standardized rows.
	Reg float64 `json:"reg,omitempty"`
}

// CouplingPairs trains on fixed (x0, x1) pairs (NewPairs): the noise of
// a row is its pair's, not a fresh draw (reflow and distillation).
const CouplingPairs = "pairs"

// IsIndependent reports whether c keeps the batch as drawn.
func (c Coupling) IsIndependent() bool {
	return c.Kind == "" || c.Kind == coupling.KindIndependent.String()
}

// normalized is c with the empty kind spelled out.
func (c Coupling) normalized() Coupling {
	if c.Kind == "" {
		c.Kind = coupling.KindIndependent.String()
	}
	return c
}

// options is the coupling package's form of an "ot" or "sinkhorn" c.
func (c Coupling) options() (coupling.Options, error) {
	k, err := coupling.ParseKind(c.Normalized().Kind)
	if err != nil {
		return coupling.Options{}, err
	}
	return coupling.Options{Kind: k, Sinkhorn: coupling.SinkhornOptions{Reg: c.Reg}}, nil
}

// Normalized is c with the empty kind of old checkpoints spelled
// "independent".
func (c Coupling) Normalized() Coupling { return c.normalized() }

// validate checks the kind and Reg, which only "sinkhorn" takes.
func (c Coupling) validate() error {
	if c.Kind == CouplingPairs {
		if c.Reg != 0 {
			return fieldErr("coupling", c.Kind, "a regularization applies to sinkhorn only")
		}
		return nil
	}
	o, err := c.options()
	if err != nil {
		return fieldErr("coupling", fmt.Sprintf("%q", c.Kind), "want independent, ot, sinkhorn or pairs")
	}
	if o.Kind != coupling.KindSinkhorn {
		if c.Reg != 0 {
			return fieldErr("ot_reg", c.Reg, "applies to the sinkhorn coupling only")
		}
		return nil
	}
	if _, err := coupling.NewCoupler(o); err != nil {
		return fieldErr("ot_reg", c.Reg, "need a finite regularization > 0")
	}
	return nil
}

// validateDistill checks DistillSteps against the rest of c: a K-step
// student is trained on the grid that K Euler steps visit, which retraces
// its teacher's pairs only on a path whose x_t is affine in t (ot).
func (c Config) validateDistill() error {
	switch {
	case c.DistillSteps == 0:
		return nil
	case c.DistillSteps < 0 || c.DistillSteps > 1<<16:
		return fieldErr("distill_steps", c.DistillSteps, fmt.Sprintf("need 1..%d", 1<<16))
	case c.Coupling.Kind != CouplingPairs:
		return fieldErr("distill_steps", c.DistillSteps, "a student trains on its teacher's pairs (coupling pairs)")
	case c.Path.Kind != flow.KindOT:
		return fieldErr("distill_steps", c.DistillSteps, fmt.Sprintf("needs the ot path, whose Euler steps follow straight lines (not %s)", c.Path.Kind))
	}
	return nil
}

// DistillGrid is the K-step Euler grid a student of DistillSteps K is
// trained on and sampled with: the fixed-step grid of the sampler over
// the path's time range with the run's time shift (sampler.Options).
func DistillGrid(c Config) []float64 {
	k := c.DistillSteps
	p, err := flow.New(c.Path)
	if err != nil || k < 1 {
		return nil
	}
	lo, hi := p.TimeRange()
	g := make([]float64, k+1)
	for i := range g {
		g[i] = lo + (hi-lo)*flow.ShiftTime(float64(i)/float64(k), c.Time.Shift)
	}
	g[0], g[k] = lo, hi
	return g
}

// couplingState is what a trainer whose coupling is not independent adds.
type couplingState struct {
	// ot and sinkhorn: the batch is drawn, its cost -2 X0 X1^T formed on
	// the device, the pairs made on the host and the data rows reordered
	// before the path op; op by op, since the host decides between ops.
	coupler  *coupling.Coupler
	cost     gpu.Buffer // Batch x Batch
	costHost []float32
	x1Host   []float32
	x1Perm   []float32
	idx      []int
	u        []float64
	yTrue    gpu.Buffer // the batch's labels before dropout
	yHost    []float32
	labels   []int32
	// pairs: the noise of each pair (nData x Dim); the data buffer holds
	// the other ends.
	pairX0 gpu.Buffer
	// distill: the times of a step, on the student's grid, uploaded
	// before the step (the draws write theirs into tDraw).
	grid  []float64
	tHost []float32
	tDraw gpu.Buffer

	x0, x1 gpu.Buffer // the batch's two ends
	last   coupling.Stats
	spent  time.Duration // host time forming and solving the pairs
	steps  int
}

// setupCoupling prepares the buffers of a coupled or paired trainer;
// pairX0 is the noise of fixed pairs (coupling pairs only).
func (tr *Trainer) setupCoupling(pairX0 []float32) error {
	c := tr.cfg
	if c.Coupling.IsIndependent() {
		if pairX0 != nil {
			return fmt.Errorf("pairs given to a trainer whose coupling is %s", c.Coupling.Normalized().Kind)
		}
		return nil
	}
	b, bs, d := tr.b, c.Batch, c.Model.Dim
	alloc := func(n int) gpu.Buffer {
		buf := b.Alloc(n)
		tr.owned = append(tr.owned, buf)
		return buf
	}
	cs := &couplingState{}
	cs.x0, cs.x1 = alloc(bs*d), alloc(bs*d)
	if c.Coupling.Kind == CouplingPairs {
		if len(pairX0) != tr.nData*d {
			return fmt.Errorf("coupling pairs: %d noise values for %d pairs of dimension %d", len(pairX0), tr.nData, d)
		}
		cs.pairX0 = alloc(len(pairX0))
		b.Upload(cs.pairX0, pairX0)
		if c.DistillSteps > 0 {
			cs.grid = DistillGrid(c)
			cs.tHost = make([]float32, bs)
			cs.tDraw = alloc(bs)
		}
		tr.cpl = cs
		return nil
	}
	if pairX0 != nil {
		return fmt.Errorf("pairs given to a trainer whose coupling is %s", c.Coupling.Kind)
	}
	o, err := c.Coupling.options()
	if err != nil {
		return err
	}
	if cs.coupler, err = coupling.NewCoupler(o); err != nil {
		return err
	}
	cs.cost = alloc(bs * bs)
	cs.costHost, cs.x1Host, cs.x1Perm = make([]float32, bs*bs), make([]float32, bs*d), make([]float32, bs*d)
	cs.idx = make([]int, bs)
	if o.Kind == coupling.KindSinkhorn {
		cs.u = make([]float64, bs)
	}
	if tr.labels != nil {
		cs.yTrue, cs.yHost, cs.labels = alloc(bs), make([]float32, bs), make([]int32, bs)
	}
	tr.cpl = cs
	return nil
}

// hostPaired reports whether the trainer's steps pair on the host (ot,
// sinkhorn): they cannot be recorded as one graph.
func (cs *couplingState) hostPaired() bool { return cs != nil && cs.coupler != nil }

// paired reports whether the trainer trains on fixed pairs.
func (cs *couplingState) paired() bool { return cs != nil && cs.pairX0 != nil }

// stepCoupled queues step s of an ot or sinkhorn trainer: the draw, the
// cost product on the device, the pairs on the host (waiting for the
// device), the data rows reordered, the path target, and Step's update.
func (tr *Trainer) stepCoupled(s int) error {
	c, cs := tr.cfg, tr.cpl
	b, bs, d := tr.b, c.Batch, c.Model.Dim
	tr.uploadScalars(s)
	dr := gpu.BatchDraw{Path: c.Path, Time: c.Time, Seed: c.Seed, Step: uint64(s - 1)}
	b.DrawBatch(dr, tr.data, tr.nData, d, bs, cs.x0, cs.x1, tr.t, tr.xt, tr.ut)
	if tr.labels != nil {
		b.DrawLabels(dr, tr.labels, tr.nData, bs, float32(c.ClassDropout), float32(c.Model.Classes), tr.y)
		// the pairs are made within the true classes, before the dropout
		b.DrawLabels(dr, tr.labels, tr.nData, bs, 0, float32(c.Model.Classes), cs.yTrue)
	}
	// -2 X0 X1^T: the squared distances up to a constant per row and per
	// column, which no coupling depends on (coupling/cost.go)
	b.Gemm(false, true, bs, bs, d, -2, cs.x0, d, cs.x1, d, 0, cs.cost, bs)
	start := time.Now()
	b.Download(cs.costHost, cs.cost)
	b.Download(cs.x1Host, cs.x1)
	var labels []int32
	if cs.yTrue != nil {
		b.Download(cs.yHost, cs.yTrue)
		for i, v := range cs.yHost {
			cs.labels[i] = int32(v)
		}
		labels = cs.labels
	}
	if err := b.Sync(); err != nil {
		return err
	}
	if cs.u != nil {
		coupling.StepUniforms(cs.u, c.Seed, uint64(s-1))
	}
	st, err := cs.coupler.Pair(cs.idx, cs.costHost, bs, labels, cs.u)
	if err != nil {
		return fmt.Errorf("step %d: coupling %s: %w", s, c.Coupling.Kind, err)
	}
	for i, j := range cs.idx {
		copy(cs.x1Perm[i*d:(i+1)*d], cs.x1Host[j*d:(j+1)*d])
	}
	b.Upload(cs.x1, cs.x1Perm)
	cs.spent += time.Since(start)
	cs.steps++
	cs.last = st
	b.PathTarget(c.Path, bs, d, cs.x0, cs.x1, tr.t, tr.xt, tr.ut)
	tr.queueUpdate()
	return nil
}

// uploadTimes writes a distilling trainer's times of step s (1-based):
// for each row, grid point k of the student's K-step Euler grid, k
// uniform in 0..K-1 from the uniform DrawBatch would turn into a time.
func (tr *Trainer) uploadTimes(s int) {
	cs := tr.cpl
	if cs == nil || cs.grid == nil {
		return
	}
	k := len(cs.grid) - 1
	for r := range cs.tHost {
		w := gpu.PhiloxBlock(tr.cfg.Seed, gpu.PurposeTimeU, uint64(s-1), uint32(r/4))
		i := min(int(float64(gpu.Uniform01(w[r%4]))*float64(k)), k-1)
		cs.tHost[r] = float32(cs.grid[i])
	}
	tr.b.Upload(tr.t, cs.tHost)
}

// queuePairsStep queues the ops of a step on fixed pairs: row i_r of the
// noise and of the data (the same index stream for both draws), the path
// target from them at the step's times, and Step's update. The draws
// compute a path target of their own, which the path op overwrites.
func (tr *Trainer) queuePairsStep() {
	c, cs := tr.cfg, tr.cpl
	b, bs, d := tr.b, c.Batch, c.Model.Dim
	dr := gpu.BatchDraw{Path: c.Path, Time: c.Time, Seed: c.Seed, StepFrom: tr.stepFrom}
	t := tr.t
	if cs.tDraw != nil {
		t = cs.tDraw // the step's times were uploaded into tr.t
	}
	b.DrawBatch(dr, cs.pairX0, tr.nData, d, bs, nil, cs.x0, t, tr.xt, tr.ut)
	b.DrawBatch(dr, tr.data, tr.nData, d, bs, nil, cs.x1, t, tr.xt, tr.ut)
	if tr.labels != nil {
		b.DrawLabels(dr, tr.labels, tr.nData, bs, float32(c.ClassDropout), float32(c.Model.Classes), tr.y)
	}
	b.PathTarget(c.Path, bs, d, cs.x0, cs.x1, tr.t, tr.xt, tr.ut)
	tr.queueUpdate()
}

// CouplingStats reports the pairs of the last coupled step and the host
// time spent forming and solving the pairs over the steps coupled so far
// (ot and sinkhorn; zero otherwise).
func (tr *Trainer) CouplingStats() (last coupling.Stats, spent time.Duration, steps int) {
	if !tr.cpl.hostPaired() {
		return coupling.Stats{}, 0, 0
	}
	return tr.cpl.last, tr.cpl.spent, tr.cpl.steps
}

// NewPairs builds a trainer on fixed pairs: pair i is noise x0[i] and
// data x1[i] (n rows of cfg.Model.Dim each, in the network's units), with
// labels[i] its class for a class-conditional model (nil otherwise).
// cfg.Coupling.Kind must be CouplingPairs. Reflow trains on the pairs a
// model's ODE makes; distillation (cfg.DistillSteps) too.
func NewPairs(b gpu.Backend, cfg Config, x0, x1 []float32, labels []int32, n int) (*Trainer, error) {
	if cfg.Coupling.Kind != CouplingPairs {
		return nil, fmt.Errorf("train: NewPairs with coupling %q (want %s)", cfg.Coupling.Kind, CouplingPairs)
	}
	if len(x0) != len(x1) {
		return nil, fmt.Errorf("training pairs: %d noise values and %d data values", len(x0), len(x1))
	}
	return newTrainer(b, cfg, x1, labels, n, x0)
}

// InitWeights starts the run from the weights w (a teacher's, in the
// model's tensor order): the weights and their EMA both take w; the
// optimizer's moments stay zero. Only before the first step.
func (tr *Trainer) InitWeights(w []float32) error {
	if tr.step != 0 {
		return fmt.Errorf("train: InitWeights at step %d", tr.step)
	}
	if len(w) != tr.net.NumParams() {
		return fmt.Errorf("train: %d initial weights for a network of %d", len(w), tr.net.NumParams())
	}
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("train: initial weight %d is %g", i, v)
		}
	}
	tr.b.Upload(tr.net.Params(), w)
	tr.b.Upload(tr.ema, w)
	return tr.b.Sync()
}

// sameCoupling reports whether two configurations draw the same batches
// as far as the coupling and distillation go.
func sameCoupling(run, ck Config) error {
	a, b := run.Coupling.normalized(), ck.Coupling.normalized()
	if a != b {
		return fmt.Errorf("the coupling differs (checkpoint %s, run %s)", describeCoupling(b), describeCoupling(a))
	}
	if run.DistillSteps != ck.DistillSteps {
		return fmt.Errorf("the distillation steps differ (checkpoint %d, run %d)", ck.DistillSteps, run.DistillSteps)
	}
	return nil
}

func describeCoupling(c Coupling) string {
	if c.Kind == coupling.KindSinkhorn.String() {
		return fmt.Sprintf("%s reg %g", c.Kind, c.Reg)
	}
	return c.Kind
}

// CouplingNames lists the couplings `train --coupling` takes.
func CouplingNames() []string { return slices.Clone(coupling.KindNames()) }
