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
	// Blocks, when > 1, pairs the batch in that many contiguous blocks of
	// rows, each among its own rows only (the shares batchShare makes: the
	// rows rank k of a run of Blocks ranks computes); 0 or 1: the whole
	// batch at once. It is part of the configuration, not of the run's
	// size: a data-parallel run of N ranks with Blocks N pairs what one
	// process with Blocks N pairs, each rank solving its own block only
	// (TorchCFM's per-GPU coupling, but reproducible on any number of
	// ranks); Blocks 1 on N ranks pairs the global batch, every rank
	// solving the same problem (docs/distributed.md).
	Blocks int `json:"blocks,omitempty"`
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
	if c.Blocks == 1 {
		c.Blocks = 0 // one block is the whole batch
	}
	return c
}

// blocks is the number of blocks the batch is paired in.
func (c Coupling) blocks() int { return max(c.Blocks, 1) }

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

// validate checks the kind, Reg, which only "sinkhorn" takes, and
// Blocks, which "ot" and "sinkhorn" take, against the batch.
func (c Coupling) validate(batch int) error {
	if c.Blocks < 0 || c.Blocks > 1 && c.Blocks > batch {
		return fieldErr("coupling_blocks", c.Blocks, fmt.Sprintf("need 1..--batch (%d)", batch))
	}
	if c.Blocks > 1 {
		if k := c.normalized().Kind; k != coupling.KindOT.String() && k != coupling.KindSinkhorn.String() {
			return fieldErr("coupling_blocks", c.Blocks, fmt.Sprintf("applies to the ot and sinkhorn couplings only (not %s)", k))
		}
	}
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
	blocks   []couplingBlock // the batch's blocks (Coupling.Blocks), in row order
	cost     gpu.Buffer      // every block's cost, one after the other
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
	// sinkhorn: the steps whose plan stopped at its iteration limit
	// short of its tolerance, and the largest marginal error among them
	unconverged int
	worstErr    float64
}

// couplingBlock is one block of a batch paired on its own: rows [lo,
// lo+n), whose n x n cost is at off in the cost buffers.
type couplingBlock struct{ lo, n, off int }

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
	k, nc := c.Coupling.blocks(), 0
	for i := range k {
		lo, n := batchShare(bs, k, i)
		cs.blocks = append(cs.blocks, couplingBlock{lo: lo, n: n, off: nc})
		nc += n * n
	}
	cs.cost = alloc(nc)
	cs.costHost, cs.x1Host, cs.x1Perm = make([]float32, nc), make([]float32, bs*d), make([]float32, bs*d)
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
// cost products on the device, the pairs on the host (waiting for the
// device), the data rows reordered, the path target, and Step's update.
// Only the blocks that hold rows this trainer computes are paired (all of
// them in a single process; a rank's own in a data-parallel run whose
// blocks are its shares): the other rows keep their draw, and no rank
// reads them.
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
	lo, hi := 0, bs // the rows this trainer computes
	if p := tr.par; p != nil {
		lo, hi = p.lo, p.lo+p.rows
	}
	mine := func(k couplingBlock) bool { return k.lo < hi && k.lo+k.n > lo }
	for _, k := range cs.blocks {
		if !mine(k) {
			continue
		}
		// -2 X0 X1^T: the squared distances up to a constant per row and
		// per column, which no coupling depends on (coupling/cost.go)
		x0, x1 := cs.x0.Slice(k.lo*d, k.n*d), cs.x1.Slice(k.lo*d, k.n*d)
		b.Gemm(false, true, k.n, k.n, d, -2, x0, d, x1, d, 0, cs.cost.Slice(k.off, k.n*k.n), k.n)
	}
	start := time.Now()
	if len(cs.blocks) == 1 {
		b.Download(cs.costHost, cs.cost)
	} else {
		for _, k := range cs.blocks {
			if mine(k) {
				b.Download(cs.costHost[k.off:k.off+k.n*k.n], cs.cost.Slice(k.off, k.n*k.n))
			}
		}
	}
	b.Download(cs.x1Host, cs.x1)
	if cs.yTrue != nil {
		b.Download(cs.yHost, cs.yTrue)
	}
	if err := b.Sync(); err != nil {
		return err
	}
	if cs.yTrue != nil {
		for i, v := range cs.yHost {
			cs.labels[i] = int32(v)
		}
	}
	if cs.u != nil {
		coupling.StepUniforms(cs.u, c.Seed, uint64(s-1))
	}
	copy(cs.x1Perm, cs.x1Host)
	var st coupling.Stats
	paired := 0
	for _, k := range cs.blocks {
		if !mine(k) {
			continue
		}
		var labels []int32
		var u []float64
		if cs.yTrue != nil {
			labels = cs.labels[k.lo : k.lo+k.n]
		}
		if cs.u != nil {
			u = cs.u[k.lo : k.lo+k.n]
		}
		idx := cs.idx[k.lo : k.lo+k.n]
		bst, err := cs.coupler.Pair(idx, cs.costHost[k.off:k.off+k.n*k.n], k.n, labels, u)
		if err != nil {
			if len(cs.blocks) > 1 {
				err = fmt.Errorf("block of rows %d..%d: %w", k.lo, k.lo+k.n-1, err)
			}
			return fmt.Errorf("step %d: coupling %s: %w", s, c.Coupling.Kind, err)
		}
		for i, j := range idx {
			r := k.lo + i
			copy(cs.x1Perm[r*d:(r+1)*d], cs.x1Host[(k.lo+j)*d:(k.lo+j+1)*d])
		}
		st = addStats(st, bst, paired, k.n)
		paired += k.n
	}
	b.Upload(cs.x1, cs.x1Perm)
	cs.spent += time.Since(start)
	cs.steps++
	cs.last = st
	if c.Coupling.Kind == "sinkhorn" && !st.Sinkhorn.Converged {
		cs.unconverged++
		cs.worstErr = max(cs.worstErr, st.Sinkhorn.Err)
	}
	b.PathTarget(c.Path, bs, d, cs.x0, cs.x1, tr.t, tr.xt, tr.ut)
	tr.queueUpdate()
	return nil
}

// addStats merges the stats of a block of n rows into those of the m rows
// paired before it: mean costs weighted by rows, counts summed, the worst
// Sinkhorn error.
func addStats(a, b coupling.Stats, m, n int) coupling.Stats {
	if m == 0 {
		return b
	}
	w := float64(n) / float64(m+n)
	a.Before += w * (b.Before - a.Before)
	a.After += w * (b.After - a.After)
	a.Classes += b.Classes
	a.Sinkhorn.Iters += b.Sinkhorn.Iters
	a.Sinkhorn.Levels += b.Sinkhorn.Levels
	a.Sinkhorn.Err = math.Max(a.Sinkhorn.Err, b.Sinkhorn.Err)
	a.Sinkhorn.Converged = a.Sinkhorn.Converged && b.Sinkhorn.Converged
	return a
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

// SinkhornUnconverged is how many coupled steps so far had a Sinkhorn
// plan that stopped at its iteration limit short of its tolerance (its
// rows' marginals off by up to worstErr), 0 for other couplings.
func (tr *Trainer) SinkhornUnconverged() (steps int, worstErr float64) {
	if !tr.cpl.hostPaired() {
		return 0, 0
	}
	return tr.cpl.unconverged, tr.cpl.worstErr
}

// NewPairs builds a trainer on fixed pairs: pair i is noise x0[i], where
// an ODE of the path started (drawn from N(0, PriorStd^2 I)), and data
// x1[i] (n rows of cfg.Model.Dim each, in the network's units), with
// labels[i] its class for a class-conditional model (nil otherwise).
// cfg.Coupling.Kind must be CouplingPairs. Reflow trains on the pairs a
// model's ODE makes; distillation (cfg.DistillSteps) too. The path's own
// noise is x0 / PriorStd, standard normal as DrawBatch's (for ve, whose
// x_t at t = 0 is x1 + sigma_max times it).
func NewPairs(b gpu.Backend, cfg Config, x0, x1 []float32, labels []int32, n int) (*Trainer, error) {
	if cfg.Coupling.Kind != CouplingPairs {
		return nil, fmt.Errorf("train: NewPairs with coupling %q (want %s)", cfg.Coupling.Kind, CouplingPairs)
	}
	if len(x0) != len(x1) {
		return nil, fmt.Errorf("training pairs: %d noise values and %d data values", len(x0), len(x1))
	}
	path, err := flow.New(cfg.Path)
	if err != nil {
		return nil, err
	}
	if s := path.PriorStd(); s != 1 {
		eps := make([]float32, len(x0))
		for i, v := range x0 {
			eps[i] = float32(float64(v) / s)
		}
		x0 = eps
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
	s := c.Kind
	if c.Kind == coupling.KindSinkhorn.String() {
		s = fmt.Sprintf("%s reg %g", c.Kind, c.Reg)
	}
	if c.Blocks > 1 {
		s += fmt.Sprintf(" in %d blocks", c.Blocks)
	}
	return s
}

// CouplingNames lists the couplings `train --coupling` takes.
func CouplingNames() []string { return slices.Clone(coupling.KindNames()) }
