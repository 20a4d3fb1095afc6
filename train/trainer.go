package train

import (
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// Trainer holds the device state of one training run. Step queues one
// training step and never waits for the device; Read is the only host
// round trip, done every few steps for logging. On a backend that records
// graphs (gpu.Capture) the step is recorded once, at the second step (the
// first, run op by op, sizes the backend's scratch space), and replayed
// from then on: one launch a step. The values that change from step to
// step (learning rate, bias corrections, EMA decay, the step number and
// the Philox step) are in device memory, written before each step, so the
// replays compute exactly what the ops would.
type Trainer struct {
	cfg   Config
	b     gpu.Backend
	net   model.Net
	path  flow.Path
	data  gpu.Buffer
	nData int

	grads, m, v, ema gpu.Buffer
	xt, ut, t, pred  gpu.Buffer
	dPred            gpu.Buffer
	// readout holds what Read downloads, adjacent so that one copy brings
	// all three: lossSum (the loss summed since the last Read), gradSq and
	// status (views of it).
	readout, lossSum gpu.Buffer
	gradSq, status   gpu.Buffer
	emaNet           model.Net
	labels, y        gpu.Buffer // class labels of the data and of the batch (conditional nets)
	// scalars holds the step's values the kernels read (stepScalars), and
	// hostScalars their host copy; adamScalars and stepFrom are its two
	// parts, sliced once so that a step allocates nothing.
	scalars     gpu.Buffer
	adamScalars gpu.Buffer
	stepFrom    gpu.Buffer
	hostScalars [stepScalarCount]float32
	graph       *gpu.Graph // the recorded step, nil before it is recorded or without graphs
	noGraph     bool       // the backend records no graph (or failed to)
	ranOnce     bool       // a step ran op by op: the scratch space is sized

	step      int           // steps completed
	schedule  *ScheduleInfo // the last Run's, recorded by Save
	sinceRead int
	lastRead  LossCarry  // the loss sum and step count the last Read took
	carry     *LossCarry // the loss Run read at a stop between its lines, or Resume found, not yet in a full line
	owned     []gpu.Buffer
	stream    *streamState   // the source of a streaming trainer (stream.go)
	par       *parallel      // this rank's part of a data-parallel run (parallel.go)
	cpl       *couplingState // a coupling other than independent (coupling.go)
	stepErr   error          // a coupled step's failure, reported by Read
}

// New builds a trainer for cfg on b over the (already standardized) data,
// nData rows of cfg.Model.Dim columns, with freshly initialized weights.
func New(b gpu.Backend, cfg Config, data []float32, nData int) (*Trainer, error) {
	return NewConditional(b, cfg, data, nil, nData)
}

// NewConditional is New for a class-conditional network: labels (one per
// data row, in [0, cfg.Model.Classes)) are drawn with the rows, and dropped
// to the null class with probability cfg.ClassDropout.
func NewConditional(b gpu.Backend, cfg Config, data []float32, labels []int32, nData int) (*Trainer, error) {
	if cfg.Coupling.Kind == CouplingPairs {
		return nil, fmt.Errorf("train: coupling %s needs the pairs' noise (NewPairs)", CouplingPairs)
	}
	return newTrainer(b, cfg, data, labels, nData, nil)
}

// newTrainer is NewConditional, with the noise of fixed pairs for
// coupling pairs (NewPairs).
func newTrainer(b gpu.Backend, cfg Config, data []float32, labels []int32, nData int, pairX0 []float32) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := gpu.SetPrecision(b, cfg.Precision); err != nil {
		return nil, err
	}
	d := cfg.Model.Dim
	if nData < 1 || len(data) != nData*d {
		return nil, fmt.Errorf("training data: %d values for %d rows of %d columns", len(data), nData, d)
	}
	path, err := flow.New(cfg.Path)
	if err != nil {
		return nil, err
	}
	classes := cfg.Model.Classes
	if (classes > 0) != (labels != nil) {
		return nil, fmt.Errorf("a model with %d classes needs one label per data row (got %d labels)", classes, len(labels))
	}
	if labels != nil && len(labels) != nData {
		return nil, fmt.Errorf("%d labels for %d data rows", len(labels), nData)
	}
	for i, l := range labels {
		if l < 0 || int(l) >= classes {
			return nil, fmt.Errorf("label %d of row %d outside 0..%d", l, i, classes-1)
		}
	}
	net, err := model.New(b, cfg.Model)
	if err != nil {
		return nil, err
	}
	tr := &Trainer{cfg: cfg, b: b, net: net, path: path, nData: nData}
	alloc := func(n int) gpu.Buffer {
		buf := b.Alloc(n)
		tr.owned = append(tr.owned, buf)
		return buf
	}
	tr.data = alloc(len(data))
	b.Upload(tr.data, data)
	np := net.NumParams()
	tr.grads, tr.m, tr.v, tr.ema = alloc(np), alloc(np), alloc(np), alloc(np)
	bs := cfg.Batch
	tr.xt, tr.ut, tr.pred, tr.dPred = alloc(bs*d), alloc(bs*d), alloc(bs*d), alloc(bs*d)
	tr.t = alloc(bs)
	tr.readout = alloc(3)
	tr.scalars = alloc(stepScalarCount)
	tr.adamScalars, tr.stepFrom = tr.scalars.Slice(0, gpu.AdamScalars), tr.scalars.Slice(stepWords, 2)
	tr.lossSum, tr.gradSq, tr.status = tr.readout.Slice(0, 1), tr.readout.Slice(1, 1), tr.readout.Slice(2, 1)
	if labels != nil {
		lf := make([]float32, len(labels))
		for i, l := range labels {
			lf[i] = float32(l)
		}
		tr.labels, tr.y = alloc(len(lf)), alloc(bs)
		b.Upload(tr.labels, lf)
		net.SetLabels(tr.y)
	}
	if d, ok := net.(model.Dropper); ok {
		// The masks of step s are Philox stream s - 1 of the run's seed,
		// read from the step's scalars like the batch draw's: a resumed
		// run (or a replayed graph) drops what the uninterrupted one does.
		d.SetDropout(&gpu.DropoutDraw{Seed: cfg.Seed, StepFrom: tr.stepFrom})
	}
	net.Reserve(bs)
	net.Init(cfg.Seed)
	b.Copy(tr.ema, net.Params())
	tr.emaNet = net.WithWeights(tr.ema)
	if err := tr.setupCoupling(pairX0); err != nil {
		tr.Close()
		return nil, err
	}
	return tr, b.Sync()
}

// Close frees the trainer's device buffers.
func (tr *Trainer) Close() {
	tr.graph.Close()
	tr.graph = nil
	tr.net.Release()
	tr.emaNet.Release()
	tr.b.Free(tr.net.Params()) // model.New allocated it
	for _, buf := range tr.owned {
		tr.b.Free(buf)
	}
	tr.owned = nil
}

func (tr *Trainer) Config() Config { return tr.cfg }
func (tr *Trainer) StepsDone() int { return tr.step }
func (tr *Trainer) Net() model.Net { return tr.net }

// EMANet is the network with the EMA weights, the one to sample from;
// with decay 0 (--ema 0) the trained network itself.
func (tr *Trainer) EMANet() model.Net {
	if tr.cfg.EMADecay == 0 {
		return tr.net
	}
	return tr.emaNet
}

// emaParams are the EMA weights a checkpoint holds: with decay 0 (no EMA)
// the average of the last step alone, the weights themselves, since the
// optimizer leaves its EMA buffer at the initial weights then.
func (tr *Trainer) emaParams() gpu.Buffer {
	if tr.cfg.EMADecay == 0 {
		return tr.net.Params()
	}
	return tr.ema
}

// emaDecayAt warms the EMA up, min(decay, (1 + s) / (10 + s)), so that in a
// short run the average is not dominated by the random initial weights.
func (c Config) emaDecayAt(s int) float64 {
	return math.Min(c.EMADecay, float64(1+s)/float64(10+s))
}

// The step scalars: gpu.AdamScalars values for AdamStep.Scalars, then the
// Philox step's two words for BatchDraw.StepFrom.
const (
	stepWords       = gpu.AdamScalars
	stepScalarCount = gpu.AdamScalars + 2
)

// Step queues one training step: draw (x0, x1, t) and the path target on
// the device, forward, loss gradient, backward, gradient norm, and the
// fused Adam + EMA update; a replay of the recorded step where the backend
// records graphs.
func (tr *Trainer) Step() {
	if tr.stream != nil {
		panic("train: Step on a streaming trainer (StepStream draws its rows)")
	}
	s := tr.step + 1
	if tr.cpl.hostPaired() {
		if tr.stepErr == nil {
			tr.stepErr = tr.stepCoupled(s)
		}
		tr.step = s
		tr.sinceRead++
		return
	}
	tr.uploadScalars(s)
	tr.uploadTimes(s)
	if !tr.replay() {
		tr.queueStep()
		tr.ranOnce = true
	}
	tr.step = s
	tr.sinceRead++
}

// uploadScalars writes the changing values of step s (1-based) where the
// step's ops read them.
func (tr *Trainer) uploadScalars(s int) {
	sc := gpu.AdamScalarValues(tr.adamStep(s))
	copy(tr.hostScalars[:], sc[:])
	w := gpu.StepWords(uint64(s - 1))
	copy(tr.hostScalars[stepWords:], w[:])
	tr.b.Upload(tr.scalars, tr.hostScalars[:])
}

// replay launches the recorded step, recording it first when it is time;
// false: queue the ops one by one.
func (tr *Trainer) replay() bool {
	if tr.graph != nil {
		if tr.graph.Launch() == nil {
			return true
		}
		// Stale (a buffer it used was freed or the scratch moved): record
		// it again.
		tr.graph.Close()
		tr.graph = nil
	}
	if tr.noGraph || !tr.ranOnce {
		return false
	}
	g, err := gpu.Capture(tr.b, tr.queueStep)
	if g == nil || err != nil {
		tr.noGraph = true // unsupported, or failed: run op by op from now on
		return false
	}
	tr.graph = g
	return g.Launch() == nil
}

// Recorded reports whether the steps run as replays of a recorded graph
// (gpu.Capture) and how many kernels one replay runs.
func (tr *Trainer) Recorded() (bool, int64) {
	if tr.graph == nil {
		return false, 0
	}
	return true, tr.graph.Kernels()
}

// adamStep is the optimizer step s (1-based) as the fields say; queueStep
// passes its changing scalars through device memory.
func (tr *Trainer) adamStep(s int) gpu.AdamStep {
	c := tr.cfg
	return gpu.AdamStep{
		LR: float32(c.LRAt(s)), Beta1: float32(c.Beta1), Beta2: float32(c.Beta2), Eps: float32(c.Eps),
		WeightDecay: float32(c.WeightDecay), Decoupled: c.Optimizer == AdamW,
		BiasCorr1: float32(1 - math.Pow(c.Beta1, float64(s))), BiasCorr2: float32(1 - math.Pow(c.Beta2, float64(s))),
		EMADecay: float32(c.emaDecayAt(s)), MaxGradNorm: float32(c.MaxGradNorm), Step: s,
	}
}

// queueStep queues the ops of a step with its changing values read from
// tr.scalars: the same ops whether run directly or recorded.
func (tr *Trainer) queueStep() {
	if tr.cpl.paired() {
		tr.queuePairsStep()
		return
	}
	c := tr.cfg
	b, bs, d := tr.b, c.Batch, c.Model.Dim
	dr := gpu.BatchDraw{Path: c.Path, Time: c.Time, Seed: c.Seed, StepFrom: tr.stepFrom}
	b.DrawBatch(dr, tr.data, tr.nData, d, bs, nil, nil, tr.t, tr.xt, tr.ut)
	if tr.labels != nil {
		b.DrawLabels(dr, tr.labels, tr.nData, bs, float32(c.ClassDropout), float32(c.Model.Classes), tr.y)
	}
	tr.queueUpdate()
}

// queueUpdate queues the part of a step after its batch is drawn (t, x_t,
// u_t and the labels in place): forward, loss gradient, backward, gradient
// norm and the fused Adam + EMA update, with the changing values read from
// tr.scalars. The streaming step (stream.go) shares it.
func (tr *Trainer) queueUpdate() {
	c := tr.cfg
	b, bs := tr.b, c.Batch
	rows, t, xt, ut, pred, dPred := tr.batchRows()
	tr.net.Forward(rows, t, xt, pred)
	b.MSELossAccumulate(pred, ut, float32(1/float64(bs)), dPred, tr.lossSum)
	tr.net.Backward(dPred, tr.grads)
	tr.sumGradients()
	b.SumSquares(tr.grads, tr.gradSq)
	a := tr.adamStep(1) // the fixed fields; the rest from Scalars
	a.EMADecay = float32(c.EMADecay)
	a.Scalars = tr.adamScalars
	b.AdamEMA(a, tr.net.Params(), tr.grads, tr.m, tr.v, tr.ema, tr.gradSq, tr.status)
}

// Progress is what a Read returns.
type Progress struct {
	Step     int     // steps completed
	Loss     float64 // mean loss (summed over the D dimensions) over the steps since the previous Read
	GradNorm float64 // gradient norm of the last step, before clipping
	LR       float64 // learning rate of the last step
}

// NonFiniteError reports the first step whose gradient was not finite; the
// update of that step and of every later one was skipped on the device.
type NonFiniteError struct {
	Step int
	What string
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("step %d: non-finite %s; training stopped", e.Step, e.What)
}

// Read waits for the device and returns the progress since the previous
// Read, or a *NonFiniteError when a loss or gradient was not finite.
func (tr *Trainer) Read() (Progress, error) {
	if tr.stepErr != nil {
		return Progress{Step: tr.step}, tr.stepErr
	}
	var h [3]float32
	tr.b.Download(h[:], tr.readout) // lossSum, gradSq, status: one copy, one wait
	tr.b.Fill(tr.lossSum, 0)
	if err := tr.b.Sync(); err != nil {
		return Progress{}, err
	}
	if tr.par != nil { // every rank's share of the loss
		if err := tr.par.sumHost(h[:1]); err != nil {
			return Progress{}, err
		}
	}
	p := Progress{Step: tr.step, GradNorm: math.Sqrt(float64(h[1])), LR: tr.cfg.LRAt(tr.step)}
	if tr.sinceRead > 0 {
		p.Loss = float64(h[0]) / float64(tr.sinceRead)
	}
	tr.lastRead = LossCarry{Sum: h[0], Steps: tr.sinceRead, Step: tr.step}
	tr.sinceRead = 0
	if h[2] != 0 {
		return p, &NonFiniteError{Step: int(h[2]), What: "gradient"}
	}
	if math.IsNaN(p.Loss) || math.IsInf(p.Loss, 0) {
		return p, &NonFiniteError{Step: tr.step, What: "loss"}
	}
	return p, nil
}
